"""k="auto": k follows the straggling the scheduler observes."""

import threading
import time

import dask
import dask.array as da
import numpy as np
import pytest
from distributed import Client, LocalCluster

import dask_coded as dc
from dask_coded import theory
from dask_coded.policy import AutoK


def test_auto_k_moves_to_the_optimum_for_the_observed_mu():
    A, x = np.random.default_rng(0).standard_normal((240, 5)), np.ones(5)
    # a loop of 100 calls ahead: a re-encode pays for itself
    with dask.config.set({"coded.auto-k.every": 6, "coded.auto-k.min-calls": 5,
                          "coded.auto-k.max-step": 8, "coded.auto-k.background": False,
                          "coded.auto-k.horizon": 100}), \
            LocalCluster(n_workers=8, threads_per_worker=1, processes=False,
                         dashboard_address=None) as cluster, Client(cluster) as client:
        client.register_plugin(dc.stragglers.StragglerPlugin(dc.stragglers.ShiftedExponential(mu=0.2, scale=0.4),
                                                  seed=3, match=("coded-prod",)))
        CA = dc.encode(A, 8, "auto", client=client)
        assert CA.auto and CA.k == theory.optimal_k(8, 1.0) == 6
        for _ in range(7):
            np.testing.assert_allclose((CA @ x).compute(), A @ x)
        first = CA.history[0]
        # the first re-choice comes as soon as min-calls calls were seen: calls 1-5 (the
        # 6th is the one re-choosing k)
        assert first["observed"] == 5 and first["calls"] == 6
        assert 0.1 < first["mu"] < 0.4  # fitted from what the scheduler saw (true: 0.2)
        assert CA.k == first["chosen"] == theory.optimal_k(8, first["mu"]) < 6
        np.testing.assert_allclose((CA @ x).compute(), A @ x)  # re-encoded, still right


def test_auto_blocks_per_worker_moves_to_several_blocks_under_per_call_straggling():
    """A slow worker stays slow for the whole call: at the first re-choice (r = 1, where
    the model cannot be told) the policy takes several blocks per worker, which wins in
    either model when block products are cheap to schedule; products stay correct."""
    A, x = np.random.default_rng(1).standard_normal((480, 5)), np.ones(5)
    with dask.config.set({"coded.auto-k.every": 6, "coded.auto-k.min-calls": 4,
                          "coded.auto-k.task-overhead": 0.002,
                          "coded.auto-k.background": False}), \
            LocalCluster(n_workers=8, threads_per_worker=1, processes=False,
                         dashboard_address=None) as cluster, Client(cluster) as client:
        client.register_plugin(dc.stragglers.StragglerPlugin(
            dc.stragglers.ShiftedExponential(mu=1.0, scale=0.4, per="call"), seed=5,
            match=("coded-prod",), interruptible=True))
        CA = dc.encode(A, 8, "auto", blocks_per_worker="auto", client=client)
        # encoded finely, run as one product task per worker
        assert (CA.k, CA.blocks_per_worker, CA.tasks_per_worker) == (6, 4, 1)
        for _ in range(7):
            np.testing.assert_allclose((CA @ x).compute(), A @ x)
        first = CA.history[0]
        assert first["per"] == "either" and 0.4 < first["mu"] < 2.5
        assert (CA.k, CA.tasks_per_worker) == first["chosen"] and CA.tasks_per_worker > 1
        np.testing.assert_allclose((CA @ x).compute(), A @ x)  # still right


def _gated(CA, k_new):
    """Make CA's policy choose ``k_new`` every 2 calls, once the returned event is set."""
    gate = threading.Event()
    CA.policy.every, CA.policy.min_calls = 2, 1  # due at calls 2, 4, ...

    def choose(k, seen, calls):
        assert gate.wait(30)
        return k_new

    CA.policy.choose = choose
    return gate


def _coded_blocks(client) -> int:
    keys = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.tasks))
    return sum("coded-block-" in str(key) for key in keys)


def test_a_due_call_does_not_wait_for_the_re_choice_and_a_later_call_switches():
    """With ``coded.auto-k.background`` the call that is due starts the re-choice and
    re-encode in a thread and runs on the current code; the first call after the new
    blocks are resident uses them."""
    A, x = np.random.default_rng(2).standard_normal((120, 4)), np.ones(4)
    with LocalCluster(n_workers=4, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        CA = dc.encode(A, 4, "auto", client=client)
        k0 = CA.k
        gate = _gated(CA, k0 - 1)
        np.testing.assert_allclose((CA @ x).compute(), A @ x)
        y = CA @ x  # due: the choice is blocked on the gate, the call is not
        assert CA.k == k0
        np.testing.assert_allclose(y.compute(), A @ x)
        gate.set()
        for _ in range(100):  # each call adopts the new code once its blocks are resident
            y = CA @ x
            if CA.k != k0:
                break
            time.sleep(0.05)
        assert CA.k == k0 - 1
        np.testing.assert_allclose(y.compute(), A @ x)
        CA.release()


def test_releasing_during_a_background_re_encode_leaves_no_blocks():
    A, x = np.random.default_rng(3).standard_normal((120, 4)), np.ones(4)
    with LocalCluster(n_workers=4, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        CA = dc.encode(A, 4, "auto", client=client)
        gate = _gated(CA, CA.k - 1)
        (CA @ x).compute()
        CA @ x  # due: a re-choice waits on the gate
        thread = CA.retuner.running
        CA.release()
        gate.set()
        thread.join(30)
        assert not thread.is_alive()
        for _ in range(100):
            if _coded_blocks(client) == 0:
                break
            time.sleep(0.05)
        assert _coded_blocks(client) == 0


def test_a_synchronous_retune_drops_the_background_re_choice_in_flight():
    """``CA.retune()`` while a background re-choice is still running: it waits for it,
    drops its choice (the synchronous one is newer) and uses its own."""
    A, x = np.random.default_rng(4).standard_normal((120, 4)), np.ones(4)
    with LocalCluster(n_workers=4, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        CA = dc.encode(A, 4, "auto", client=client)
        k0 = CA.k
        gate, background = threading.Event(), []
        CA.policy.every, CA.policy.min_calls = 2, 1  # due at calls 2, 4, ...

        def choose(k, seen, calls):
            if threading.current_thread().name != "dask-coded-retune":
                return k0 - 2  # the synchronous re-choice
            background.append(k)
            if len(background) > 1:
                return k  # later re-choices keep the code
            assert gate.wait(30)  # the first: blocked, then k0 - 1
            return k0 - 1

        CA.policy.choose = choose
        (CA @ x).compute()
        CA @ x  # due: the background re-choice waits on the gate
        thread = CA.retuner.running
        threading.Timer(0.3, gate.set).start()  # the re-choice in flight ends meanwhile
        assert CA.retune() == k0 - 2  # it waited for the re-choice in flight, then chose
        assert not thread.is_alive() and background == [k0]
        for _ in range(3):
            np.testing.assert_allclose((CA @ x).compute(), A @ x)
            assert CA.k == k0 - 2
        CA.release()


def test_auto_k_needs_a_cluster():
    with pytest.raises(dc.CodedError, match="distributed client"):
        dc.encode(np.ones((10, 2)), 4, "auto", client=None)
    with pytest.raises(dc.errors.CodeParameterError, match="integer or 'auto'"):
        dc.encode(np.ones((10, 2)), 4, "best", client=None)
    with pytest.raises(dc.errors.CodeParameterError, match="together with k='auto'"):
        dc.encode(np.ones((10, 2)), 4, 3, blocks_per_worker="auto", client=None)


def test_a_switched_dask_matrix_stays_the_registered_one():
    """After a re-choice switches a dask A to a new code, the matrix the user holds is
    still the one coded_matmul reuses and dask_coded.release finds (the re-encode
    registered its own, short-lived object for A)."""
    from dask_coded import resident

    An = np.random.default_rng(0).standard_normal((60, 5))
    A = da.from_array(An, chunks=(20, 5))
    CA = dc.encode(A, 6, 4, client=None)
    fresh = CA._encode_again(2, transpose=False)
    CA._switch_to(fresh)
    assert CA.k == 2 and resident.encoded_from(A.name) == [CA]
    with dc.coded_matmul(6, 4) as opt:
        got = (A @ np.ones(5)).compute()
    np.testing.assert_allclose(got, An.sum(axis=1), rtol=1e-10)
    assert [(r.threshold, r.reused) for r in opt.rewrites] == [(2, True)]
    assert dc.release(A, client=None) == 1


def test_one_rechoice_at_a_time():
    """A retune() while a background re-choice runs waits for it, so the policy's
    history is written by one re-choice at a time, in order."""
    from dask_coded.policy import AutoK

    CA = dc.encode(np.random.default_rng(1).standard_normal((60, 5)), 6, 4, client=None)
    CA.policy = AutoK(6)
    order = []

    def slow_rechoice(k, r, calls):
        who = threading.current_thread().name
        order.append(("start", who))
        time.sleep(0.2)
        order.append(("end", who))
        return {"fresh": None}

    CA.retuner._rechoose = slow_rechoice
    CA.retuner._start(CA.calls)
    CA.retune()
    main = threading.current_thread().name
    assert order == [("start", "dask-coded-retune"), ("end", "dask-coded-retune"),
                     ("start", main), ("end", main)]
    assert CA.retuner.running is None


def test_calls_from_several_threads_count_each_call_once():
    CA = dc.encode(np.random.default_rng(2).standard_normal((60, 5)), 6, 4, client=None)
    x = np.ones(5)

    def calls():
        for _ in range(50):
            CA @ x

    threads = [threading.Thread(target=calls) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert CA.calls == 200


def test_a_change_that_proves_slower_is_turned_back_without_a_re_encode():
    """The policy is made to choose k = n (every decode then waits for the slow worker):
    after its probation calls the regret guard restores the code before it (the same
    blocks, no re-encode), records why, and the policy never chooses k = n again."""
    A, x = np.random.default_rng(5).standard_normal((120, 4)), np.ones(4)
    with dask.config.set({"coded.auto-k.every": 100, "coded.auto-k.min-calls": 2,
                          "coded.auto-k.probation": 3, "coded.auto-k.background": False}), \
            LocalCluster(n_workers=4, threads_per_worker=1, processes=False,
                         dashboard_address=None) as cluster, Client(cluster) as client:
        slow = sorted(dc.workers.worker_info(client).values(), key=lambda i: i["id"])[0]
        client.register_plugin(dc.stragglers.StragglerPlugin(
            dc.stragglers.SlowWorkers(seconds={str(slow["name"]): 0.3}), seed=0,
            match=("coded-prod",)))
        CA = dc.encode(A, 4, "auto", client=client)
        k0, before = CA.k, CA.encoding
        assert k0 < 4
        CA.policy.choose = lambda k, seen, calls: 4
        for call in range(1, 9):
            np.testing.assert_allclose((CA @ x).compute(), A @ x)
            if call == 3:  # due: switched to k = 4, on probation
                assert CA.k == 4 and CA.retuner.probation is not None
        assert CA.k == k0 and CA.encoding is before  # the old blocks, not a re-encode
        assert CA.history[-1]["why"].startswith("regret")
        assert (4, 1) in CA.policy.rejected and CA.retuner.probation is None
        CA.release()


def test_a_product_is_built_from_one_encoding_while_another_thread_switches():
    """One thread swaps the code back and forth (k = 4 and k = 2) while another builds
    and computes products: each product reads one encoding whole (scheme, blocks and
    scales together), so every answer is right."""
    An = np.random.default_rng(6).standard_normal((60, 5))
    CA = dc.encode(An, 6, 4, client=None)
    encodings = [CA.encoding, CA._encode_again(2, transpose=False).encoding]
    stop, errors = threading.Event(), []

    def switch():
        i = 0
        while not stop.is_set():
            CA._restore(encodings[i % 2])
            i += 1

    swapper = threading.Thread(target=switch)
    swapper.start()
    try:
        for _ in range(200):
            try:
                np.testing.assert_allclose((CA @ np.ones(5)).compute(), An.sum(axis=1),
                                           rtol=1e-8)
            except Exception as e:  # noqa: BLE001 - any mix of encodings shows here
                errors.append(e)
    finally:
        stop.set()
        swapper.join()
    assert not errors


def test_the_transpose_of_an_auto_matrix_adapts_on_its_own():
    A = np.random.default_rng(7).standard_normal((60, 8))
    with LocalCluster(n_workers=4, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        CA = dc.encode(A, 4, "auto", blocks_per_worker="auto", client=client)
        CT = CA.T
        assert CT.auto and CT.policy is not CA.policy and CT.policy.choose_r
        assert CT.k == CA.k
        np.testing.assert_allclose((CT @ np.ones(60)).compute(), A.T @ np.ones(60))
        CA.release()


def test_the_repr_says_what_auto_chose_and_why():
    from dask_coded.policy import AutoK

    CA = dc.encode(np.random.default_rng(8).standard_normal((60, 5)), 6, 4, client=None)
    CA.policy = AutoK(6)
    assert "auto: no re-choice yet" in repr(CA)
    CA.policy.history.append({"calls": 6, "k": 4, "observed": 5, "chosen": 4,
                              "why": "would not pay for its re-encode"})
    assert ("auto: 1 re-choice, the last at call 6 kept 4 (would not pay for its "
            "re-encode)") in repr(CA)


def test_blocks_auto_runs_one_task_per_worker_and_regroups_without_a_re_encode():
    """``blocks_per_worker="auto"`` encodes 4 blocks per worker and runs them as one
    product task per worker: a call decodes from the first k workers' tasks, never
    waiting for the slow one. A re-choice to 4 tasks per worker keeps the encoding (its
    token, its coded blocks) and is right too."""
    A, x = np.random.default_rng(9).standard_normal((240, 6)), np.arange(6.0)
    with dask.config.set({"coded.auto-k.background": False}), \
            LocalCluster(n_workers=6, threads_per_worker=1, processes=False,
                         dashboard_address=None) as cluster, Client(cluster) as client:
        slow = list(client.scheduler_info()["workers"].values())[2]["name"]
        client.register_plugin(dc.stragglers.StragglerPlugin(
            dc.stragglers.SlowWorkers(seconds={str(slow): 30.0}), match=("coded-prod",),
            interruptible=True))
        CA = dc.encode(A, 6, "auto", blocks_per_worker="auto", client=client)
        assert (CA.k, CA.blocks_per_worker, CA.tasks_per_worker) == (4, 4, 1)
        assert "tasks_per_worker=1" in repr(CA)
        where = CA.workers
        slow_address = next(a for a, w in client.scheduler_info()["workers"].items()
                            if w["name"] == slow)
        np.testing.assert_allclose((CA @ x).compute(timeout=20), A @ x)
        used = CA.last_used()  # the tasks that had finished when the decode started
        holders = [where[j] for j in used]
        assert slow_address not in holders and 4 <= len(set(holders)) <= 5
        assert all(holders.count(w) == 4 for w in holders)  # whole workers: 4 blocks each
        token, blocks = CA.token, _coded_blocks(client)
        CA.policy.every, CA.policy.min_calls = 2, 1
        CA.policy.choose_blocks = lambda k, r, seen, calls, free: (4, 4)
        np.testing.assert_allclose((CA @ x).compute(timeout=20), A @ x)  # due: regroups
        assert (CA.k, CA.tasks_per_worker) == (4, 4) and CA.token == token
        assert _coded_blocks(client) == blocks  # nothing encoded again
        np.testing.assert_allclose((CA @ x).compute(timeout=20), A @ x)
        used = CA.last_used()  # the blocks that had finished when the decode started
        assert 16 <= len(used) <= 20 and slow_address not in {where[j] for j in used}
        CA.release()


def test_the_policy_measures_what_a_product_task_costs_besides_its_compute():
    """Several product tasks per worker: the plugin reports, per call, the gaps between a
    worker's consecutive results less the compute, and the policy reads their median as
    the overhead of a task; one task per worker shows no gap and keeps the setting."""
    A, x = np.random.default_rng(12).standard_normal((96, 4)), np.arange(4.0)
    with LocalCluster(n_workers=4, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.register_plugin(dc.stragglers.StragglerPlugin(
            dc.stragglers.SlowWorkers(seconds={str(i): 0.05 for i in range(4)}),
            match=("coded-prod",)))
        CA = dc.encode(A, 4, 3, blocks_per_worker=4, client=client)
        policy = AutoK(4, choose_r=True, task_overhead=7.0, gap_samples=8)
        CA.regroup(1)
        for _ in range(3):
            np.testing.assert_allclose((CA @ x).compute(), A @ x)
        one = CA.observed(last=3)
        assert not any(one["calls_gaps"]) and policy.overhead(one) == (7.0, "setting")
        CA.regroup(4)
        for _ in range(3):
            np.testing.assert_allclose((CA @ x).compute(), A @ x)
        seen = CA.observed(last=3)
        gaps = [g for call in seen["calls_gaps"] for g in call]
        # each worker's tasks that finished before the decode: 12 of 16 needed per call
        assert len(gaps) >= 3 * 8
        assert all(s >= 0.045 for call in seen["calls"] for s in call)  # compute: the delay
        overhead, source = policy.overhead(seen)
        assert source == "measured" and 0.0 <= overhead < 0.045
        CA.release()
