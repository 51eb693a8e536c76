"""XOR packets on raw bytes: every dtype round-trips bit-exact.

A packet is the XOR of the byte views of its parts, each zero-padded to the packet's
length; a member recovers its part by XOR-ing out the parts it caches, then reads its
bytes back with the part's dtype and shape.
"""

from __future__ import annotations

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


def spans(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + l) for s, l in zip(starts, lengths)])``, vectorised."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    first = np.cumsum(lengths) - lengths  # where each span begins in the output
    return np.repeat(np.asarray(starts, dtype=np.int64) - first, lengths) + np.arange(total)


def bundles(routed, data: np.ndarray, base: np.ndarray) -> dict[int, np.ndarray]:
    """``{relay: bundle}``: every packet's payload, the XOR of its members' streams, laid
    out in its relay's bundle. ``data``: every partition's bytes end to end, partition
    ``p`` at ``base[p]``. One member rank at a time, so no byte is written twice in a
    fancy-indexed XOR."""
    out = {}
    for r in np.unique(routed.relay):
        mine = routed.relay == r
        buf = np.zeros(int(routed.nbytes[mine].sum()), dtype=np.uint8)
        rows = mine[routed.packet]
        for rank in np.unique(routed.rank[rows]):
            j = rows & (routed.rank == rank)
            lengths = routed.end[j] - routed.start[j]
            dst = spans(routed.offset[routed.packet[j]] + routed.pos[j], lengths)
            src = spans(base[routed.part[j]] + routed.start[j], lengths)
            buf[dst] ^= data[src]
        out[int(r)] = buf
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


def decode_segments(routed, worker: int, relayed: dict, share: dict, store: dict,
                    outputs: dict) -> dict:
    """``worker``'s side of a segmented reshuffle (see ``segmented.py``).

    ``routed``: the :class:`~dask_coded.shuffle.placement.Routed` plan; ``relayed``:
    ``{relay: bundle}``; ``share``: the partitions ``worker`` owned (whole); ``store``:
    its slices ``{p: bytes}``; ``outputs``: ``{p: (shape, dtype)}`` of the partitions it
    receives. For every packet it is in, XOR the other members' streams (read from the
    share or the store) out of the packet: what remains is its own stream. Returns
    ``{"parts": {p: array}, "store": new store}``; the new store drops what ``worker``
    now owns and adds its slices of what it gave up, so the placement stays in place.
    """
    R, pl, sizes = routed, routed.placement, routed.sizes
    # the packets this worker is in, end to end
    inside = np.zeros(len(R.nbytes), dtype=bool)
    inside[R.packet[R.member == worker]] = True
    ids = np.flatnonzero(inside)
    at = np.zeros(len(R.nbytes), dtype=np.int64)
    at[ids] = np.cumsum(R.nbytes[ids]) - R.nbytes[ids]
    streams = np.concatenate(
        [as_bytes(relayed[int(R.relay[i])])[R.offset[i]:R.offset[i] + R.nbytes[i]]
         for i in ids]) if len(ids) else np.empty(0, dtype=np.uint8)
    # what it holds, end to end: each share partition whole, each slice; and a map from
    # (partition, byte) to a place in that buffer, through the segments it caches
    held = list(share.items()) + [(q, v) for q, v in store.items() if q not in share]
    hbase, pos = {}, 0
    for q, v in held:
        hbase[q] = pos
        pos += as_bytes(v).size
    hbuf = (np.concatenate([as_bytes(v) for _, v in held]) if held
            else np.empty(0, dtype=np.uint8))
    keys, vals = [], []
    span = int(sizes.max()) + 1 if len(sizes) else 1
    for q, _ in held:
        if q in share:
            keys.append(q * span)
            vals.append(hbase[q])
        else:
            off = 0
            for a, b in pl.cached_ranges(worker, int(sizes[q])):
                keys.append(q * span + a)
                vals.append(hbase[q] + off - a)  # + byte index gives the place
                off += b - a
    order = np.argsort(keys, kind="stable")
    keys, vals = np.asarray(keys, dtype=np.int64)[order], np.asarray(vals, dtype=np.int64)[order]

    def place(parts: np.ndarray, starts: np.ndarray) -> np.ndarray:
        i = np.searchsorted(keys, parts * span + starts, side="right") - 1
        return vals[i] + starts

    rows = inside[R.packet]
    for rank in np.unique(R.rank[rows]):  # the other members, one rank at a time
        j = rows & (R.rank == rank) & (R.member != worker)
        lengths = R.end[j] - R.start[j]
        streams[spans(at[R.packet[j]] + R.pos[j], lengths)] ^= hbuf[
            spans(place(R.part[j], R.start[j]), lengths)]
    # the new partitions: the bytes it cached, then its streams' pieces
    obase, pos = {}, 0
    for p in outputs:
        obase[p] = pos
        pos += int(sizes[p])
    out = np.zeros(pos, dtype=np.uint8)
    for p in outputs:
        lay = np.array(pl.cached_ranges(worker, int(sizes[p])), dtype=np.int64).reshape(-1, 2)
        lengths = lay[:, 1] - lay[:, 0]
        out[spans(obase[p] + lay[:, 0], lengths)] = hbuf[
            spans(place(np.full(len(lay), p), lay[:, 0]), lengths)]
    j = rows & (R.member == worker)
    lengths = R.end[j] - R.start[j]
    if outputs:
        dst_base = np.array([obase.get(int(p), -1) for p in range(len(sizes))], dtype=np.int64)
        out[spans(dst_base[R.part[j]] + R.start[j], lengths)] = streams[
            spans(at[R.packet[j]] + R.pos[j], lengths)]
    parts = {p: out[obase[p]:obase[p] + int(sizes[p])].view(np.dtype(dt)).reshape(shape).copy()
             for p, (shape, dt) in outputs.items()}
    new_store = {q: v for q, v in store.items() if R.new_owner[q] != worker}
    for q, v in share.items():
        if R.new_owner[q] != worker:
            new_store[q] = take_ranges(v, pl.cached_ranges(worker, int(sizes[q])))
    return {"parts": parts, "store": new_store}
