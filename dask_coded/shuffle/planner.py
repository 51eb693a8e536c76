"""Delivery plans for a reshuffle: which XOR packets the master sends to which workers.

Pure (no dask). A *request* ``(w, p)`` is worker ``w`` needing partition ``p`` it does not
cache. Two requests can share one transmission when each worker caches the other's
partition (or both want the same one): ``(w1, p1) ~ (w2, p2)`` iff ``w1 != w2`` and
(``p1 == p2`` or ``p2 in cache[w1] and p1 in cache[w2]``). A set of pairwise compatible
requests (a clique of the side-information graph) is served by one packet, the XOR of
their partitions: each member cancels the others with its cache (index coding). The
planner covers the requests greedily with cliques, largest degree first; a lone request
is a plain unicast.

Invariant checked by :meth:`Plan.verify`: every request is served by exactly one packet,
and every member of a packet caches all of its parts but the one it wants.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Packet:
    """One transmission: the XOR of ``parts`` (each zero-padded to ``nbytes``), decoded
    by each ``(worker, partition)`` in ``serves``."""

    parts: tuple[int, ...]
    serves: tuple[tuple[int, int], ...]
    nbytes: int

    @property
    def workers(self) -> tuple[int, ...]:
        return tuple(w for w, _ in self.serves)

    @property
    def members(self) -> int:
        return len(self.serves)

    @property
    def coded(self) -> bool:
        """An XOR of several partitions (not one partition multicast)."""
        return len(self.parts) > 1


@dataclass
class Plan:
    """The packets of one reshuffle and what they cost.

    The cost interface every delivery's plan has (:mod:`.delivery`): ``master_bytes``,
    ``unicast_bytes``, ``coded_packets``, ``packet_count``. ``master_bytes``: the master
    sends every packet once; ``relay_bytes``: the group
    relays it peer to peer to its other members; ``unicast_bytes``: what sending every
    request on its own would cost the master.
    """

    packets: list[Packet] = field(default_factory=list)
    unicast_bytes: int = 0

    @property
    def master_bytes(self) -> int:
        return sum(p.nbytes for p in self.packets)

    @property
    def relay_bytes(self) -> int:
        return sum(p.nbytes * (p.members - 1) for p in self.packets)

    @property
    def coded_packets(self) -> int:
        return sum(p.coded for p in self.packets)

    @property
    def packet_count(self) -> int:
        return len(self.packets)

    def __repr__(self) -> str:
        gain = self.unicast_bytes / self.master_bytes if self.master_bytes else float("nan")
        return (f"{type(self).__name__}({len(self.packets)} packets, {self.coded_packets} "
                f"coded; master {self.master_bytes} B vs unicast {self.unicast_bytes} B "
                f"({gain:.2f}x))")

    def verify(self, caches: Mapping[int, set], demands: Mapping[int, set]) -> None:
        """Raise ``AssertionError`` unless every request is served once and decodable."""
        served = [r for p in self.packets for r in p.serves]
        wanted = sorted((w, q) for w, ps in demands.items() for q in ps if q not in caches[w])
        assert sorted(served) == wanted, "every request served exactly once"
        for p in self.packets:
            assert set(q for _, q in p.serves) == set(p.parts)
            for w, q in p.serves:
                assert set(p.parts) - {q} <= set(caches[w]), f"worker {w} cannot decode {q}"


def plan_delivery(
    caches: Mapping[int, set],
    demands: Mapping[int, set],
    sizes: Mapping[int, int] | Sequence[int],
    coded: bool = True,
) -> Plan:
    """Cover the requests (demanded, not cached) with XOR packets; see the module doc.

    Parameters
    ----------
    caches : {worker: set of partition ids}
        What each worker holds before the reshuffle (its previous share and its cache).
    demands : {worker: set of partition ids}
        Each worker's share for the next epoch.
    sizes : mapping or sequence
        Bytes of each partition (packets pad to their largest part).
    coded : bool
        ``False``: one unicast per request (the uncoded plan, for comparison).
    """
    requests = sorted((w, p) for w, ps in demands.items() for p in ps
                      if p not in caches.get(w, ()))
    size = {p: int(sizes[p]) for _, p in requests}  # a mapping or a sequence by id
    plan = Plan(unicast_bytes=sum(size[p] for _, p in requests))
    if not requests:
        return plan
    if not coded:
        plan.packets = [Packet((p,), ((w, p),), size[p]) for w, p in requests]
        return plan

    workers = sorted(set(caches) | set(demands))
    widx = {w: i for i, w in enumerate(workers)}
    parts = sorted({p for ps in caches.values() for p in ps} | {p for _, p in requests})
    pidx = {p: i for i, p in enumerate(parts)}
    C = np.zeros((len(workers), len(parts)), dtype=bool)
    for w, ps in caches.items():
        C[widx[w], [pidx[p] for p in ps]] = True
    rw = np.array([widx[w] for w, _ in requests])
    rp = np.array([pidx[p] for _, p in requests])
    compat = (rw[:, None] != rw[None, :]) & (
        (rp[:, None] == rp[None, :]) | (C[rw[:, None], rp[None, :]] & C[rw[None, :], rp[:, None]])
    )
    degree = compat.sum(axis=1)
    unassigned = np.ones(len(requests), dtype=bool)
    while unassigned.any():
        i = int(np.flatnonzero(unassigned)[np.argmax(degree[unassigned])])
        clique = [i]
        cand = compat[i] & unassigned
        while cand.any():
            inner = (compat[:, cand].sum(axis=1))[cand]  # degree inside the candidates
            j = int(np.flatnonzero(cand)[np.argmax(inner)])
            clique.append(j)
            cand &= compat[j]
            cand[j] = False
        unassigned[clique] = False
        serves = tuple(sorted(requests[c] for c in clique))
        pset = tuple(sorted({p for _, p in serves}))
        plan.packets.append(Packet(pset, serves, max(size[p] for p in pset)))
    return plan
