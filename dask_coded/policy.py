"""Choosing ``k`` (and the blocks per worker) from observed straggling
(``encode(..., k="auto", blocks_per_worker="auto")``).

:class:`AutoK` reads what the scheduler plugin observed (product durations, and the censor
times of released stragglers), fits the shifted-exponential model to the most recent calls
and picks ``k* = optimal_k(n, mu)`` (Lee et al. 2018, Theorem 2's optimisation, solved
exactly by :func:`dask_coded.theory.optimal_k`). It guards the fit against the ways it
goes wrong: old calls age out (``window``); the fit is per call
(:func:`dask_coded.theory.fit_calls`), so a warm-up call's fast products, whose minimum
would drive ``mu`` to zero, are left out as an outlier call; it waits for ``min_calls``
calls, not products (at a low ``k`` few products finish per call); ``k`` changes only when
the fitted model says the new ``k`` is faster by ``margin``, and by at most ``max_step``
per re-choice. A change of code must also pay for itself (:meth:`AutoK.pays`): the
seconds per call measured now, times what the model says the new code saves, times the
calls expected to remain, must exceed what the change costs (the current encoding's
measured seconds, ``change_cost`` times). A code the regret guard turned back
(:func:`worse`, run by :class:`~dask_coded.retuner.Retuner`) is never chosen again.

With ``blocks_per_worker="auto"`` it chooses ``(k, r)`` together
(:meth:`AutoK.choose_blocks`; ``r`` counts product tasks per worker, and a change of
``r`` alone that regroups the current encoding's blocks needs no re-encode, so it need
not pay for one): the fit of compute seconds gives the job's seconds and ``mu``, each
product task also pays its overhead (:meth:`AutoK.overhead`: measured between a worker's
consecutive product tasks, else the ``task_overhead`` setting), and the expected call
time of every candidate is simulated (:func:`dask_coded.theory.blocks_time`) under the
straggling model the data shows: per call (a slow worker is slow for all its blocks of
a call) when a worker's block products of one call vary much less than the call's
products overall, per task otherwise; at ``r = 1`` the two cannot be told apart, and the
candidate whose worse ratio to the best of either model is smallest is taken (the next
re-choice, which can read the model, is then not held back by ``margin``). Released
products keep running in Dask, so the simulation carries each worker's unfinished block
into its next call (``coded.auto-k.leftovers``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import config
from .stragglers.models import ShiftedExponential
from .theory import blocks_time, expected_time, fit_calls, optimal_k


# consecutive calls each simulated chain of calls with leftovers runs
LEFTOVER_CALLS = 6


@dataclass
class AutoK:
    """The ``k="auto"`` policy for an ``n``-block code (settings from ``coded.auto-k``).

    ``history`` records each decision: calls so far, observations used, fitted ``mu``,
    the ``k`` chosen; with ``choose_r`` also ``r``, the job's seconds, the straggling
    model read (``per``), the workers counted ``healthy`` and each product task's
    ``overhead`` with where it came from (``overhead_from``).
    """

    n: int
    choose_r: bool = False
    every: int = field(default_factory=lambda: int(config.get("auto-k.every")))
    min_calls: int = field(default_factory=lambda: int(config.get("auto-k.min-calls")))
    window: int = field(default_factory=lambda: int(config.get("auto-k.window")))
    margin: float = field(default_factory=lambda: float(config.get("auto-k.margin")))
    max_step: int = field(default_factory=lambda: int(config.get("auto-k.max-step")))
    history: list = field(default_factory=list)
    blocks: tuple = field(
        default_factory=lambda: tuple(int(r) for r in config.get("auto-k.blocks")))
    task_overhead: float = field(
        default_factory=lambda: float(config.get("auto-k.task-overhead")))
    gap_samples: int = field(default_factory=lambda: int(config.get("auto-k.gap-samples")))
    margin_products: int = field(default_factory=lambda: int(config.get("lstsq.margin")))
    leftovers: bool = field(default_factory=lambda: bool(config.get("auto-k.leftovers")))
    background: bool = field(default_factory=lambda: bool(config.get("auto-k.background")))
    horizon: int | None = field(default_factory=lambda: config.get("auto-k.horizon"))
    confidence: float = field(default_factory=lambda: float(config.get("auto-k.confidence")))
    change_cost: float = field(
        default_factory=lambda: float(config.get("auto-k.change-cost")))
    probation: int = field(default_factory=lambda: int(config.get("auto-k.probation")))
    tolerance: float = field(default_factory=lambda: float(config.get("auto-k.tolerance")))
    #: codes (``(k, r)``) the regret guard turned back: never chosen again
    rejected: set = field(default_factory=set)
    trials: int = 400

    def __repr__(self) -> str:
        what = f"k and r in {self.blocks}" if self.choose_r else "k"
        horizon = (f"{self.horizon} calls to come" if self.horizon is not None
                   else f"calls to come unknown (confidence {self.confidence})")
        made = [h for h in self.history if "chosen" in h]
        rejected = ", ".join(map(str, sorted(self.rejected))) or "none"
        return (f"AutoK(n={self.n}, chooses {what}; first at call {self.min_calls + 1}, then "
                f"every {self.every}; {horizon}; a change must gain {self.change_cost}x its "
                f"re-encode, then is on probation {self.probation} calls; {len(made)} "
                f"re-choice{'' if len(made) == 1 else 's'}; rejected: {rejected})")

    @classmethod
    def initial_k(cls, n: int) -> int:
        """``optimal_k(n, coded.auto-k.initial-mu)``: the k before anything is observed."""
        return optimal_k(int(n), float(config.get("auto-k.initial-mu")))

    def due(self, calls: int) -> bool:
        """Whether to re-choose ``k`` at this call count: first as soon as ``min_calls``
        calls were seen (early, before the user has paid much for a poor start), then
        every ``every`` calls."""
        first = self.min_calls + 1
        return calls >= first and (calls - first) % self.every == 0

    def pays(self, record: dict, ratio: float, seen: dict, calls: int) -> bool:
        """Whether a change whose model predicts calls ``ratio`` times as long as now
        pays for itself: ``now * (1 - ratio) * remaining > change_cost * encode``, with
        ``now`` the median seconds per call measured (``seen["calls_span"]``),
        ``remaining`` the calls expected to remain (:meth:`remaining`) and ``encode``
        the current encoding's seconds (``seen["encode_seconds"]``).
        Without those measurements the model alone decides. Writes its terms into
        ``record``."""
        terms = self._costs(seen, calls)
        if terms is None:
            return True
        now, remaining, cost = terms
        gain = now * (1 - ratio) * remaining
        record.update(now=now, predicted=now * ratio, gain=gain, cost=cost)
        return gain > cost

    def _costs(self, seen: dict, calls: int) -> tuple[float, float, float] | None:
        """``(seconds per call now, calls expected to remain, cost of a change)``, or None
        when not measured."""
        spans = [t for t in seen.get("calls_span") or () if t > 0]
        encode = seen.get("encode_seconds")
        if not spans or encode is None:
            return None
        return float(np.median(spans)), self.remaining(calls), self.change_cost * float(encode)

    def remaining(self, calls: int) -> float:
        """The calls a change may count on after ``calls``: ``horizon`` when set, else
        ``calls * (1 - confidence) / confidence``. A run of unknown length that has made
        ``c`` calls goes on for at least ``x`` more with probability ``c / (c + x)``
        (Gott's estimate), so a change that pays back within that many calls pays with
        probability ``confidence`` (a third of the calls so far at 0.75; as many as so
        far at 0.5)."""
        if self.horizon is not None:
            return float(self.horizon)
        if not 0 < self.confidence < 1:
            raise ValueError("coded.auto-k.confidence must lie strictly between 0 and 1, "
                             f"got {self.confidence!r}")
        return calls * (1 - self.confidence) / self.confidence

    def _nothing_could_pay(self, record: dict, seen: dict, calls: int,
                           free: bool = False) -> bool:
        """Whether even a code taking no time at all would not pay for the change
        (``now * remaining <= cost``), and no change is ``free``: then the fit and the
        simulation are skipped (they cost the client CPU the calls need)."""
        terms = None if free else self._costs(seen, calls)
        if terms is None or terms[0] * terms[1] > terms[2]:
            return False
        record.update(now=terms[0], gain=terms[0] * terms[1], cost=terms[2],
                      chosen=code_of(record), why="no change could pay for its re-encode yet")
        return True

    def choose(self, k: int, seen: dict, calls: int) -> int:
        """The ``k`` to use from now on, given the current ``k`` and what was ``seen``
        (``{"calls": [[seconds, ...], ...], "calls_censored": [[...], ...]}``, per call:
        the plugin's report)."""
        observed = [c for c in seen["calls"] if len(c)]
        record = {"calls": calls, "k": k, "observed": len(observed)}
        self.history.append(record)
        if len(observed) < self.min_calls or self._nothing_could_pay(record, seen, calls):
            return k
        _, mu = fit_calls(seen["calls"], seen["calls_censored"], self.n)
        best = optimal_k(self.n, mu) if np.isfinite(mu) else self.n
        healthy = self.n - len(persistent_stragglers(seen.get("calls_workers"),
                                                     seen.get("calls_released")))
        best = min(max(best, k - self.max_step), k + self.max_step, healthy)
        record.update(mu=mu, best=best)
        if (best, 1) in self.rejected:
            best = k
        if best != k and np.isfinite(mu):
            now, then = expected_time("mds", self.n, k, mu), expected_time("mds", self.n, best, mu)
            if then > now * (1 - self.margin):
                best = k  # not worth a re-encode on this evidence
                record["why"] = "gain below the margin"
            elif not self.pays(record, then / now, seen, calls):
                best = k
                record["why"] = "would not pay for its re-encode"
        record["chosen"] = best
        return best

    def choose_blocks(self, k: int, r: int, seen: dict, calls: int,
                      free: frozenset = frozenset()) -> tuple[int, int]:
        """The ``(k, r)`` to use from now on, given the current ``(k, r)`` and what was
        ``seen`` (the plugin's report, with ``calls_workers``); ``r`` counts product
        tasks per worker (each a block, or several blocks of an encoding regrouped).
        A code in ``free`` needs no re-encode (a regrouping of the current encoding's
        blocks): it is chosen whenever the model says it is faster by ``margin``."""
        observed = [c for c in seen["calls"] if len(c)]
        record = {"calls": calls, "k": k, "r": r, "observed": len(observed)}
        self.history.append(record)
        free = frozenset(free) - {(k, r)}
        if len(observed) < self.min_calls or self._nothing_could_pay(record, seen, calls,
                                                                     bool(free)):
            return k, r
        shift, mu_fit = fit_calls(seen["calls"], seen["calls_censored"], self.n * r)
        # a product task takes overhead + w (1 + X / mu): the fit is of compute seconds
        # (shift w, excess of mean w / mu); the overhead is measured apart, where it can be
        overhead, source = self.overhead(seen)
        w = shift
        mu = mu_fit if np.isfinite(mu_fit) else 1e6
        job = w * k * r
        per = per_call_or_task(seen.get("calls_workers"), seen["calls"]) if r > 1 else None
        # workers released in most calls are slow for good: the fit sees only the others
        # (a released product's censor time hides how slow it is), so k leaves them out
        healthy = self.n - len(persistent_stragglers(seen.get("calls_workers"),
                                                     seen.get("calls_released")))
        record.update(mu=mu, job=job, per=per or "either", healthy=healthy,
                      overhead=overhead, overhead_from=source)
        kinds = (per,) if per else ("task", "call")
        times = {p: {(kk, rr): self._time(p, mu, job, kk, rr, healthy, overhead)
                     for rr in self.blocks for kk in range(1, healthy + 1)}
                 for p in kinds}
        best_of = {p: min(t.values()) for p, t in times.items()}

        def regret(candidate):
            return max(times[p][candidate] / best_of[p] for p in kinds)

        candidates = [(kk, rr) for rr in self.blocks for kk in range(1, healthy + 1)
                      if (abs(kk - k) <= self.max_step or rr != r)
                      and (kk, rr) not in self.rejected]
        best = best_of_all = min(candidates, key=lambda c: (regret(c), c[1], -c[0]))
        now = (k, r) if (k, r) in times[kinds[0]] else None
        # a choice made before the straggling model could be read (at r = 1) guarded
        # against both models; once the model is read, the margin does not defend it
        margin = 0.0 if per and self._chosen_blind(k, r) else self.margin
        if best != (k, r) and now is not None:
            if regret(best) > regret(now) * (1 - margin):
                best = (k, r)  # not worth a re-encode on this evidence
                record["why"] = "gain below the margin"
            elif best in free:
                record["why"] = "regrouped: no re-encode"
            elif not self.pays(record, max(times[p][best] / times[p][now] for p in kinds),
                               seen, calls):
                # the best regrouping, when it clears the margin, costs nothing to make
                regroups = [c for c in candidates if c in free]
                alt = min(regroups, key=lambda c: (regret(c), c[1], -c[0]), default=None)
                if alt is not None and regret(alt) <= regret(now) * (1 - margin):
                    best = alt
                    record["why"] = (f"regrouped: no re-encode ({best_of_all} would not "
                                     f"pay for its re-encode)")
                else:
                    best = (k, r)
                    record["why"] = "would not pay for its re-encode"
        record["chosen"] = best
        return best

    def _chosen_blind(self, k: int, r: int) -> bool:
        """Whether ``(k, r)`` came from a re-choice that could not read the model."""
        made = [h for h in self.history[:-1] if "chosen" in h]
        return bool(made) and made[-1]["chosen"] == (k, r) and made[-1].get("per") == "either"

    def overhead(self, seen: dict) -> tuple[float, str]:
        """``(seconds, source)``: what one more product task costs besides its compute.
        Measured (``"measured"``) as the median of the gaps the plugin saw
        (``seen["calls_gaps"]``: between two products of one call on one worker, the
        seconds between their results less the second's compute) once there are
        ``gap_samples`` of them, never below zero; until then the ``task_overhead``
        setting (``"setting"``). Calls with one product task per worker show no gaps:
        the setting stands until a regrouping runs several."""
        gaps = [g for call in seen.get("calls_gaps") or () for g in call]
        if len(gaps) < self.gap_samples:
            return self.task_overhead, "setting"
        return max(float(np.median(gaps)), 0.0), "measured"

    def _time(self, per: str, mu: float, job: float, k: int, r: int, workers: int,
              overhead: float) -> float:
        """Expected call time of ``(k, r)`` on the ``workers`` that are not slow for good
        (a decode never waits for the others), each product task paying ``overhead``."""
        model = ShiftedExponential(mu=mu, scale=job, per=per)
        margin = self.margin_products if r > 1 else 0
        if not self.leftovers:
            return blocks_time(model, workers, k, r, margin, self.trials,
                               overhead=overhead)[0]
        # chains of LEFTOVER_CALLS calls: as many simulated calls as without leftovers,
        # at the same cost (a re-choice runs inside a user's call)
        return blocks_time(model, workers, k, r, margin,
                           max(50, self.trials // LEFTOVER_CALLS), overhead=overhead,
                           leftovers=True, calls=LEFTOVER_CALLS)[0]


def code_of(record: dict):
    """The code in use when the history ``record`` was made: ``k``, or ``(k, r)`` for a
    policy that chooses the blocks per worker too (its records carry ``r``)."""
    return (record["k"], record["r"]) if "r" in record else record["k"]


def worse(before: list, after: list, tolerance: float) -> bool:
    """The regret guard's test: the median seconds per call ``after`` a change exceed
    those ``before`` it by more than ``tolerance`` (a fraction)."""
    before = [t for t in before if t > 0]
    after = [t for t in after if t > 0]
    if not before or not after:
        return False
    return float(np.median(after)) > float(np.median(before)) * (1 + tolerance)


def persistent_stragglers(finished: list | None, released: list | None, share: float = 0.8
                          ) -> set:
    """Workers that finished no product in at least ``share`` of the calls (``finished``
    and ``released``: per call, the workers of its finished and released products): a
    slow worker's unfinished blocks are released in every call, which at several blocks
    per worker any worker's last ones also are, so what marks it is finishing none."""
    if not finished:
        return set()
    everyone = {w for call in finished for w in call} | {
        w for call in (released or ()) for w in call}
    absent = {w: sum(w not in set(call) for call in finished) for w in everyone}
    slow = {w for w, c in absent.items() if c >= share * len(finished)}
    return slow if len(slow) < len(everyone) else set()


def per_call_or_task(workers: list | None, calls: list, ratio: float = 0.5) -> str | None:
    """``"call"`` when a worker's block products within one call vary much less (variance
    below ``ratio`` of) than the call's products overall, ``"task"`` when not, None when
    no worker finished two products of a call (nothing to compare)."""
    if not workers:
        return None
    within, total = [], []
    for ws, ts in zip(workers, calls):
        if len(ts) < 3:
            continue
        ts = np.asarray(ts, dtype=float)
        total.append(ts.var())
        groups = {}
        for w, t in zip(ws, ts):
            groups.setdefault(w, []).append(t)
        within += [np.var(g) for g in groups.values() if len(g) > 1]
    if not within or not total or np.mean(total) <= 0:
        return None
    return "call" if np.mean(within) < ratio * np.mean(total) else "task"
