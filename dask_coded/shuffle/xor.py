"""XOR packets on raw bytes: every dtype round-trips bit-exact.

A packet is the XOR of the byte views of its parts, each zero-padded to the packet's
length; a member recovers its part by XOR-ing out the parts it caches, then reads its
bytes back with the part's dtype and shape.
"""

from __future__ import annotations

import bisect

import numpy as np


def as_bytes(a: np.ndarray) -> np.ndarray:
    """A uint8 view of ``a``'s memory (a C-contiguous copy first if needed)."""
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


def xor_packet(parts: list[np.ndarray], nbytes: int) -> np.ndarray:
    """``XOR_i pad(bytes(parts[i]), nbytes)``."""
    out = np.zeros(nbytes, dtype=np.uint8)
    for p in parts:
        b = as_bytes(p)
        np.bitwise_xor(out[: b.size], b, out=out[: b.size])
    return out


def decode_part(packet: np.ndarray, shape: tuple, dtype: str, *cached: np.ndarray) -> np.ndarray:
    """The part of ``packet`` that is not among ``cached``, as an array of ``shape``/``dtype``."""
    out = packet.copy()
    for p in cached:
        b = as_bytes(p)
        np.bitwise_xor(out[: b.size], b, out=out[: b.size])
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return out[:size].view(np.dtype(dtype)).reshape(shape).copy()


def copy_part(part: np.ndarray) -> np.ndarray:
    """A worker-local copy under a new key (the p2p strategy's task)."""
    return part


def xor_streams(packet, parts: list) -> np.ndarray:
    """The payload of a :class:`SegmentPacket`: XOR of its members' streams (each the
    concatenation of its pieces' bytes, all ``packet.nbytes`` long)."""
    out = np.zeros(packet.nbytes, dtype=np.uint8)
    for _, pieces in packet.streams:
        pos = 0
        for p, a, b in pieces:
            np.bitwise_xor(out[pos:pos + b - a], as_bytes(parts[p])[a:b],
                           out=out[pos:pos + b - a])
            pos += b - a
    return out


def take_ranges(a: np.ndarray, ranges: list[tuple[int, int]]) -> np.ndarray:
    """The concatenation of byte ranges of ``a`` (a worker's slice of a partition)."""
    b = as_bytes(a)
    if not ranges:
        return np.empty(0, dtype=np.uint8)
    return np.concatenate([b[s:e] for s, e in ranges])


def cut_slices(placement, worker: int, parts: dict) -> dict:
    """``{p: slice}``: what ``worker`` caches of each of ``parts`` (an owner's cut)."""
    return {p: take_ranges(a, placement.cached_ranges(worker, as_bytes(a).size))
            for p, a in parts.items()}


def merge_slices(*cuts: dict) -> dict:
    """One worker's slice store from its owners' cuts."""
    return {p: s for cut in cuts for p, s in cut.items()}


def decode_segments(routed, worker: int, bundles: dict, share: dict, store: dict,
                    outputs: dict) -> dict:
    """``worker``'s side of a segmented reshuffle (see ``segmented.py``).

    ``routed``: the :class:`~dask_coded.shuffle.placement.Routed` plan; ``bundles``:
    ``{relay: bytes}``; ``share``: the partitions ``worker`` owned (whole); ``store``:
    its slices ``{p: bytes}``; ``outputs``: ``{p: (shape, dtype)}`` of the partitions
    it receives. Each packet it is in, XOR the other members' streams (read from the
    share or the store) out of the packet: what remains is its own stream. Returns
    ``{"parts": {p: array}, "store": new store}``; the new store drops what ``worker``
    now owns and adds its slices of what it gave up: the placement stays in place.
    """
    pl, sizes, old, new = routed.placement, routed.sizes, routed.old_owner, routed.new_owner
    starts = {}

    def held(q: int, a: int, b: int) -> np.ndarray:
        if old[q] == worker:
            return as_bytes(share[q])[a:b]
        if q not in starts:
            lay, off = [], 0
            for s, e in pl.cached_ranges(worker, sizes[q]):
                lay.append((s, e, off))
                off += e - s
            starts[q] = lay
        lay = starts[q]
        i = bisect.bisect_right(lay, (a, np.inf, np.inf)) - 1
        s, e, off = lay[i]
        if not (s <= a and b <= e):
            raise AssertionError(f"worker {worker} does not cache {q}[{a}:{b}]")
        return store[q][off + a - s:off + b - s]

    out = {}
    for p in outputs:
        out[p] = np.zeros(sizes[p], dtype=np.uint8)
        for s, e in pl.cached_ranges(worker, sizes[p]):
            out[p][s:e] = held(p, s, e)
    for pk, (r, offset) in zip(routed.plan.packets, routed.where):
        if worker not in pk.workers:
            continue
        stream = as_bytes(bundles[r])[offset:offset + pk.nbytes].copy()
        for w, pieces in pk.streams:
            if w == worker:
                continue
            pos = 0
            for q, a, b in pieces:
                np.bitwise_xor(stream[pos:pos + b - a], held(q, a, b),
                               out=stream[pos:pos + b - a])
                pos += b - a
        pos = 0
        for p, a, b in next(pieces for w, pieces in pk.streams if w == worker):
            out[p][a:b] = stream[pos:pos + b - a]
            pos += b - a
    new_store = {q: s for q, s in store.items() if new[q] != worker}
    for q, a in share.items():
        if new[q] != worker:
            new_store[q] = take_ranges(a, pl.cached_ranges(worker, sizes[q]))
    parts = {p: out[p].view(np.dtype(dt)).reshape(shape) for p, (shape, dt) in outputs.items()}
    return {"parts": parts, "store": new_store}
