"""The fewest bytes for a segment reshuffle's demands: a linear program over packets.

The demands of a segment reshuffle (:func:`~dask_coded.shuffle.placement.plan_segments`)
come in *classes* ``(w, S)``: bytes worker ``w`` lacks that every other worker of ``S``
caches. Such bytes may ride in any packet whose member set ``M`` holds ``w`` and lies
within ``S``: the others of ``M`` cache them. With ``y[c, M]`` the bytes of class ``c``
in packets of members ``M`` and ``x[M]`` the bytes sent as such packets,

    minimize  sum_M x[M]
    s.t.      sum_M y[c, M] = v[c]                          (every byte is sent)
              sum_{c of w, S >= M} y[c, M] <= x[M]          (w's stream fits, w in M)

solved by HiGHS (``scipy.optimize.linprog``). A class rides only in packets of its whole
set ``S``, of ``S`` without one other member, or of ``w`` alone (a unicast): ``|S| + 1``
member sets per class instead of the ``2^(|S|-1)`` subsets of ``S`` holding ``w``
(smaller sets serve fewer workers per byte sent; on the planner's benchmark settings the
program over every subset, where it fit, planned the same bytes). The greedy walk of
``plan_segments`` (the largest groups first, what is left of the others moved to the
group without the smallest member, and on down) can use smaller sets still, so
``plan_segments`` keeps the cheaper of the two plans; when demands are uneven the
program finds packings the walk misses. :func:`pack` declines (returns ``None``) above
``coded.shuffle.lp-variables``.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

import numpy as np

Piece = tuple[int, int, int]  # (partition id, first byte, end byte)


def volume(pieces) -> int:
    """Bytes of a stream of pieces."""
    return sum(b - a for _, a, b in pieces)


def pack(pending: dict, limit: int) -> list[tuple[tuple[int, ...], dict[int, list[Piece]]]] | None:
    """The streams of each packet member set, from the classes in ``pending``
    (``{S: {w: [pieces]}}``): ``[(members, {w: pieces})]`` with every member's pieces
    cached by the other members, every piece of ``pending`` in exactly one stream, and the
    streams of one member set of unequal lengths (the longest is what the set costs;
    :func:`~dask_coded.shuffle.placement.plan_segments` cuts them into equal packets).
    ``None`` when the program would have more than ``limit`` variables, or HiGHS fails."""
    from scipy.optimize import linprog
    from scipy.sparse import coo_matrix

    classes = [(w, S, pieces) for S, by in pending.items() for w, pieces in by.items()
               if volume(pieces)]
    if not classes:
        return []
    sets: dict[frozenset, int] = {}
    pairs: list[tuple[int, int]] = []  # (class, member set)
    for ci, (w, S, _) in enumerate(classes):
        others = sorted(S - {w})
        sizes = sorted({0, max(len(others) - 1, 0), len(others)})  # {w}, all but one, all
        if len(pairs) + sum(math.comb(len(others), r) for r in sizes) > limit:
            return None
        for r in sizes:
            for sub in itertools.combinations(others, r):
                pairs.append((ci, sets.setdefault(frozenset(sub) | {w}, len(sets))))
    nx, ny = len(sets), len(pairs)
    if nx + ny > limit:
        return None
    ci_of = np.fromiter((c for c, _ in pairs), dtype=np.int64, count=ny)
    worker_of = np.array([w for w, _, _ in classes], dtype=np.int64)
    eq = coo_matrix((np.ones(ny), (ci_of, nx + np.arange(ny))), shape=(len(classes), nx + ny))
    volumes = np.array([volume(p) for _, _, p in classes], dtype=float)
    # one row per (member set, member): that member's streams fit in the set's bytes
    row_of: dict[tuple[int, int], int] = {}
    rows = np.array([row_of.setdefault((m, int(worker_of[c])), len(row_of))
                     for c, m in pairs], dtype=np.int64)
    fit_rows = np.concatenate([rows, np.arange(len(row_of))])
    fit_cols = np.concatenate([nx + np.arange(ny), [m for m, _ in row_of]])
    fit_vals = np.concatenate([np.ones(ny), -np.ones(len(row_of))])
    fit = coo_matrix((fit_vals, (fit_rows, fit_cols)), shape=(len(row_of), nx + ny))
    cost = np.concatenate([np.ones(nx), np.zeros(ny)])
    res = linprog(cost, A_ub=fit, b_ub=np.zeros(len(row_of)), A_eq=eq, b_eq=volumes,
                  bounds=(0, None), method="highs")
    if res.status != 0:
        return None
    y = res.x[nx:]
    # whole bytes: each class's amounts floored, the rest to its largest share
    take = np.floor(y + 1e-9).astype(np.int64)
    short = volumes.astype(np.int64) - np.bincount(ci_of, weights=take,
                                                   minlength=len(classes)).astype(np.int64)
    for c in np.flatnonzero(short).tolist():
        mine = np.flatnonzero(ci_of == c)
        take[mine[np.argmax(y[mine])]] += short[c]
    members_of = {m: tuple(sorted(M)) for M, m in sets.items()}
    streams: dict[int, dict[int, list[Piece]]] = defaultdict(lambda: defaultdict(list))
    left = [list(p) for _, _, p in classes]
    for j in np.argsort(-take, kind="stable").tolist():
        if take[j] <= 0:
            continue
        c, m = pairs[j]
        head, left[c] = split(left[c], int(take[j]))
        streams[m][int(worker_of[c])].extend(head)
    return [(members_of[m], dict(by)) for m, by in sorted(
        streams.items(), key=lambda kv: (-len(members_of[kv[0]]), members_of[kv[0]]))]


def split(pieces: list[Piece], nbytes: int) -> tuple[list[Piece], list[Piece]]:
    """The first ``nbytes`` of a stream of pieces, and the rest."""
    head, left = [], nbytes
    for i, (p, a, b) in enumerate(pieces):
        if left <= 0:
            return head, pieces[i:]
        if b - a <= left:
            head.append((p, a, b))
            left -= b - a
        else:
            head.append((p, a, a + left))
            return head, [(p, a + left, b)] + pieces[i + 1:]
    return head, []
