"""Carry out a segmented reshuffle on a cluster and keep every worker's slices in place.

A worker holds each partition it owns whole (one future each: the session's keys) and
one *slice store*: ``{p: bytes}`` of every partition it does not own, the segments the
:class:`Placement` gives it. One reshuffle:

1. the master plans (:func:`route`), XORs each packet's streams and scatters the packets
   as one *bundle* per relay worker;
2. one worker computes the same plan from the owners (it is deterministic; the owners
   are all the master sends) and the others fetch it from there: the plan, like the
   packets, reaches the workers peer to peer;
3. each worker runs one task (:func:`decode_segments`): it fetches the bundles that
   hold its packets from their relays (peer to peer), XORs out the other members'
   streams using its share and store, assembles the partitions it receives, and updates
   its store (drop what it now owns, cut its slices of what it gave up); a ``getitem``
   per partition gives each new partition its key.

A member fetches a relay's whole bundle, not only its packets: peer traffic is about
``n - 1`` times the master's instead of the plan's ``|group| - 1`` times, for ``n``
fewer tasks per worker and epoch, whose messages the master would send.

The first epoch, and any epoch after the worker set changed, delivers whole partitions
(there are no slices yet); then each owner cuts every peer's slices and the peer merges
them into its store: peer traffic only.
"""

from __future__ import annotations

import operator
import numpy as np

from .placement import Placement, Routed, SegmentPlan, route, routed_only
from .xor import as_bytes, bundles, cut_slices, decode_segments, merge_slices


class SegmentedCaches:
    """The slice stores of ``workers`` under ``placement`` (workers by index)."""

    def __init__(self, client, placement: Placement, workers: list[str], parts: list,
                 token: str, scatter_timeout: float):
        self.client, self.placement, self.workers = client, placement, list(workers)
        self.parts, self.token, self.scatter_timeout = parts, token, scatter_timeout
        self.sizes = [int(np.asarray(p).nbytes) for p in parts]
        self.views = [as_bytes(p) for p in parts]  # the master's bytes, no copies
        self.stores: dict = {}
        self.in_place = False

    def __repr__(self) -> str:
        return f"SegmentedCaches({self.placement!r}, in place: {self.in_place})"

    def submit_plan(self, old_owner: dict, new_owner: dict, key: str):
        """A future of the workers' copy of the plan: computed on one worker from the
        owners (deterministic, so it is the master's plan), fetched by the others."""
        return self.client.submit(routed_only, self.placement, self.sizes, old_owner,
                                  new_owner, key=f"{key}-plan", workers=[self.workers[0]],
                                  allow_other_workers=False, pure=False)

    def plan(self, old_owner: dict, new_owner: dict) -> tuple[SegmentPlan, Routed]:
        """The master's plan."""
        return route(self.placement, self.sizes, old_owner, new_owner)

    def deliver(self, routed: Routed, plan, held: dict, key: str, new: dict,
                part_key) -> None:
        """Send ``routed`` (``plan``: the workers' copy of it); fill ``new[worker][p]``
        with a future of each partition that moves to ``worker`` (key ``part_key(worker,
        p)``) and replace the stores."""
        c, W = self.client, self.workers
        futures = {}
        for r, bundle in sorted(bundles(routed, self.views).items()):
            k = f"{key}-bundle-w{r}"
            futures[r] = c.scatter({k: bundle}, workers=[W[r]], direct=True,
                                   timeout=self.scatter_timeout)[k]
        old, new_owner = routed.old_owner, routed.new_owner
        for i, w in enumerate(W):
            relays = sorted(set(routed.relay[routed.packet[routed.member == i]].tolist()))
            incoming = np.flatnonzero((new_owner == i) & (old != i)).tolist()
            outputs = {p: (np.asarray(self.parts[p]).shape, np.asarray(self.parts[p]).dtype.str)
                       for p in incoming}
            share = {p: held[w][p] for p in np.flatnonzero(old == i).tolist()}
            result = c.submit(decode_segments, plan, i, {r: futures[r] for r in relays}, share,
                              self.stores[w], outputs, key=f"{key}-decode-w{i}",
                              workers=[w], allow_other_workers=False, pure=False)
            for p in incoming:
                new[w][p] = c.submit(_part, result, p, key=part_key(w, p), workers=[w],
                                     allow_other_workers=False, pure=False)
            self.stores[w] = c.submit(operator.getitem, result, "store",
                                      key=f"{key}-store-w{i}", workers=[w],
                                      allow_other_workers=False, pure=False)

    def fill(self, held: dict, key: str) -> list:
        """Every store afresh: each owner cuts each peer's slices of the partitions it
        holds whole (``held``: ``{worker: {p: future}}``), the peer merges them."""
        c, W = self.client, self.workers
        self.release()
        for j, w_j in enumerate(W):
            cuts = [c.submit(cut_slices, self.placement, j, held[w_o], key=f"{key}-cut-w{o}-w{j}",
                             workers=[w_o], allow_other_workers=False, pure=False)
                    for o, w_o in enumerate(W) if o != j and held[w_o]]
            self.stores[w_j] = c.submit(merge_slices, *cuts, key=f"{key}-store-w{j}",
                                        workers=[w_j], allow_other_workers=False, pure=False)
        self.in_place = True
        return list(self.stores.values())

    def release(self) -> None:
        for f in self.stores.values():
            f.release()
        self.stores = {}
        self.in_place = False


def _part(result: dict, p: int):
    return result["parts"][p]
