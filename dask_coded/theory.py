"""Expected completion times under the shifted-exponential straggler model, and beyond.

The paper's model: a job of total work 1 split into pieces of work ``w`` takes, on each
worker, ``T = w (1 + X / mu)`` with ``X ~ Exp(1)`` i.i.d. (time unit: the whole job's
un-straggled time). ``H_m = sum_{i <= m} 1 / i``.

| scheme | waits for | E[T] |
|---|---|---|
| uncoded, ``n`` pieces | all ``n`` | ``(1 + H_n / mu) / n`` |
| ``r``-replication, ``n / r`` pieces on ``r`` workers each | first copy of every piece | ``(r + H_{n/r} / mu) / n`` |
| ``(n, k)`` MDS | any ``k`` of ``n`` | ``(1 + (H_n - H_{n-k}) / mu) / k`` |
| gradient code, ``s`` stragglers (each worker ``s + 1`` parts of ``n``) | any ``n - s`` of ``n`` | ``(s + 1)(1 + (H_n - H_s) / mu) / n`` |
| Lagrange, ``k`` parts, degree ``d`` (each worker one coded part, ``1/k``) | any ``t = (k - 1) d + 1`` of ``n`` | ``(1 + (H_n - H_{n-t}) / mu) / k`` |
| grouped, ``g`` groups of ``n_h`` workers needing ``k_h`` (``sum k_h = k``) | ``k_h`` of every group | ``(1 + E[max_h Z_h] / mu) / k``, ``Z_h`` the ``k_h``-th of ``n_h`` ``Exp(1)`` |

For models with no closed form, :func:`monte_carlo` simulates any
:class:`~dask_coded.stragglers.DelayModel`; :func:`blocks_time` several coded blocks per
worker, :func:`chunks_time` plain dynamic scheduling of many chunks, and
:func:`oracle_time` the bound no scheme beats under a per-worker model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import integrate, stats
from scipy.special import digamma, lambertw

from .codes.grouped import group_shapes
from .stragglers.models import ShiftedExponential, SlowWorkers

SCHEMES = ("uncoded", "replication", "mds", "gradient", "lagrange", "grouped")


def harmonic(m: int) -> float:
    """``H_m = sum_{i=1..m} 1/i`` (``H_0 = 0``), via the digamma function."""
    if m < 0:
        raise ValueError(f"harmonic number needs m >= 0, got {m}")
    return float(digamma(m + 1) + np.euler_gamma)


def _check(n: int, mu: float) -> None:
    if not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not mu > 0:
        raise ValueError(f"mu must be > 0, got {mu!r}")


def expected_time(scheme: str, n: int, k: int | None = None, mu: float = 1.0,
                  r: int | None = None, s: int | None = None,
                  degree: int | None = None, spare: int = 0,
                  groups: int | None = None) -> float:
    """Expected completion time of ``scheme`` on ``n`` workers (module table).

    Parameters
    ----------
    scheme : {"uncoded", "replication", "mds", "gradient", "lagrange"}
    n : int
        Workers.
    k : int
        For ``"mds"``: blocks needed, ``1 <= k <= n``; for ``"lagrange"``: data parts.
    mu : float
        Straggling rate (``> 0``; larger is less straggling).
    r : int
        For ``"replication"``: copies of each piece, dividing ``n``.
    s : int
        For ``"gradient"``: stragglers tolerated, ``0 <= s < n`` (Tandon et al. 2017).
    degree : int
        For ``"lagrange"``: the degree of the function of each part (Yu et al. 2019);
        the threshold ``(k - 1) degree + 1`` must be at most ``n``.
    spare : int
        For ``"mds"``: products a verified decode waits for beyond ``k`` (1 for
        ``verify="detect"``, ``2 e`` for ``verify="correct"`` with ``errors=e``): the
        call ends at the ``(k + spare)``-th of ``n`` order statistics,
        ``(1 + (H_n - H_{n-k-spare}) / mu) / k``.
    groups : int
        For ``"grouped"``: the workers in ``groups`` near-equal groups, ``k`` split
        among them (:func:`~dask_coded.codes.grouped.group_shapes`); the call ends when
        the slowest group has its ``k_h``-th product,
        ``E[max_h Z_h] = int_0^inf (1 - prod_h P(Z_h <= t)) dt``.

    Examples
    --------
    >>> round(expected_time("mds", n=12, k=9, mu=1.0), 3)
    0.252
    """
    _check(n, mu)
    if scheme == "uncoded":
        return (1 + harmonic(n) / mu) / n
    if scheme == "replication":
        if r is None or r < 1 or n % r:
            raise ValueError(f"replication needs r >= 1 dividing n={n}, got r={r!r}")
        return (r + harmonic(n // r) / mu) / n
    if scheme == "mds":
        if k is None or not 1 <= k <= n:
            raise ValueError(f"mds needs 1 <= k <= n={n}, got k={k!r}")
        if not 0 <= spare <= n - k:
            raise ValueError(f"mds waits for k + spare <= n={n} products; got k={k}, "
                             f"spare={spare!r}")
        return (1 + (harmonic(n) - harmonic(n - k - spare)) / mu) / k
    if scheme == "gradient":
        _check_stragglers(n, s)
        return (s + 1) * (1 + (harmonic(n) - harmonic(s)) / mu) / n
    if scheme == "lagrange":
        t = _lagrange_threshold(n, k, degree)
        return (1 + (harmonic(n) - harmonic(n - t)) / mu) / k
    if scheme == "grouped":
        if k is None or groups is None or not 1 <= groups <= k <= n:
            raise ValueError(f"grouped needs 1 <= groups <= k <= n={n}, got k={k!r}, "
                             f"groups={groups!r}")
        return (1 + slowest_group(group_shapes(n, k, groups)) / mu) / k
    raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")


def slowest_group(shapes) -> float:
    """``E[max_h Z_h]`` for independent groups ``(n_h, k_h)``, ``Z_h`` the ``k_h``-th
    smallest of ``n_h`` i.i.d. ``Exp(1)``: ``P(Z_h <= t) = P(Bin(n_h, 1 - e^-t) >= k_h)``."""
    def tail(t: float) -> float:
        p = -math.expm1(-t)
        return 1.0 - math.prod(float(stats.binom.sf(kh - 1, nh, p)) for nh, kh in shapes)

    return float(integrate.quad(tail, 0, np.inf, limit=200)[0])


def _lagrange_threshold(n: int, k, degree) -> int:
    if k is None or degree is None or k < 1 or degree < 1 or (k - 1) * degree + 1 > n:
        raise ValueError(f"lagrange needs k >= 1 parts and degree >= 1 with "
                         f"(k - 1) degree + 1 <= n={n}, got k={k!r}, degree={degree!r}")
    return (k - 1) * degree + 1


def _check_stragglers(n: int, s) -> None:
    if s is None or not 0 <= s < n:
        raise ValueError(f"gradient needs 0 <= s < n={n}, got s={s!r}")


def optimal_k(n: int, mu: float = 1.0) -> int:
    """The ``k`` minimising ``E[T_mds(n, k)]``, by exact search over ``1..n``."""
    _check(n, mu)
    return min(range(1, n + 1), key=lambda k: expected_time("mds", n, k, mu))


def optimal_k_fraction(mu: float = 1.0) -> float:
    """``lim k*/n = 1 + 1 / W_{-1}(-exp(-(mu + 1)))`` (Lambert W, lower branch)."""
    if not mu > 0:
        raise ValueError(f"mu must be > 0, got {mu!r}")
    w = lambertw(-math.exp(-(mu + 1)), k=-1).real
    return 1 + 1 / w


def speedup(n: int, mu: float = 1.0) -> float:
    """``E[T_uncoded] / E[T_mds(n, k*)]``: Theta(log n) for fixed ``mu``."""
    return expected_time("uncoded", n, mu=mu) / expected_time("mds", n, optimal_k(n, mu), mu)


def fit_shifted_exponential(durations, censored=(), work: float = 1.0) -> tuple[float, float]:
    """Fit ``T = work * scale * (1 + X / mu)`` to task durations of one work share.

    ``censored`` are lower bounds for tasks that were cut off (a released straggler ran at
    least that long): first-k-of-n never sees its slowest ``n - k`` tasks finish, so
    ignoring them would under-estimate straggling. Maximum likelihood: the shift is the
    smallest duration, the rate of the excess is ``observed / total excess exposure``, and
    ``mu = shift * rate``. Returns ``(scale, mu)``. One fast outlier drives ``mu`` towards
    zero: for the products of several calls use :func:`fit_calls`.
    """
    t = np.asarray(durations, dtype=float)
    c = np.asarray(censored, dtype=float)
    if t.size < 2 or not np.isfinite(t).all() or (t <= 0).any() or not np.isfinite(c).all():
        raise ValueError("need at least 2 positive, finite durations (and finite censor times)")
    shift = float(t.min())
    exposure = float((t - shift).sum() + np.clip(c - shift, 0, None).sum())
    mu = shift * (t.size - 1) / exposure if exposure > 0 else math.inf
    return shift / work, mu


def fit_calls(calls, censored, n: int, outlier: float = 3.0) -> tuple[float, float]:
    """Fit the shifted exponential to the products of several calls, robustly.

    ``calls[c]``: the durations of call ``c``'s finished products (``n`` were launched
    together), ``censored[c]``: the censor times of its released stragglers. Each call's
    fastest product ``m_c`` is the first of ``n`` order statistics, ``E[m_c] = shift +
    shift / (n mu)``; above it the excess is exponential with rate ``mu / shift``
    (memoryless), pooled over the calls. Calls whose ``m_c`` is more than ``outlier``
    times off the median (a warm-up call before any delay, a stall of the whole cluster)
    are left out. Returns ``(shift, mu)``; ``mu`` is ``inf`` without any excess.
    """
    mins = [min(c) for c in calls if len(c)]
    if not mins:
        raise ValueError("need at least one call with a finished product")
    med = float(np.median(mins))
    kept = [(c, cen) for c, cen in zip(calls, censored)
            if len(c) and med / outlier <= min(c) <= med * outlier]
    exposure = count = 0.0
    for c, cen in kept:
        m = min(c)
        exposure += sum(t - m for t in c) + sum(max(t - m, 0.0) for t in cen)
        count += len(c) - 1 + 0.0
    if exposure <= 0 or count == 0:
        return med, math.inf
    rate = count / exposure
    shift = max(float(np.median([min(c) for c, _ in kept])) - 1 / (n * rate), med / 2)
    return shift, shift * rate


def monte_carlo(scheme: str, model, n: int, k: int | None = None, r: int | None = None,
                trials: int = 2000, seed: int = 0,
                workers: list[str] | None = None, s: int | None = None,
                degree: int | None = None, groups: int | None = None) -> tuple[float, float]:
    """``(mean, standard error)`` of the completion time of ``scheme`` under any delay
    model, by simulation: each task's time is ``model``'s delay for its work share
    (``1/n`` uncoded, ``r/n`` replicated, ``1/k`` MDS, Lagrange and grouped, ``(s+1)/n``
    gradient) on worker ``workers[j]`` (a grouped code's groups: consecutive workers)."""
    workers = [str(j) for j in range(n)] if workers is None else [str(w) for w in workers]
    if len(workers) != n:
        raise ValueError(f"workers must name n={n} workers, got {len(workers)}")
    if scheme == "uncoded":
        t = model.sample(trials, seed, work=1 / n, workers=workers).max(axis=1)
    elif scheme == "mds":
        if k is None or not 1 <= k <= n:
            raise ValueError(f"mds needs 1 <= k <= n={n}, got k={k!r}")
        t = np.sort(model.sample(trials, seed, work=1 / k, workers=workers), axis=1)[:, k - 1]
    elif scheme == "replication":
        if r is None or r < 1 or n % r:
            raise ValueError(f"replication needs r >= 1 dividing n={n}, got r={r!r}")
        times = model.sample(trials, seed, work=r / n, workers=workers)
        t = times.reshape(trials, n // r, r).min(axis=2).max(axis=1)
    elif scheme == "gradient":
        _check_stragglers(n, s)
        times = model.sample(trials, seed, work=(s + 1) / n, workers=workers)
        t = np.sort(times, axis=1)[:, n - s - 1]
    elif scheme == "lagrange":
        threshold = _lagrange_threshold(n, k, degree)
        times = model.sample(trials, seed, work=1 / k, workers=workers)
        t = np.sort(times, axis=1)[:, threshold - 1]
    elif scheme == "grouped":
        if k is None or groups is None or not 1 <= groups <= k <= n:
            raise ValueError(f"grouped needs 1 <= groups <= k <= n={n}, got k={k!r}, "
                             f"groups={groups!r}")
        times = model.sample(trials, seed, work=1 / k, workers=workers)
        t, start = np.zeros(trials), 0
        for nh, kh in group_shapes(n, k, groups):
            group = np.sort(times[:, start:start + nh], axis=1)[:, kh - 1]
            t, start = np.maximum(t, group), start + nh
    else:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    return float(t.mean()), float(t.std(ddof=1) / math.sqrt(trials))


def task_durations(model, trials: int, n: int, tasks: int, work: float, seed: int = 0,
                   workers: list[str] | None = None) -> np.ndarray:
    """Seconds of each of ``tasks`` tasks of work ``work`` on each of ``n`` workers, in
    ``trials`` independent calls: shape ``(trials, n, tasks)``. A per-call model
    (``ShiftedExponential(per="call")``) draws one slowness per worker per call, shared by
    its tasks; ``SlowWorkers`` is deterministic; other models are sampled task by task."""
    names = [str(j) for j in range(n)] if workers is None else [str(w) for w in workers]
    rng = np.random.default_rng(seed)
    if isinstance(model, ShiftedExponential):
        shape = (trials, n, tasks if model.per == "task" else 1)
        x = rng.exponential(size=shape)
        out = model.scale * work * (model.shift + x / model.mu)
        return np.broadcast_to(out, (trials, n, tasks)).copy()
    if isinstance(model, SlowWorkers):
        per = np.array([model.scale * work * float(model.factor.get(w, 1.0))
                        + float(model.seconds.get(w, 0.0)) for w in names])
        return np.broadcast_to(per[None, :, None], (trials, n, tasks)).copy()
    return np.array([[[model.delay(w, f"sample#{i}.{t}", seed, work, call=f"call#{i}")
                       for t in range(tasks)] for w in names] for i in range(trials)])


def blocks_time(model, n: int, k: int, r: int, margin: int = 0, trials: int = 2000,
                seed: int = 0, workers: list[str] | None = None,
                overhead: float = 0.0, leftovers: bool = False,
                calls: int = 6) -> tuple[float, float]:
    """``(mean, standard error)`` of a call coded with ``r`` blocks per worker: an
    ``(n r, k r)`` code, each block product of work ``1 / (k r)``, run one after another
    on its worker (each also paying ``overhead`` seconds of scheduling); the decode waits
    for the first ``k r + margin`` of all ``n r`` (whichever workers they come from).
    ``r = 1`` is the MDS scheme.

    ``leftovers=True``: released products keep running, as Dask's threads do. Calls follow
    one another; the block a worker is running when the decode starts finishes first,
    delaying that worker's next call (blocks not yet started never run). The mean is over
    ``calls`` consecutive calls after one call of warm-up."""
    _check(n, 1.0)
    if not 1 <= k <= n or r < 1:
        raise ValueError(f"blocks needs 1 <= k <= n={n} and r >= 1, got k={k!r}, r={r!r}")
    need = min(k * r + margin, n * r)
    busy = np.zeros((trials, n, 1))  # seconds each worker still runs a previous call's block
    times = []
    for call in range(calls + 1 if leftovers else 1):
        durations = task_durations(model, trials, n, r, 1 / (k * r), seed + call,
                                   workers) + overhead
        done = busy + np.cumsum(durations, axis=2)
        t = np.sort(done.reshape(trials, n * r), axis=1)[:, need - 1]
        # the block in progress at the decode: started at or before t, done after it
        started = (done - durations) <= t[:, None, None]
        running = np.where(started & (done > t[:, None, None]), done, 0.0).max(axis=2)
        busy = np.maximum(running - t[:, None], 0.0)[:, :, None]
        if call > 0 or not leftovers:
            times.append(t)
    t = np.concatenate(times)
    return float(t.mean()), float(t.std(ddof=1) / math.sqrt(len(t)))


def chunks_time(model, n: int, chunks: int, trials: int = 2000, seed: int = 0,
                workers: list[str] | None = None) -> tuple[float, float]:
    """``(mean, standard error)`` of plain dynamic scheduling: ``chunks`` pieces of work
    ``1 / chunks``, each taken by the first worker to be free (free work stealing, no
    transfer cost: a bound on what dask's stealing achieves)."""
    dur = task_durations(model, trials, n, chunks, 1 / chunks, seed, workers)
    free = np.zeros((trials, n))
    taken = np.zeros((trials, n), dtype=np.intp)
    rows = np.arange(trials)
    for _ in range(chunks):
        j = np.argmin(free, axis=1)
        free[rows, j] += dur[rows, j, taken[rows, j]]
        taken[rows, j] += 1
    t = free.max(axis=1)
    return float(t.mean()), float(t.std(ddof=1) / math.sqrt(trials))


def oracle_time(model, n: int, trials: int = 2000, seed: int = 0,
                workers: list[str] | None = None) -> tuple[float, float]:
    """``(mean, standard error)`` of the oracle that knows each worker's speed in the
    call and splits the work in proportion: ``T = 1 / sum_j (1 / t_j)``, ``t_j`` the
    seconds worker ``j`` would take for the whole job. No scheme beats it under a
    per-worker model (it has no meaning when each task draws its own delay)."""
    whole = task_durations(model, trials, n, 1, 1.0, seed, workers)[:, :, 0]
    t = 1.0 / (1.0 / whole).sum(axis=1)
    return float(t.mean()), float(t.std(ddof=1) / math.sqrt(trials))


def best_blocks(model, n: int, rs=(1, 2, 4, 8), margin: int = 2, trials: int = 2000,
                seed: int = 0, workers: list[str] | None = None,
                overhead: float = 0.0, leftovers: bool = False) -> tuple[int, int, float]:
    """``(k, r, expected seconds)`` minimising :func:`blocks_time` over ``k = 1..n`` and
    ``r`` in ``rs`` (the least-squares margin applied where ``r > 1``; ``overhead``
    seconds per block product; ``leftovers``: released products keep running)."""
    best = None
    for r in rs:
        for k in range(1, n + 1):
            t = blocks_time(model, n, k, r, margin if r > 1 else 0, trials, seed, workers,
                            overhead, leftovers=leftovers)[0]
            if best is None or t < best[2]:
                best = (k, r, t)
    return best


def shuffle_load(strategy: str, q: int, n: int, storage: float) -> float:
    """Expected partitions the master sends per epoch when ``q`` partitions are dealt
    afresh to ``n`` workers, each storing ``storage`` (its share of ``q/n`` included).

    ``"uncoded"``: a new partition is cached with probability ``storage / q``, so the
    master sends ``q (1 - storage / q)``. ``"coded"``: the paper's prediction, uncoded
    divided by ``(alpha + 1/n) n = n storage / q`` (``alpha``: cached fraction beyond the
    share). ``"coded-caching"``: Maddah-Ali and Niesen's load with ``t = n storage / q``,
    ``(q - storage) / (1 + t)``. ``"segments"``: the segment placement
    (:func:`placement_levels`, what :class:`~dask_coded.shuffle.placement.Placement`
    builds) with perfectly even demands: a partition's segments are cached by
    ``t``-subsets ``T`` of the workers other than its owner ``o``; moving from ``o`` to
    ``k`` it lacks the ``(n-1-t) / (n-1)`` of it whose ``T`` leaves out ``k``, each
    cached by ``T + {o}``, so each goes in an XOR that serves ``t + 2`` workers: it costs
    ``(n-1-t) / ((n-1)(t+2))`` of a partition, times the ``q (1 - 1/n)`` partitions that
    move; levels are mixed as the placement mixes them. That is Maddah-Ali and Niesen's
    load exactly (``t + 1 = n storage / q`` at one level). Uneven demands (a random
    deal) cost more: the planner's loss.
    """
    if not (n >= 1 and q >= n and q / n <= storage <= q):
        raise ValueError(f"need n >= 1, q >= n and q/n <= storage <= q; got q={q}, n={n}, "
                         f"storage={storage}")
    uncoded = q * (1 - storage / q)
    if strategy == "uncoded":
        return uncoded
    if strategy == "coded":
        return uncoded / (n * storage / q)
    if strategy == "coded-caching":
        return (q - storage) / (1 + n * storage / q)
    if strategy == "segments":
        levels = placement_levels(n, q, storage)
        if levels is None:
            return q * (1 - 1 / n)  # no room to cache: every moving partition is sent

        def per_partition(t: int) -> float:
            return max(n - 1 - t, 0) / ((n - 1) * (t + 2))

        return q * (1 - 1 / n) * sum(f * per_partition(t) for t, f in levels)
    raise ValueError(f"strategy must be 'uncoded', 'coded', 'coded-caching' or 'segments', "
                     f"got {strategy!r}")


def placement_levels(n: int, q: int, storage: float) -> list[tuple[int, float]] | None:
    """The levels ``[(t, fraction)]`` of the largest segment placement that fits
    ``storage`` partitions per worker (its share of ``ceil(q / n)`` included), or
    ``None`` when no storage is left for caching.

    The segments of a partition are cached by subsets of the ``n - 1`` workers other than
    its owner, so a worker owning ``m`` partitions caches ``(q - m) tau / (n - 1)`` more
    at mean level ``tau``: ``tau = (n - 1) (storage - ceil(q/n)) / (q - floor(q/n))``,
    capped at ``n - 1``; a fractional ``tau`` mixes levels ``floor(tau)`` and
    ``floor(tau) + 1``.
    """
    if n < 2 or q < n:
        return None
    share_max, share_min = -(-q // n), q // n
    tau = min(float(n - 1), (n - 1) * (storage - share_max) / (q - share_min))
    if tau <= 0:
        return None
    t = int(math.floor(tau + 1e-12))
    lam = tau - t
    levels = [(t, 1.0 - lam)] if lam < 1e-9 else [(t, 1.0 - lam), (t + 1, lam)]
    return [(lt, f) for lt, f in levels if f > 1e-9]


def shuffle_lower_bound(q: int, n: int, storage: float) -> float:
    """A floor under the master's load (partitions) for the *worst* reshuffle, any code.

    A cut-set argument in the style of Attia and Tandon's converse: take ``j`` workers
    and ``L`` reshuffles of the same stored state that hand them ``L j m`` distinct
    partitions none of them holds (``m = q / n``, so ``(L + 1) j m <= q``). Their excess
    storage ``j (storage - m)`` and the ``L`` transmissions must carry all of it:
    ``L R >= L j m - j (storage - m)``, so

        R >= max over j, L of  j (m - (storage - m) / L).

    Attia and Tandon's published bound chains the workers and is tighter; this one is
    reproduced from the argument, not from their expression. It bounds the worst case,
    not the mean over random deals that the benchmark measures.
    """
    if not (n >= 2 and q >= n and q / n <= storage <= q):
        raise ValueError(f"need n >= 2, q >= n and q/n <= storage <= q; got q={q}, n={n}, "
                         f"storage={storage}")
    m = q / n
    best = 0.0
    for j in range(1, n):
        for L in range(1, int(q // (j * m)) ):
            if (L + 1) * j * m <= q + 1e-9:
                best = max(best, j * (m - (storage - m) / L))
    return best


@dataclass(frozen=True)
class MatmulPlan:
    """The code ``dc.matmul(..., scheme="auto")`` chose, and why: the bytes each scheme
    would move per call (operands to the ``n`` workers, plus the products the decode
    gathers), for a threshold of about ``3 n / 4``."""

    scheme: str
    splits: Any
    threshold: int
    bytes: dict

    def __repr__(self) -> str:
        costs = ", ".join(f"{name} {b / 1e6:.1f} MB" for name, b in self.bytes.items())
        return (f"MatmulPlan({self.scheme!r}, splits={self.splits}, threshold="
                f"{self.threshold}: fewest bytes moved per call of {costs})")


def plan_matmul(shape_a: tuple, shape_b: tuple, n: int, itemsize: int = 8) -> MatmulPlan:
    """Choose among 1-D MDS of A (``"mds"``: every worker gets all of B), polynomial and
    MatDot codes by the bytes a call moves: ``n`` times what one worker receives, plus the
    ``threshold`` products the decode gathers (MatDot's are the size of ``C``).

    The threshold is ``round(3 n / 4)`` (the theory's best ``k`` at ``mu = 1``); the
    polynomial code takes the ``(m, p)`` with ``m p`` at most that which sends the least.
    """
    (r, s), (_, t) = shape_a, shape_b
    a, b, c = r * s * itemsize, s * t * itemsize, r * t * itemsize
    T = max(1, round(3 * n / 4))
    options = {"mds": (T, n * (a / T + b) + c)}
    m, p = min(((m, p) for m in range(1, T + 1) for p in range(1, T // m + 1)),
               key=lambda mp: (a / mp[0] + b / mp[1], -mp[0] * mp[1]))
    options["polynomial"] = ((m, p), n * (a / m + b / p) + c)
    md = (T + 1) // 2
    options["matdot"] = (md, n * (a + b) / md + (2 * md - 1) * c)
    best = min(options, key=lambda k: options[k][1])
    splits = options[best][0]
    threshold = {"mds": T, "polynomial": m * p, "matdot": 2 * md - 1}[best]
    return MatmulPlan(best, splits, threshold, {k: v[1] for k, v in options.items()})
