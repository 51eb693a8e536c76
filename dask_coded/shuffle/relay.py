"""The workers' side of a segmented reshuffle: RPC handlers installed by a worker plugin.

:class:`RelayPlugin` (a ``WorkerPlugin``; :class:`CodedShuffle` registers it) installs
three handlers on every worker, all answered worker to worker, nothing through the
scheduler:

``dask_coded_shuffle_plan(key, args)``
    start planning a reshuffle (:func:`route`) in a thread of this worker, outside its
    task slots, so that the next epoch is planned while this one decodes;
``dask_coded_shuffle_get_plan(key)``
    the plan, once computed (the master and every decoding worker fetch it);
``dask_coded_shuffle_ranges(key, ranges)``
    byte ranges of a key this worker holds: a member's decode task fetches only its
    packets from each relay's bundle. (dask's dependency transfer moves whole keys:
    ``n - 1`` times the master's bytes of peer traffic; a task per relay and member
    costs the master ``n^2`` task messages per epoch.)

The session keeps the bundles alive until every decode is done.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from distributed.diagnostics.plugin import WorkerPlugin
from distributed.protocol.serialize import to_serialize

from .placement import routed_only
from .xor import decode_segments, member_ranges, take_ranges

KEEP_PLANS = 4  # plans a worker keeps per shuffle (the current and the next epoch's, spares)


class RelayPlugin(WorkerPlugin):
    """Installs the ``dask_coded_shuffle_*`` handlers (see the module doc)."""

    name = "dask-coded-shuffle-relay"

    def setup(self, worker) -> None:
        self.worker = worker
        self.plans: dict[str, OrderedDict] = {}  # shuffle -> {plan key: its future}
        worker.handlers.update({
            "dask_coded_shuffle_ranges": self.serve_ranges,
            "dask_coded_shuffle_plan": self.start_plan,
            "dask_coded_shuffle_get_plan": self.get_plan,
            "dask_coded_shuffle_forget": self.forget,
        })

    def teardown(self, worker) -> None:
        for name in ("dask_coded_shuffle_ranges", "dask_coded_shuffle_plan",
                     "dask_coded_shuffle_get_plan", "dask_coded_shuffle_forget"):
            worker.handlers.pop(name, None)

    def serve_ranges(self, key: str, ranges: list) -> dict:
        """The concatenated byte ranges of ``key`` in this worker's memory."""
        data = self.worker.data
        if key not in data:
            raise KeyError(f"worker {self.worker.address} does not hold {key!r} "
                           f"(released before its members fetched it?)")
        return {"status": "OK", "bytes": to_serialize(take_ranges(data[key], ranges))}

    def start_plan(self, key: str, args: tuple) -> dict:
        """Plan ``routed_only(*args)`` in a thread; :meth:`get_plan` waits for it."""
        loop = asyncio.get_running_loop()
        mine = self.plans.setdefault(shuffle_of(key), OrderedDict())
        mine[key] = loop.run_in_executor(None, routed_only, *args)
        while len(mine) > KEEP_PLANS:  # another shuffle's plans are not this one's spares
            mine.popitem(last=False)
        return {"status": "OK"}

    async def get_plan(self, key: str) -> dict:
        plan = self.plans.get(shuffle_of(key), {}).get(key)
        if plan is None:
            raise KeyError(f"worker {self.worker.address} has no plan {key!r}")
        return {"status": "OK", "plan": to_serialize(await plan)}

    def forget(self, shuffle: str) -> dict:
        """Drop the plans of a closed shuffle (``coded-shuffle-<token>``)."""
        self.plans.pop(shuffle, None)
        return {"status": "OK"}


def shuffle_of(key: str) -> str:
    """The shuffle a plan key belongs to: ``coded-shuffle-<token>`` of
    ``coded-shuffle-<token>-e<epoch>...``."""
    return "-".join(key.split("-")[:3])


def _call(requests: dict) -> dict:
    """From inside a task: ``{name: answer}`` for ``requests`` = ``{name: (address,
    handler, kwargs)}``, all sent at once."""
    from distributed import get_worker
    from distributed.utils import sync

    worker = get_worker()

    async def every():
        names = list(requests)
        got = await asyncio.gather(*(getattr(worker.rpc(a), h)(**kw)
                                     for a, h, kw in (requests[k] for k in names)))
        return dict(zip(names, got))

    return sync(worker.loop, every)


def decode_member(planner: tuple, worker: int, sources: dict, share: dict, store: dict,
                  outputs: dict) -> dict:
    """A worker's decode task: fetch the plan (``planner``: ``(address, key)``) and its
    packets from each relay (``sources``: ``{relay: (address, bundle key)}``), then
    :func:`decode_segments`."""
    from distributed import get_worker

    here = get_worker().address
    routed = _call({"plan": (planner[0], "dask_coded_shuffle_get_plan",
                             {"key": planner[1]})})["plan"]["plan"]
    ranges = member_ranges(routed, worker)
    local = {r: take_ranges(get_worker().data[sources[r][1]], ranges[r])
             for r in ranges if sources[r][0] == here}
    remote = _call({r: (sources[r][0], "dask_coded_shuffle_ranges",
                        {"key": sources[r][1], "ranges": ranges[r]})
                    for r in ranges if sources[r][0] != here})
    relayed = {**local, **{r: got["bytes"] for r, got in remote.items()}}
    return decode_segments(routed, worker, relayed, share, store, outputs)
