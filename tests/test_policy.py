"""k="auto": the policy's choices from observed calls (seeded simulations, no cluster)."""

import numpy as np

from dask_coded import theory
from dask_coded.policy import AutoK, per_call_or_task, persistent_stragglers

N = 12


def simulate(mu, calls, k, seed, scale=1.0):
    """What the plugin reports for ``calls`` first-k-of-n calls under the paper's model:
    per call the k fastest of n product durations, and the k-th as the censor time of
    the n - k released stragglers."""
    rng = np.random.default_rng(seed)
    done, cut = [], []
    for _ in range(calls):
        t = np.sort(scale / k * (1 + rng.exponential(size=N) / mu))
        done.append(list(t[:k]))
        cut.append([t[k - 1]] * (N - k))
    return {"calls": done, "calls_censored": cut}


def test_the_per_call_fit_recovers_mu_under_censoring():
    for mu in (0.2, 1.0, 5.0):
        seen = simulate(mu, 40, 9, seed=1)
        _, fitted = theory.fit_calls(seen["calls"], seen["calls_censored"], N)
        assert 0.7 * mu < fitted < 1.4 * mu


def test_a_fast_warm_up_call_does_not_collapse_k():
    """A warm-up call before any delay (its products 100x faster): with the minimum as the
    shift the fit gives mu ~ 0 and k = 1; the per-call fit leaves that call out."""
    seen = simulate(0.2, 9, 9, seed=2)
    seen["calls"].insert(0, [0.001] * N)
    seen["calls_censored"].insert(0, [])
    flat = [t for c in seen["calls"] for t in c]
    naive = theory.fit_shifted_exponential(flat, [t for c in seen["calls_censored"] for t in c])
    assert theory.optimal_k(N, naive[1]) <= 2  # what fitting all products at once does
    policy = AutoK(N, min_calls=5, margin=0.0, max_step=N)
    k = policy.choose(9, seen, calls=10)
    assert abs(k - theory.optimal_k(N, 0.2)) <= 1
    assert 0.1 < policy.history[-1]["mu"] < 0.4


def test_k_moves_back_up_from_a_low_k():
    """At k = 1 one product finishes per call: the policy still re-fits (it counts calls,
    not products) and moves k up, at most max_step at a time."""
    policy = AutoK(N, min_calls=5, margin=0.05, max_step=3)
    k = policy.choose(1, simulate(2.0, 20, 1, seed=3), calls=20)
    assert k == 4
    assert policy.choose(k, simulate(2.0, 20, k, seed=4), calls=30) == 7


def test_a_change_of_regime_is_followed():
    policy = AutoK(N, min_calls=5, margin=0.05, max_step=N)
    calm_k = policy.choose(9, simulate(5.0, 20, 9, seed=5), calls=10)
    assert abs(calm_k - theory.optimal_k(N, 5.0)) <= 1
    stormy_k = policy.choose(calm_k, simulate(0.2, 20, calm_k, seed=6), calls=20)
    assert abs(stormy_k - theory.optimal_k(N, 0.2)) <= 1 and stormy_k < calm_k


def test_k_moves_only_on_evidence():
    policy = AutoK(N, min_calls=5, margin=0.05, max_step=N)
    assert policy.choose(9, simulate(0.2, 3, 9, seed=7), calls=10) == 9  # too few calls
    assert policy.history[-1]["observed"] == 3 and "mu" not in policy.history[-1]
    mu = 1.5  # its optimum is near 9: a re-encode must win more than the margin
    near = simulate(mu, 40, 9, seed=8)
    assert policy.choose(9, near, calls=20) == 9
    chosen = policy.history[-1]
    gain = 1 - (theory.expected_time("mds", N, chosen["best"], chosen["mu"])
                / theory.expected_time("mds", N, 9, chosen["mu"]))
    assert gain < 0.05


# ---- blocks_per_worker="auto": (k, r) together -------------------------------------------


def simulate_blocks(per, calls, k, r, seed, job=2.0, mu=1.0, overhead=0.0):
    """The plugin's report for ``calls`` calls of an (N r, k r) code: every block
    product's duration and worker (released ones left out are not needed here)."""
    rng = np.random.default_rng(seed)
    done, workers = [], []
    for _ in range(calls):
        slow = rng.exponential(size=N)
        ts, ws = [], []
        for j in range(N):
            for _ in range(r):
                x = slow[j] if per == "call" else rng.exponential()
                ts.append(overhead + job / (k * r) * (1 + x / mu))
                ws.append(f"w{j}")
        done.append(ts)
        workers.append(ws)
    return {"calls": done, "calls_censored": [[] for _ in done], "calls_workers": workers}


def test_the_model_is_read_from_a_workers_blocks_within_a_call():
    for per in ("call", "task"):
        seen = simulate_blocks(per, 8, 9, 2, seed=4)
        assert per_call_or_task(seen["calls_workers"], seen["calls"]) == per
    one = simulate_blocks("call", 8, 9, 1, seed=4)
    assert per_call_or_task(one["calls_workers"], one["calls"]) is None  # r = 1: unknown


def test_blocks_follow_the_scheduling_cost():
    """Cheap block products: several per worker pay (the slow workers' partial work
    counts); costly ones (each as long as the whole job's share): one block per worker."""
    seen = simulate_blocks("call", 8, 9, 2, seed=5)
    cheap = AutoK(N, choose_r=True, min_calls=5, margin=0.0, task_overhead=0.001)
    k, r = cheap.choose_blocks(9, 2, seen, 10)
    assert r > 1 and cheap.history[-1]["per"] == "call"
    assert 1.6 < cheap.history[-1]["job"] < 2.4 and 0.6 < cheap.history[-1]["mu"] < 1.6
    costly = AutoK(N, choose_r=True, min_calls=5, margin=0.0, task_overhead=0.5)
    seen = simulate_blocks("call", 8, 9, 2, seed=5, overhead=0.5)
    assert costly.choose_blocks(9, 2, seen, 10)[1] == 1


def test_blocks_wait_for_evidence_and_a_margin():
    policy = AutoK(N, choose_r=True, min_calls=5)
    assert policy.choose_blocks(9, 1, simulate_blocks("task", 3, 9, 1, seed=6), 3) == (9, 1)
    # the current choice is kept when the best is not predicted faster by the margin
    sure = AutoK(N, choose_r=True, min_calls=5, margin=0.0, task_overhead=0.001)
    seen = simulate_blocks("task", 10, 9, 1, seed=6)
    best = sure.choose_blocks(9, 1, seen, 10)
    stubborn = AutoK(N, choose_r=True, min_calls=5, margin=0.99, task_overhead=0.001)
    assert best != (9, 1) and stubborn.choose_blocks(9, 1, seen, 10) == (9, 1)


def test_a_worker_released_in_every_call_is_left_out_of_k():
    """A persistent slow worker is always released, so the fit never sees its slowness
    (the others look alike, mu ~ inf): k must still leave it out, not wait for it."""
    calls = [[1.0 + 0.001 * j for j in range(N - 1)] for _ in range(8)]
    seen = {"calls": calls, "calls_censored": [[1.02] for _ in calls],
            "calls_workers": [[f"w{j}" for j in range(1, N)] for _ in calls],
            "calls_released": [["w0"] for _ in calls]}
    assert persistent_stragglers(seen["calls_workers"], seen["calls_released"]) == {"w0"}
    # at several blocks per worker every worker has blocks released, and none is slow
    many = simulate_blocks("task", 8, 9, 4, seed=7)
    released = [[w for w in ws[::2]] for ws in many["calls_workers"]]
    assert persistent_stragglers(many["calls_workers"], released) == set()
    blocks = AutoK(N, choose_r=True, min_calls=5, margin=0.0, max_step=N)
    k, r = blocks.choose_blocks(9, 1, seen, 10)
    assert k <= N - 1 and blocks.history[-1]["healthy"] == N - 1
    assert AutoK(N, min_calls=5, margin=0.0, max_step=N).choose(9, seen, 10) == N - 1


def test_a_choice_made_before_the_model_could_be_read_is_not_held_by_the_margin():
    """At r = 1 the policy guards against both models; the next re-choice reads the
    model from the blocks of one worker and moves to its best even within the margin."""
    seen = simulate_blocks("task", 10, 6, 8, seed=8, mu=0.2)
    settings = dict(choose_r=True, min_calls=5, margin=0.99, task_overhead=0.001)
    blind = AutoK(N, **settings)
    blind.history.append({"calls": 10, "k": 9, "r": 1, "per": "either", "chosen": (6, 8)})
    moved = blind.choose_blocks(6, 8, seen, 20)
    assert blind.history[-1]["per"] == "task" and moved != (6, 8)
    read = AutoK(N, **settings)  # the same (6, 8) chosen with the model read: kept
    read.history.append({"calls": 10, "k": 6, "r": 8, "per": "task", "chosen": (6, 8)})
    assert read.choose_blocks(6, 8, seen, 20) == (6, 8)
