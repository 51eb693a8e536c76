"""Coded sums (gradient coding) on the local scheduler and on distributed."""

import asyncio
from collections import Counter

import dask
import dask.array as da
import numpy as np
import pytest
from distributed.utils_test import (  # noqa: F401  (fixtures)
    async_poll_for,
    cleanup,
    client,
    cluster_fixture,
    gen_cluster,
    loop,
    loop_in_thread,
    poll_for,
)

import dask_coded as dc
from dask_coded.sums import CodedPartitions, part_indices, split_partitions

SIX = [("127.0.0.1", 1)] * 6


def parts(count=12, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((20, 4)) for _ in range(count)]


def gram(p):
    return p.T @ p, np.float64(p.sum())


def plain_sum(ps):
    return sum(p.T @ p for p in ps), sum(p.sum() for p in ps)


def close(got, want):
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10 * np.abs(w).max())


# ---- local scheduler ----------------------------------------------------------------------


@pytest.mark.parametrize("s,kind", [(1, "auto"), (2, "fractional"), (2, "cyclic"), (4, "auto")])
def test_local_sum_equals_the_plain_sum(s, kind):
    ps = parts()
    cp = CodedPartitions(ps, 6, s, kind, client=None)
    assert cp.local and cp.scheme.threshold == 6 - s
    close(cp.sum(gram).compute(), plain_sum(ps))


def test_local_sum_ignores_forced_stragglers():
    ps = parts(6)
    cp = CodedPartitions(ps, 6, 2, client=None)
    # products 1 and 4 straggle by a minute: the sum returns from the other four
    with dc.stragglers.local_stragglers(dc.stragglers.SlowWorkers(seconds={"1": 60.0, "4": 60.0})):
        got = cp.sum(gram).compute(scheduler="threads")
    close(got, plain_sum(ps))


def test_partitions_of_a_dask_array_and_of_delayed_values():
    X = np.random.default_rng(3).standard_normal((120, 3))
    A = da.from_array(X, chunks=(10, 2))
    assert len(split_partitions(A)) == 12
    got = dc.coded_sum(lambda p: p.sum(axis=0), A, 4, 1, client=None).compute()
    np.testing.assert_allclose(got, X.sum(axis=0), rtol=1e-12)
    delayed = [dask.delayed(np.full)(3, float(i)) for i in range(5)]
    np.testing.assert_allclose(dc.coded_sum(np.sum, delayed, 5, 2, client=None).compute(),
                               3 * sum(range(5)))


def test_parts_are_contiguous_and_even():
    assert part_indices(7, 3) == [(0, 1, 2), (3, 4), (5, 6)]


def test_bad_input_names_the_problem():
    with pytest.raises(dc.CodedError, match="at least n partitions"):
        CodedPartitions(parts(3), 6, 1, client=None)
    with pytest.raises(TypeError, match="list of partitions"):
        CodedPartitions(np.ones(12), 6, 1, client=None)
    cp = CodedPartitions(parts(6), 6, 1, client=None)
    with pytest.raises(TypeError, match="callable"):
        cp.sum("not a function")
    with pytest.raises(TypeError, match="real numeric"):
        cp.sum(lambda p: "text").compute()
    with pytest.raises(dc.errors.NonFiniteError, match="partition"):
        cp.sum(lambda p: np.array([np.nan])).compute()
    with pytest.raises(dc.errors.CodeParameterError, match="can lose accuracy"):
        CodedPartitions(parts(24), 24, 4, "cyclic", client=None)


# ---- distributed ----------------------------------------------------------------------------


async def names_of(c):
    info = await c.scheduler.identity(n_workers=-1)
    return [info["workers"][a]["name"] for a in sorted(info["workers"])]


@gen_cluster(client=True, nthreads=SIX)
async def test_distributed_sum_from_the_first_n_minus_s(c, s, *workers):
    ps = parts()
    cp = await CodedPartitions(ps, 6, 2, client=c)
    assert len(set(cp.workers)) == 6
    slow = (await names_of(c))[1:3]  # workers 1 and 2 straggle by a minute
    await c.register_plugin(dc.stragglers.StragglerPlugin(
        dc.stragglers.SlowWorkers(seconds={str(w): 60.0 for w in slow}), match=("coded-prod",),
        interruptible=True))
    got = await asyncio.wait_for(c.compute(cp.sum(gram)), 30)
    close(got, plain_sum(ps))
    assert await cp.last_used() == [0, 3, 4, 5]
    stats = await c.scheduler.coded_first_k_stats()
    assert stats["pruned"] == 1 and stats["released"] == 2
    await c.unregister_worker_plugin(dc.stragglers.StragglerPlugin.name)


@gen_cluster(client=True, nthreads=SIX)
async def test_distributed_sum_survives_a_lost_worker(c, s, *workers):
    ps = parts()
    futures = await c.scatter(ps, workers=[workers[0].address])  # data on worker 0
    cp = await CodedPartitions(futures, 6, 1, client=c)
    lost = cp.workers[3]
    await next(w for w in workers if w.address == lost).close()
    for _ in range(2):  # before and after the lost assignment is rebuilt elsewhere
        close(await asyncio.wait_for(c.compute(cp.sum(gram)), 30), plain_sum(ps))
        await asyncio.sleep(1.5)
    tracked = await c.scheduler.coded_first_k_tracked()
    assert tracked["groups"] == 0 and tracked["products"] == 0


@gen_cluster(client=True, nthreads=SIX, timeout=90)
async def test_sums_stay_right_after_cumulative_losses(c, s, *workers):
    """One worker lost at a time, three times. Before each loss the partitions keep one
    copy each (the copies the assignments fetched are dropped), and the worker lost is
    one holding the only copy of a partition its own assignment needs: that assignment
    is lost for good, and is placed again from the caller's values (an asynchronous
    client says ``repair`` first); the sums stay right."""
    ps = parts()
    cp = await CodedPartitions(ps, 6, 1, client=c)
    close(await c.compute(cp.sum(gram)), plain_sum(ps))
    for _ in range(3):
        alive = {i: f for i, f in enumerate(cp._held) if f.status == "finished"}
        await c.replicate(list(alive.values()), n=1)
        sole = {i: next(iter(s.tasks[f.key].who_has)).address for i, f in alive.items()}
        holder = {j: next(iter(s.tasks[f.key].who_has)).address
                  for j, f in enumerate(cp.assignments)}
        doomed = {j: w for j, w in holder.items()
                  if any(sole.get(i) == w for idx in cp._support(j)[1] for i in idx)}
        assert doomed, "no worker holds the only copy of a partition its assignment needs"
        j, address = sorted(doomed.items())[0]
        lost = next(w for w in workers if w.address == address)
        await lost.close()
        await async_poll_for(lambda: address not in s.workers, timeout=10)
        await async_poll_for(lambda: j in cp._lost(), timeout=10)
        with pytest.raises(dc.CodedError, match=r"await CP.repair\(\)"):
            cp.sum(gram)
        assert j in await cp.repair()
        assert not cp._lost()
        close(await asyncio.wait_for(c.compute(cp.sum(gram)), 30), plain_sum(ps))


async def sole_holder(c, s, cp, j, taken=(), address=None):
    """Make ``address`` (default: assignment ``j``'s worker) the only holder of one
    partition ``j`` needs (not in ``taken``); returns the partition's index."""
    i = next(i for idx in cp._support(j)[1] for i in idx if i not in taken)
    f, address = cp._held[i], address or cp.workers[j]
    await c.replicate([f], workers=[address], n=1)  # a copy there, at least
    for ws in list(s.tasks[f.key].who_has):
        if ws.address != address:
            s.request_remove_replicas(ws.address, [f.key], stimulus_id="test-sole-holder")
    await async_poll_for(lambda: {ws.address for ws in s.tasks[f.key].who_has} == {address},
                         timeout=10)
    return i


@pytest.mark.parametrize("losses", [1, 2])
@gen_cluster(client=True, nthreads=SIX, timeout=60)
async def test_losing_scattered_data_mid_sum_decodes_or_says_too_few(c, s, *workers, losses):
    """A worker lost during a sum together with the only copy of a partition its own
    assignment needs: that product can never be made again (scattered data has no
    recipe), and distributed forgets whatever needs it. Within the code's tolerance the
    sum decodes from the other products; one loss more raises TooFewResultsError naming
    the lost worker, at once, instead of a cancelled future."""
    ps = parts()
    cp = await CodedPartitions(ps, 6, 1, client=c)
    doomed = [0, 1][:losses]
    taken: list = []
    for j in doomed:
        taken.append(await sole_holder(c, s, cp, j, taken))
    names = {w.address: str(w.name) for w in workers}
    slow = {names[cp.workers[j]]: 30.0 for j in doomed}
    if losses == 1:  # a second straggler, so that the sum still waits when the loss comes
        slow[names[cp.workers[2]]] = 2.0
    await c.register_plugin(dc.stragglers.StragglerPlugin(
        dc.stragglers.SlowWorkers(seconds=slow), match=("coded-prod",), interruptible=True))
    total = c.compute(cp.sum(gram))
    await async_poll_for(lambda: all(
        any(ts.state == "processing" and ts.processing_on.address == cp.workers[j]
            for ts in s.tasks.values() if dc.keys.key_name(ts.key).startswith("coded-prod"))
        for j in doomed), timeout=10)
    lost = [cp.workers[j] for j in doomed]
    for address in lost:  # as a machine dies: its running product is not waited for
        await next(w for w in workers if w.address == address).close(executor_wait=False)
    if losses == 1:
        close(await asyncio.wait_for(total, 20), plain_sum(ps))
        assert await cp.repair() == doomed  # placed again from the caller's values
        close(await asyncio.wait_for(c.compute(cp.sum(gram)), 20), plain_sum(ps))
    else:
        try:
            await asyncio.wait_for(total, 20)
        except dc.errors.TooFewResultsError as e:
            message = str(e)
        else:
            pytest.fail("the sum decoded without enough products")
        assert f"lost worker {lost[-1]}" in message and "needs 5" in message
    total.release()  # the error's traceback may hold the future a while
    plugin = s.plugins[dc.FirstKPlugin.name]
    await async_poll_for(lambda: plugin.tracked()["groups"] == 0, timeout=10)
    await c.unregister_worker_plugin(dc.stragglers.StragglerPlugin.name)


@gen_cluster(client=True, nthreads=SIX, timeout=60)
async def test_an_assignment_whose_inputs_were_lost_earlier_is_cut_when_its_worker_dies(
        c, s, *workers):
    """A partition's only copy lost between sums leaves the assignments built from it in
    memory but impossible to make again; when one of their workers dies mid-sum,
    distributed forgets its product: the sum decodes from the others."""
    ps = parts()
    cp = await CodedPartitions(ps, 6, 1, client=c)
    i = 0
    needers = [j for j in range(6) if any(i in idx for idx in cp._support(j)[1])]
    h = next(j for j in range(6) if j not in needers)  # its loss is made good by itself
    holder = cp.workers[h]
    await sole_holder(c, s, cp, needers[0], address=holder)
    await next(w for w in workers if w.address == holder).close()
    keys = [f.key for f in cp.assignments]

    def where():
        return [next(iter(s.tasks[k].who_has or ()), None) for k in keys]

    await async_poll_for(lambda: None not in where(), timeout=10)  # h made again
    load = Counter(ws.address for ws in where())
    victim = next(cp.workers[j] for j in needers if load[cp.workers[j]] == 1)
    assert s.tasks[keys[cp.workers.index(victim)]].has_lost_dependencies
    names = {w.address: str(w.name) for w in workers}
    other = next(a for a in load if a != victim)
    slow = {names[victim]: 30.0, names[other]: 2.0}
    await c.register_plugin(dc.stragglers.StragglerPlugin(
        dc.stragglers.SlowWorkers(seconds=slow), match=("coded-prod",), interruptible=True))
    total = c.compute(cp.sum(gram))
    await async_poll_for(lambda: any(
        ts.state == "processing" and ts.processing_on.address == victim
        for ts in s.tasks.values() if dc.keys.key_name(ts.key).startswith("coded-prod")),
        timeout=10)
    await next(w for w in workers if w.address == victim).close(executor_wait=False)
    close(await asyncio.wait_for(total, 20), plain_sum(ps))
    await c.unregister_worker_plugin(dc.stragglers.StragglerPlugin.name)


@pytest.mark.parametrize("stragglers", [2, 1])
@gen_cluster(client=True, nthreads=SIX, timeout=60)
async def test_a_finished_sum_lost_before_it_is_fetched_is_made_again(c, s, *workers,
                                                                     stragglers):
    """A sum that finished on worker W, its result not fetched yet; the straggler whose
    product it released dies with the only copy of a partition that product needed
    (distributed forgets the product); then W dies. The sum is made again from the
    products still there when the code tolerates both losses, and raises
    TooFewResultsError saying so when it does not: never a cancelled future."""
    ps = parts()
    cp = await CodedPartitions(ps, 6, stragglers, client=c)
    j = 0
    await sole_holder(c, s, cp, j)
    straggler = cp.workers[j]
    names = {w.address: str(w.name) for w in workers}
    await c.register_plugin(dc.stragglers.StragglerPlugin(
        dc.stragglers.SlowWorkers(seconds={names[straggler]: 30.0}), match=("coded-prod",),
        interruptible=True))
    total = c.compute(cp.sum(gram))
    await async_poll_for(lambda: total.key in s.tasks and s.tasks[total.key].state == "memory",
                         timeout=20)
    holder = next(iter(s.tasks[total.key].who_has)).address
    assert holder != straggler
    await next(w for w in workers if w.address == straggler).close(executor_wait=False)
    await next(w for w in workers if w.address == holder).close()
    if stragglers == 2:
        close(await asyncio.wait_for(total, 20), plain_sum(ps))
    else:
        with pytest.raises(dc.errors.TooFewResultsError, match=f"lost worker {holder}"):
            await asyncio.wait_for(total, 20)
    assert s.plugins[dc.FirstKPlugin.name].stats["remade"] == 1
    total.release()
    await c.unregister_worker_plugin(dc.stragglers.StragglerPlugin.name)


def test_a_synchronous_sum_places_lost_assignments_again():
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=4, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        ps = parts(8)
        cp = CodedPartitions(ps, 4, 1, client=client)
        close(cp.sum(gram).compute(), plain_sum(ps))
        before = list(cp.assignments)
        # every worker holding one partition's copies at once: that partition is gone
        # for good, and so are the assignments of those workers that need it
        holders = client.who_has(cp._held[0])[cp._held[0].key]
        assert len(holders) < 4  # the placement keeps some workers without it
        for worker in [w for w in cluster.workers.values() if w.address in holders]:
            client.sync(worker.close)
        poll_for(lambda: not set(holders) & set(cluster.scheduler.workers), timeout=10)
        close(cp.sum(gram).compute(), plain_sum(ps))
        assert any(a.key != b.key for a, b in zip(before, cp.assignments))  # placed again
        assert set(cp.workers) <= set(cluster.scheduler.workers)


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 3)
async def test_too_few_workers_and_async_coded_sum_say_what_to_do(c, s, *workers):
    with pytest.raises(dc.errors.TooFewWorkersError, match="needs n workers"):
        await CodedPartitions(parts(), 6, 1, client=c)
    with pytest.raises(dc.CodedError, match="await dask_coded.CodedPartitions"):
        dc.coded_sum(gram, parts(), 3, 1, client=c)


def test_coded_sum_places_once_per_partitions(client):
    ps = parts(4)
    # the `client` fixture's cluster has 2 workers: n=2, any 1 of them finishes
    first = dc.coded_sum(gram, ps, 2, 1).compute()
    close(first, plain_sum(ps))
    placed = client.run_on_scheduler(
        lambda dask_scheduler: sum(k[0].startswith("coded-block-")
                                   for k in dask_scheduler.tasks if isinstance(k, tuple)))
    close(dc.coded_sum(gram, ps, 2, 1).compute(), plain_sum(ps))
    again = client.run_on_scheduler(
        lambda dask_scheduler: sum(k[0].startswith("coded-block-")
                                   for k in dask_scheduler.tasks if isinstance(k, tuple)))
    assert placed == again == 2


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 4)
async def test_release_keeps_the_callers_futures(c, s, *workers):
    ps = parts(4)
    mine = await c.scatter(ps[:2])
    cp = await CodedPartitions(mine + ps[2:], 4, 1, client=c)
    close(await c.compute(cp.sum(gram)), plain_sum(ps))
    cp.release()
    while any(str(k[0]).startswith("coded-block-") for k in s.tasks if isinstance(k, tuple)):
        await asyncio.sleep(0.01)  # the assignments are gone
    assert all(f.status == "finished" for f in mine)
    assert all(s.tasks[f.key].state == "memory" for f in mine)
    with pytest.raises(dc.CodedError, match="released"):
        cp.sum(gram)


@pytest.mark.parametrize("n,s", [(5, 1), (7, 2), (6, 2)])  # cyclic, cyclic, fractional
def test_integer_sums_are_exact_integers_for_every_code(n, s):
    parts = [np.arange(40) + 40 * i for i in range(n * 2)]
    count = dc.coded_sum(lambda p: len(p), parts, n=n, stragglers=s, client=None).compute()
    assert count == 80 * n and np.asarray(count).dtype.kind == "i"
    big = [np.full(3, 10**9 + i, dtype=np.int64) for i in range(n)]
    total = dc.coded_sum(lambda p: p, big, n=n, stragglers=s, client=None).compute()
    assert total.dtype == np.int64 and np.array_equal(total, np.sum(big, axis=0))


def test_an_integer_sum_beyond_the_codes_exact_range_is_refused():
    huge = [np.array([10**14 + i], dtype=np.int64) for i in range(5)]  # cyclic (5, 1)
    with pytest.raises(dc.errors.DtypeError, match="cannot be decoded exactly.*kind='fractional'"):
        dc.coded_sum(lambda p: p, huge, n=5, stragglers=1, client=None).compute()
