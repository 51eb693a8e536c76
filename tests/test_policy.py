"""k="auto": the policy's choices from observed calls (seeded simulations, no cluster)."""

import numpy as np
import pytest

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


def simulate_blocks(per, calls, k, r, seed, job=2.0, mu=1.0, overhead=0.0, gaps=True):
    """The plugin's report for ``calls`` calls of an (N r, k r) code: every block
    product's compute seconds and worker (released ones left out are not needed here)
    and, with ``gaps``, the ``overhead`` between a worker's consecutive products."""
    rng = np.random.default_rng(seed)
    done, workers = [], []
    for _ in range(calls):
        slow = rng.exponential(size=N)
        ts, ws = [], []
        for j in range(N):
            for _ in range(r):
                x = slow[j] if per == "call" else rng.exponential()
                ts.append(job / (k * r) * (1 + x / mu))
                ws.append(f"w{j}")
        done.append(ts)
        workers.append(ws)
    gap = [[overhead] * (N * (r - 1)) if gaps else [] for _ in done]
    return {"calls": done, "calls_censored": [[] for _ in done], "calls_workers": workers,
            "calls_gaps": gap}


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
    seen = simulate_blocks("call", 8, 9, 2, seed=5, overhead=0.5, gaps=False)
    assert costly.choose_blocks(9, 2, seen, 10)[1] == 1


def test_the_overhead_of_a_task_is_measured_once_the_calls_show_it():
    """The setting stands until ``gap_samples`` gaps were seen; then their median decides,
    whatever the setting says: the same straggling with costly gaps keeps one task per
    worker, with cheap ones several."""
    policy = AutoK(N, choose_r=True, task_overhead=0.01, gap_samples=8)
    assert policy.overhead({"calls_gaps": [[0.3] * 7]}) == (0.01, "setting")
    assert policy.overhead({"calls_gaps": [[0.3] * 5, [0.2, -0.5, 0.4]]}) == (0.3, "measured")
    assert policy.overhead({"calls_gaps": [[-0.1] * 8]}) == (0.0, "measured")
    chosen = {}
    for gap in (0.5, 0.001):
        trusting = AutoK(N, choose_r=True, min_calls=5, margin=0.0, task_overhead=0.001 if
                         gap == 0.5 else 0.5)
        seen = simulate_blocks("call", 8, 9, 2, seed=5, overhead=gap)
        chosen[gap] = trusting.choose_blocks(9, 2, seen, 10)[1]
        assert trusting.history[-1]["overhead"] == gap
        assert trusting.history[-1]["overhead_from"] == "measured"
    assert chosen[0.5] == 1 and chosen[0.001] > 1


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


def test_the_first_re_choice_comes_as_soon_as_min_calls_were_seen():
    policy = AutoK(N, min_calls=5, every=10)
    assert [c for c in range(1, 40) if policy.due(c)] == [6, 16, 26, 36]


def test_a_change_is_made_only_when_its_gain_pays_for_the_re_encode():
    """The model wants a lower k (mu = 0.2 from k = 9); measured 2 s per call now. With an
    encode that took 6 s and 10 calls counted ahead (confidence 0.5: as many as so far)
    the predicted gain (10 calls of 2 s, a sixth faster: about 3 s) does not cover twice
    the encode: k stays, and the record says why. With 0.5 s of encode, or 1000 calls
    ahead, it changes."""
    seen = simulate(0.2, 10, 9, seed=3, scale=2.0)
    seen["calls_span"] = [2.0] * 10

    def policy(**kw):
        return AutoK(N, min_calls=5, margin=0.0, max_step=N, change_cost=2.0, **kw)

    dear = policy(confidence=0.5)
    assert dear.choose(9, {**seen, "encode_seconds": 6.0}, calls=10) == 9
    record = dear.history[-1]
    assert record["why"] == "would not pay for its re-encode"
    assert record["gain"] < record["cost"] == 12.0
    assert 0 < record["predicted"] < record["now"] == 2.0
    assert policy(confidence=0.5).choose(9, {**seen, "encode_seconds": 0.5}, calls=10) < 9
    ahead = policy(horizon=1000)
    assert ahead.choose(9, {**seen, "encode_seconds": 6.0}, calls=10) < 9


def test_an_unknown_horizon_counts_the_calls_a_change_pays_back_in_with_confidence():
    """After 30 calls of a run of unknown length, at least x more follow with probability
    30 / (30 + x): 10 calls at 0.75, 30 at 0.5. The gain of the change above (about a
    third of a second per call) pays for 1 s of change in 30 calls but not in 1.1 (0.9)."""
    assert AutoK(N, confidence=0.75).remaining(30) == pytest.approx(10)
    assert AutoK(N, confidence=0.5).remaining(30) == pytest.approx(30)
    assert AutoK(N, confidence=0.75, horizon=7).remaining(30) == 7
    with pytest.raises(ValueError, match="confidence must lie strictly between 0 and 1"):
        AutoK(N, confidence=1.0).remaining(30)
    seen = simulate(0.2, 10, 9, seed=3, scale=2.0)
    seen["calls_span"] = [2.0] * 10
    sure = AutoK(N, min_calls=5, margin=0.0, max_step=N, change_cost=2.0, confidence=0.9)
    assert sure.choose(9, {**seen, "encode_seconds": 0.5}, calls=10) == 9
    assert sure.history[-1]["why"] == "would not pay for its re-encode"
    hopeful = AutoK(N, min_calls=5, margin=0.0, max_step=N, change_cost=2.0, confidence=0.5)
    assert hopeful.choose(9, {**seen, "encode_seconds": 0.5}, calls=10) < 9


def test_a_code_the_regret_guard_turned_back_is_never_chosen_again():
    seen = simulate(0.2, 10, 9, seed=3)
    policy = AutoK(N, min_calls=5, margin=0.0, max_step=N)
    first = policy.choose(9, seen, calls=10)
    assert first < 9
    policy.rejected.add((first, 1))
    assert policy.choose(9, seen, calls=20) != first
    blocks = AutoK(N, min_calls=5, margin=0.0, max_step=N, choose_r=True, task_overhead=0.0)
    chosen = blocks.choose_blocks(9, 1, seen, calls=10)
    blocks.rejected.add(chosen)
    assert blocks.choose_blocks(9, 1, seen, calls=20) != chosen


def test_worse_compares_medians_with_a_tolerance():
    from dask_coded.policy import worse

    assert worse([1.0, 1.0, 5.0], [1.1, 1.1, 1.1], tolerance=0.05)
    assert not worse([1.0, 1.0, 5.0], [1.04, 1.04, 9.0], tolerance=0.05)
    assert not worse([], [3.0], tolerance=0.05)  # nothing to compare: no regret


def test_no_fit_is_made_while_no_change_could_pay():
    """2 s per call, 10 calls so far (10 counted ahead at confidence 0.5), an encode of
    30 s: even a code taking no time would save 20 s, less than the 60 s a change costs;
    the policy keeps the code without fitting (the fit and the simulation cost the client
    CPU the calls need)."""
    seen = simulate(0.2, 10, 9, seed=3, scale=2.0)
    seen["calls_span"] = [2.0] * 10
    for policy, choose in ((AutoK(N, min_calls=5, confidence=0.5),
                            lambda p, s: p.choose(9, s, calls=10)),
                           (AutoK(N, min_calls=5, choose_r=True, confidence=0.5),
                            lambda p, s: p.choose_blocks(9, 1, s, calls=10))):
        kept = choose(policy, {**seen, "encode_seconds": 30.0})
        record = policy.history[-1]
        assert kept == record["chosen"] in (9, (9, 1))
        assert record["why"] == "no change could pay for its re-encode yet"
        assert "mu" not in record  # nothing was fitted
        assert record["gain"] == 20.0 and record["cost"] == 60.0


def test_a_regrouping_is_made_where_a_re_encode_would_not_pay():
    """Per-call straggling seen at one task per worker; 2 s per call, 10 calls so far, an
    encode of 30 s: no re-encode can pay, so without a free change the code stays. An
    encoding with 4 blocks per worker can be run as 2 or 4 tasks per worker with no
    re-encode: the policy takes one of those, and says why."""
    seen = simulate_blocks("call", 10, 9, 1, seed=5)
    seen.update(calls_span=[2.0] * 10, encode_seconds=30.0)
    settings = dict(choose_r=True, min_calls=5, margin=0.0, task_overhead=0.001)
    assert AutoK(N, **settings).choose_blocks(9, 1, seen, 10) == (9, 1)
    policy = AutoK(N, **settings)
    free = frozenset({(9, 1), (9, 2), (9, 4)})
    chosen = policy.choose_blocks(9, 1, seen, 10, free)
    assert chosen in free and chosen[1] > 1
    assert policy.history[-1]["chosen"] == chosen
    assert policy.history[-1]["why"].startswith("regrouped: no re-encode")


def test_the_policy_says_what_it_chooses_when_and_what_it_has_done():
    """The repr reads from the settings and the history, not a fixed text."""
    import dask

    with dask.config.set({"coded.auto-k.every": 7, "coded.auto-k.min-calls": 3,
                          "coded.auto-k.confidence": 0.5}):
        policy = AutoK(6, choose_r=True)
    text = repr(policy)
    assert text.startswith("AutoK(n=6, chooses k and r in (")
    assert "first at call 4, then every 7" in text and "confidence 0.5" in text
    assert "0 re-choices; rejected: none" in text
    assert [c for c in range(1, 20) if policy.due(c)][:2] == [4, 11]  # as the repr says
    policy.history.append({"calls": 4, "chosen": (4, 1)})
    policy.rejected.add((3, 2))
    policy.horizon = 50
    text = repr(policy)
    assert "50 calls to come" in text and "1 re-choice; rejected: (3, 2)" in text
    assert repr(AutoK(6)).startswith("AutoK(n=6, chooses k;")
