"""Carry out a segmented reshuffle on a cluster and keep every worker's slices in place.

A worker holds each partition it owns whole (one future each: the session's keys) and
one *slice store*: ``{p: bytes}`` of every partition it does not own, the segments the
:class:`Placement` gives it. One reshuffle:

1. a worker computes the plan (:func:`route`) from the owners before and after - the
   master deals epoch ``e + 1`` when epoch ``e`` starts, so the plan is ready when it is
   needed; the other workers fetch it from there, the master gathers it (ingress);
2. the master XORs each packet's streams and scatters the packets as one *bundle* per
   relay worker (a member of the packet's group);
3. each worker runs one task (:func:`decode_segments`): it fetches the bundles that
   hold its packets from their relays (peer to peer), XORs out the other members'
   streams using its share and store, assembles the partitions it receives, and updates
   its store (drop what it now owns, cut its slices of what it gave up); a ``getitem``
   per partition gives each new partition its key. It fetches only its packets, by RPC
   from each relay (:mod:`.relay`): a task per (relay, member) pair would cost the master
   ``n^2`` task messages per epoch, and fetching whole bundles ``n - 1`` times the
   master's bytes of peer traffic (measured: 178 MB per epoch at n = 12).

The first epoch, and any epoch after the worker set changed, delivers whole partitions
(there are no slices yet); then each owner cuts every peer's slices and the peer merges
them into its store: peer traffic only.
"""

from __future__ import annotations

import asyncio

import operator

import dask
import numpy as np
from dask import delayed

from distributed.protocol.serialize import to_serialize

from .. import config
from .placement import Placement, Routed, initial_slots, moved_slots
from .relay import decode_member
from .xor import as_bytes, bundles, cut_slices, merge_slices


class SegmentedCaches:
    """The slice stores of ``workers`` under ``placement`` (workers by index)."""

    def __init__(self, client, placement: Placement, workers: list[str], parts: list,
                 scatter_timeout: float):
        self.client, self.placement, self.workers = client, placement, list(workers)
        self.parts, self.scatter_timeout = parts, scatter_timeout
        self.sizes = [int(np.asarray(p).nbytes) for p in parts]
        self.views = [as_bytes(p) for p in parts]  # the master's bytes, no copies
        self.stores: dict = {}
        self.bundles: dict = {}
        self.in_place = False
        #: every worker's slot in every partition, as the stores are once the epochs
        #: delivered so far are decoded (set by :meth:`fill`, moved by :meth:`deliver`)
        self.slots: np.ndarray | None = None
        # the master's setting travels with every plan it asks a worker for
        self.lp_variables = int(config.get("shuffle.lp-variables"))

    def __repr__(self) -> str:
        return f"SegmentedCaches({self.placement!r}, in place: {self.in_place})"

    def start_plan(self, old_owner: dict, new_owner: dict, key: str, worker: int = 0
                   ) -> tuple[str, str]:
        """Have worker ``worker`` plan the reshuffle from the owners alone, in a thread
        outside its task slots (:class:`RelayPlugin`); returns where to fetch it. The
        master sends only the owners (and the slots, :attr:`slots`); it and the decoding
        workers fetch the plan there."""
        address = self.workers[worker]
        self._call(address, "dask_coded_shuffle_plan", key=key,
                   args=to_serialize((self.placement, self.sizes, old_owner, new_owner,
                                      self.lp_variables, self.slots)))
        return address, key

    def fetch_plan(self, planner: tuple[str, str]) -> Routed:
        """The plan from the worker planning it (ingress for the master)."""
        address, key = planner
        return self._call(address, "dask_coded_shuffle_get_plan", key=key)["plan"]

    def _call(self, address: str, method: str, **kwargs):
        """RPC ``method`` on worker ``address``, bounded by the scatter timeout: a worker
        that died raises :class:`TimeoutError` (the epoch is re-planned) instead of
        waiting for the connection's own timeouts."""
        async def call():
            return await asyncio.wait_for(getattr(self.client.rpc(address), method)(**kwargs),
                                          self.scatter_timeout)
        return self.client.sync(call)

    def deliver(self, routed: Routed, planner: tuple, held: dict, key: str, new: dict,
                part_key) -> None:
        """Send ``routed`` (``planner``: where the workers fetch it); fill ``new[worker][p]``
        with a future of each partition that moves to ``worker`` (key ``part_key(worker,
        p)``) and replace the stores."""
        c, W = self.client, self.workers
        self.bundles = {}  # kept until the decodes are done: they fetch from them by RPC
        for r, bundle in sorted(bundles(routed, self.views).items()):
            k = f"{key}-bundle-w{r}"
            self.bundles[r] = c.scatter({k: bundle}, workers=[W[r]], direct=True,
                                        timeout=self.scatter_timeout)[k]
        sources = {r: (W[r], f.key) for r, f in self.bundles.items()}
        old, new_owner = routed.old_owner, routed.new_owner
        parts, stores = [], []  # every task of the epoch, submitted as one graph
        for i, w in enumerate(W):
            relays = sorted(set(routed.relay[routed.packet[routed.member == i]].tolist()))
            incoming = np.flatnonzero((new_owner == i) & (old != i)).tolist()
            outputs = {p: (np.asarray(self.parts[p]).shape, np.asarray(self.parts[p]).dtype)
                       for p in incoming}
            share = {p: held[w][p] for p in np.flatnonzero(old == i).tolist()}
            with dask.annotate(workers=[w], allow_other_workers=False):
                result = delayed(decode_member, pure=False)(
                    planner, i, {r: sources[r] for r in relays}, share, self.stores[w], outputs,
                    dask_key_name=f"{key}-decode-w{i}")
                parts += [(w, p, delayed(_part, pure=False)(result, p,
                                                            dask_key_name=part_key(w, p)))
                          for p in incoming]
                stores.append((w, delayed(operator.getitem, pure=False)(
                    result, "store", dask_key_name=f"{key}-store-w{i}")))
        futures = c.compute([d for *_, d in parts] + [d for _, d in stores],
                            optimize_graph=False)
        for (w, p, _), f in zip(parts, futures):
            new[w][p] = f
        for (w, _), f in zip(stores, futures[len(parts):]):
            self.stores[w] = f
        self.slots = moved_slots(routed.slots, dict(enumerate(old.tolist())),
                                 dict(enumerate(new_owner.tolist())))

    def fill(self, held: dict, key: str) -> list:
        """Every store afresh: each owner cuts each peer's slices of the partitions it
        holds whole (``held``: ``{worker: {p: future}}``), the peer merges them."""
        c, W = self.client, self.workers
        self.release()
        owner = {p: o for o, w_o in enumerate(W) for p in held[w_o]}
        self.slots = initial_slots([owner[p] for p in range(len(self.parts))], len(W))
        for j, w_j in enumerate(W):
            cuts = [c.submit(cut_slices, self.placement,
                             {p: int(self.slots[p, j]) for p in held[w_o]}, held[w_o],
                             key=f"{key}-cut-w{o}-w{j}", workers=[w_o],
                             allow_other_workers=False, pure=False)
                    for o, w_o in enumerate(W) if o != j and held[w_o]]
            self.stores[w_j] = c.submit(merge_slices, *cuts, key=f"{key}-store-w{j}",
                                        workers=[w_j], allow_other_workers=False, pure=False)
        self.in_place = True
        return list(self.stores.values())

    def release(self) -> None:
        for f in [*self.stores.values(), *self.bundles.values()]:
            f.release()
        self.stores, self.bundles = {}, {}
        self.in_place, self.slots = False, None


def _part(result: dict, p: int):
    return result["parts"][p]
