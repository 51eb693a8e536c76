import time

import numpy as np
import pytest
from distributed.utils_test import gen_cluster
from scipy import stats

import dask_coded as dc
from dask_coded.stragglers import TaskIds


def draws(model, n=4000, worker="3", work=1.0, seed=5):
    return np.array([model.delay(worker, f"t#{i}", seed, work) for i in range(n)])


def test_delays_are_reproducible_for_a_seed():
    for model in [dc.stragglers.ShiftedExponential(mu=0.5, scale=0.1), dc.stragglers.Stalls(p=0.3, mean=0.2),
                  dc.stragglers.Trace(durations=(0.1, 0.2, 0.3))]:
        a, b = draws(model, 200, seed=1), draws(model, 200, seed=1)
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, draws(model, 200, seed=2))
        assert not np.array_equal(a, draws(model, 200, worker="4", seed=1))


def test_shifted_exponential_matches_its_distribution():
    m = dc.stragglers.ShiftedExponential(mu=0.5, scale=2.0)
    work = 0.25
    x = (draws(m, work=work) / (m.scale * work) - m.shift) * m.mu  # should be Exp(1)
    assert stats.kstest(x, "expon").pvalue > 0.01
    xs = (m.sample(4000, seed=3, work=work).ravel() / (m.scale * work) - m.shift) * m.mu
    assert stats.kstest(xs, "expon").pvalue > 0.01


def test_stalls_hit_with_probability_p_and_last_exp_mean():
    m = dc.stragglers.Stalls(p=0.2, mean=0.5, scale=0.1)
    d = draws(m, 5000, work=0.5) - 0.05
    hit = d[d > 1e-12]
    assert abs(len(hit) / len(d) - 0.2) < 4 * np.sqrt(0.2 * 0.8 / len(d))
    assert stats.kstest(hit / 0.5, "expon").pvalue > 0.01


def test_slow_workers_are_exact():
    m = dc.stragglers.SlowWorkers(seconds={"2": 1.5}, factor={"3": 5.0}, scale=0.4)
    assert m.delay("2", "t", 0, work=0.5) == pytest.approx(0.2 + 1.5)
    assert m.delay("3", "t", 0, work=0.5) == pytest.approx(1.0)
    assert m.delay("1", "t", 0, work=0.5) == pytest.approx(0.2)


def test_trace_replays_recorded_durations():
    m = dc.stragglers.Trace(durations=(0.1, 0.4), per_worker={"7": (2.0,)})
    assert set(draws(m, 200)) == {0.1, 0.4}
    assert set(draws(m, 50, worker="7", work=0.5)) == {1.0}
    records = [
        {"key": ("coded-prod-t2-ab", 0, 1), "worker": "w1",
         "startstops": [{"action": "compute", "start": 1.0, "stop": 1.5}]},
        {"key": ("other", 0), "worker": "w1",
         "startstops": [{"action": "compute", "start": 0.0, "stop": 9.0}]},
    ]
    t = dc.stragglers.Trace.from_task_stream(records, prefix="coded-prod")
    assert t.durations == (0.5,) and t.per_worker == {"w1": (0.5,)}


@pytest.mark.parametrize("bad", [
    lambda: dc.stragglers.ShiftedExponential(mu=0), lambda: dc.stragglers.SlowWorkers(factor={"1": 0.5}),
    lambda: dc.stragglers.Stalls(p=1.5), lambda: dc.stragglers.Trace(durations=()),
])
def test_bad_model_parameters(bad):
    with pytest.raises(ValueError):
        bad()


def test_task_ids_ignore_tokens_and_count_occurrences():
    ids = TaskIds()
    a = ids("w", ("coded-prod-t4-0123456789abcdef-deadbeefcafe", 0, 3))
    b = ids("w", ("coded-prod-t4-fedcba9876543210-0badc0ffee00", 0, 3))
    assert a.split("#")[0] == b.split("#")[0] and a != b  # same task, next occurrence


def test_plugin_work_shares():
    p = dc.stragglers.StragglerPlugin(dc.stragglers.ShiftedExponential(), work={"matmul": 0.125})
    assert p.work_of(("coded-prod-t4-abc", 0, 1)) == 0.25
    assert p.work_of(("matmul-getitem-abc", 2)) == 0.125
    assert p.work_of("finalize-abc") == 1.0
    assert dc.stragglers.StragglerPlugin(dc.stragglers.SlowWorkers(), match=("x",)).delay("0", ("y", 1)) == 0.0
    with pytest.raises(TypeError, match="DelayModel"):
        dc.stragglers.StragglerPlugin("slow")


def _slow_task(x):
    return x + 1


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 2)
async def test_plugin_delays_show_as_compute_time(c, s, a, b):
    await c.register_plugin(dc.stragglers.StragglerPlugin(dc.stragglers.SlowWorkers(seconds={str(a.name): 0.4}),
                                               match=("slow-task",)))
    await c.get_task_stream()  # starts the scheduler's task stream
    start = time.time()
    on_a = c.submit(_slow_task, 1, key="slow-task-1", workers=[a.address])
    on_b = c.submit(_slow_task, 1, key="slow-task-2", workers=[b.address])
    fast = c.submit(_slow_task, 1, key="other-task", workers=[a.address])
    assert await c.gather([on_a, on_b, fast]) == [2, 2, 2]
    stream = await c.get_task_stream(start=start)
    compute = {r["key"]: sum(ss["stop"] - ss["start"] for ss in r["startstops"]
                             if ss["action"] == "compute") for r in stream}
    assert compute["slow-task-1"] >= 0.4
    assert compute["slow-task-2"] < 0.2 and compute["other-task"] < 0.2


def test_local_stragglers_apply_to_the_race():
    A, x = np.ones((40, 3)), np.ones(3)
    CA = dc.encode(A, 4, 4, client=None)  # k = n: every product is needed
    with dc.stragglers.local_stragglers(dc.stragglers.SlowWorkers(seconds={"2": 0.3})):
        t = time.perf_counter()
        np.testing.assert_allclose((CA @ x).compute(scheduler="threads"), A @ x)
        assert time.perf_counter() - t >= 0.3


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 2)
async def test_interruptible_delays_end_when_the_task_is_released(c, s, a, b):
    import asyncio

    await c.register_plugin(dc.stragglers.StragglerPlugin(dc.stragglers.SlowWorkers(seconds={str(a.name): 5.0}),
                                               match=("slow-task",), interruptible=True))
    fut = c.submit(_slow_task, 1, key="slow-task-x", workers=[a.address])
    await asyncio.sleep(0.3)
    del fut  # released while sleeping
    t = time.perf_counter()
    while a.state.executing_count and time.perf_counter() - t < 5:
        await asyncio.sleep(0.01)
    assert time.perf_counter() - t < 1.0  # the thread is free long before 5 s


def test_per_call_slowness_is_shared_by_a_workers_tasks_and_fresh_each_call():
    model = dc.stragglers.ShiftedExponential(mu=1.0, scale=1.0, per="call")
    ids = TaskIds()
    first = [model.delay("0", ids("0", (f"x-{tok}", i)), 0, 0.1, ids.call("0", (f"x-{tok}", i)))
             for tok, i in [("aaaaaaaa11", 0), ("aaaaaaaa11", 1)]]
    second = [model.delay("0", ids("0", ("x-bbbbbbbb22", i)), 0, 0.1,
                          ids.call("0", ("x-bbbbbbbb22", i))) for i in range(2)]
    assert first[0] == first[1] and second[0] == second[1] and first[0] != second[0]
    # another scheme's first call (other keys, a fresh plugin) meets the same slowness
    other = TaskIds()
    assert model.delay("0", other("0", ("y-cccccccc33", 5)), 0, 0.1,
                       other.call("0", ("y-cccccccc33", 5))) == first[0]
    per_task = dc.stragglers.ShiftedExponential(mu=1.0, scale=1.0)
    assert per_task.delay("0", "t#1", 0, 0.1, "c@1") != per_task.delay("0", "t#2", 0, 0.1, "c@1")
    with pytest.raises(ValueError, match="per must be"):
        dc.stragglers.ShiftedExponential(per="worker")
