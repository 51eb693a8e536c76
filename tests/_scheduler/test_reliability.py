"""Never hang, never silently wrong: losses mid-call, the deadline, keys that look like
ours, and one client's resident data kept from another's release."""

import asyncio

import dask.array as da
import numpy as np
import pytest
from distributed import Client
from distributed.utils_test import gen_cluster

import dask_coded as dc

from cluster_helpers import SIX, VALIDATE, plugin, rand, until


def decoding(s):
    """The decode task processing now, or None."""
    return next((ts for ts in s.tasks.values()
                 if "coded-dec" in str(ts.key) and ts.state == "processing"), None)


async def kill_the_decode_and_one_product(s, workers, products_of=lambda ts: ts.dependencies):
    """Wait for the decode to run, then close its worker and the worker of another
    product it uses: two losses, ``n - k`` at (6, 4)."""
    await until(lambda: decoding(s) is not None)
    dec = decoding(s)
    here = dec.processing_on.address
    used = {ws.address for d in products_of(dec) if "coded-prod" in str(d.key)
            for ws in d.who_has}
    other = sorted(used - {here})[0]
    await asyncio.gather(*(w.close() for w in workers if w.address in (here, other)))


@pytest.mark.parametrize("straggler", [False, True])
@gen_cluster(client=True, nthreads=SIX, timeout=60,
             config={**VALIDATE, "coded.first-k.repin-delay": "50ms"})
async def test_the_decode_worker_and_a_used_product_lost_mid_decode(c, s, *workers,
                                                                    straggler):
    """Lost with the decode: a product it had used. The call still answers right (from
    the products left, or the lost ones recomputed where their blocks are re-pinned)."""
    A, x = rand(120, 5), rand(5, seed=1)
    CA = await dc.encode(A, 6, 4, client=c)
    seconds = {"coded-dec": 1.0}
    model = dc.stragglers.SlowWorkers(scale=1.0)
    if straggler:  # the decode starts early, without the straggler's product
        slow = next(w for w in workers if w.address == CA.workers[5])
        model = dc.stragglers.SlowWorkers(scale=1.0, seconds={str(slow.name): 30.0})
    await c.register_plugin(dc.stragglers.StragglerPlugin(model, match=("coded-dec", "coded-prod"),
                                               work={**seconds, "coded-prod": 0.0},
                                               interruptible=True))
    fut = c.compute(CA @ x)
    await kill_the_decode_and_one_product(s, workers)
    await c.unregister_worker_plugin(dc.stragglers.StragglerPlugin.name)
    np.testing.assert_allclose(await asyncio.wait_for(fut, 30), A @ x)
    if straggler:
        assert plugin(s).stats["pruned"] >= 1


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 8, timeout=60,
             config={**VALIDATE, "coded.first-k.repin-delay": "60s"})
async def test_every_block_holder_lost_and_a_call_at_once(c, s, *workers):
    """All six block holders of eight workers gone, a call right away: the blocks are
    re-pinned to the two left (three each) and re-encoded; the call is right."""
    A, x = rand(120, 5), rand(5, seed=1)
    CA = await dc.encode(A, 6, 4, client=c)
    await asyncio.gather(*(w.close() for w in workers if w.address in CA.workers))
    await until(lambda: len(s.workers) == 2)
    np.testing.assert_allclose(await asyncio.wait_for(c.compute(CA @ x), 30), A @ x)
    assert plugin(s).stats["repinned"] == 6


@gen_cluster(client=True, nthreads=SIX, timeout=60,
             config={**VALIDATE, "coded.first-k.deadline": "1s"})
async def test_the_deadline_turns_a_stall_into_an_error_naming_what_it_waited_for(
        c, s, *workers):
    A, x = rand(120, 5), rand(5, seed=1)
    CA = await dc.encode(A, 6, 4, client=c)
    slow = [w for w in workers if w.address in CA.workers[3:]]
    await c.register_plugin(dc.stragglers.StragglerPlugin(
        dc.stragglers.SlowWorkers(seconds={str(w.name): 30.0 for w in slow}), match=("coded-prod",),
        interruptible=True))
    with pytest.raises(dc.errors.TooFewResultsError,
                       match=r"only 3 of n=6 .*deadline \(1s\) passed .*products 3 on tcp"):
        await asyncio.wait_for(c.compute(CA @ x), 20)
    assert plugin(s).stats["expired"] == 1


def _plain(x):
    return x + 1


def _total(*xs):
    return sum(xs)


@gen_cluster(client=True, nthreads=SIX, config=VALIDATE)
async def test_keys_that_look_like_ours_are_left_alone(c, s, *workers):
    """The plugin knows its tasks by their type: a user's keys named like coded products
    or coded blocks are neither pruned nor kept."""
    await dc.encode(rand(60, 4), 6, 4, client=c)  # the plugin is installed
    graph = {("coded-prod-t1-x", j): (_plain, j) for j in range(4)}
    graph["coded-dec-x"] = (_total, *graph)
    graph[("coded-block-x", 0)] = (_plain, 10)
    assert await c.get(graph, ["coded-dec-x", ("coded-block-x", 0)], sync=False)[0] == 10
    await until(lambda: ("coded-block-x", 0) not in s.tasks)
    assert plugin(s).tracked()["groups"] == 0 and plugin(s).stats["pruned"] == 0
    assert not plugin(s).resident


@gen_cluster(client=False, nthreads=SIX, config=VALIDATE)
async def test_a_release_from_another_client_keeps_my_resident_blocks(s, *workers):
    """Resident blocks belong to the clients that made or used them: another client's
    ``dc.release`` of an array of the same name drops only its own claim."""
    async with Client(s.address, asynchronous=True) as c1, \
            Client(s.address, asynchronous=True) as c2:
        A = da.from_array(rand(120, 5), chunks=(20, 5), name="shared-A")
        x = rand(5, seed=1)
        await c1.register_plugin(dc.FirstKPlugin())
        with dc.coded_matmul(n=6, k=4):
            await c1.compute(A @ x)
        assert len(plugin(s).resident) == 1
        assert await c2.scheduler.coded_release(client=c2.id, source="shared-A") == 0
        assert len(plugin(s).resident) == 1
        assert await c2.scheduler.coded_resident(client=c2.id) == {}
        assert len(await c1.scheduler.coded_resident(client=c1.id)) == 1
        assert await c1.scheduler.coded_release(client=c1.id, source="shared-A") == 1
        assert not plugin(s).resident


@gen_cluster(client=False, nthreads=SIX, config=VALIDATE)
async def test_release_through_another_client_in_this_process_keeps_my_matrix(s, *workers):
    async with Client(s.address, asynchronous=True) as c1, \
            Client(s.address, asynchronous=True) as c2:
        A = da.from_array(rand(120, 5), chunks=(20, 5), name="mine")
        CA = await dc.encode(A, 6, 4, client=c1)
        assert dc.release(da.from_array(rand(120, 5), chunks=(20, 5), name="mine"),
                          client=c2) == 0
        assert CA.blocks and all(f.status == "finished" for f in CA.blocks)
        assert dc.release(A, client=c1) == 1 and not CA.blocks


@gen_cluster(client=True, nthreads=SIX, config=VALIDATE)
async def test_release_takes_every_resident_handle(c, s, *workers):
    CP = await dc.CodedPartitions([rand(10, 2, seed=i) for i in range(6)], n=6, stragglers=1,
                                  client=c)
    assert dc.release(CP) == 1
    with pytest.raises(dc.CodedError, match="released"):
        CP.sum(np.sum)
    with pytest.raises(TypeError, match="resident handle .* got list"):
        dc.release([1, 2])


@gen_cluster(client=True, nthreads=SIX, timeout=60,
             config={**VALIDATE, "coded.first-k.repin-delay": "60s"})
async def test_the_first_call_after_a_total_outage_and_rejoin_is_right(c, s, *workers):
    from distributed import Worker

    A, x = rand(120, 5), rand(5, seed=1)
    CA = await dc.encode(A, 6, 4, client=c)
    await asyncio.gather(*(w.close() for w in workers))
    fresh = [await Worker(s.address, nthreads=1) for _ in range(4)]
    try:
        await until(lambda: len(s.workers) == 4)
        np.testing.assert_allclose(await asyncio.wait_for(c.compute(CA @ x), 30), A @ x)
        assert {b.worker for b in plugin(s).blocks.values()} == set(s.workers)
    finally:
        await asyncio.gather(*(w.close() for w in fresh))
