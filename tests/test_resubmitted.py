"""Plain dask solvers resubmit graphs that share keys with earlier ones (a persisted
``X @ beta`` reused by a line search): under ``coded_matmul`` the scheduler must find the
shared decode keys as their graph made them (the suite-wide fixture in ``conftest.py``
fails any test in which distributed warns about a key whose dependencies changed)."""

import asyncio

import dask
import dask.array as da
import numpy as np
import pytest
from distributed.utils_test import async_poll_for, gen_cluster

import dask_coded as dc

VALIDATE = {"distributed.scheduler.validate": True, "distributed.worker.validate": True}


async def line_search(c, seed: int, iterations: int, persist: bool = False,
                      steps: int = 2) -> None:
    """Gradient descent with a backtracking line search on dask arrays, as a plain dask
    solver writes it: ``X @ beta`` persisted and reused, ``X.T @ r`` recomputed (``X``
    itself persisted first with ``persist``)."""
    rng = np.random.default_rng(seed)
    Xn, yn = rng.standard_normal((600, 5)), rng.standard_normal(600)
    X = da.from_array(Xn, chunks=(100, 5))
    if persist:
        X = c.persist(X)
    y = da.from_array(yn, chunks=100)
    beta = np.zeros(5)
    with dc.coded_matmul(n=6, k=4):
        for _ in range(iterations):
            Xbeta = X.dot(beta)
            f, g = await c.gather(c.compute([((Xbeta - y) ** 2).sum(), X.T.dot(Xbeta - y)]))
            np.testing.assert_allclose(g, Xn.T @ (Xn @ beta - yn), rtol=1e-8, atol=1e-8)
            Xb = c.persist(Xbeta)  # kept while the line search runs
            step = 1e-3
            for _ in range(steps):
                trial = beta - step * g
                fn = await c.compute(((X.dot(trial) - y) ** 2).sum())
                again = await c.compute(X.T.dot(Xb - y))  # Xbeta's decode, resubmitted
                np.testing.assert_allclose(again, g, rtol=1e-8, atol=1e-8)
                np.testing.assert_allclose(fn, np.sum((Xn @ trial - yn) ** 2), rtol=1e-8)
                step /= 2
            beta = trial
            del Xb


async def slow_worker(c, name, seed: int = 0) -> None:
    await c.register_plugin(dc.stragglers.StragglerPlugin(
        dc.stragglers.SlowWorkers(seconds={str(name): 0.2}), seed=seed, interruptible=True))


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 6, config=VALIDATE, timeout=120)
async def test_a_line_search_reusing_persisted_products_keeps_the_graph_consistent(
        c, s, *workers):
    await c.register_plugin(dc.FirstKPlugin())
    await slow_worker(c, workers[2].name)
    await line_search(c, 0, 3)
    plugin = s.plugins[dc.FirstKPlugin.name]
    assert plugin.stats["pruned"] > 0  # first k of n was in play
    assert dask.config.get("array_optimize", None) is None


@pytest.mark.slow
@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 6, config=VALIDATE, timeout=300)
async def test_a_plain_solver_runs_twenty_times_without_a_hang_or_a_warning(c, s, *workers):
    """Twenty solver runs with a slow worker: each run within its bound (no hang), the
    plugin's tables empty after each (the conftest fixture fails the test on
    distributed's run_spec warning)."""
    await c.register_plugin(dc.FirstKPlugin())
    plugin = s.plugins[dc.FirstKPlugin.name]
    await slow_worker(c, workers[2].name)
    for run in range(20):
        await asyncio.wait_for(line_search(c, run, 1, steps=1), 60)
        await async_poll_for(lambda: not plugin.group_table.groups
                             and not plugin.group_table.products, timeout=10)
    assert plugin.tracked()["pruned"] == 0


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 6, config=VALIDATE, timeout=60)
async def test_the_same_products_under_a_new_decode_stay_tracked(c, s, *workers):
    """Computing one expression again gives its products the same keys and their fused
    decode a new one; when the first call's decode is forgotten, the plugin keeps the
    products it now files under the second: that call decodes early too."""
    await c.register_plugin(dc.FirstKPlugin())
    await c.register_plugin(dc.stragglers.StragglerPlugin(
        dc.stragglers.SlowWorkers(seconds={str(workers[3].name): 5.0}), seed=0,
        match=("coded-prod",), interruptible=True))
    rng = np.random.default_rng(0)
    An, w = rng.standard_normal((600, 30)), rng.standard_normal(30)
    A = da.from_array(An, chunks=(100, 30))
    plugin = s.plugins[dc.FirstKPlugin.name]
    with dc.coded_matmul(n=6, k=4):
        expr = A.T @ (A @ w - 1.0)
        first = c.compute(expr)
        np.testing.assert_allclose(await first, An.T @ (An @ w - 1.0), rtol=1e-8)
        pruned = plugin.stats["pruned"]
        second = c.compute(expr)
        del first  # its decode is forgotten while the second call runs
        np.testing.assert_allclose(await second, An.T @ (An @ w - 1.0), rtol=1e-8)
    assert plugin.stats["pruned"] - pruned == 2  # both layers started before the straggler
