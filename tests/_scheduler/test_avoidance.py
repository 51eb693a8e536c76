"""Persistent stragglers: a worker whose products are released in most calls stops
attracting a coded graph's plain work, and is taken back when it recovers."""

import re
from collections import Counter

import dask
import dask.array as da
import numpy as np
from distributed import wait
from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.utils_test import gen_cluster

import dask_coded as dc
from dask_coded.keys import key_name
from dask_coded._scheduler.avoidance import Avoidance

from cluster_helpers import VALIDATE, plugin, rand, until

FOUR = [("127.0.0.1", 1)] * 4


class FakePlugin:
    def __init__(self):
        self.stats = Counter()
        self.scheduler = None


def test_a_worker_released_in_most_calls_is_avoided_and_taken_back():
    avoid = Avoidance(FakePlugin())
    for _ in range(2):
        avoid.observe(["a", "b"], ["c"])
    assert avoid.avoided == set()  # too few calls to say
    avoid.observe(["a", "b"], ["c"])
    assert avoid.avoided == {"c"}
    avoid.observe(["a"], ["b", "c"])  # one straggle of b is not persistent
    assert avoid.avoided == {"c"}
    avoid.observe(["a", "b", "c"], [])
    assert avoid.avoided == {"c"}  # one good call is not a recovery
    avoid.observe(["a", "b", "c"], [])
    assert avoid.avoided == set()
    assert avoid.plugin.stats["avoid-marked"] == 1 and avoid.plugin.stats["avoid-recovered"] == 1
    with dask.config.set({"coded.avoid.window": 10, "coded.avoid.released": 0.5}):
        for _ in range(4):
            avoid.observe(["a"], ["b"])
        assert avoid.avoided == {"b"}


def test_restrictions_are_narrowed_when_loose_and_kept_when_strict():
    """A task an earlier graph's avoidance (or the user) restricted loosely loses the
    banned workers among them; strict restrictions, and a narrowing that would leave
    none, are left alone."""

    class Task:
        def __init__(self, key, workers=(), loose=True):
            self.key, self.worker_restrictions = key, set(workers)
            self.loose_restrictions, self.state = loose, "waiting"
            self.host_restrictions = self.resource_restrictions = None

    class Scheduler:
        workers = dict.fromkeys("abcd")

        def set_restrictions(self, restrictions):
            for key, workers in restrictions.items():
                tasks[key].worker_restrictions = set(workers)

    tasks = {t.key: t for t in [Task("free"), Task("loose", "abc"), Task("strict", "ab", loose=False),
                                Task("only-banned", "b")]}
    fake = FakePlugin()
    fake.scheduler = Scheduler()
    fake.quarantine = type("Q", (), {"workers": set()})()
    avoid = Avoidance(fake)
    avoid.avoided = {"b"}
    assert avoid.restrict(tasks.values()) == 2
    assert tasks["free"].worker_restrictions == {"a", "c", "d"}
    assert tasks["loose"].worker_restrictions == {"a", "c"}
    assert tasks["strict"].worker_restrictions == {"a", "b"}
    assert tasks["only-banned"].worker_restrictions == {"b"}


@gen_cluster(client=True, nthreads=FOUR, timeout=60, config=VALIDATE)
async def test_plain_tasks_of_coded_graphs_avoid_the_persistent_straggler(c, s, *workers):
    A = rand(400, 6)
    CA = await dc.encode(A, 4, 3, client=c)
    slow = CA.workers[1]
    name = next(w.name for w in workers if w.address == slow)
    await c.register_plugin(dc.stragglers.StragglerPlugin(dc.stragglers.SlowWorkers({str(name): 2.0}),
                                               match=("coded-prod",), interruptible=True))
    x = np.arange(6.0)
    for _ in range(3):
        np.testing.assert_allclose(await c.compute(CA @ x), A @ x, rtol=1e-10)
    await until(lambda: plugin(s).avoidance.avoided == {slow})
    # data held by the straggler only: a coded graph's plain tasks that read it run on
    # the other workers (they fetch it), where dask would run them beside their data;
    # the products stay pinned to their blocks
    Zn = rand(400, seed=3)
    Z = c.persist(da.from_array(Zn, chunks=50), workers=[slow])
    await wait(Z)
    y = c.persist((CA @ x).rechunk(50) * 2 + Z * 3)
    await wait(y)
    holders = {ws.address for key in y.__dask_keys__() for ws in s.tasks[key].who_has}
    assert holders and slow not in holders
    np.testing.assert_allclose(await c.compute(y), 2 * (A @ x) + 3 * Zn, rtol=1e-10)
    assert plugin(s).stats["avoid-restricted"] > 0
    # a graph without coded products is left alone
    plain = c.persist(da.ones(40, chunks=5) + 1)
    await wait(plain)
    assert all(not s.tasks[k].worker_restrictions for k in plain.__dask_keys__())
    # recovered: its products are used again, and it is taken back
    await c.unregister_worker_plugin(dc.stragglers.StragglerPlugin.name)
    for _ in range(6):
        await c.compute(CA @ x)
        if not plugin(s).avoidance.avoided:
            break
    assert plugin(s).avoidance.avoided == set()


@gen_cluster(client=True, nthreads=FOUR, timeout=60,
             config={**VALIDATE, "coded.avoid.enabled": False})
async def test_avoiding_can_be_turned_off(c, s, *workers):
    A = rand(400, 6)
    CA = await dc.encode(A, 4, 3, client=c)
    name = next(w.name for w in workers if w.address == CA.workers[1])
    await c.register_plugin(dc.stragglers.StragglerPlugin(dc.stragglers.SlowWorkers({str(name): 2.0}),
                                               match=("coded-prod",), interruptible=True))
    for _ in range(4):
        await c.compute((CA @ np.ones(6)) + 1)
    assert plugin(s).avoidance.avoided == {CA.workers[1]}  # still observed
    assert plugin(s).stats["avoid-restricted"] == 0  # but nothing restricted


@gen_cluster(client=True, nthreads=FOUR, timeout=60, config=VALIDATE)
async def test_the_rest_of_a_call_stays_off_a_worker_still_running_a_released_product(
        c, s, *workers):
    """A released product keeps running on its worker (a thread cannot be stopped), yet
    the scheduler counts that worker idle: the decode's downstream tasks are kept off it
    from the first straggle on, before the worker is a persistent straggler."""
    A = rand(400, 6)
    CA = await dc.encode(A, 4, 3, client=c)
    slow = CA.workers[1]
    name = next(w.name for w in workers if w.address == slow)
    Zn = rand(400, seed=3)
    Z = c.persist(da.from_array(Zn, chunks=50), workers=[slow])  # held by the straggler only
    await wait(Z)
    await c.register_plugin(dc.stragglers.StragglerPlugin(dc.stragglers.SlowWorkers({str(name): 3.0}),
                                               match=("coded-prod",)))
    x = np.arange(6.0)
    y = c.persist((CA @ x).rechunk(50) * Z + 1)
    await wait(y)
    ran_on = {ws.address for key in y.__dask_keys__() for ws in s.tasks[key].who_has}
    assert ran_on and slow not in ran_on
    np.testing.assert_allclose(await c.compute(y), (A @ x) * Zn + 1, rtol=1e-10)
    assert plugin(s).avoidance.avoided == set()  # one straggle: not a persistent straggler
    assert plugin(s).stats["avoid-restricted"] > 0


@gen_cluster(client=True, nthreads=FOUR, timeout=60, config=VALIDATE)
async def test_tasks_queued_behind_a_released_product_are_moved(c, s, *workers):
    """Tasks assigned to a worker while it ran a product (their data lives there) would
    wait behind that product after the decode released it: they are moved to the other
    workers at the release, and fetch their data from the slow worker."""
    A = rand(400, 6)
    CA = await dc.encode(A, 4, 3, client=c)
    slow = CA.workers[1]
    name = next(w.name for w in workers if w.address == slow)
    Zn = rand(400, seed=3)
    Z = c.persist(da.from_array(Zn, chunks=50, name="z-held"), workers=[slow])
    await wait(Z)
    await c.register_plugin(dc.stragglers.StragglerPlugin(dc.stragglers.SlowWorkers({str(name): 3.0}),
                                               match=("coded-prod",)))
    ran, released = [], []

    class Where(SchedulerPlugin):
        def transition(self, key, start, finish, *args, **kwargs):
            if finish == "memory" and re.fullmatch("sum-[0-9a-f]+", key_name(key)):
                ran.append(kwargs.get("worker"))  # Z's chunk sums, in order
            if key_name(key).startswith("coded-dec") and finish == "processing":
                released.append(len(ran))  # the decode starts: the product is released

    s.add_plugin(Where(), name="where")
    x = np.arange(6.0)
    got = await c.compute((CA @ x).sum() + (Z * 2).sum())
    np.testing.assert_allclose(got, (A @ x).sum() + 2 * Zn.sum(), rtol=1e-10)
    assert plugin(s).stats["avoid-moved"] > 0
    assert len(ran) == Z.numblocks[0]  # one chunk sum per block of Z
    assert slow not in ran[released[0]:]  # none waited for the released product


@gen_cluster(client=True, nthreads=FOUR, timeout=60, config=VALIDATE,
             worker_kwargs={"heartbeat_interval": "60s"})
async def test_the_next_calls_dask_x_stays_off_a_worker_still_running_a_released_product(
        c, s, *workers):
    """A call right after a straggle: the tasks making its dask ``x`` run elsewhere than on
    the worker still running the product the last call released, until the worker says
    that product returned (with no heartbeat in between: they come once a minute)."""
    A = rand(400, 6)
    CA = await dc.encode(A, 4, 3, client=c)
    slow = CA.workers[1]
    name = next(w.name for w in workers if w.address == slow)
    await c.register_plugin(dc.stragglers.StragglerPlugin(dc.stragglers.SlowWorkers({str(name): 3.0}),
                                               match=("coded-prod",)))
    np.testing.assert_allclose(await c.compute(CA @ np.ones(6)), A @ np.ones(6), rtol=1e-10)
    assert slow in plugin(s).avoidance.busy()

    ran = []

    class Where(SchedulerPlugin):
        def transition(self, key, start, finish, *args, **kwargs):
            if finish == "memory" and str(key).startswith("('x-parts"):
                ran.append(kwargs.get("worker"))

    s.add_plugin(Where(), name="where")
    xs = rand(6, seed=4)
    x = (da.from_array(xs, chunks=1, name="x-parts") * 1.0).rechunk(6)
    got = await c.compute(CA @ x)
    np.testing.assert_allclose(got, A @ xs, rtol=1e-10)
    assert ran and slow not in ran
    # the worker is taken back once its released product returns, not at a heartbeat
    await until(lambda: slow not in plugin(s).avoidance.busy(), timeout=15)
    assert not plugin(s).avoidance.running


@gen_cluster(client=True, nthreads=FOUR, timeout=60, config=VALIDATE,
             worker_kwargs={"heartbeat_interval": "60s"})
async def test_products_that_returned_before_their_release_leave_no_worker_busy(
        c, s, *workers):
    """Without a straggler a decode still starts at the first k products and releases the
    rest, which mostly return before the release reaches their worker. Asked, the workers
    answer that they run none of them, so the next graph's plain tasks are not confined
    to the few workers the scheduler could not ask (no heartbeat comes in between)."""
    A = rand(40, 6)
    CA = await dc.encode(A, 4, 2, client=c)
    avoidance, released = plugin(s).avoidance, []
    keep_off_busy = avoidance.keep_off_busy

    def counting(decode, running, *args):
        released.extend(k for keys in running.values() for k in keys)
        return keep_off_busy(decode, running, *args)

    avoidance.keep_off_busy = counting
    for seed in range(8):
        x = rand(6, seed=seed)
        np.testing.assert_allclose(await c.compute(CA @ x), A @ x, rtol=1e-10)
    assert released  # the scheduler did count released products as running
    await until(lambda: not avoidance.busy(), timeout=5)
    assert all(not w.plugins["dask-coded-first-k"].watched for w in workers)
