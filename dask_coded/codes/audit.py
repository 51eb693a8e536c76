"""Worst-case audit of a code: judge a code by its worst survivor set, not the average."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import config
from .grouped import GroupedCode
from .mds import STRUCTURED, MDSCode, conditions, inverses
from .survivors import climb, generator_rows, survivor_sets

_BATCH = 4096


@dataclass(frozen=True)
class CodeAudit:
    """What :func:`audit` measured.

    ``worst_error`` is ``max_S ||decode_S(encode(X)) - X|| / ||X||`` (Frobenius, float64)
    for random probe data ``X``; ``worst_cond`` is ``max_S cond_2(G[S])``; both maxima run
    over ``sets_checked`` survivor sets (all ``C(n, k)`` when ``exhaustive``; otherwise a
    sample, the structured worst cases and the sets a local search climbs to from the
    worst of those).
    """

    code: str
    worst_error: float
    worst_cond: float
    worst_set: tuple[int, ...]
    sets_checked: int
    total_sets: int
    exhaustive: bool

    def __repr__(self) -> str:
        scope = "all" if self.exhaustive else "sampled"
        return (
            f"CodeAudit({self.code}: worst error {self.worst_error:.2e}, worst cond "
            f"{self.worst_cond:.3g}, at {list(self.worst_set)}; {scope} "
            f"{self.sets_checked}/{self.total_sets} survivor sets)"
        )


def audit(
    code: MDSCode | GroupedCode,
    trials: int | None = None,
    rng: np.random.Generator | int | None = None,
    exhaustive_limit: int | None = None,
) -> CodeAudit:
    """Measure a code's worst relative decode error and condition number over survivor sets.

    A grouped code decodes each group from its own products, so its audit is its worst
    group's (``worst_set`` in the grouped code's block indices; ``sets_checked`` and
    ``total_sets`` summed over the distinct group codes).

    Parameters
    ----------
    code : MDSCode or GroupedCode
    trials : int, optional
        Random survivor sets to try when ``C(n, k)`` exceeds ``exhaustive_limit``; the
        structured worst cases (contiguous runs; all parities plus the fewest systematic
        rows) are always added. Default ``coded.audit.samples``.
    rng : numpy.random.Generator or int, optional
        Source of the sampled sets and of the probe data (default: seed 0).
    exhaustive_limit : int, optional
        Check every set when there are at most this many. Default
        ``coded.audit.exhaustive-limit``.
    """
    if isinstance(code, GroupedCode):
        return _audit_groups(code, trials, rng, exhaustive_limit)
    if not isinstance(code, MDSCode):
        raise TypeError(f"code must be an MDSCode (from make_code) or a GroupedCode, got "
                        f"{type(code).__name__}")
    trials = int(config.get("audit.samples") if trials is None else trials)
    limit = int(config.get("audit.exhaustive-limit") if exhaustive_limit is None else exhaustive_limit)
    rng = np.random.default_rng(0 if rng is None else rng)
    t = code.threshold  # k, or k + margin for a least-squares code
    sets, exhaustive = survivor_sets(
        code.n, t, systematic=code.systematic, exhaustive_limit=limit, samples=trials, rng=rng
    )
    s = code.symbols
    if not exhaustive and code.kind not in STRUCTURED:
        # sampling misses the worst sets of unstructured codes: climb from the worst found
        conds = conditions(code.generator, sets, s)
        climbed = climb(lambda b: conditions(code.generator, b, s), sets, conds, code.n, t)
        sets = np.unique(np.concatenate([sets, climbed]), axis=0)
    X = rng.standard_normal((code.k * s, int(config.get("audit.probe-columns"))))
    C = code.generator @ X
    norm = np.linalg.norm(X)
    worst_err, worst_cond, worst_set = 0.0, 1.0, tuple(int(j) for j in sets[0])
    for start in range(0, len(sets), _BATCH):
        batch = sets[start : start + _BATCH]
        rows = generator_rows(batch, s)
        G = code.generator[rows]
        Xhat = inverses(G) @ C[rows]  # what MDSCode.decode does
        errs = np.linalg.norm(Xhat - X, axis=(1, 2)) / norm
        conds = np.linalg.cond(G)
        i = int(np.argmax(errs))
        if errs[i] > worst_err:
            worst_err, worst_set = float(errs[i]), tuple(int(j) for j in batch[i])
        worst_cond = max(worst_cond, float(conds.max()))
    return CodeAudit(
        code=repr(code),
        worst_error=worst_err,
        worst_cond=worst_cond,
        worst_set=worst_set,
        sets_checked=len(sets),
        total_sets=math.comb(code.n, t),
        exhaustive=exhaustive,
    )


def _audit_groups(code: GroupedCode, trials, rng, exhaustive_limit) -> CodeAudit:
    audits = {part: audit(part, trials, rng, exhaustive_limit) for part in set(code.parts)}
    h = max(range(len(code.parts)), key=lambda h: audits[code.parts[h]].worst_error)
    worst = audits[code.parts[h]]
    return CodeAudit(
        code=repr(code),
        worst_error=worst.worst_error,
        worst_cond=max(a.worst_cond for a in audits.values()),
        worst_set=tuple(code.members[h][i] for i in worst.worst_set),
        sets_checked=sum(a.sets_checked for a in audits.values()),
        total_sets=sum(a.total_sets for a in audits.values()),
        exhaustive=all(a.exhaustive for a in audits.values()),
    )


def worst_case_error(
    code: MDSCode,
    trials: int | None = None,
    rng: np.random.Generator | int | None = None,
    exhaustive_limit: int | None = None,
) -> float:
    """``max_S ||decode_S(encode(X)) - X|| / ||X||``: the worst relative decode error of
    ``code`` over survivor sets (see :func:`audit` for the parameters and the details)."""
    return audit(code, trials=trials, rng=rng, exhaustive_limit=exhaustive_limit).worst_error
