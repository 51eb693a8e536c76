"""Structured placement: partitions cut into segments, each cached by a set of workers.

Whole-partition caches give the planner few coding chances: every byte of a partition
shares one set of cachers, and the sets are scattered over ``C(n, .)`` patterns. The
coded-caching remedy (Maddah-Ali and Niesen; for shuffling Attia and Tandon) is to cut
every partition into segments and cache each segment on a fixed number of workers:

* **slots**: the workers other than a partition's owner sit in its ``n - 1`` *slots*
  (``slots[p, w]``: worker ``w``'s slot in partition ``p``, ``-1`` for the owner).
* **placement** at level ``t``: a partition's bytes are cut into ``C(n - 1, t)`` equal
  segments, one per ``t``-subset ``I`` of the slots; segment ``I`` is cached by the
  workers in the slots of ``I``, and the owner holds all of it. A worker thus keeps a
  fraction ``t / (n - 1)`` of every partition it does not own. Storage between two
  levels is used by *memory sharing*: a fraction ``1 - lam`` of every partition's bytes
  is placed at level ``t`` and the rest at ``t + 1``.
* **a move relabels, locally**: when partition ``p`` moves from ``o`` to ``k``, ``o``
  takes ``k``'s slot (:func:`moved_slots`). The segments cached by ``k`` before are now
  cached by ``o`` in ``k``'s place, so ``o`` keeps exactly them; ``k`` receives the rest;
  every other worker's slice stays as it is. The owner's whole copy is side information
  the placement counts: every segment ``k`` lacks is cached by ``t + 1`` workers (its
  ``t`` and the owner), which is what meets Maddah-Ali and Niesen's load with even
  demands (:func:`dask_coded.theory.shuffle_load`).
* **delivery**: worker ``k`` receiving partition ``p`` from old owner ``o`` lacks the
  segments whose slots leave out ``k``'s; each is cached by ``U = T | {o}`` (``T``: the
  workers in its slots). Data demanded by ``k`` and cached by ``U`` can share one XOR
  with data demanded by every other member of ``S = U | {k}`` and cached by the rest of
  ``S``: one transmission serves ``|S| = t + 2`` workers. The demands are unequal (they
  follow the deal), so the planner walks the groups from the largest down; a group sends
  ``L = `` its smallest member's volume from every member, and what is left of the
  others moves to the group without the smallest member (still decodable: the data is
  cached by a superset). A group of one is a unicast. (Padding every XOR to its longest
  member instead costs more, increasingly so with n; choosing the smaller group by what
  is already pending there gained nothing.) The linear program of :mod:`.packing` finds
  tighter packings of uneven demands.

Invariant, checked by :meth:`SegmentPlan.verify`: every byte a worker lacks of its new
share is in exactly one packet, every packet's members send equally long streams, and
each member caches every other member's stream.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .. import config
from ..theory import placement_levels
from .packing import Piece, pack, split, volume
from .planner import Plan


@dataclass(frozen=True)
class Placement:
    """Which slots (``0 .. n-2``: the workers other than the owner, see
    :func:`initial_slots`) cache which byte ranges of every partition.

    ``levels``: ``((t, fraction), ...)``: the first ``fraction`` of each partition's bytes
    is split into ``C(n - 1, t)`` segments at level ``t``, the next at the next level.
    """

    n: int
    levels: tuple[tuple[int, float], ...]

    @classmethod
    def for_storage(cls, n: int, q: int, storage: float, max_segments: int = 4096
                    ) -> Placement | None:
        """The largest placement that fits ``storage`` partitions per worker (its share
        of ``ceil(q / n)`` included), or ``None`` if it has more than ``max_segments``
        segments per partition or no storage is left for caching.

        A worker owning ``m`` partitions caches ``(q - m) tau / (n - 1)`` more at mean
        level ``tau``, so ``tau = (n - 1) (storage - ceil(q/n)) / (q - floor(q/n))``,
        capped at ``n - 1`` (:func:`dask_coded.theory.placement_levels`).
        """
        levels = placement_levels(n, q, storage)
        if levels is None or sum(math.comb(n - 1, lt) for lt, _ in levels) > max_segments:
            return None
        return cls(n, tuple(levels))

    @property
    def mean_level(self) -> float:
        return sum(t * f for t, f in self.levels)

    @property
    def segment_count(self) -> int:
        """Segments per partition (its subpacketization)."""
        return sum(math.comb(self.n - 1, t) for t, _ in self.levels)

    def segments(self, nbytes: int) -> list[tuple[int, int, frozenset]]:
        """``[(start, end, slots)]`` covering ``0 .. nbytes`` (empty ranges dropped)."""
        return _segments(self, int(nbytes))

    def cached_ranges(self, slot: int, nbytes: int) -> list[tuple[int, int]]:
        """The byte ranges of a partition the worker in ``slot`` caches (``-1``, the
        owner: all of it); a worker's *slice* of a partition it does not own is their
        concatenation, in this order."""
        if slot < 0:
            return [(0, int(nbytes))]
        return [(a, b) for a, b, I in self.segments(nbytes) if slot in I]

    def __repr__(self) -> str:
        lv = " + ".join(f"{f:.2f} at t={t} ({math.comb(self.n - 1, t)} segments)"
                        for t, f in self.levels)
        return (f"Placement(n={self.n}: {lv}; "
                f"caches {self.mean_level / (self.n - 1):.1%} of others)")


def initial_slots(owner: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    """``slots[p, w]``: worker ``w``'s slot in partition ``p`` when the slices are cut
    afresh: the workers other than the owner ``owner[p]`` in order (``-1``: the owner)."""
    owner = np.asarray(owner, dtype=np.int64).reshape(-1, 1)
    if len(owner) and not ((owner >= 0) & (owner < n)).all():
        raise ValueError(f"every partition needs an owner among workers 0..{n - 1}")
    w = np.arange(n)[None, :]
    slots = w - (w > owner)
    slots[w == owner] = -1
    return slots.astype(np.int16)


def moved_slots(slots: np.ndarray, old_owner: Mapping[int, int],
                new_owner: Mapping[int, int]) -> np.ndarray:
    """The slots after a reshuffle: a partition moving from ``o`` to ``k`` gives ``o``
    ``k``'s slot (``o`` keeps the segments ``k`` cached, ``k`` holds it all)."""
    out = slots.copy()
    for p, k in new_owner.items():
        o = old_owner[p]
        if o != k:
            out[p, o], out[p, k] = slots[p, k], -1
    return out


def owners_of(slots: np.ndarray) -> np.ndarray:
    """``owner[p]``: the worker in no slot of partition ``p``."""
    return np.argmax(slots < 0, axis=1)


def _holders(slots_row: np.ndarray) -> np.ndarray:
    """``holder[i]``: the worker in slot ``i`` of one partition."""
    holder = np.empty(len(slots_row) - 1, dtype=np.int64)
    w = np.flatnonzero(slots_row >= 0)
    holder[slots_row[w]] = w
    return holder


@lru_cache(maxsize=64)
def _segments(placement: Placement, nbytes: int) -> list[tuple[int, int, frozenset]]:
    out, start = [], 0.0
    for t, frac in placement.levels:
        subsets = list(itertools.combinations(range(placement.n - 1), t))
        span = frac * nbytes
        edges = [round(start + span * i / len(subsets)) for i in range(len(subsets) + 1)]
        for (a, b), T in zip(itertools.pairwise(edges), subsets):
            if b > a:
                out.append((a, b, frozenset(T)))
        start += span
    if out:  # rounding: the last segment ends at nbytes
        a, _, T = out[-1]
        out[-1] = (a, nbytes, T)
    return out


@dataclass(frozen=True)
class SegmentPacket:
    """One XOR of equally long byte streams, one per member: ``streams[i] = (worker,
    pieces)``; the member decodes its stream by XOR-ing out the others'."""

    streams: tuple[tuple[int, tuple[Piece, ...]], ...]
    nbytes: int

    @property
    def workers(self) -> tuple[int, ...]:
        return tuple(w for w, _ in self.streams)

    @property
    def members(self) -> int:
        return len(self.streams)

    @property
    def coded(self) -> bool:
        return self.members > 1


@dataclass(repr=False)
class SegmentPlan(Plan):
    """The :class:`SegmentPacket` s of one structured reshuffle, costed as a :class:`Plan`
    (``unicast_bytes``: the missing bytes, each sent to its worker on its own)."""

    def verify(self, placement: Placement, sizes: Sequence[int],
               old_owner: Mapping[int, int], new_owner: Mapping[int, int],
               slots: np.ndarray | None = None) -> None:
        """Raise ``AssertionError`` unless the module doc's invariant holds (``slots``:
        before the reshuffle; default :func:`initial_slots`)."""
        slots = _slots_for(placement, sizes, old_owner, slots)
        got: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
        for pk in self.packets:
            for w, pieces in pk.streams:
                assert volume(pieces) == pk.nbytes, "streams are equal"
                for p, a, b in pieces:
                    got[w, p].append((a, b))
            for w, _ in pk.streams:
                for v, pieces in pk.streams:
                    if v != w:
                        for p, a, b in pieces:
                            assert caches(placement, sizes[p], int(slots[p, w]), a, b), (
                                f"worker {w} cannot cancel partition {p}[{a}:{b}]")
        want = missing(placement, sizes, old_owner, new_owner, slots)
        for (w, p), ranges in want.items():
            assert merge(sorted(got.pop((w, p), []))) == merge(ranges), f"{w} gets all of {p}"
        assert not got, f"bytes sent that nobody lacks: {sorted(got)[:3]}"


def caches(placement: Placement, nbytes: int, slot: int, a: int, b: int) -> bool:
    """Does the worker in ``slot`` of a partition (``-1``: its owner) hold its bytes
    ``a:b``?"""
    if slot < 0:
        return True
    return all(slot in I for s, e, I in placement.segments(nbytes) if s < b and e > a)


def missing(placement: Placement, sizes: Sequence[int], old_owner: Mapping[int, int],
            new_owner: Mapping[int, int], slots: np.ndarray | None = None
            ) -> dict[tuple[int, int], list[tuple[int, int]]]:
    """``{(worker, partition): [(a, b)]}``: what each new owner lacks (merged ranges)."""
    slots = _slots_for(placement, sizes, old_owner, slots)
    out = {}
    for p, k in new_owner.items():
        o = old_owner.get(p)
        if o == k:
            continue
        out[k, p] = merge([(0, sizes[p])] if o is None else [
            (a, b) for a, b, I in placement.segments(sizes[p]) if slots[p, k] not in I])
    return out


def _slots_for(placement: Placement, sizes: Sequence[int], old_owner: Mapping[int, int],
               slots: np.ndarray | None) -> np.ndarray:
    """``slots``, or the fresh ones of ``old_owner``; checked against ``old_owner``."""
    q = len(sizes)
    if slots is None:
        owner = [old_owner.get(p, 0) for p in range(q)]
        return initial_slots(owner, placement.n)
    slots = np.asarray(slots)
    if slots.shape != (q, placement.n):
        raise ValueError(f"slots must be (partitions, workers) = {(q, placement.n)}, "
                         f"got {slots.shape}")
    wrong = [p for p, o in old_owner.items() if slots[p, o] != -1]
    if wrong:
        raise ValueError(f"slots disagree with the owners: partition {wrong[0]} is owned "
                         f"by worker {old_owner[wrong[0]]}, who has slot "
                         f"{slots[wrong[0], old_owner[wrong[0]]]}")
    return slots


def merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out if b > a]


def plan_segments(placement: Placement, sizes: Sequence[int], old_owner: Mapping[int, int],
                  new_owner: Mapping[int, int], lp_variables: int | None = None,
                  slots: np.ndarray | None = None) -> SegmentPlan:
    """Deliver every new owner's missing segments with XOR packets (see the module doc):
    the fewer bytes of the greedy walk and the linear program of
    :mod:`~dask_coded.shuffle.packing` (when it has at most ``lp_variables`` variables,
    default ``coded.shuffle.lp-variables``; 0: the walk alone).

    Parameters
    ----------
    placement : Placement
    sizes : sequence of int
        Bytes of each partition.
    old_owner, new_owner : {partition: worker}
        Owners before and after the reshuffle; every partition has an old owner (the
        placement is in place). Workers are ``0 .. placement.n - 1``.
    lp_variables : int, optional
        The largest linear program solved beside the walk (default
        ``coded.shuffle.lp-variables``; 0: the walk alone).
    slots : array of (partitions, workers), optional
        Each worker's slot in each partition before the reshuffle; default
        :func:`initial_slots` of ``old_owner`` (slices just cut).
    """
    slots = _slots_for(placement, sizes, old_owner, slots)
    pending: dict[frozenset, dict[int, list[Piece]]] = defaultdict(lambda: defaultdict(list))
    plan = SegmentPlan()
    for p, k in sorted(new_owner.items()):
        o = old_owner[p]
        if o == k:
            continue
        holder, lacking = _holders(slots[p]), slots[p, k]
        for a, b, I in placement.segments(sizes[p]):
            if lacking not in I:
                pending[frozenset(holder[list(I)].tolist()) | {o, k}][k].append((p, a, b))
                plan.unicast_bytes += b - a
    limit = int(config.get("shuffle.lp-variables")) if lp_variables is None else lp_variables
    packed = pack(pending, limit) if limit > 0 else None  # reads pending; the walk eats it
    greedy = _walk(placement.n, pending, plan)
    if packed is not None:
        optimal = SegmentPlan(unicast_bytes=plan.unicast_bytes)
        for _, streams in packed:
            optimal.packets.extend(peel(streams))
        if optimal.master_bytes < greedy.master_bytes:
            return optimal
    return greedy


def peel(streams: dict[int, list[Piece]]) -> list[SegmentPacket]:
    """Packets of equally long streams from one member set's streams of any lengths:
    all members for the shortest length, then the members with bytes left, and so on
    (a member's bytes are cached by every other member of the set, so by any subset).
    Costs the longest stream."""
    rest = {w: list(p) for w, p in sorted(streams.items()) if p}
    out = []
    while rest:
        L = min(volume(p) for p in rest.values())
        sent = []
        for w in sorted(rest):
            head, rest[w] = split(rest[w], L)
            sent.append((w, tuple(head)))
        out.append(SegmentPacket(tuple(sent), L))
        rest = {w: p for w, p in rest.items() if p}
    return out


def _walk(n: int, pending: dict, plan: SegmentPlan) -> SegmentPlan:
    """The greedy walk of the module doc, consuming ``pending``; packets go to
    ``plan``."""
    for size in range(n, 0, -1):
        for S in sorted((S for S in pending if len(S) == size), key=sorted):
            streams = pending.pop(S)
            volumes = {w: volume(streams.get(w, ())) for w in sorted(S)}
            if not any(volumes.values()):
                continue
            if size == 1:
                ((w, pieces),) = streams.items()
                plan.packets.append(SegmentPacket(((w, tuple(pieces)),), volumes[w]))
                continue
            smallest = min(volumes, key=lambda w: (volumes[w], w))
            L = volumes[smallest]
            sent = []
            for w in sorted(S):
                head, tail = split(streams.get(w, []), L)
                if L:
                    sent.append((w, tuple(head)))
                if tail:
                    pending[S - {smallest}][w].extend(tail)
            if L:
                plan.packets.append(SegmentPacket(tuple(sent), L))
    return plan


@dataclass(frozen=True)
class Routed:
    """A plan as flat numpy arrays, with the route of every packet: packet ``i`` is
    ``nbytes[i]`` bytes at ``offset[i]`` of the bundle the master scatters to worker
    ``relay[i]`` (the member with the fewest bytes to relay so far; in a bundle, packets
    with more members come first). Piece ``j`` is bytes
    ``start[j]:end[j]`` of partition ``part[j]``, at ``pos[j]`` of member ``member[j]``'s
    stream in packet ``packet[j]``; ``rank[j]`` is that member's place in the packet.
    ``slots`` are the workers' slots before the reshuffle (:func:`moved_slots` gives
    those after). Deterministic, so the master and the workers derive the same one from
    the same owners and slots; arrays, so it pickles and is applied fast."""

    placement: Placement
    sizes: np.ndarray
    old_owner: np.ndarray
    new_owner: np.ndarray
    slots: np.ndarray
    nbytes: np.ndarray
    relay: np.ndarray
    offset: np.ndarray
    packet: np.ndarray
    member: np.ndarray
    rank: np.ndarray
    part: np.ndarray
    start: np.ndarray
    end: np.ndarray
    pos: np.ndarray
    unicast_bytes: int = 0

    @property
    def master_bytes(self) -> int:
        return int(self.nbytes.sum())

    @property
    def members(self) -> np.ndarray:
        """Members of each packet (``pos == 0`` marks a stream's first piece)."""
        return np.bincount(self.packet[self.pos == 0], minlength=len(self.nbytes))

    @property
    def packet_count(self) -> int:
        return len(self.nbytes)

    @property
    def coded_packets(self) -> int:
        return int((self.members > 1).sum())


def route(placement: Placement, sizes: Sequence[int], old_owner: Mapping[int, int],
          new_owner: Mapping[int, int], lp_variables: int | None = None,
          slots: np.ndarray | None = None) -> tuple[SegmentPlan, Routed]:
    """:func:`plan_segments` and its :class:`Routed` form."""
    slots = _slots_for(placement, sizes, old_owner, slots)
    plan = plan_segments(placement, sizes, old_owner, new_owner, lp_variables, slots)
    load: dict[int, int] = defaultdict(int)
    relay = []
    for pk in plan.packets:
        r = min(pk.workers, key=lambda w: (load[w], w))
        relay.append(r)
        load[r] += pk.nbytes
    # in a bundle, packets with more members first: the packets that have a member of
    # rank j are then a prefix of the bundle (and of each member's packets), so a whole
    # rank is XOR-ed at once
    offset, filled = [0] * len(relay), defaultdict(int)
    for i in sorted(range(len(relay)), key=lambda i: (-len(plan.packets[i].streams), i)):
        offset[i] = filled[relay[i]]
        filled[relay[i]] += plan.packets[i].nbytes
    rows = []
    for i, pk in enumerate(plan.packets):
        for rank, (w, pieces) in enumerate(pk.streams):
            pos = 0
            for p, a, b in pieces:
                rows.append((i, w, rank, p, a, b, pos))
                pos += b - a
    cols = np.array(rows, dtype=np.int64).reshape(-1, 7).T
    # compact: the workers fetch this from a peer every epoch
    wide = np.int32 if max(sizes, default=0) < 2**31 else np.int64
    cols = [c.astype(t) for c, t in zip(cols, (np.int32, np.int16, np.int16, np.int32,
                                               wide, wide, wide))]
    q = len(sizes)
    owners = [np.array([m.get(p, -1) for p in range(q)], dtype=np.int64)
              for m in (old_owner, new_owner)]
    return plan, Routed(placement, np.asarray(sizes, dtype=np.int64), *owners,
                        np.asarray(slots, dtype=np.int16),
                        np.array([pk.nbytes for pk in plan.packets], dtype=np.int64),
                        np.array(relay, dtype=np.int64), np.array(offset, dtype=np.int64),
                        *cols, unicast_bytes=plan.unicast_bytes)


def routed_only(placement: Placement, sizes: Sequence[int], old_owner: Mapping[int, int],
                new_owner: Mapping[int, int], lp_variables: int | None = None,
                slots: np.ndarray | None = None) -> Routed:
    """The workers' copy of :func:`route` (the arrays only)."""
    return route(placement, sizes, old_owner, new_owner, lp_variables, slots)[1]
