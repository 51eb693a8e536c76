"""Coded parts: a list of data parts encoded once by a part scheme; ``L.map(f, *args)``
gives ``[f(part, *args) for part in parts]`` from the first ``threshold`` products.

``dask_coded.encode(parts, n, scheme=name, ...)`` with a scheme whose
:attr:`~dask_coded.schemes.Scheme.data` is ``"parts"`` (:class:`~dask_coded.schemes.
PartScheme`) builds a :class:`CodedParts`: the parts are put on the cluster, and coded
part ``j`` is made on the worker it is pinned to (an
:class:`~dask_coded.tasks.EncodeTask`, re-pinned by the scheduler plugin when that
worker is lost) from the parts the scheme says it needs. ``L.map(f, *args)`` is one
product group (:func:`dask_coded.graph.product_group`): product ``j`` applies ``f`` to
coded part ``j`` on its worker, and the scheme decodes from the first ``threshold``.

Without a distributed client the coded parts are kept in this process and the products
race in threads.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import dask
from dask.base import is_dask_collection
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph

from .handles import Handle
from . import cluster
from .errors import CodedError
from .graph import EncodeTask, product_group
from .keys import BLOCK_PREFIX, DECODE_PREFIX, product_name
from .kernels import Applied, Arguments, encode_part
from .schemes import PartScheme, build
from .workers import default_client, pick_workers


class CodedParts(Handle):
    """Data parts encoded by a :class:`~dask_coded.schemes.PartScheme`, one coded part
    per worker. Build it with :func:`dask_coded.encode`.

    Attributes
    ----------
    scheme : PartScheme
    workers : list of str or None
        ``workers[j]`` holds coded part ``j`` (``None`` on the local scheduler).
    """

    def __init__(self, scheme: PartScheme, client: Any = None):
        self.scheme = scheme
        self.client = client
        self.token = uuid.uuid4().hex[:16]
        self.blocks: list = []  # Futures (distributed) or the coded parts (local)
        self.workers: list[str] | None = None
        self.calls = 0
        self._made: list = []  # futures of the data parts this handle put on the cluster
        self._last_products: str | None = None

    n = property(lambda self: self.scheme.n_blocks)
    threshold = property(lambda self: self.scheme.threshold)

    @property
    def local(self) -> bool:
        """True when the coded parts live in this process (no distributed client)."""
        return self.client is None

    def __repr__(self) -> str:
        where = "local" if self.local else f"{len(set(self.workers or ()))} workers"
        if not self.local and not self.blocks:
            where = "released"
        return f"CodedParts({self.scheme!r}, {where})"

    def map(self, f: Callable[..., Any], *args: Any) -> Delayed:
        """``[f(part, *args) for part in parts]`` as a ``dask.delayed`` object that
        completes from the first ``threshold`` products.

        ``f`` runs on each coded part where it lives, with ``args`` (numpy arrays or
        numbers, sent with each product); it must be what the scheme decodes (a
        polynomial of the degree the code was built for, for Lagrange coding).
        """
        if not callable(f):
            raise TypeError(f"f must be callable, got {type(f).__name__}")
        lazy = [i for i, a in enumerate(args) if is_dask_collection(a)]
        if lazy:
            raise TypeError(f"map's args are sent with each product: argument {lazy[0]} is "
                            f"a dask collection; compute it first")
        if not self.local and not self.blocks:
            raise CodedError("these coded parts were released; encode the parts again")
        self.calls += 1
        token = f"{self.token}-{uuid.uuid4().hex[:12]}"
        key = f"{DECODE_PREFIX}{token}"
        self._last_products = product_name(self.scheme.threshold, token)
        tasks = product_group(self.scheme, token, self.blocks, Arguments(tuple(args)), key,
                              local=self.local, product=Applied(self.scheme, f))
        return Delayed(key, HighLevelGraph.from_collections(key, tasks, dependencies=()))

    def last_used(self) -> list[int]:
        """Coded parts (indices ``j``) whose products the last decode used (distributed;
        awaitable with an asynchronous client)."""
        if self.local or self._last_products is None:
            raise CodedError("last_used() reports the distributed scheduler's choice")
        return self.client.sync(self._last_used)

    async def _last_used(self) -> list[int]:
        return await cluster.first_k_used(self.client, self._last_products, self.n)

    def release(self) -> None:
        """Drop the coded parts and the data parts put on the cluster for them."""
        if not self.local:
            for f in self.blocks + self._made:
                f.release()
        self.blocks, self._made = [], []


def encode_parts(parts: Sequence, n: int, scheme: str, *, client: Any = None,
                 allow_shared_workers: bool = False, **params: Any) -> CodedParts:
    """``parts`` encoded by the part scheme ``scheme`` for ``n`` workers (see
    :func:`dask_coded.encode`); ``params`` go to its
    :meth:`~dask_coded.schemes.Scheme.from_params` with ``parts=len(parts)``."""
    if not isinstance(parts, (list, tuple)) or not parts:
        raise TypeError(f"scheme {scheme!r} codes a list of data parts (arrays, or tuples "
                        f"of arrays); got {type(parts).__name__}"
                        + (" of none" if isinstance(parts, (list, tuple)) else ""))
    code = build(scheme, n, "parts", parts=len(parts), **params)
    client = client if client is not None else default_client()
    handle = CodedParts(code, client)
    if client is None:
        values = dask.compute(*parts)
        handle.blocks = [code.encode_part(j, *[values[i] for i in code.parts_needed(j)])
                         for j in range(code.n_blocks)]
        return handle
    # an asynchronous client gets an awaitable: `L = await dask_coded.encode(...)`
    return client.sync(_place, handle, list(parts), allow_shared_workers)


async def _place(handle: CodedParts, parts: list, allow_shared_workers: bool) -> CodedParts:
    """Put the parts on the cluster and make each coded part on its worker."""
    client, code = handle.client, handle.scheme
    await cluster.ainstall(client)
    workers = (await client.scheduler.identity(n_workers=-1))["workers"]
    handle.workers = code.placement(pick_workers(workers, code.n_blocks,
                                                 allow_shared_workers))
    futures, handle._made = await cluster.put(client, parts)
    name = f"{BLOCK_PREFIX}{handle.token}"
    tasks = {
        (name, j): EncodeTask((name, j), encode_part, code, j,
                              *[futures[i] for i in code.parts_needed(j)],
                              matrix=handle.token, index=j, worker=worker, keep=False,
                              code=code.summary)
        for j, worker in enumerate(handle.workers)
    }
    try:
        handle.blocks = await cluster.place_encoded(client, tasks)
    except BaseException:
        for f in handle._made:
            f.release()
        raise
    return handle
