"""Peer-to-peer relay of packet bundles: a worker serves byte ranges of a key it holds.

A member of a coded group needs only its packets from a relay's bundle. dask's own
dependency transfer moves whole keys, and cutting the bundle per member with tasks costs
``n^2`` task messages from the master per epoch. Instead :class:`RelayPlugin` (a
``WorkerPlugin``, registered by :class:`CodedShuffle`) installs one RPC handler on every
worker, ``dask_coded_shuffle_ranges(key, ranges)``, and a member's decode task asks each
relay for its ranges directly (:func:`fetch_ranges`): worker to worker, bytes exactly as
planned, nothing through the scheduler. The session keeps the bundles alive until every
decode finished.
"""

from __future__ import annotations

from distributed.diagnostics.plugin import WorkerPlugin
from distributed.protocol.serialize import to_serialize

from .xor import decode_segments, member_ranges, take_ranges

HANDLER = "dask_coded_shuffle_ranges"


class RelayPlugin(WorkerPlugin):
    """Installs :meth:`serve_ranges` as ``dask_coded_shuffle_ranges`` on every worker."""

    name = "dask-coded-shuffle-relay"

    def setup(self, worker) -> None:
        self.worker = worker
        worker.handlers[HANDLER] = self.serve_ranges

    def serve_ranges(self, key: str, ranges: list) -> dict:
        """The handler: the concatenated byte ranges of ``key`` in this worker's memory."""
        data = self.worker.data
        if key not in data:
            raise KeyError(f"worker {self.worker.address} does not hold {key!r} "
                           f"(released before its members fetched it?)")
        return {"status": "OK", "bytes": to_serialize(take_ranges(data[key], ranges))}

    def teardown(self, worker) -> None:
        worker.handlers.pop(HANDLER, None)


def fetch_ranges(requests: dict) -> dict:
    """From inside a task: ``{name: bytes}`` for ``requests`` = ``{name: (address, key,
    ranges)}``, byte ``ranges`` of ``key`` held by the worker at ``address``; all peers
    are asked at once."""
    import asyncio

    from distributed import get_worker
    from distributed.utils import sync

    worker = get_worker()

    async def one(address, key, ranges):
        if address == worker.address:
            return take_ranges(worker.data[key], ranges)
        got = await worker.rpc(address).dask_coded_shuffle_ranges(key=key, ranges=ranges)
        return got["bytes"]

    async def every():
        names = list(requests)
        got = await asyncio.gather(*(one(*requests[k]) for k in names))
        return dict(zip(names, got))

    return sync(worker.loop, every)


def decode_member(routed, worker: int, sources: dict, share: dict, store: dict,
                  outputs: dict) -> dict:
    """A worker's decode task: fetch its packets from each relay (``sources``:
    ``{relay: (address, bundle key)}``), then :func:`decode_segments`."""
    relayed = fetch_ranges({r: (*sources[r], ranges)
                            for r, ranges in member_ranges(routed, worker).items()})
    return decode_segments(routed, worker, relayed, share, store, outputs)
