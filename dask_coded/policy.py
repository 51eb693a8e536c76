"""Choosing ``k`` from observed straggling (``encode(..., k="auto")``).

:class:`AutoK` reads what the scheduler plugin observed (product durations, and the censor
times of released stragglers), fits the shifted-exponential model to the most recent calls
and picks ``k* = optimal_k(n, mu)`` (Lee et al. 2018, Theorem 2's optimisation, solved
exactly by :func:`dask_coded.theory.optimal_k`). It guards the fit against the ways it
goes wrong: old calls age out (``window``); the fit is per call
(:func:`dask_coded.theory.fit_calls`), so a warm-up call's fast products, whose minimum
would drive ``mu`` to zero, are left out as an outlier call; it waits for ``min_calls``
calls, not products (at a low ``k`` few products finish per call); ``k`` changes only when
the fitted model says the new ``k`` is faster by ``margin``, and by at most ``max_step``
per re-choice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import config
from .theory import expected_time, fit_calls, optimal_k


@dataclass
class AutoK:
    """The ``k="auto"`` policy for an ``n``-block code (settings from ``coded.auto-k``).

    ``history`` records each decision: calls so far, observations used, fitted ``mu``,
    the ``k`` chosen.
    """

    n: int
    every: int = field(default_factory=lambda: int(config.get("auto-k.every")))
    min_calls: int = field(default_factory=lambda: int(config.get("auto-k.min-calls")))
    window: int = field(default_factory=lambda: int(config.get("auto-k.window")))
    margin: float = field(default_factory=lambda: float(config.get("auto-k.margin")))
    max_step: int = field(default_factory=lambda: int(config.get("auto-k.max-step")))
    history: list = field(default_factory=list)

    @classmethod
    def initial_k(cls, n: int) -> int:
        """``optimal_k(n, coded.auto-k.initial-mu)``: the k before anything is observed."""
        return optimal_k(int(n), float(config.get("auto-k.initial-mu")))

    def due(self, calls: int) -> bool:
        """Whether to re-choose ``k`` at this call count."""
        return calls % self.every == 0

    def choose(self, k: int, seen: dict, calls: int) -> int:
        """The ``k`` to use from now on, given the current ``k`` and what was ``seen``
        (``{"calls": [[seconds, ...], ...], "calls_censored": [[...], ...]}``, per call:
        the plugin's report)."""
        observed = [c for c in seen["calls"] if len(c)]
        record = {"calls": calls, "k": k, "observed": len(observed)}
        self.history.append(record)
        if len(observed) < self.min_calls:
            return k
        _, mu = fit_calls(seen["calls"], seen["calls_censored"], self.n)
        best = optimal_k(self.n, mu) if np.isfinite(mu) else self.n
        best = min(max(best, k - self.max_step), k + self.max_step)
        record.update(mu=mu, best=best)
        if best != k and np.isfinite(mu):
            now, then = expected_time("mds", self.n, k, mu), expected_time("mds", self.n, best, mu)
            if then > now * (1 - self.margin):
                best = k  # not worth a re-encode on this evidence
        record["chosen"] = best
        return best
