"""The runtime edge: the scheduler plugin installed once per client, and pinned encoded
data placed one way.

Every entry point that places coded data on a cluster (:func:`dask_coded.encode`,
:func:`dask_coded.encode_operand`, :class:`dask_coded.CodedPartitions`) builds
:class:`~dask_coded.graph.EncodeTask` s naming their workers and hands them to
:func:`place_encoded`; the scheduler plugin pins each where it says, tracks it, and
re-pins it when its worker is lost.
"""

from __future__ import annotations

import weakref

from dask.base import is_dask_collection
from distributed import Future, wait

from ._scheduler import FirstKPlugin
from .keys import as_key

# client -> the scheduler address the plugin was registered with
_INSTALLED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def install(client) -> None:
    """Register :class:`~dask_coded.FirstKPlugin` on the scheduler of the synchronous
    ``client`` (called outside its event loop), once per client and scheduler."""
    address = getattr(client.scheduler, "address", None)
    if _INSTALLED.get(client) != address:
        client.register_plugin(FirstKPlugin())
        _INSTALLED[client] = address


async def ainstall(client) -> None:
    """:func:`install` for an asynchronous client, or on the client's event loop."""
    address = getattr(client.scheduler, "address", None)
    if _INSTALLED.get(client) != address:
        await client.register_plugin(FirstKPlugin())
        _INSTALLED[client] = address


async def place_encoded(client, tasks: dict, priority: int = 0) -> list:
    """Submit the encode tasks ``tasks`` (``{key: EncodeTask}``, each naming its worker)
    at ``priority``, wait for them, and raise the first error where the user placed the
    data; returns their futures in the order of ``tasks`` (run on the client's loop)."""
    await ainstall(client)
    futures = client.get(tasks, list(tasks), sync=False, priority=priority)
    await wait(futures)
    for f in futures:
        if f.status == "error":
            await f
    return futures


async def put(client, items: list) -> tuple[list, list]:
    """Each of ``items`` on the cluster: a Future as it is, a dask collection computed
    there, any other value scattered (run on the client's loop). Returns the futures in
    the order of ``items``, and the ones this call made (its caller releases those; the
    caller's own Futures stay the caller's)."""
    futures: list = [None] * len(items)
    lazy = [i for i, p in enumerate(items) if is_dask_collection(p)]
    values = [i for i, p in enumerate(items)
              if not isinstance(p, Future) and not is_dask_collection(p)]
    for i, f in zip(lazy, client.compute([items[i] for i in lazy])):
        futures[i] = f
    if values:
        scattered = await client.scatter([items[i] for i in values], hash=False)
        for i, f in zip(values, scattered):
            futures[i] = f
    for i, p in enumerate(items):
        if isinstance(p, Future):
            futures[i] = p
    return futures, [futures[i] for i in lazy + values]


def pinned_workers(client, keys: list) -> dict:
    """``{key: worker}``: where the scheduler plugin pins the coded blocks ``keys`` now
    (a block re-pinned after a loss shows its new worker; synchronous ``client``)."""
    return client.run_on_scheduler(_pinned_workers, keys=list(keys))


def _pinned_workers(keys: list, dask_scheduler=None) -> dict:
    plugin = dask_scheduler.plugins.get(FirstKPlugin.name)
    blocks = {} if plugin is None else plugin.blocks
    return {k: blocks[k].worker for k in map(as_key, keys) if k in blocks}


async def first_k_used(client, name: str, size: int) -> list[int]:
    """Indices of the products named ``name`` (``size`` of them) that the scheduler's
    decode used: the first to finish, or all of them when none was released."""
    used = await client.scheduler.coded_first_k_used(name=name)
    return list(range(size)) if used is None else list(used)
