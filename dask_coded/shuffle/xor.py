"""XOR packets on raw bytes: every dtype round-trips bit-exact.

Whole partitions (:func:`xor_packet`, :func:`decode_part`): a packet is the XOR of the
byte views of its parts, each zero-padded to the packet's length; a member recovers its
part by XOR-ing out the parts it caches, then reads its bytes back with the part's dtype
and shape. Segments (:func:`bundles`, :func:`decode_segments`): the same on byte ranges
of partitions, a packet's streams all equally long; plus the slices a worker caches
(:func:`cut_slices`).
"""

from __future__ import annotations

from functools import lru_cache

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


def decode_part(packet: np.ndarray, shape: tuple, dtype: np.dtype, *cached: np.ndarray) -> np.ndarray:
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


def gather(buf: np.ndarray, starts, lengths) -> np.ndarray:
    """``concatenate([buf[s:s + l] for s, l in zip(starts, lengths)])``."""
    if len(starts) == 0:
        return np.empty(0, dtype=np.uint8)
    return np.concatenate([buf[s:s + n] for s, n in zip(starts.tolist(), lengths.tolist())])


def bundles(routed, views: list) -> dict[int, np.ndarray]:
    """``{relay: bundle}``: every packet's payload, the XOR of its members' streams, laid
    out in its relay's bundle. ``views``: each partition's bytes (:func:`as_bytes`). The
    packets with a member of rank ``j`` are a prefix of the bundle, so each rank is one
    XOR of a gathered stream into that prefix."""
    R, out = routed, {}
    members = R.members
    for r in np.unique(R.relay).tolist():
        mine = R.relay == r
        buf = np.zeros(int(R.nbytes[mine].sum()), dtype=np.uint8)
        rows = mine[R.packet]
        for rank in range(int(members[mine].max())):
            j = np.flatnonzero(rows & (R.rank == rank))
            j = j[np.lexsort((R.pos[j], R.offset[R.packet[j]]))]  # bundle order
            stream = (np.concatenate([views[p][a:b] for p, a, b in zip(
                R.part[j].tolist(), R.start[j].tolist(), R.end[j].tolist())])
                if len(j) else np.empty(0, dtype=np.uint8))
            buf[:stream.size] ^= stream
        out[r] = buf
    return out


def take_ranges(a: np.ndarray, ranges: list[tuple[int, int]]) -> np.ndarray:
    """The concatenation of byte ranges of ``a`` (a worker's slice of a partition)."""
    b = as_bytes(a)
    if not ranges:
        return np.empty(0, dtype=np.uint8)
    return np.concatenate([b[s:e] for s, e in ranges])


def cut_slices(placement, slots: dict, parts: dict) -> dict:
    """``{p: slice}``: what the worker in slot ``slots[p]`` of each of ``parts`` caches
    of it (an owner's cut)."""
    return {p: take_ranges(a, placement.cached_ranges(int(slots[p]), as_bytes(a).size))
            for p, a in parts.items()}


def merge_slices(*cuts: dict) -> dict:
    """One worker's slice store from its owners' cuts."""
    return {p: s for cut in cuts for p, s in cut.items()}


@lru_cache(maxsize=256)
def slice_layout(placement, slot: int, nbytes: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each segment the worker in ``slot`` caches of a partition starts in the
    partition, and in that worker's slice of it."""
    ranges = np.array(placement.cached_ranges(slot, nbytes), dtype=np.int64).reshape(-1, 2)
    lengths = ranges[:, 1] - ranges[:, 0]
    return ranges[:, 0], np.cumsum(lengths) - lengths


def member_ranges(routed, worker: int) -> dict[int, list[tuple[int, int]]]:
    """``{relay: [(start, end)]}``: where ``worker``'s packets sit in each relay's bundle,
    in bundle order."""
    R = routed
    ids = np.unique(R.packet[R.member == worker])
    out: dict[int, list[tuple[int, int]]] = {}
    for i in ids[np.argsort(R.offset[ids], kind="stable")].tolist():
        out.setdefault(int(R.relay[i]), []).append(
            (int(R.offset[i]), int(R.offset[i] + R.nbytes[i])))
    return {r: sorted(v) for r, v in out.items()}


def decode_segments(routed, worker: int, relayed: dict, share: dict, store: dict,
                    outputs: dict) -> dict:
    """``worker``'s side of a segmented reshuffle (see ``segmented.py``).

    ``routed``: the :class:`~dask_coded.shuffle.placement.Routed` plan; ``relayed``:
    ``{relay: bytes}``, this worker's packets of each relay's bundle, end to end in
    bundle order (:func:`member_ranges`); ``share``: the partitions ``worker`` owned
    (whole); ``store``: its slices ``{p: bytes}``; ``outputs``: ``{p: (shape, dtype)}``
    of the partitions it receives. For every packet it is in, XOR the other members'
    streams (read from the share or the store) out of the packet: what remains is its own
    stream. Returns
    ``{"parts": {p: array}, "store": new store}``; the new store drops what ``worker``
    now owns and adds its slices of what it gave up (in the new owner's old slot), so
    the placement stays in place (:func:`~dask_coded.shuffle.placement.moved_slots`).
    """
    R, pl, sizes = routed, routed.placement, routed.sizes
    members = R.members
    # the packets this worker is in, more members first, end to end: the packets with
    # a j-th other member are then a prefix
    inside = np.zeros(len(R.nbytes), dtype=bool)
    inside[R.packet[R.member == worker]] = True
    ids = np.flatnonzero(inside)
    ids = ids[np.lexsort((ids, -members[ids]))]
    at = np.zeros(len(R.nbytes), dtype=np.int64)
    at[ids] = np.cumsum(R.nbytes[ids]) - R.nbytes[ids]
    # where each packet sits in what its relay sent: bundle order, end to end
    got = np.zeros(len(R.nbytes), dtype=np.int64)
    for r in np.unique(R.relay[ids]).tolist():
        mine = ids[R.relay[ids] == r]
        mine = mine[np.argsort(R.offset[mine], kind="stable")]
        got[mine] = np.cumsum(R.nbytes[mine]) - R.nbytes[mine]
    streams = np.concatenate(
        [as_bytes(relayed[int(R.relay[i])])[got[i]:got[i] + R.nbytes[i]]
         for i in ids.tolist()]) if len(ids) else np.empty(0, dtype=np.uint8)
    # what it holds, end to end: each share partition whole, each slice; and a map from
    # (partition, byte) to a place in that buffer, through the segments it caches
    held = list(share.items()) + [(q, v) for q, v in store.items() if q not in share]
    hbase, pos = {}, 0
    for q, v in held:
        hbase[q] = pos
        pos += as_bytes(v).size
    hbuf = (np.concatenate([as_bytes(v) for _, v in held]) if held
            else np.empty(0, dtype=np.uint8))
    span = int(sizes.max()) + 1 if len(sizes) else 1
    keys, vals = [np.empty(0, dtype=np.int64)], [np.empty(0, dtype=np.int64)]
    for q, _ in held:
        if q in share:
            starts, offs = np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64)
        else:
            starts, offs = slice_layout(pl, int(R.slots[q, worker]), int(sizes[q]))
        keys.append(q * span + starts)
        vals.append(hbase[q] + offs - starts)  # + a byte index gives its place
    keys, vals = np.concatenate(keys), np.concatenate(vals)
    order = np.argsort(keys, kind="stable")
    keys, vals = keys[order], vals[order]

    def place(parts: np.ndarray, starts: np.ndarray) -> np.ndarray:
        i = np.searchsorted(keys, parts * span + starts, side="right") - 1
        return vals[i] + starts

    rows = inside[R.packet]
    own_rank = np.full(len(R.nbytes), -1, dtype=np.int64)
    mine = rows & (R.member == worker)
    own_rank[R.packet[mine]] = R.rank[mine]
    # the j-th other member of each packet: rank j below this worker's, j + 1 above
    other = R.rank - (R.rank > own_rank[R.packet])
    for j in range(int(members[ids].max()) - 1 if len(ids) else 0):
        sel = np.flatnonzero(rows & (R.member != worker) & (other == j))
        sel = sel[np.lexsort((R.pos[sel], at[R.packet[sel]]))]
        stream = gather(hbuf, place(R.part[sel], R.start[sel]), R.end[sel] - R.start[sel])
        streams[:stream.size] ^= stream
    # the new partitions: the bytes it cached, then its own pieces of the streams
    out = {p: np.zeros(int(sizes[p]), dtype=np.uint8) for p in outputs}
    for p in outputs:
        lay = pl.cached_ranges(int(R.slots[p, worker]), int(sizes[p]))
        if lay:
            src = place(np.full(len(lay), p), np.array([a for a, _ in lay]))
            for (a, b), s in zip(lay, src.tolist()):
                out[p][a:b] = hbuf[s:s + b - a]
    sel = np.flatnonzero(mine)
    for p, a, b, s in zip(R.part[sel].tolist(), R.start[sel].tolist(), R.end[sel].tolist(),
                          (at[R.packet[sel]] + R.pos[sel]).tolist()):
        out[p][a:b] = streams[s:s + b - a]
    parts = {p: out[p].view(np.dtype(dt)).reshape(shape) for p, (shape, dt) in outputs.items()}
    new_store = {q: v for q, v in store.items() if R.new_owner[q] != worker}
    # a partition it gave up: it takes the new owner's slot, whose segments it keeps
    given = {q: v for q, v in share.items() if R.new_owner[q] != worker}
    new_store.update(cut_slices(pl, {q: R.slots[q, R.new_owner[q]] for q in given}, given))
    return {"parts": parts, "store": new_store}
