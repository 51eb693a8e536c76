"""Grouped codes: a small certified MDS code per group of workers, for any number of them.

No real MDS family stays accurate at large ``n``: the worst survivor set of an ``(n, k)``
rotation code has a condition number growing exponentially in ``n - k`` (the missing
workers form an arc), and a random code's worst case cannot be certified at all. A
*grouped* code (Severinson, Graell i Amat and Rosnes, "Block-diagonal and LT codes for
distributed computing with straggling servers", IEEE Trans. Commun. 2019) splits the
workers into ``g`` groups; group ``h`` holds ``n_h`` coded blocks of its own
``(n_h, k_h)`` code over row blocks ``offset_h .. offset_h + k_h - 1``, so its generator
is block diagonal. Every group's code is small, so its worst case is certified (the
cyclic runs of the rotation family), and the grouped code's worst case is the worst of
its groups'.

Decodability: a set ``F`` of finished block products decodes when **every** group has
at least its threshold in ``F`` (:class:`GroupRule`); the code tolerates
``min_h (n_h - k_h)`` lost blocks anywhere, and up to ``n - k`` spread evenly. Encoding
a coded block reads only its group's ``k_h`` row blocks, not all ``k``.

Blocks are assigned to groups by *worker*: with ``r`` blocks per worker (block ``j`` on
worker ``j mod w``, ``w = n / r`` workers), every block of a worker belongs to that
worker's group, so each group is a small cluster of its own and a slow worker's partial
work counts toward its group.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .. import config
from ..errors import BlockShapeError, CodeParameterError, TooFewResultsError
from .mds import MDSCode, certified_condition, make_code, within_accuracy


@dataclass(frozen=True)
class GroupRule:
    """Whether a set of finished block products decodes a grouped code: every group
    ``h`` has at least ``needs[h]`` of its ``members[h]`` finished. Picklable: the
    scheduler plugin evaluates it as products finish."""

    members: tuple[frozenset[int], ...]
    needs: tuple[int, ...]

    def __call__(self, finished: frozenset[int]) -> bool:
        return all(len(m & finished) >= need for m, need in zip(self.members, self.needs))


def split_evenly(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal positive sizes, largest first."""
    base, extra = divmod(total, parts)
    return [base + (i < extra) for i in range(parts)]


def group_shapes(n: int, k: int, groups: int, r: int = 1) -> list[tuple[int, int]]:
    """``(n_h, K_h)`` of each of ``groups`` groups of ``n`` workers with ``r`` blocks each
    sharing ``k r`` needed blocks: ``n_h`` workers as even as possible, ``K_h`` blocks
    within 1 of ``k r n_h / n`` (the share of its workers), ``sum K_h = k r``; the extra
    blocks go to the groups with the most redundancy left."""
    sizes = split_evenly(n, groups)
    needs = [k * r * size // n for size in sizes]
    for _ in range(k * r - sum(needs)):
        h = max(range(groups), key=lambda h: (sizes[h] * r - needs[h], -h))
        needs[h] += 1
    return list(zip(sizes, needs))


class GroupedCode:
    """A block-diagonal code: group ``h`` is the ``(n_h, k_h)`` MDS code ``parts[h]`` over
    coded blocks ``members[h]`` and row blocks ``offset_h .. offset_h + k_h - 1``.

    Duck-types :class:`~dask_coded.codes.MDSCode` (``n``, ``k``, ``threshold``,
    ``symbols``, ``encode``, ``decode_stacked``, ``blocks_needed``, ``coded_rows``) and
    adds :attr:`rule`, the decodability predicate. Build one with :func:`grouped_code`.

    Invariant: the members partition ``0 .. n-1``, every part has one ``symbols``, and
    ``decode_stacked`` returns the ``k`` row blocks in order from any results that
    satisfy :attr:`rule`.
    """

    kind = "grouped"
    margin = 0
    seed = None

    def __init__(self, parts: Sequence[MDSCode], members: Sequence[Sequence[int]]):
        if len(parts) != len(members) or not parts:
            raise ValueError("a grouped code needs one member list per part")
        flat = sorted(j for m in members for j in m)
        if flat != list(range(len(flat))):
            raise ValueError("the members of a grouped code must partition 0 .. n-1")
        if len({p.symbols for p in parts}) != 1:
            raise ValueError("the parts of a grouped code must share one number of symbols")
        for part, m in zip(parts, members):
            if part.n != len(m):
                raise ValueError(f"{part!r} has {part.n} blocks, its group {len(m)}")
        self.parts = tuple(parts)
        self.members = tuple(tuple(int(j) for j in m) for m in members)
        self.n = len(flat)
        self.k = sum(p.k for p in parts)
        self.threshold = sum(p.threshold for p in parts)
        self.symbols = parts[0].symbols
        self.systematic = False
        self.offsets = tuple(int(o) for o in np.cumsum([0] + [p.k for p in parts])[:-1])
        self._where = {j: (h, i) for h, m in enumerate(self.members) for i, j in enumerate(m)}
        self.rule = GroupRule(tuple(frozenset(m) for m in self.members),
                              tuple(p.threshold for p in parts))

    @property
    def inner_kind(self) -> str:
        """The family of the groups' codes (one, or ``"mixed"``)."""
        kinds = {p.kind for p in self.parts}
        return kinds.pop() if len(kinds) == 1 else "mixed"

    @property
    def tolerance(self) -> int:
        """Lost block products every survivor pattern tolerates: ``min_h (n_h - k_h)``."""
        return min(p.n - p.threshold for p in self.parts)

    @property
    def generator(self) -> np.ndarray:
        """The real block-diagonal ``(n s, k s)`` generator (rows in block order)."""
        s = self.symbols
        G = np.zeros((self.n * s, self.k * s))
        for part, m, off in zip(self.parts, self.members, self.offsets):
            for i, j in enumerate(m):
                G[j * s:(j + 1) * s, off * s:(off + part.k) * s] = \
                    part.generator[i * s:(i + 1) * s]
        return G

    def __repr__(self) -> str:
        shapes = sorted({(p.n, p.k) for p in self.parts}, reverse=True)
        counts = [sum((p.n, p.k) == shape for p in self.parts) for shape in shapes]
        what = " + ".join(f"{c} x {shape}" for c, shape in zip(counts, shapes))
        return (f"GroupedCode(n={self.n}, k={self.k}, groups={len(self.parts)}: {what} "
                f"{self.inner_kind!r}, tolerance={self.tolerance})")

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, GroupedCode) and self.members == other.members
                and self.parts == other.parts)

    def __hash__(self) -> int:
        return hash((self.members, self.parts))

    def __dask_tokenize__(self) -> tuple:
        return ("GroupedCode", self.members, tuple(p.__dask_tokenize__() for p in self.parts))

    # ---- shapes -------------------------------------------------------------------------

    def coded_rows(self, rows: int) -> int:
        return self.parts[0].coded_rows(rows)

    def group_of(self, j: int) -> tuple[int, int]:
        """``(group, index in the group)`` of coded block ``j``."""
        try:
            return self._where[int(j)]
        except KeyError:
            raise CodeParameterError(f"block {j!r} is not in 0..{self.n - 1} (n={self.n})")

    def blocks_needed(self, j: int) -> tuple[int, ...]:
        h, i = self.group_of(j)
        return tuple(self.offsets[h] + b for b in self.parts[h].blocks_needed(i))

    # ---- encode / decode ----------------------------------------------------------------

    def encode(self, blocks: Sequence[np.ndarray],
               workers: Sequence[int] | None = None) -> list[np.ndarray]:
        """Coded blocks ``j`` in ``workers`` (default all): group ``h``'s code applied to
        its row blocks (see :meth:`MDSCode.encode`)."""
        if isinstance(blocks, np.ndarray) or not isinstance(blocks, Sequence):
            raise BlockShapeError(
                f"blocks must be a list of {self.k} arrays, got {type(blocks).__name__}")
        if len(blocks) != self.k:
            raise BlockShapeError(f"blocks must hold k={self.k} arrays, got {len(blocks)}")
        workers = range(self.n) if workers is None else workers
        out = []
        for j in workers:
            h, i = self.group_of(j)
            part, off = self.parts[h], self.offsets[h]
            out.extend(part.encode(list(blocks[off:off + part.k]), workers=[i]))
        return out

    def decode_stacked(self, results: Mapping[int, np.ndarray]) -> list[np.ndarray]:
        """The ``k`` row blocks, group by group, from results that satisfy :attr:`rule`;
        a group short of its threshold raises :class:`TooFewResultsError` naming it."""
        if not isinstance(results, Mapping):
            raise TypeError(f"results must be a mapping {{block index: result}}, got "
                            f"{type(results).__name__}")
        local: list[dict] = [{} for _ in self.parts]
        for j, value in results.items():
            h, i = self.group_of(j)
            local[h][i] = value
        out: list[np.ndarray] = []
        for h, (part, got) in enumerate(zip(self.parts, local)):
            if len(got) < part.threshold:
                raise TooFewResultsError(
                    f"group {h} of {self!r} has {len(got)} of its {part.n} products "
                    f"(blocks {list(self.members[h])}); it needs {part.threshold} to decode")
            out.extend(part.decode_stacked(got))
        return out

    def decode(self, results: Mapping[int, np.ndarray], rows: int | None = None) -> list:
        blocks = self.decode_stacked(results)
        return [b[:rows] for b in blocks] if rows is not None else list(blocks)


def worker_members(n_workers: int, blocks_per_worker: int,
                   groups: Sequence[int]) -> list[list[int]]:
    """Block indices of each group of workers: ``groups[h]`` consecutive workers, every
    block of a worker (block ``j`` is on worker ``j mod n_workers``) in its group."""
    out, start = [], 0
    for size in groups:
        workers = range(start, start + size)
        out.append(sorted(w + t * n_workers for w in workers for t in range(blocks_per_worker)))
        start += size
    return out


def grouped_code(n: int, k: int, groups: int, blocks_per_worker: int = 1,
                 kind: str = "rotation") -> GroupedCode:
    """``n`` workers in ``groups`` near-equal groups of consecutive workers, each group of
    ``w_h`` workers holding the ``(w_h r, K_h)`` code of family ``kind``
    (``r = blocks_per_worker``, ``K_h`` from :func:`group_shapes`)."""
    if not 1 <= groups <= n:
        raise CodeParameterError(f"groups must be in 1..n={n}, got {groups}")
    if k * blocks_per_worker < groups:
        raise CodeParameterError(f"k={k} needs fewer blocks than groups={groups}: every "
                                 f"group needs at least one block")
    r = blocks_per_worker
    shapes = group_shapes(n, k, groups, r)
    members = worker_members(n, r, [w for w, _ in shapes])
    parts = [make_code(w * r, need, kind) for w, need in shapes]
    return GroupedCode(parts, members)


def accurate(code: MDSCode) -> bool:
    """Whether ``code``'s certified worst case meets ``coded.decode.max-error``."""
    cond = certified_condition(code)
    return cond is not None and within_accuracy(cond, code)


def _first_accurate(n: int, k: int, r: int, kind: str, largest: int) -> GroupedCode | None:
    """The fewest groups, from groups of at most ``largest`` blocks, whose codes are all
    accurate and each tolerate a whole lost worker (``r`` blocks), else one lost block."""
    start = max(2, -(-n * r // largest))
    for spare in sorted({r, 1}, reverse=True):
        # every group needs ``spare`` of the ``(n - k) r`` redundant blocks
        for groups in range(start, min(n // 2, k * r, (n - k) * r // spare) + 1):
            code = grouped_code(n, k, groups, r, kind)
            if code.tolerance < spare:
                continue
            if all(accurate(p) for p in set(code.parts)):
                return code
    return None


def fewest_groups(n: int, k: int, blocks_per_worker: int = 1,
                  kind: str = "rotation") -> GroupedCode:
    """The grouped code with the fewest groups (so the largest, most tolerant group codes)
    whose every group keeps a redundant block and is certified accurate; groups start at
    ``coded.grouped.group-blocks`` blocks at most.

    Refused (:class:`~dask_coded.errors.CodeParameterError`) when no number of groups
    works (too few redundant workers to give every group one), naming the largest ``k``
    that does."""
    r = blocks_per_worker
    largest = int(config.get("grouped.group-blocks"))
    code = _first_accurate(n, k, r, kind, largest)
    if code is not None:
        return code
    works = next((k2 for k2 in range(k - 1, max(0, k - 33), -1)
                  if _first_accurate(n, k2, r, kind, largest) is not None), None)
    hint = f"use k <= {works}" if works else "use a smaller k"
    raise CodeParameterError(
        f"no grouped {kind!r} code of n={n} workers with k={k} (blocks_per_worker={r}) is "
        f"accurate: n - k = {n - k} redundant workers are too few to give each group of at "
        f"most {largest} blocks one; {hint}")
