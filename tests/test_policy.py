"""k="auto": the policy's choices from observed durations (seeded draws, no cluster)."""

import numpy as np

from dask_coded import theory
from dask_coded.policy import AutoK


def durations(mu, count, seed, k=9, scale=1.0):
    """Product durations of work 1/k under the paper's model, and nothing censored."""
    x = np.random.default_rng(seed).exponential(size=count)
    return list(scale / k * (1 + x / mu))


def test_a_fast_warm_up_outlier_does_not_collapse_k():
    """A few products of a warm-up call, before any delay, were 100x faster: with the
    minimum as the shift the fit gives mu ~ 0 and k = 1; the policy keeps k near the
    truth (a whole warm-up call ages out of the window instead)."""
    seen = {"observed": [0.001] * 3 + durations(0.2, 96, seed=1), "censored": []}
    naive = theory.fit_shifted_exponential(seen["observed"])[1]
    assert theory.optimal_k(12, naive) <= 2  # what the minimum-based fit would choose
    policy = AutoK(12, min_observations=24, margin=0.0)
    k = policy.choose(9, seen, calls=10)
    assert abs(k - theory.optimal_k(12, 0.2)) <= 1
    assert 0.1 < policy.history[-1]["mu"] < 0.4


def test_a_change_of_regime_is_followed_once_old_calls_age_out():
    """The observations the policy reads are the last `window` calls (the plugin's
    report); a regime change moves k once they are the new regime's."""
    policy = AutoK(12, min_observations=24, margin=0.05)
    calm = {"observed": durations(5.0, 120, seed=2), "censored": []}
    assert policy.choose(9, calm, calls=10) == theory.optimal_k(12, 5.0)
    stormy = {"observed": durations(0.2, 120, seed=3), "censored": []}
    k = policy.choose(theory.optimal_k(12, 5.0), stormy, calls=20)
    assert k == theory.optimal_k(12, 0.2) < theory.optimal_k(12, 5.0)


def test_k_moves_only_on_evidence():
    policy = AutoK(12, min_observations=24, margin=0.05)
    few = {"observed": durations(0.2, 10, seed=4), "censored": []}
    assert policy.choose(9, few, calls=10) == 9  # too few observations
    assert policy.history[-1]["observed"] == 10 and "mu" not in policy.history[-1]
    # the model's optimum is 10 but k = 9 is within the margin of it: no re-encode
    mu = 2.0
    best = theory.optimal_k(12, mu)
    near = {"observed": durations(mu, 400, seed=5), "censored": []}
    gain = 1 - theory.expected_time("mds", 12, best, mu) / theory.expected_time("mds", 12, 9, mu)
    assert gain < 0.05
    assert policy.choose(9, near, calls=20) == 9


def test_censored_stragglers_lower_the_fitted_mu():
    obs = durations(1.0, 60, seed=6)
    censored = [max(obs)] * 20  # released stragglers ran at least this long
    _, without = theory.fit_shifted_exponential(obs, shift_quantile=0.05)
    _, with_censored = theory.fit_shifted_exponential(obs, censored, shift_quantile=0.05)
    assert with_censored < without
