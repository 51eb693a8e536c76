"""dc.matmul: both operands encoded, on the local scheduler and on a cluster."""

import asyncio
import time

import dask.array as da
import numpy as np
import pytest
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.utils_test import gen_cluster

import dask_coded as dc
import dask_coded.keys

VALIDATE = {"distributed.scheduler.validate": True, "distributed.worker.validate": True}


def operands(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((120, 50)), rng.standard_normal((50, 90))


def test_local_polynomial_and_matdot_match_numpy():
    A, B = operands()
    for scheme, splits in (("polynomial", (2, 3)), ("matdot", 3)):
        for points in ("real", "complex"):
            C = dc.matmul(A, B, 8, scheme, splits, points=points, client=None)
            assert C.shape == (120, 90)
            np.testing.assert_allclose(C.compute(), A @ B, atol=1e-10)


def test_bad_operands_name_the_problem():
    A, B = operands()
    with pytest.raises(dc.errors.BlockShapeError, match="A @ B needs"):
        dc.matmul(A, A, 6, client=None)
    with pytest.raises(dc.errors.DtypeError, match="complex"):
        dc.matmul(A.astype(complex), B, 6, client=None)
    bad = A.copy()
    bad[3, 4] = np.nan
    with pytest.raises(dc.errors.NonFiniteError, match="A contains NaN"):
        dc.matmul(bad, B, 6, client=None)


def test_on_a_cluster_the_slow_worker_is_left_out_and_only_encoded_operands_travel():
    A, B = operands(1)
    with LocalCluster(n_workers=6, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        info = dc.workers.worker_info(client)
        slow = str(info[sorted(info)[5]]["name"])
        client.register_plugin(dc.stragglers.StragglerPlugin(dc.stragglers.SlowWorkers(seconds={slow: 30.0}),
                                                  match=("coded-prod",), interruptible=True))
        C = dc.matmul(A, B, 6, "polynomial", (2, 2))
        blocks = client.run_on_scheduler(lambda dask_scheduler: {
            k[1]: ts.nbytes for k, ts in dask_scheduler.tasks.items()
            if isinstance(k, tuple) and str(k[0]).startswith("coded-block-")})
        np.testing.assert_allclose(C.compute(), A @ B, atol=1e-10)
        stats = client.sync(client.scheduler.coded_first_k_stats)
    # each worker holds half of A and half of B (real points at n = 6)
    assert sorted(blocks) == list(range(6))
    assert all(nb <= (A.nbytes + B.nbytes) / 2 + 1000 for nb in blocks.values())
    assert stats["pruned"] >= 1 and stats["released"] >= 1


@pytest.mark.parametrize("shape_a,shape_b,scheme,threshold", [
    ((120, 60), (60, 120), "polynomial", 6), ((8, 400), (400, 8), "matdot", 5),
    ((400, 6), (6, 1), "mds", 6)])
def test_auto_picks_by_bytes_and_is_correct(shape_a, shape_b, scheme, threshold):
    plan = dc.plan_matmul(shape_a, shape_b, 8)
    assert plan.scheme == scheme and plan.threshold == threshold
    assert plan.bytes[scheme] == min(plan.bytes.values()) and scheme in repr(plan)
    rng = np.random.default_rng(2)
    A, B = rng.standard_normal(shape_a), rng.standard_normal(shape_b)
    np.testing.assert_allclose(dc.matmul(A, B, 8, "auto", client=None).compute(), A @ B,
                               atol=1e-9)


def test_losing_up_to_n_minus_threshold_workers_still_decodes():
    A, B = operands(3)
    with LocalCluster(n_workers=6, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        C = dc.matmul(A, B, 6, "polynomial", (2, 2))  # threshold 4: two may be lost
        for name in list(cluster.workers)[:2]:
            client.sync(cluster.workers[name].close)
        np.testing.assert_allclose(C.compute(), A @ B, atol=1e-10)


# ---- dask operands: encoded on the workers ---------------------------------------------

SIX = [("127.0.0.1", 1)] * 6


@pytest.mark.parametrize("scheme, splits", [("polynomial", (2, 2)), ("matdot", 2)])
@gen_cluster(client=True, nthreads=SIX, config=VALIDATE)
async def test_dask_operands_are_encoded_on_distinct_workers_and_not_kept(
        c, s, *workers, scheme, splits):
    """Dask operands never pass through the client: each worker's pair is encoded where it
    is pinned (six distinct workers), the slow worker is left out, and once the call is
    done nothing of it stays (no resident blocks, no tracked state)."""
    An, Bn = operands(4)
    A = da.from_array(An, chunks=(50, 20))  # uneven chunks: 50, 50, 20 by 20, 20, 10
    B = da.from_array(Bn, chunks=(25, 40))
    await c.register_plugin(dc.FirstKPlugin())
    slow = str(workers[5].name)
    await c.register_plugin(dc.stragglers.StragglerPlugin(dc.stragglers.SlowWorkers(seconds={slow: 30.0}),
                                               match=("coded-prod",), interruptible=True))
    plugin = s.plugins[dc.FirstKPlugin.name]
    C = dc.matmul(A, B, 6, scheme, splits, client=c)
    placed = {}

    def watch(key, start, finish, *args, **kwargs):
        if finish == "memory" and dc.keys.is_call_block(key):
            placed[key[1]] = kwargs.get("worker")

    s.add_plugin(name="watch", plugin=type("Watch", (SchedulerPlugin,), {
        "transition": lambda self, *a, **kw: watch(*a, **kw)})())
    got = await c.compute(C)
    np.testing.assert_allclose(got, An @ Bn, atol=1e-10)
    # the pairs that were needed, each on its own worker (the slow worker's may be
    # released before it is made)
    assert len(placed) >= 3 and len(set(placed.values())) == len(placed)
    assert plugin.stats["released"] >= 1  # the slow worker's product
    del got, C
    for _ in range(100):
        if not any(plugin.tracked().values()):
            break
        await asyncio.sleep(0.02)
    assert plugin.tracked() == dict.fromkeys(plugin.tracked(), 0)
    assert plugin.resident == {}


@gen_cluster(client=True, nthreads=SIX, config=VALIDATE)
async def test_a_nan_in_a_dask_operand_fails_the_call_naming_it(c, s, *workers):
    An, Bn = operands(5)
    Bn[7, 3] = np.inf
    C = dc.matmul(da.from_array(An, chunks=40), da.from_array(Bn, chunks=30), 6, client=c)
    with pytest.raises(dc.errors.NonFiniteError, match="B contains NaN or Inf"):
        await c.compute(C)


# ---- precision: rows and columns of very different scales -------------------------------

def badly_scaled(seed=7):
    """A whose two row halves, and B whose two column halves, differ by 14 and 12 orders
    of magnitude: a polynomial code with ``splits=(2, 2)`` mixes each row of A's upper
    half with a row of its lower half, and each column of B's left half with one of its
    right half."""
    rng = np.random.default_rng(seed)
    A, B = rng.standard_normal((24, 10)), rng.standard_normal((10, 12))
    A[:12] *= 1e8
    A[12:] *= 1e-6
    B[:, :6] *= 1e-5
    B[:, 6:] *= 1e7
    return A, B


def entry_errors(C, A, B):
    """``|C - A B|`` entry by entry, relative to ``||A_r|| ||B_c||``."""
    scale = np.outer(np.linalg.norm(A, axis=1), np.linalg.norm(B, axis=0))
    return np.abs(np.asarray(C) - A @ B) / scale


CODES_2D = [("polynomial", (2, 2)), ("polynomial", (2, 3)), ("matdot", 2)]


@pytest.mark.parametrize("scheme, splits", CODES_2D)
@pytest.mark.parametrize("points", ["real", "complex"])
def test_each_entry_is_right_relative_to_its_row_and_column_locally(scheme, splits, points):
    A, B = badly_scaled()
    Ad, Bd = da.from_array(A, chunks=(8, 5)), da.from_array(B, chunks=(5, 4))
    results = {
        "numpy": dc.matmul(A, B, 6, scheme, splits, points=points, client=None),
        "encoded operand, dask B": dc.encode_operand(A, 6, scheme, splits, points=points,
                                                     client=None) @ Bd,
    }
    with dc.coded_matmul(6, scheme=scheme, splits=splits, points=points):
        results["rewrite"] = (Ad @ Bd).compute(scheduler="threads")
    for path, C in results.items():
        C = C.compute() if isinstance(C, da.Array) else C
        assert entry_errors(C, A, B).max() < 1e-10, path


@pytest.mark.parametrize("scheme, splits", CODES_2D)
def test_each_entry_is_right_relative_to_its_row_and_column_on_a_cluster(scheme, splits):
    """Every path of a 2-D code on distributed: numpy operands, an encoded operand of a
    numpy or a dask A times numpy or dask B, dask operands encoded in the graph, and the
    rewrite (A's encoded operands resident, reused by a second call)."""
    A, B = badly_scaled()
    Ad, Bd = da.from_array(A, chunks=(8, 5)), da.from_array(B, chunks=(5, 4))
    with LocalCluster(n_workers=6, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        EA, EAd = (dc.encode_operand(X, 6, scheme, splits) for X in (A, Ad))
        results = {
            "numpy": dc.matmul(A, B, 6, scheme, splits),
            "encoded numpy A, numpy B": EA @ B,
            "encoded numpy A, dask B": EA @ Bd,
            "encoded dask A, numpy B": EAd @ B,
            "encoded dask A, dask B": EAd @ Bd,
            "dask operands": dc.matmul(Ad, Bd, 6, scheme, splits),
        }
        results = dict(zip(results, client.compute(list(results.values()), sync=True)))
        with dc.coded_matmul(6, scheme=scheme, splits=splits) as opt:
            for call in ("rewrite", "rewrite, resident A"):
                results[call] = (Ad @ Bd).compute()
        assert [r.reused for r in opt.rewrites] == [False, True]
        EA.release()
        EAd.release()
        # A's row scales are released with its encoded operands
        names = {prefix + E.token for E in (EA, EAd)
                 for prefix in (dc.keys.SCALES_PREFIX, dc.keys.BLOCK_PREFIX)}
        for _ in range(100):
            left = client.run_on_scheduler(lambda dask_scheduler: [
                k for k in dask_scheduler.tasks if dc.keys.key_name(k) in names])
            if not left:
                break
            time.sleep(0.05)
        assert not left
    for path, C in results.items():
        assert entry_errors(C, A, B).max() < 1e-10, path


@gen_cluster(client=True, nthreads=SIX, config=VALIDATE)
async def test_an_asynchronous_client_awaits_the_encoded_operand(c, s, *workers):
    """encode_operand with an asynchronous client is awaited (numpy and dask A); dc.matmul
    of numpy operands, which would wait inside, says what to do instead."""
    An, Bn = operands(5)
    await c.register_plugin(dc.FirstKPlugin())
    for A in (An, da.from_array(An, chunks=(60, 25))):
        EA = await dc.encode_operand(A, 6, "polynomial", (2, 2), client=c)
        assert len(set(EA.workers)) == 6 and "on 6 workers" in repr(EA)
        np.testing.assert_allclose(await c.compute(EA @ Bn), An @ Bn, atol=1e-10)
        EA.release()
    with pytest.raises(dc.errors.CodedError, match="await dc.encode_operand"):
        dc.matmul(An, Bn, 6, client=c)
