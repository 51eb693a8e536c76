"""Survivor sets: which ``k`` of ``n`` coded results a decoder may be handed.

Pure combinatorics, shared by the code screening in :mod:`dask_coded.codes` and the
audit in :mod:`dask_coded.audit`. A survivor set is a sorted tuple of ``k`` distinct
worker indices in ``0..n-1``; a batch of them is an ``(m, k)`` integer array.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np


def decodable(finished, threshold: int, rule=None) -> bool:
    """Whether the finished result indices ``finished`` decode: at least ``threshold`` of
    them, and ``rule(finished)`` holds when there is a rule (a grouped code's: every group
    has its own threshold). The one test the scheduler plugin and the local race make."""
    finished = frozenset(finished)
    return len(finished) >= threshold and (rule is None or bool(rule(finished)))


@dataclass(frozen=True)
class TaskRule:
    """Whether finished product tasks decode when each task multiplies several coded
    blocks: the blocks of the finished tasks (``blocks[t]``: task ``t``'s) decode under
    the code's ``threshold`` and ``rule``. Picklable: the scheduler plugin evaluates it
    as products finish."""

    blocks: tuple[tuple[int, ...], ...]
    threshold: int
    rule: Any = None

    def __call__(self, finished) -> bool:
        covered = {j for t in finished for j in self.blocks[t]}
        return decodable(covered, self.threshold, self.rule)


def structured_sets(n: int, k: int, systematic: bool) -> np.ndarray:
    """Survivor sets known to be worst for the families here.

    * every cyclic run of ``k`` consecutive workers (clustered evaluation points are the
      worst case of Vandermonde-type codes, real or on the unit circle);
    * for systematic codes, all ``n - k`` parities plus the fewest systematic rows
      (``k - (n - k)`` of them, as a cyclic run), which forces the largest parity solve.
    """
    sets = {tuple(sorted((start + t) % n for t in range(k))) for start in range(n)}
    m = n - k
    if systematic and m > 0:
        parities = tuple(range(k, n))
        if m >= k:
            sets.add(parities[:k])
        else:
            for start in range(k):
                keep = sorted((start + t) % k for t in range(k - m))
                sets.add(tuple(keep) + parities)
    return np.array(sorted(sets), dtype=np.intp).reshape(-1, k)


def random_sets(n: int, k: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` uniformly random survivor sets, each sorted (rows may repeat)."""
    if count <= 0:
        return np.empty((0, k), dtype=np.intp)
    picks = np.argsort(rng.random((count, n)), axis=1)[:, :k]
    return np.sort(picks, axis=1).astype(np.intp)


def survivor_sets(
    n: int,
    k: int,
    *,
    systematic: bool,
    exhaustive_limit: int,
    samples: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, bool]:
    """All ``C(n, k)`` sets when there are at most ``exhaustive_limit``, else a sample.

    Returns ``(sets, exhaustive)``. The sample is ``samples`` random sets plus
    :func:`structured_sets`, duplicates removed.
    """
    if math.comb(n, k) <= exhaustive_limit:
        sets = np.array(list(itertools.combinations(range(n), k)), dtype=np.intp)
        return sets.reshape(-1, k), True
    both = np.concatenate([structured_sets(n, k, systematic), random_sets(n, k, samples, rng)])
    return np.unique(both, axis=0), False


def generator_rows(sets: np.ndarray, symbols: int) -> np.ndarray:
    """Rows of a real generator owned by each set's workers: worker j owns
    ``j*symbols .. j*symbols + symbols - 1``. Shape ``(m, k*symbols)``."""
    rows = sets[:, :, None] * symbols + np.arange(symbols)
    return rows.reshape(len(sets), -1)


def climb(
    score,
    sets: np.ndarray,
    scores: np.ndarray,
    n: int,
    k: int,
    *,
    starts: int = 8,
    max_steps: int = 40,
) -> np.ndarray:
    """Local search for worse survivor sets, starting from the ``starts`` worst of ``sets``.

    ``score`` maps an ``(m, k)`` batch of sets to ``m`` numbers (larger is worse), and
    ``scores`` is ``score(sets)``. Each
    step swaps one survivor for one non-survivor, taking the worst of all ``k (n - k)``
    swaps, until no swap is worse. Sampling alone misses the worst sets of unstructured
    (random) codes; this finds them. Returns the sets it ended on, ``(<= starts, k)``.
    """
    if k == n or len(sets) == 0:
        return np.empty((0, k), dtype=np.intp)
    ends = []
    for idx in np.argsort(-scores)[:starts]:
        cur, cur_score = sets[idx], scores[idx]
        for _ in range(max_steps):
            outside = np.setdiff1d(np.arange(n), cur)
            nb = np.repeat(cur[None, :], k * (n - k), axis=0)
            pos = np.repeat(np.arange(k), n - k)
            nb[np.arange(len(nb)), pos] = np.tile(outside, k)
            nb = np.sort(nb, axis=1)
            nb_scores = score(nb)
            j = int(np.argmax(nb_scores))
            if not nb_scores[j] > cur_score:
                break
            cur, cur_score = nb[j], nb_scores[j]
        ends.append(cur)
    return np.unique(np.array(ends, dtype=np.intp), axis=0)
