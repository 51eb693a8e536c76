"""Verified decodes on distributed: a worker returning wrong products is named, corrected
around, and quarantined (its blocks made again elsewhere, no more products)."""

import dask
import dask.array as da
import numpy as np
import pytest
from distributed.utils_test import gen_cluster

import dask_coded as dc
from dask_coded.errors import CorruptResultError
from dask_coded.stragglers import CorruptProducts, SlowWorkers, StragglerPlugin
from dask_coded.stragglers.corrupt import KINDS

from cluster_helpers import SIX, VALIDATE, plugin, rand, until

NO_QUARANTINE = {**VALIDATE, "coded.verify.quarantine-after": None}


def name_of(workers, address):
    return str(next(w.name for w in workers if w.address == address))


@gen_cluster(client=True, nthreads=SIX, timeout=60, config=NO_QUARANTINE)
async def test_detect_never_returns_a_wrong_answer_and_names_the_worker(c, s, *workers):
    A, x = rand(600, 40), rand(40, 3, seed=1)
    CA = await dc.encode(A, 6, 4, verify="detect", client=c)
    bad = CA.workers[2]
    await c.register_plugin(CorruptProducts([name_of(workers, bad)], how="scale"))
    raised = 0
    for _ in range(6):
        try:
            y = await c.compute(CA @ x)
        except CorruptResultError as e:
            raised += 1
            named = e.suspects + e.candidates
            assert any(bad in who for who in named), str(e)
            if e.suspects:  # located: only the corrupt worker
                assert len(e.suspects) == 1 and bad in e.suspects[0]
                assert f"name {name_of(workers, bad)}" in str(e)
        else:  # its product was not among the ones used
            np.testing.assert_allclose(y, A @ x, rtol=0, atol=1e-10)
    assert raised >= 1
    await until(lambda: plugin(s).quarantine.suspects.events == raised)
    (top, *_) = await c.scheduler.coded_suspects()
    assert top["worker"] == bad and top["located"] + top["disagreed"] == raised
    assert not top["quarantined"]
    assert [e for _, e in await c.get_events(dc.verify.TOPIC)]  # users can read them too


@gen_cluster(client=True, nthreads=SIX, timeout=60, config=NO_QUARANTINE)
async def test_detect_locates_the_worker_after_a_disagreement_it_could_not_locate(
        c, s, *workers):
    """With one spare product a disagreement is detected, not located: its error names
    five candidates. From then on a decode that one of them contributed to waits for a
    second spare (here the slow worker's product), so each later error names the wrong
    worker alone."""
    A, x = rand(600, 40), rand(40, 3, seed=1)
    CA = await dc.encode(A, 6, 4, verify="detect", client=c)
    bad, slow = CA.workers[2], CA.workers[4]
    await c.register_plugin(CorruptProducts([name_of(workers, bad)], how="scale"))
    await c.register_plugin(StragglerPlugin(SlowWorkers({name_of(workers, slow): 0.5}),
                                            match=("coded-prod",), interruptible=True))
    errors = []
    for _ in range(4):
        with pytest.raises(CorruptResultError) as info:
            await c.compute(CA @ x)
        errors.append(info.value)
    first, *later = errors
    assert not first.suspects and any(bad in who for who in first.candidates)
    assert plugin(s).quarantine.unlocated >= {bad}
    for e in later:
        assert [bad in who for who in e.suspects] == [True] and not e.candidates, str(e)
        assert f"name {name_of(workers, bad)}" in str(e)


@pytest.mark.parametrize("how", KINDS)
@gen_cluster(client=True, nthreads=SIX, timeout=60, config=NO_QUARANTINE)
async def test_correct_returns_the_right_result_on_every_call(c, s, *workers, how):
    A, x = rand(600, 40), rand(40, seed=1)
    CA = await dc.encode(A, 6, 4, verify="correct", client=c)
    bad = CA.workers[4]
    await c.register_plugin(CorruptProducts([name_of(workers, bad)], how=how, seed=3))
    for _ in range(4):
        np.testing.assert_allclose(await c.compute(CA @ x), A @ x, rtol=0, atol=1e-8)
    await until(lambda: plugin(s).quarantine.suspects.events == 4)
    (top,) = await c.scheduler.coded_suspects()
    assert top["worker"] == bad and top["located"] == 4 and top["disagreed"] == 0


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 8, timeout=60, config=NO_QUARANTINE)
async def test_two_corrupt_workers_with_errors_two(c, s, *workers):
    A, x = rand(400, 30), rand(30, 2, seed=1)
    CA = await dc.encode(A, 8, 4, verify="correct", errors=2, client=c)
    await corrected_every_call(c, s, workers, CA, A, x, [CA.workers[1], CA.workers[6]],
                               "offset")


async def corrected_every_call(c, s, workers, CA, A, x, bad, how, calls=3):
    """The workers ``bad`` return wrong products (``how``): every call is right and each
    of them is located in every call."""
    await c.register_plugin(CorruptProducts([name_of(workers, w) for w in bad], how=how))
    for _ in range(calls):
        np.testing.assert_allclose(await c.compute(CA @ x), A @ x, rtol=0, atol=1e-8)
    await until(lambda: plugin(s).quarantine.suspects.events == calls)
    table = await c.scheduler.coded_suspects()
    assert {row["worker"] for row in table} == set(bad)
    assert all(row["located"] == calls for row in table)


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 7, timeout=60, config=NO_QUARANTINE)
async def test_a_corrupt_worker_that_is_also_slow(c, s, *workers):
    """(7, 4) correcting one: the slow corrupt worker is not waited for; a fast corrupt
    one beside a slow honest one is corrected."""
    A, x = rand(420, 30), rand(30, seed=1)
    CA = await dc.encode(A, 7, 4, verify="correct", client=c)
    slow_bad, other = name_of(workers, CA.workers[0]), name_of(workers, CA.workers[5])
    await c.register_plugin(StragglerPlugin(SlowWorkers({slow_bad: 3.0}), match=("coded-prod",),
                                            interruptible=True))
    await c.register_plugin(CorruptProducts([slow_bad], how="sign"))
    np.testing.assert_allclose(await c.compute(CA @ x), A @ x, rtol=0, atol=1e-8)
    await c.register_plugin(StragglerPlugin(SlowWorkers({other: 3.0}), match=("coded-prod",),
                                            interruptible=True))
    for _ in range(2):
        np.testing.assert_allclose(await c.compute(CA @ x), A @ x, rtol=0, atol=1e-8)
    await until(lambda: plugin(s).quarantine.suspects.events >= 2)
    table = await c.scheduler.coded_suspects()
    assert [row["worker"] for row in table] == [CA.workers[0]]


@gen_cluster(client=True, nthreads=SIX, timeout=60,
             config={**VALIDATE, "coded.verify.quarantine-after": 2})
async def test_a_worker_found_wrong_twice_is_quarantined(c, s, *workers):
    A, x = rand(600, 40), rand(40, 2, seed=1)
    CA = await dc.encode(A, 6, 4, verify="correct", client=c)
    bad = CA.workers[3]
    await c.register_plugin(CorruptProducts([name_of(workers, bad)], how="scale"))
    for _ in range(2):
        np.testing.assert_allclose(await c.compute(CA @ x), A @ x, rtol=0, atol=1e-8)
    await until(lambda: bad in plugin(s).quarantine.workers)
    await until(lambda: bad not in {b.worker for b in plugin(s).pins.blocks.values()})
    assert plugin(s).stats["quarantined"] == 1 and plugin(s).stats["evacuated"] == 1
    seen = plugin(s).quarantine.suspects.events
    for _ in range(3):  # its block was made again elsewhere: no more wrong products
        np.testing.assert_allclose(await c.compute(CA @ x), A @ x, rtol=0, atol=1e-8)
    assert plugin(s).quarantine.suspects.events == seen
    assert bad not in [next(iter(s.tasks[f.key].worker_restrictions)) for f in CA.blocks]
    (top,) = await c.scheduler.coded_suspects()
    assert top["quarantined"] and top["located"] == 2
    # a new encoding keeps off it
    CB = await dc.encode(A, 5, 3, verify="detect", client=c)
    await until(lambda: all(plugin(s).pins.blocks[f.key].worker != bad for f in CB.blocks))
    np.testing.assert_allclose(await c.compute(CB @ x), A @ x, rtol=0, atol=1e-8)


@gen_cluster(client=True, nthreads=SIX, timeout=60, config=NO_QUARANTINE)
async def test_a_recomputed_checked_product_keeps_its_graph(c, s, *workers):
    """The plugin names each product's worker in the decode's arguments; the same
    product computed again finds the task as submitted (conftest fails on a run_spec
    collision)."""
    A, x = rand(300, 20), rand(20, seed=1)
    CA = await dc.encode(A, 6, 4, verify="detect", client=c)
    y = CA @ x
    first = await c.compute(y)
    again = await c.compute(y)
    np.testing.assert_allclose(first, again)
    np.testing.assert_allclose(again, A @ x, rtol=1e-10)
    with dask.config.set({"coded.verify.quarantine-after": None}):
        assert plugin(s).quarantine.suspects.events == 0


@gen_cluster(client=True, nthreads=SIX, timeout=60, config=NO_QUARANTINE)
async def test_plain_dask_products_under_coded_matmul_are_corrected(c, s, *workers):
    """A least-squares gradient step written in plain dask, A @ w and A.T @ r both coded
    in the graph with verify='correct': right, with one worker corrupting every product."""
    import dask.array as da

    await c.register_plugin(dc.FirstKPlugin())
    An, w = rand(600, 30), rand(30, seed=1)
    A = da.from_array(An, chunks=(100, 30))
    bad = str(workers[2].name)
    await c.register_plugin(CorruptProducts([bad], how="offset"))
    with dc.coded_matmul(n=6, k=4, verify="correct") as opt:
        for _ in range(2):
            r = A @ w - 1.0
            g = await c.compute(A.T @ r)
            np.testing.assert_allclose(g, An.T @ (An @ w - 1.0), rtol=0, atol=1e-8)
    assert {rec.operation for rec in opt.rewrites} >= {"A @ x", "A.T @ x"}
    await until(lambda: plugin(s).quarantine.suspects.events >= 2)
    table = await c.scheduler.coded_suspects()
    assert [row["name"] for row in table if row["located"]] == [bad], (table, {w.address: w.name for w in workers})


@gen_cluster(client=True, nthreads=SIX, timeout=60,
             config={**VALIDATE, "coded.verify.quarantine-after": 1, "coded.verify.retire": True})
async def test_a_quarantined_worker_is_retired_when_asked(c, s, *workers):
    A, x = rand(600, 40), rand(40, seed=1)
    CA = await dc.encode(A, 6, 4, verify="correct", client=c)
    bad = CA.workers[0]
    await c.register_plugin(CorruptProducts([name_of(workers, bad)], how="zeros"))
    np.testing.assert_allclose(await c.compute(CA @ x), A @ x, rtol=0, atol=1e-8)
    await until(lambda: bad not in s.workers, timeout=20)
    assert len(s.workers) == 5
    # its block was made again on the others: the code still corrects, from 6 products
    np.testing.assert_allclose(await c.compute(CA @ x), A @ x, rtol=0, atol=1e-8)


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 12, timeout=60, config=NO_QUARANTINE)
async def test_a_grouped_code_corrects_a_corrupt_worker_in_each_group(c, s, *workers):
    A, x = rand(480, 30), rand(30, 2, seed=1)
    CA = await dc.encode(A, 12, 8, kind="grouped", verify="correct", client=c)
    assert "verify='correct'" in repr(CA) and CA.code.kind == "grouped"
    first, second = CA.code.members
    await corrected_every_call(c, s, workers, CA, A, x,
                               [CA.workers[first[2]], CA.workers[second[5]]], "sign")


@gen_cluster(client=True, nthreads=SIX, timeout=60, config=NO_QUARANTINE)
async def test_a_polynomial_code_of_dask_operands_corrects_a_corrupt_worker(c, s, *workers):
    """dc.matmul(verify="correct") of dask operands encoded in the graph: each call is
    right, and the worker whose products were wrong is located in every call."""
    An, Bn = rand(40, 12), rand(12, 30, seed=1)
    A, B = da.from_array(An, chunks=(20, 6)), da.from_array(Bn, chunks=(6, 15))
    await c.register_plugin(dc.FirstKPlugin())
    bad = workers[2]
    await c.register_plugin(CorruptProducts([str(bad.name)], how="offset"))
    for _ in range(3):
        C = dc.matmul(A, B, 6, "polynomial", (2, 2), verify="correct", client=c)
        np.testing.assert_allclose(await c.compute(C), An @ Bn, rtol=0, atol=1e-8)
    await until(lambda: plugin(s).quarantine.suspects.events == 3)
    (top,) = await c.scheduler.coded_suspects()
    assert top["worker"] == bad.address and top["located"] == 3
