"""How an epoch's partitions reach their workers: one small protocol, one class per way.

A delivery has three steps, called by :class:`~dask_coded.shuffle.CodedShuffle` (the
master, passed as ``shuffle``):

* ``plan(shuffle, shares, planner)``: the plan of this epoch from what each worker holds
  and will hold; every plan has the same cost interface (``master_bytes``,
  ``unicast_bytes``, ``coded_packets``, ``packet_count``);
* ``send(shuffle, plan, planner, shares, new)``: carry it out, filling ``new``
  (``{worker: {partition: future}}``) with what moves, as it goes, so that a worker lost
  midway leaves the others' deliveries in place (what a worker already holds of its share
  the session adds);
* ``keep(shuffle, shares, new, delivered_by_segments)``: what each worker holds for the
  next epoch.

:class:`WholePartitions` is the uncoded, peer-to-peer and index-coded way (workers cache
whole partitions); :class:`Segments` the coded caching of segments
(:class:`~dask_coded.shuffle.segmented.SegmentedCaches`).
"""

from __future__ import annotations

import uuid
from typing import Any

from distributed import wait

from .cache import next_caches
from .planner import plan_delivery
from .xor import copy_part, decode_part, xor_packet


class WholePartitions:
    """Whole partitions: ``"uncoded"`` (the master scatters each missing partition),
    ``"p2p"`` (a worker copies it from a peer that holds it; the master sends only what no
    worker holds) and ``"coded"`` (XOR packets over whole-partition caches,
    :func:`~dask_coded.shuffle.planner.plan_delivery`: each scattered once to one member,
    the others fetch it and decode with what they cache)."""

    def __init__(self, strategy: str):
        self.strategy = strategy

    def __repr__(self) -> str:
        return f"WholePartitions({self.strategy!r})"

    def plan(self, shuffle, shares: dict, planner=None):
        caches = {i: set(shuffle.held[w]) for i, w in enumerate(shuffle.workers)}
        demands = {i: shares[w] for i, w in enumerate(shuffle.workers)}
        return plan_delivery(caches, demands, shuffle.sizes,
                             coded=self.strategy == "coded"), None

    def send(self, shuffle, plan, planner, shares: dict, new: dict[str, dict[int, Any]]):
        idx = shuffle.workers
        for packet in plan.packets:
            members = [(idx[i], p) for i, p in packet.serves]
            if len(packet.parts) == 1:
                self._send_one(shuffle, packet.parts[0], members, new)
            else:
                self._send_coded(shuffle, packet, members, new)

    def _send_one(self, shuffle, p: int, members: list, new: dict) -> None:
        """Partition ``p`` to every worker of ``members``: from a peer (p2p, when one holds
        it), else scattered once by the master and relayed peer to peer."""
        c = shuffle.client
        holders = [w for w in shuffle.workers if p in shuffle.held[w]]
        if self.strategy == "p2p" and holders:
            source, rest = shuffle.held[holders[0]][p], members
        else:
            (first, _), *rest = members
            k = shuffle.part_key(first, p)
            new[first][p] = source = c.scatter({k: shuffle.parts[p]}, workers=[first],
                                               direct=True,
                                               timeout=shuffle.scatter_timeout)[k]
        for w, _ in rest:
            new[w][p] = c.submit(copy_part, source, key=shuffle.part_key(w, p), workers=[w],
                                 allow_other_workers=False, pure=False)

    def _send_coded(self, shuffle, packet, members: list, new: dict) -> None:
        """One XOR packet, scattered to its first member; each member decodes its part."""
        c = shuffle.client
        payload = xor_packet([shuffle.parts[p] for p in packet.parts], packet.nbytes)
        pkey = f"coded-shuffle-{shuffle.token}-packet-{uuid.uuid4().hex[:8]}"
        first = members[0][0]
        packet_future = c.scatter({pkey: payload}, workers=[first], direct=True,
                                  timeout=shuffle.scatter_timeout)[pkey]
        for w, want in members:
            cached = [shuffle.held[w][p] for p in packet.parts if p != want]
            part = shuffle.parts[want]
            new[w][want] = c.submit(decode_part, packet_future, part.shape, part.dtype,
                                    *cached, key=shuffle.part_key(w, want), workers=[w],
                                    allow_other_workers=False, pure=False)

    def keep(self, shuffle, shares: dict, new: dict, delivered_by_segments: bool) -> None:
        """Each worker's share, and the cache policy's choice of the rest."""
        for w in shuffle.workers:
            shuffle.order[w] = (sorted(shares[w])
                                + [p for p in shuffle.order[w] if p not in shares[w]])
        keep = next_caches(shuffle.order, shares, shuffle.storage, shuffle.policy)
        for w in shuffle.workers:
            merged = {**shuffle.held[w], **new[w]}
            shuffle.held[w] = {p: merged[p] for p in keep[w]}
            shuffle.order[w] = keep[w]


class Segments:
    """Coded caching of segments (the paper's gain): a worker plans the epoch, the master
    scatters one bundle of XOR packets per relay, every worker decodes its partitions
    from its share and its slice store (:class:`~.segmented.SegmentedCaches`)."""

    def __repr__(self) -> str:
        return "Segments()"

    def plan(self, shuffle, shares: dict, planner=None):
        if planner is None:
            planner = shuffle.segments.start_plan(*shuffle.owners(shares), shuffle.prefix())
        return shuffle.segments.fetch_plan(planner), planner

    def send(self, shuffle, plan, planner, shares: dict, new: dict) -> None:
        shuffle.segments.deliver(plan, planner, shuffle.held, key=shuffle.prefix(), new=new,
                                 part_key=shuffle.part_key)

    def keep(self, shuffle, shares: dict, new: dict, delivered_by_segments: bool) -> None:
        """Each worker's share whole, and its slice store: updated by a segmented epoch,
        filled afresh after a whole-partition one."""
        shuffle.held = {w: {p: new[w][p] for p in shares[w]} for w in shuffle.workers}
        if not delivered_by_segments:
            shuffle.segments.fill(shuffle.held, key=shuffle.prefix())
        wait(list(shuffle.segments.stores.values()))
        shuffle.segments.bundles = {}  # every decode is done: the relays may drop them
