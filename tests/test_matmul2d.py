"""dc.matmul: both operands encoded, on the local scheduler and on a cluster."""

import numpy as np
import pytest
from distributed import Client, LocalCluster

import dask_coded as dc


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
    with pytest.raises(dc.BlockShapeError, match="A @ B needs"):
        dc.matmul(A, A, 6, client=None)
    with pytest.raises(dc.DtypeError, match="complex"):
        dc.matmul(A.astype(complex), B, 6, client=None)
    bad = A.copy()
    bad[3, 4] = np.nan
    with pytest.raises(dc.NonFiniteError, match="A contains NaN"):
        dc.matmul(bad, B, 6, client=None)


def test_on_a_cluster_the_slow_worker_is_left_out_and_only_encoded_operands_travel():
    A, B = operands(1)
    with LocalCluster(n_workers=6, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        info = dc.workers.worker_info(client)
        slow = str(info[sorted(info)[5]]["name"])
        client.register_plugin(dc.StragglerPlugin(dc.SlowWorkers(seconds={slow: 30.0}),
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
