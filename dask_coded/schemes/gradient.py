"""Gradient coding: the exact sum of any function over parts, from any ``n - s`` workers.

Tandon, Lei, Dimakis, Karampatziakis, "Gradient coding: avoiding stragglers in
distributed learning", ICML 2017. The data is split into ``n`` parts; worker ``j`` holds the
``s + 1`` parts of its *support* and returns ``g_j = sum_i B[j, i] f_i`` where
``f_i = fn(part i)``. For every survivor set ``S`` of ``n - s`` workers there is a vector
``a`` with ``a_S^T B_S = 1^T`` (the decode vector), so ``sum_j a_j g_j = sum_i f_i``
exactly, whatever ``fn`` is (it need not be linear: only the sum is coded).

* ``"fractional"`` (fractional repetition, section 4.1; needs ``(s + 1) | n``): the
  workers form ``n / (s + 1)`` groups of ``s + 1``; every worker of group ``g`` holds
  parts ``g (s + 1) .. (g + 1)(s + 1) - 1`` with coefficient 1. At most ``s`` stragglers
  cannot silence a whole group, so the decode adds one survivor per group
  (``a_j`` in ``{0, 1}``): the sum is as exact as a plain one.
* ``"cyclic"`` (section 4.2, Algorithm 2; any ``s < n``): worker ``j`` holds parts
  ``j, j + 1, .., j + s`` (mod ``n``); each row of ``B`` lies in the null space of a
  random ``s x n`` matrix ``H`` with ``H 1 = 0``, so any ``n - s`` rows span that null
  space, which holds ``1``. The random draw is screened (the seed with the smallest
  worst-case error amplification over survivor sets is kept).

Error bound (the decode's contract): with ``amp(S) = max_i sum_j |a_j B[j, i]|`` and
``c(S) = cond(B_S)``, the decoded sum differs from the exact one by at most about
``(s + 2 + c(S)) amp(S) eps sum_i |f_i|`` (elementwise): relative to the sum of the
parts' magnitudes, not to their sum, which can be much smaller (a gradient near an
optimum). :meth:`GradientCode.estimated_error` is that factor; a code whose worst case
exceeds ``coded.decode.max-error`` is refused.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import scipy.linalg

from .. import config
from ..codes.survivors import survivor_sets
from ..errors import CodeParameterError, IllConditionedError, TooFewResultsError
from .base import Scheme

KINDS = ("fractional", "cyclic")
_SCREEN_SEEDS = 16
_SCREEN_SETS = 1000
_EPS = float(np.finfo(np.float64).eps)


def fractional_repetition(n: int, s: int) -> np.ndarray:
    """``B`` of the fractional repetition code: block diagonal, ``n / (s + 1)`` blocks of
    ones of size ``s + 1``."""
    groups = np.arange(n) // (s + 1)
    return (groups[:, None] == groups[None, :]).astype(np.float64)


def cyclic_repetition(n: int, s: int, seed: int) -> np.ndarray:
    """``B`` of the cyclic code (Tandon et al., Algorithm 2): row ``j`` is supported on
    parts ``j .. j + s`` (mod ``n``), has 1 at part ``j`` and lies in the null space of a
    seeded Gaussian ``H`` (``s x n``) whose rows sum to zero."""
    rng = np.random.default_rng(seed)
    H = rng.standard_normal((s, n))
    H[:, -1] = -H[:, :-1].sum(axis=1)
    B = np.zeros((n, n))
    for j in range(n):
        support = [(j + t) % n for t in range(s + 1)]
        B[j, support[0]] = 1.0
        if s:
            B[j, support[1:]] = -scipy.linalg.solve(H[:, support[1:]], H[:, support[0]])
    return B


def decode_vector(B: np.ndarray, survivors: Sequence[int]) -> tuple[np.ndarray, float]:
    """``(a, cond(B_S))``: ``a`` (length ``n``, zero off ``S``) with ``a^T B = 1^T``, the
    least-norm solution from the rows ``S`` of ``B``; raises :class:`IllConditionedError`
    when ``1`` is not in their span (too few or degenerate survivors)."""
    S = np.asarray(survivors, dtype=np.intp)
    BS = B[S]
    a_S, _, rank, sv = scipy.linalg.lstsq(BS.T, np.ones(B.shape[1]), lapack_driver="gelsd")
    residual = np.abs(a_S @ BS - 1.0).max()
    if residual > 1e-6:
        raise IllConditionedError(
            f"the survivors {list(map(int, S))} cannot recover the sum (residual "
            f"{residual:.1e}): their rows of B do not span the all-ones vector"
        )
    a = np.zeros(B.shape[0])
    a[S] = a_S
    cond = float(sv[0] / sv[rank - 1])
    return a, cond


def amplification(B: np.ndarray, a: np.ndarray) -> float:
    """``max_i sum_j |a_j B[j, i]|``: how much the decode magnifies a part's rounding."""
    return float((np.abs(a)[:, None] * np.abs(B)).sum(axis=0).max())


class GradientCode(Scheme):
    """A gradient code for ``n`` workers tolerating ``s`` stragglers; threshold ``n - s``.

    Parameters
    ----------
    n : int
        Workers, and parts the data is split into.
    s : int
        Stragglers tolerated, ``0 <= s < n``; every part is held by ``s + 1`` workers.
    kind : {"auto", "fractional", "cyclic"}
        ``"auto"``: fractional repetition when ``s + 1`` divides ``n``, else cyclic.
    """

    name = "gradient"
    data = "partitions"

    @classmethod
    def from_params(cls, n: int, *, stragglers: int = 1, kind: str = "auto") -> GradientCode:
        """Any ``n - stragglers`` of ``n`` workers finish a sum; refused (as
        :func:`require_accurate`) when its worst decode misses ``coded.decode.max-error``."""
        code = cls(n, stragglers, kind)
        require_accurate(code)
        return code

    def __init__(self, n: int, s: int, kind: str = "auto"):
        for what, value in (("n", n), ("stragglers", s)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise CodeParameterError(f"{what} must be an integer, got {value!r}")
        n, s = int(n), int(s)
        if n < 1 or not 0 <= s < n:
            raise CodeParameterError(f"a gradient code needs n >= 1 and 0 <= stragglers < n, "
                                     f"got n={n}, stragglers={s}")
        if kind == "auto":
            kind = "fractional" if n % (s + 1) == 0 else "cyclic"
        if kind not in KINDS:
            raise CodeParameterError(f"kind must be 'auto' or one of {KINDS}, got {kind!r}")
        if kind == "fractional" and n % (s + 1):
            raise CodeParameterError(
                f"fractional repetition needs s + 1 = {s + 1} to divide n = {n}; use "
                f"kind='cyclic' (or 'auto')")
        self.n, self.s, self.kind = n, s, kind
        self.n_blocks, self.threshold = n, n - s
        self.seed = _screened_seed(n, s) if kind == "cyclic" and s else 0
        self.B = (fractional_repetition(n, s) if kind == "fractional"
                  else cyclic_repetition(n, s, self.seed))

    def __repr__(self) -> str:
        return (f"GradientCode(n={self.n}, stragglers={self.s}, {self.kind!r}, "
                f"threshold={self.threshold})")

    def __dask_tokenize__(self) -> tuple:
        return ("GradientCode", self.n, self.s, self.kind, self.seed)

    def support(self, j: int) -> tuple[int, ...]:
        """The parts worker ``j`` holds (its nonzero coefficients), in order."""
        return tuple(int(i) for i in np.flatnonzero(self.B[j]))

    def coefficients(self, j: int) -> tuple[float, ...]:
        """``B[j, i]`` for the parts ``i`` of :meth:`support`."""
        return tuple(float(self.B[j, i]) for i in self.support(j))

    def placement(self, workers: Sequence[str]) -> list[str]:
        """Worker ``j``'s assignment on ``workers[j]`` (one per worker: needs ``n``)."""
        return [workers[j % len(workers)] for j in range(self.n)]

    def decode_weights(self, survivors: Sequence[int]) -> np.ndarray:
        """The decode vector ``a`` for these survivors (``a^T B = 1^T``); fractional
        repetition takes the first survivor of every group (weights 0 and 1)."""
        survivors = sorted(int(j) for j in survivors)
        if len(survivors) < self.threshold:
            raise TooFewResultsError(
                f"only {len(survivors)} of n={self.n} partial sums survived; a gradient "
                f"code tolerating {self.s} stragglers needs {self.threshold}")
        if self.kind == "fractional":
            a = np.zeros(self.n)
            for g in range(self.n // (self.s + 1)):
                first = next((j for j in survivors if j // (self.s + 1) == g), None)
                if first is None:
                    raise TooFewResultsError(f"every worker of group {g} straggled")
                a[first] = 1.0
            return a
        # every survivor's row (least norm: usually the best conditioned); if that is
        # worse than the audited case, the first n - s survivors, which the audit covers
        for chosen in (survivors, survivors[:self.threshold]):
            a, cond = decode_vector(self.B, chosen)
            error = self.estimated_error_of(a, cond)
            if error <= float(config.get("decode.max-error")):
                return a
        raise IllConditionedError(
            f"decoding {self!r} from workers {survivors} has estimated relative error "
            f"{error:.1e} > coded.decode.max-error")

    def estimated_error_of(self, a: np.ndarray, cond: float) -> float:
        """``(s + 2 + cond) * amp * eps``: the decode's error relative to
        ``sum_i |f_i|`` (see the module doc)."""
        return (self.s + 2 + cond) * amplification(self.B, a) * _EPS

    def estimated_error(self) -> float:
        """The worst :meth:`estimated_error_of` over survivor sets of size ``n - s``:
        all ``C(n, s)`` of them up to ``min(coded.audit.exhaustive-limit,
        5 * coded.audit.samples)``, else a seeded sample plus every cyclic run of
        stragglers."""
        if self.kind == "fractional" or self.s == 0:
            return (self.s + 3) * _EPS
        return _worst_error(self.n, self.s, self.seed, _audit_sets())

    def decode(self, products: Sequence, scales: np.ndarray | None = None):
        """``sum_i f_i`` from the partial sums that arrived (``None``: straggled)."""
        arrived = [j for j, p in enumerate(products) if p is not None]
        a = self.decode_weights(arrived)
        return weighted_sum([float(a[j]) for j in arrived], [products[j] for j in arrived])


def weighted_sum(weights: Sequence[float], values: Sequence):
    """``sum_j w_j v_j`` over numpy arrays or numbers, or elementwise over tuples of
    them; terms with weight 0 are skipped and weight 1 adds without multiplying."""
    first = values[0]
    if isinstance(first, tuple):
        return tuple(weighted_sum(weights, [v[t] for v in values]) for t in range(len(first)))
    total = None
    for w, v in zip(weights, values):
        if w == 0:
            continue
        term = np.asarray(v) if w == 1 else np.asarray(v) * w
        total = term.copy() if total is None else total + term
    return np.zeros_like(np.asarray(first)) if total is None else total


def _sets_for(n: int, s: int, seed: int, samples: int) -> np.ndarray:
    """Survivor sets of size ``n - s`` to check: all when there are at most ``samples``,
    else every cyclic run of ``s`` stragglers plus ``samples`` seeded random sets."""
    sets, _ = survivor_sets(n, n - s, systematic=False, exhaustive_limit=samples,
                            samples=samples, rng=np.random.default_rng(seed))
    return sets


@functools.lru_cache(maxsize=None)
def _worst_error(n: int, s: int, seed: int, samples: int) -> float:
    """Worst estimated error of the cyclic code of ``seed`` over :func:`_sets_for`."""
    B = cyclic_repetition(n, s, seed)
    worst = 0.0
    for S in _sets_for(n, s, seed, samples):
        try:
            a, cond = decode_vector(B, S)
        except IllConditionedError:
            return math.inf
        worst = max(worst, (s + 2 + cond) * amplification(B, a) * _EPS)
    return worst


def _audit_sets() -> int:
    return min(int(config.get("audit.exhaustive-limit")), 5 * int(config.get("audit.samples")))


@functools.lru_cache(maxsize=None)
def _screened_seed(n: int, s: int) -> int:
    """The seed of ``0.._SCREEN_SEEDS - 1`` whose cyclic code has the smallest worst-case
    estimated error over a small sample of survivor sets (deterministic: every process
    picks the same)."""
    return int(np.argmin([_worst_error(n, s, seed, _SCREEN_SETS)
                          for seed in range(_SCREEN_SEEDS)]))


def require_accurate(code: GradientCode) -> None:
    """Refuse a code whose worst-case estimated error exceeds ``coded.decode.max-error``."""
    error = code.estimated_error()
    limit = float(config.get("decode.max-error"))
    if error > limit:
        raise CodeParameterError(
            f"{code!r} can lose accuracy: its worst survivor set has estimated relative "
            f"error {error:.1e} > coded.decode.max-error = {limit:.0e}; use fewer "
            f"stragglers, an n that s + 1 divides (fractional repetition is exact), or "
            f"raise the limit")
