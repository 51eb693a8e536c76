"""The scheduler plugin: never hang, never leak, spread blocks back out, survive restarts."""

import asyncio

import numpy as np
import pytest
from distributed import Nanny, Worker
from distributed.utils_test import gen_cluster

import dask_coded as dc

from cluster_helpers import SIX, VALIDATE, plugin, rand, until


def blocks_per_worker(s, CA) -> dict:
    held = {}
    for f in CA.blocks:
        for ws in s.tasks[f.key].who_has:
            held[ws.address] = held.get(ws.address, 0) + 1
    return held


@gen_cluster(client=True, nthreads=SIX,
             config={**VALIDATE, "coded.first-k.repin-delay": "60s"})
async def test_a_call_after_losing_too_many_workers_waits_for_the_re_encode(c, s, *workers):
    """More than n - k workers gone, and the call submitted before the grace period
    re-pinned the lost blocks: the call re-pins them at once (a call means the cluster is
    not shutting down) and its products wait for the re-encode: the answer is right."""
    A, x = rand(120, 5), rand(5, seed=1)
    CA = await dc.encode(A, 6, 4, client=c)
    doomed = [w for w in workers if w.address in CA.workers[:3]]
    await asyncio.gather(*(w.close() for w in doomed))
    await until(lambda: len(s.workers) == 3)
    np.testing.assert_allclose(await asyncio.wait_for(c.compute(CA @ x), 20), A @ x)
    assert plugin(s).stats["repinned"] == 3 and plugin(s).stats["failed-early"] == 0


@gen_cluster(client=True, nthreads=SIX,
             config={**VALIDATE, "coded.first-k.repin-delay": "60s"})
async def test_losing_too_many_workers_mid_call_fails_at_once(c, s, *workers):
    """More than n - k workers lost while the products run: the call fails at once
    naming the lost workers (it never waits for a worker that is gone); the next call is
    right."""
    A, x = rand(120, 5), rand(5, seed=1)
    CA = await dc.encode(A, 6, 4, client=c)
    await c.register_plugin(dc.stragglers.StragglerPlugin(dc.stragglers.SlowWorkers(scale=2.0),
                                               match=("coded-prod",), interruptible=True))
    fut = c.compute(CA @ x)
    await until(lambda: sum(ts.state == "processing" for ts in s.tasks.values()
                            if "coded-prod" in str(ts.key)) == 6)
    doomed = [w for w in workers if w.address in CA.workers[:3]]
    await asyncio.gather(*(w.close() for w in doomed))
    with pytest.raises(dc.errors.TooFewResultsError, match=r"k=4 .*lost worker tcp://"):
        await asyncio.wait_for(fut, 10)
    assert plugin(s).stats["failed-early"] == 1
    await c.unregister_worker_plugin(dc.stragglers.StragglerPlugin.name)
    np.testing.assert_allclose(await asyncio.wait_for(c.compute(CA @ x), 20), A @ x)


@gen_cluster(client=True, nthreads=SIX,
             config={**VALIDATE, "coded.first-k.repin-delay": "20ms"})
async def test_a_joining_worker_takes_back_a_block(c, s, *workers):
    """After a loss a survivor holds two blocks; a worker joining takes one back, so the
    code tolerates n - k losses again."""
    A, x = rand(120, 5), rand(5, seed=1)
    CA = await dc.encode(A, 6, 4, client=c)
    lost = next(w for w in workers if w.address == CA.workers[0])
    await lost.close()
    await until(lambda: plugin(s).stats["repinned"] == 1
                and s.tasks[CA.blocks[0].key].state == "memory")
    assert sorted(blocks_per_worker(s, CA).values()) == [1, 1, 1, 1, 2]

    async with Worker(s.address, nthreads=1) as fresh:
        await until(lambda: plugin(s).stats["moved"] == 1
                    and sorted(blocks_per_worker(s, CA).values()) == [1] * 6)
        assert fresh.address in blocks_per_worker(s, CA)
        for f in CA.blocks:  # restrictions follow the data
            (holder,) = s.tasks[f.key].who_has
            assert s.tasks[f.key].worker_restrictions == {holder.address}
        # lose two more (n - k = 2), the one that had been crowded among them
        crowded = next(w for w in workers if w.status.name == "running"
                       and w.address in s.workers and w.address != fresh.address)
        other = next(w for w in workers if w.status.name == "running"
                     and w.address in s.workers and w is not crowded)
        await asyncio.gather(crowded.close(), other.close())
        np.testing.assert_allclose(await asyncio.wait_for(c.compute(CA @ x), 20), A @ x)


@gen_cluster(client=True, nthreads=SIX, config=VALIDATE)
async def test_released_stragglers_are_forgotten(c, s, *workers):
    """Many calls with a straggler leave nothing behind, in the scheduler or the plugin."""
    A, x = rand(120, 5), rand(5, seed=1)
    CA = await dc.encode(A, 6, 4, client=c)
    slow = next(w for w in workers if w.address == CA.workers[5])
    await c.register_plugin(dc.stragglers.StragglerPlugin(dc.stragglers.SlowWorkers({str(slow.name): 0.3}),
                                               match=("coded-prod",), interruptible=True))
    await c.compute(CA @ x)
    await until(lambda: plugin(s).tracked()["groups"] == 0)
    baseline = len(s.tasks)
    for i in range(30):
        np.testing.assert_allclose(await c.compute(CA @ (x + i)), A @ (x + i))
    await until(lambda: plugin(s).tracked()["groups"] == 0)
    assert len(s.tasks) == baseline
    assert plugin(s).tracked() == {"groups": 0, "products": 0, "blocks": 6, "pruned": 0,
                                   "pinned": 0}
    assert plugin(s).stats["released"] >= 30


@pytest.mark.slow
@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 3, Worker=Nanny, config=VALIDATE)
async def test_restart_forgets_everything(c, s, *workers):
    A, x = rand(60, 4), rand(4, seed=1)
    CA = await dc.encode(A, 3, 2, client=c)
    np.testing.assert_allclose(await c.compute(CA @ x), A @ x)
    assert plugin(s).tracked()["blocks"] == 3
    await c.restart()
    assert plugin(s).tracked() == {"groups": 0, "products": 0, "blocks": 0, "pruned": 0,
                                   "pinned": 0}
    CA = await dc.encode(A, 3, 2, client=c)
    np.testing.assert_allclose(await c.compute(CA @ x), A @ x)


@gen_cluster(client=True, nthreads=SIX, config=VALIDATE)
async def test_state_records_are_typed(c, s, *workers):
    A, x = rand(60, 4), rand(4, seed=1)
    CA = await dc.encode(A, 6, 4, client=c)
    y = c.compute(CA @ x)
    await until(lambda: plugin(s).groups)
    (group,) = plugin(s).groups.values()
    assert isinstance(group, dc._scheduler.ProductGroup)
    assert group.threshold == 4 and group.name.startswith("coded-prod-t4-")
    assert group.spec.size == 6 and set(group.products) <= set(range(6))
    assert all(key[-1] == j for j, key in group.products.items())
    product = plugin(s).group_table.products[group.products[0]]
    assert isinstance(product, dc._scheduler.Product)
    assert product.block == CA.blocks[0].key and product.worker == CA.workers[0]
    await y
    del y
    await until(lambda: not plugin(s).groups)
    block = plugin(s).blocks[CA.blocks[0].key]
    assert block.worker == CA.workers[0] and block.matrix == (CA.token,)


@pytest.mark.slow
@gen_cluster(client=True, nthreads=SIX, timeout=120,
             config={**VALIDATE, "coded.first-k.repin-delay": "20ms"})
async def test_chaos_kills_and_joins_during_200_calls(c, s, *workers):
    """Seeded chaos: every few calls a random worker dies in the middle of a call and a
    fresh one joins; every answer is right and nothing accumulates in the scheduler."""
    rng = np.random.default_rng(7)
    A = rand(240, 6)
    CA = await dc.encode(A, 6, 4, client=c)
    await c.compute(CA @ np.ones(6))
    await until(lambda: not plugin(s).groups)
    baseline = len(s.tasks)
    alive, joined = list(workers), []
    for i in range(200):
        x = rng.standard_normal(6)
        fut = c.compute(CA @ x)
        if i % 20 == 10:
            victim = alive.pop(int(rng.integers(len(alive))))
            await victim.close()
            fresh = await Worker(s.address, nthreads=1)
            alive.append(fresh)
            joined.append(fresh)
        np.testing.assert_allclose(await asyncio.wait_for(fut, 30), A @ x, rtol=1e-9,
                                   err_msg=f"call {i}")
        del fut
    try:
        await until(lambda: not plugin(s).groups and len(s.tasks) <= baseline, timeout=30)
    except AssertionError:  # say what stayed behind
        print("left behind:", {k: ts.state for k, ts in s.tasks.items()
                               if "coded-prod" in str(k) or "coded-dec" in str(k)},
              plugin(s).tracked(), flush=True)
        raise
    assert plugin(s).tracked()["products"] == 0
    # blocks spread back out: one per worker (a block being made again on a crowded
    # worker when its new worker joined is moved there once it is made)
    try:
        await until(lambda: sorted(blocks_per_worker(s, CA).values()) == [1] * 6)
    except AssertionError:  # say where each block is pinned and held
        print("blocks (pinned, held):",
              {str(b.key[1:]): (b.worker, [w.address for w in s.tasks[b.key].who_has])
               for b in plugin(s).pins.blocks.values()}, dict(plugin(s).stats), flush=True)
        raise
    finally:
        for w in joined:
            await w.close()


@gen_cluster(client=True, nthreads=SIX, config=VALIDATE)
async def test_encoded_row_scales_stay_resident_whatever_the_graph_order(c, s, *workers):
    """A graph that encodes A keeps its coded blocks and its row scales in memory for the
    next graph, also when the scheduler lists the scales before the blocks (its order
    follows a walk of the graph that varies from run to run)."""
    from dask.task_spec import DataNode
    from dask_coded.graph import encode_tasks
    from dask_coded._scheduler.residency import resident_keys
    from dask_coded.schemes import MDSScheme
    from dask_coded.schemes.mds import code_for

    A = rand(60, 4)
    chunks = {("A", i): DataNode(("A", i), A[20 * i: 20 * (i + 1)]) for i in range(3)}
    scheme = MDSScheme(code_for(6, 4), 60, equilibrate=True)
    encoded = encode_tasks(scheme, "tok", list(chunks))
    futures = c.get({**chunks, **encoded}, list(encoded), sync=False)
    await c.gather(futures)
    await c.register_plugin(dc.FirstKPlugin())
    scales = [k for k in encoded if k[0].startswith("coded-scales-")]
    order = scales + [k for k in encoded if k not in scales]  # the scales first
    plugin(s).update_graph(s, client=c.id, tasks=order, keys=set(), annotations={},
                           priority={}, stimulus_id="test")
    del futures
    await asyncio.sleep(0.2)  # the client's release reaches the scheduler
    assert resident_keys("tok", s.address) == set(encoded)


@gen_cluster(client=True, nthreads=SIX,
             config={**VALIDATE, "coded.first-k.repin-delay": "20ms"})
async def test_a_joining_worker_takes_back_its_share_of_several_blocks(c, s, *workers):
    """Two blocks per worker: after a loss two survivors hold three; a worker joining
    takes two back, and losing the tolerated number of workers then still decodes."""
    A, x = rand(240, 5), rand(5, seed=1)
    CA = await dc.encode(A, 6, 4, blocks_per_worker=2, client=c)
    assert CA.scheme.tolerance == 2
    lost = next(w for w in workers if w.address == CA.workers[0])
    await lost.close()
    await until(lambda: plugin(s).stats["repinned"] == 2
                and all(s.tasks[f.key].state == "memory" for f in CA.blocks))
    assert sorted(blocks_per_worker(s, CA).values()) == [2, 2, 2, 3, 3]
    async with Worker(s.address, nthreads=1) as fresh:
        await until(lambda: sorted(blocks_per_worker(s, CA).values()) == [2] * 6)
        assert blocks_per_worker(s, CA)[fresh.address] == 2
        doomed = [w for w in workers if w.status.name == "running"][:2]
        await asyncio.gather(*(w.close() for w in doomed))
        np.testing.assert_allclose(await asyncio.wait_for(c.compute(CA @ x), 20), A @ x)


def test_balancing_counts_the_moves_already_planned():
    """Two workers join one after the other while the first move is still copying: the
    second balance counts that move as made, so each newcomer gets one block (not the
    first newcomer two and the second none); a move given up frees its block."""
    from types import SimpleNamespace

    from dask_coded._scheduler.pins import Pins
    from dask_coded._scheduler.records import CodedBlock

    workers = {w: None for w in "abcde"}
    fake = SimpleNamespace(scheduler=SimpleNamespace(workers=workers),
                           quarantine=SimpleNamespace(workers=set()))
    pins = Pins(fake)
    for j, w in enumerate("aabbc"):
        pins.blocks[("coded-block-m", j)] = CodedBlock(("coded-block-m", j), ("m",), w)
    workers.pop("e")
    (first,) = pins.balance()  # d joins: one of a's or b's blocks
    assert first[2] == "d" and first[1] in "ab"
    pins.planned[first[0].key] = first
    workers["e"] = None  # e joins while the first move is under way
    (second,) = pins.balance()
    assert second[2] == "e" and second[1] in "ab" and second[1] != first[1]
    pins.forget_worker("d")  # d left before its copy began: the plan is given up
    assert not pins.planned and {m[2] for m in pins.balance()} == {"d", "e"}
