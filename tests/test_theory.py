import numpy as np
import pytest

import dask_coded as dc
from dask_coded import theory


def test_harmonic_numbers():
    assert theory.harmonic(0) == 0
    assert theory.harmonic(4) == pytest.approx(1 + 1 / 2 + 1 / 3 + 1 / 4)


@pytest.mark.parametrize("n,mu,uncoded,k_star,mds", [
    (12, 1.0, 0.342, 9, 0.252), (24, 1.0, 0.199, 17, 0.128), (12, 0.2, 1.376, 5, 0.710),
])
def test_closed_forms_reproduce_the_design_examples(n, mu, uncoded, k_star, mds):
    assert theory.expected_time("uncoded", n, mu=mu) == pytest.approx(uncoded, abs=5e-4)
    assert theory.optimal_k(n, mu) == k_star
    assert theory.expected_time("mds", n, k_star, mu) == pytest.approx(mds, abs=5e-4)


def test_replication_closed_form():
    assert theory.expected_time("replication", 12, r=2, mu=1.0) == pytest.approx(0.371, abs=5e-4)
    # r = 1 is uncoded, and MDS with k = n is uncoded
    assert theory.expected_time("replication", 10, r=1) == theory.expected_time("uncoded", 10)
    assert theory.expected_time("mds", 10, 10) == pytest.approx(theory.expected_time("uncoded", 10))


@pytest.mark.parametrize("scheme,k,r", [("uncoded", None, None), ("mds", 7, None),
                                        ("mds", 3, None), ("replication", None, 3)])
@pytest.mark.parametrize("mu", [0.5, 2.0])
def test_monte_carlo_agrees_with_the_closed_forms(scheme, k, r, mu):
    model = dc.stragglers.ShiftedExponential(mu=mu, scale=1.0)
    mean, se = theory.monte_carlo(scheme, model, 12, k=k, r=r, trials=20000, seed=1)
    assert abs(mean - theory.expected_time(scheme, 12, k=k, mu=mu, r=r)) < 4 * se


def test_monte_carlo_handles_models_without_closed_form():
    model = dc.stragglers.SlowWorkers(scale=1.0, factor={"0": 5.0})
    mean, _ = theory.monte_carlo("uncoded", model, 4, trials=10)
    assert mean == pytest.approx(5 / 4)  # the slow worker's piece
    mean, _ = theory.monte_carlo("mds", model, 4, k=3, trials=10)
    assert mean == pytest.approx(1 / 3)  # any 3 of the 3 fast workers


@pytest.mark.parametrize("mu", [0.5, 1.0, 3.0])
def test_optimal_k_approaches_the_lambert_w_asymptote(mu):
    n = 3000
    assert theory.optimal_k(n, mu) / n == pytest.approx(theory.optimal_k_fraction(mu), abs=5e-3)


def test_speedup_grows_like_log_n():
    s = [theory.speedup(n, 1.0) for n in (10, 100, 1000, 10000)]
    assert s == sorted(s)
    gains = np.diff(s)  # roughly constant per decade: Theta(log n)
    assert gains.max() / gains.min() < 2


def test_fit_recovers_mu_with_censored_stragglers():
    rng = np.random.default_rng(0)
    observed, censored = [], []
    for _ in range(2000):  # first 8 of 12 finish; 4 are cut off at the 8th
        t = np.sort(0.1 * (1 + rng.exponential(size=12) / 0.5))
        observed += list(t[:8])
        censored += [t[7]] * 4
    scale, mu = theory.fit_shifted_exponential(observed, censored)
    assert scale == pytest.approx(0.1, rel=0.01) and mu == pytest.approx(0.5, rel=0.05)
    _, naive = theory.fit_shifted_exponential(observed)
    assert naive > 0.8  # ignoring the stragglers would call them far less straggly


@pytest.mark.parametrize("call,match", [
    (lambda: theory.expected_time("fountain", 4), "scheme must be"),
    (lambda: theory.expected_time("mds", 4, 5), "1 <= k <= n"),
    (lambda: theory.expected_time("replication", 5, r=2), "dividing n"),
    (lambda: theory.expected_time("uncoded", 4, mu=0), "mu must be > 0"),
    (lambda: theory.fit_shifted_exponential([1.0]), "at least 2"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_blocks_time_with_one_block_is_the_mds_closed_form():
    model = dc.stragglers.ShiftedExponential(mu=1.0, scale=1.0)
    mean, se = theory.blocks_time(model, 12, 9, 1, trials=20000, seed=0)
    assert abs(mean - theory.expected_time("mds", 12, 9, 1.0)) < 4 * se
    mean, se = theory.chunks_time(model, 12, 12, trials=20000, seed=0)
    assert abs(mean - theory.expected_time("uncoded", 12, mu=1.0)) < 4 * se


def test_more_blocks_per_worker_approach_the_oracle_under_per_worker_slowness():
    model = dc.stragglers.ShiftedExponential(mu=1.0, scale=1.0, per="call")
    one = theory.blocks_time(model, 12, 9, 1, trials=4000)[0]
    eight = min(theory.blocks_time(model, 12, k, 8, margin=2, trials=4000)[0]
                for k in range(4, 12))
    oracle = theory.oracle_time(model, 12, trials=4000)[0]
    assert oracle < eight < one
    assert eight < 1.2 * oracle  # within 20% of the bound no scheme beats
    k, r, t = theory.best_blocks(model, 12, rs=(1, 8), trials=2000)
    assert r == 8 and t == pytest.approx(min(theory.blocks_time(model, 12, kk, 8, 2, 2000)[0]
                                             for kk in range(1, 13)))


def test_a_slow_worker_is_deterministic_in_the_durations():
    model = dc.stragglers.SlowWorkers(scale=1.0, factor={"3": 4.0})
    d = theory.task_durations(model, 2, 4, 3, 0.25)
    assert d.shape == (2, 4, 3) and (d[:, 3] == 1.0).all() and (d[:, :3] == 0.25).all()


def test_leftovers_of_released_products_favour_a_higher_k_and_more_blocks():
    """Released products keep running in Dask: a low k leaves long leftovers that delay
    the next call (n=12, mu=0.2: k=5, the optimum of independent calls, falls behind k=9),
    while with 8 blocks per worker only the block in progress carries over."""
    model = dc.stragglers.ShiftedExponential(mu=0.2, scale=1.0)
    free = {k: theory.blocks_time(model, 12, k, 1, trials=1500, seed=2)[0] for k in (5, 9)}
    kept = {k: theory.blocks_time(model, 12, k, 1, trials=1500, seed=2, leftovers=True)[0]
            for k in (5, 9)}
    assert free[5] < free[9] and kept[9] < kept[5]
    assert all(kept[k] > free[k] for k in (5, 9))
    blocks = [theory.blocks_time(model, 12, 6, 8, 2, 1500, 2, leftovers=lo)[0]
              for lo in (False, True)]
    assert blocks[1] / blocks[0] < kept[5] / free[5]  # leftovers cost less with blocks


def test_lagrange_time_matches_simulation_and_is_mds_at_degree_one():
    model = dc.stragglers.ShiftedExponential(mu=0.5, scale=1.0)
    closed = theory.expected_time("lagrange", 12, k=4, mu=0.5, degree=2)
    mean, err = theory.monte_carlo("lagrange", model, 12, k=4, degree=2, trials=40000, seed=3)
    assert abs(mean - closed) < 5 * err
    # degree 1: threshold k, each worker 1/k: the paper's (n, k) MDS code
    assert theory.expected_time("lagrange", 12, k=9, mu=1.0, degree=1) == pytest.approx(
        theory.expected_time("mds", 12, k=9, mu=1.0))
    with pytest.raises(ValueError, match=r"\(k - 1\) degree \+ 1 <= n=12"):
        theory.expected_time("lagrange", 12, k=7, degree=2)


def test_a_verified_decode_waits_for_a_later_order_statistic():
    """E[T] of (k + spare)-th of n finishers: the spare products verify= waits for cost
    what a Monte Carlo of the same model measures."""
    from dask_coded import theory

    n, k, mu = 6, 4, 1.0
    plain = theory.expected_time("mds", n, k, mu)
    detect = theory.expected_time("mds", n, k, mu, spare=1)
    correct = theory.expected_time("mds", n, k, mu, spare=2)
    assert plain < detect < correct
    rng = np.random.default_rng(0)
    T = np.sort((1 + rng.exponential(size=(200_000, n)) / mu) / k, axis=1)
    for spare, value in [(0, plain), (1, detect), (2, correct)]:
        assert abs(T[:, k + spare - 1].mean() - value) < 0.01 * value
    with pytest.raises(ValueError, match="k \\+ spare <= n=6"):
        theory.expected_time("mds", n, k, mu, spare=3)


@pytest.mark.parametrize("n, k, groups", [(12, 9, 2), (24, 18, 3), (10, 7, 3)])
@pytest.mark.parametrize("mu", [0.5, 2.0])
def test_grouped_closed_form_agrees_with_simulation(n, k, groups, mu):
    model = dc.stragglers.ShiftedExponential(mu=mu, scale=1.0)
    mean, se = theory.monte_carlo("grouped", model, n, k=k, groups=groups, trials=20000,
                                  seed=1)
    assert abs(mean - theory.expected_time("grouped", n, k, mu, groups=groups)) < 4 * se


def test_one_group_is_the_mds_code_and_more_groups_wait_longer():
    assert theory.expected_time("grouped", 48, 36, groups=1) == pytest.approx(
        theory.expected_time("mds", 48, 36), rel=1e-9)
    times = [theory.expected_time("grouped", 96, 72, groups=g) for g in (1, 2, 3, 6, 24)]
    assert times == sorted(times)
    assert times[-1] < theory.expected_time("uncoded", 96)
    with pytest.raises(ValueError, match="grouped needs"):
        theory.expected_time("grouped", 12, 9)
