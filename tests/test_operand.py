"""dc.encode_operand: A's encoded operands of a 2-D code made once, B encoded per call."""

import time

import dask.array as da
import numpy as np
import pytest
from distributed import Client, LocalCluster

import dask_coded as dc
import dask_coded.keys


def operands(seed=0, cols=90):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((120, 50)), rng.standard_normal((50, cols))


@pytest.fixture
def six():
    with LocalCluster(n_workers=6, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield cluster, client


def block_keys(client, token):
    """``{index: nbytes}`` of the encoded operands of ``token`` the scheduler holds."""
    prefix = f"{dc.keys.BLOCK_PREFIX}{token}"
    return client.run_on_scheduler(lambda dask_scheduler: {
        k[1]: ts.nbytes for k, ts in dask_scheduler.tasks.items()
        if isinstance(k, tuple) and str(k[0]) == prefix})


def test_local_operand_serves_every_b_and_both_schemes():
    A, _ = operands()
    for scheme, splits in (("polynomial", (2, 3)), ("matdot", 3)):
        for points in ("real", "complex"):
            EA = dc.encode_operand(A, 8, scheme, splits, points=points, client=None)
            assert "local" in repr(EA) and f"points={points!r}" in repr(EA)
            for cols in (90, 7):
                B = operands(cols, cols)[1]
                C = EA @ B
                assert C.shape == (120, cols)
                np.testing.assert_allclose(C.compute(), A @ B, atol=1e-10)
            Bd = da.from_array(B, chunks=(20, 3))
            np.testing.assert_allclose(dc.matmul(EA, Bd).compute(), A @ B, atol=1e-10)


def test_bad_input_names_the_problem():
    A, B = operands()
    with pytest.raises(dc.errors.CodeParameterError, match=r"does not code both operands.*\['matdot', 'polynomial'\]"):
        dc.encode_operand(A, 6, "mds", client=None)
    with pytest.raises(dc.errors.CodeParameterError, match="more than n=3"):
        dc.encode_operand(A, 3, "polynomial", (2, 2), client=None)
    bad = A.copy()
    bad[1, 2] = np.inf
    with pytest.raises(dc.errors.NonFiniteError, match="A contains NaN"):
        dc.encode_operand(bad, 6, client=None)
    EA = dc.encode_operand(A, 6, client=None)
    with pytest.raises(dc.errors.BlockShapeError, match="A @ B needs"):
        EA @ A
    bad = B.copy()
    bad[4, 4] = np.nan
    with pytest.raises(dc.errors.NonFiniteError, match="B contains NaN"):
        EA @ bad
    with pytest.raises(dc.errors.CodeParameterError, match="encoded for n=6"):
        dc.matmul(EA, B, 5)
    with pytest.raises(dc.errors.CodeParameterError, match="needs n"):
        dc.matmul(A, B)
    EA.release()
    assert "released" in repr(EA)
    with pytest.raises(dc.CodedError, match="released"):
        EA @ B


def test_encoded_once_then_only_b_travels_and_the_slow_worker_is_left_out(six):
    cluster, client = six
    A, B = operands(1)
    info = dc.workers.worker_info(client)
    slow = str(info[sorted(info)[5]]["name"])
    client.register_plugin(dc.stragglers.StragglerPlugin(dc.stragglers.SlowWorkers(seconds={slow: 30.0}),
                                              match=("coded-prod",), interruptible=True))
    EA = dc.encode_operand(A, 6, "polynomial", (2, 2))  # threshold 4
    assert "on 6 workers" in repr(EA) and len(set(EA.workers)) == 6
    first = block_keys(client, EA.token)
    # each worker holds half of A (real points at n = 6)
    assert sorted(first) == list(range(6))
    assert all(nb <= A.nbytes / 2 + 1000 for nb in first.values())
    for seed, cols in ((2, 90), (3, 40)):
        B = operands(seed, cols)[1]
        C = EA @ B
        # B's encoded operand in each product: half of B, not all of it
        products = [v for k, v in dict(C.dask).items() if "coded-prod" in str(k)]
        b_encoded = [a for t in products for a in t.args if isinstance(a, np.ndarray)]
        assert len(b_encoded) == 6 and all(s.nbytes == B.nbytes // 2 for s in b_encoded)
        np.testing.assert_allclose(C.compute(), A @ B, atol=1e-10)
    stats = client.sync(client.scheduler.coded_first_k_stats)
    assert stats["released"] >= 2  # the slow worker's product, in each call
    assert block_keys(client, EA.token) == first  # the same operands, not encoded again
    assert dc.release(EA) == 1  # as EA.release()
    for _ in range(100):
        if not block_keys(client, EA.token):
            break
        time.sleep(0.02)
    assert block_keys(client, EA.token) == {}


def test_dask_operands_are_encoded_on_the_workers(six):
    cluster, client = six
    An, Bn = operands(4)
    A = da.from_array(An, chunks=(50, 20))
    B = da.from_array(Bn, chunks=(25, 40))
    EA = dc.encode_operand(A, 6, "matdot", 2)
    C = EA @ B
    # each product gathers B's chunks and encodes its own: no array in the graph
    products = [v for k, v in dict(C.dask).items() if "coded-prod" in str(k)]
    assert len(products) == 6
    assert not any(isinstance(a, np.ndarray) for t in products for a in t.args)
    np.testing.assert_allclose(C.compute(), An @ Bn, atol=1e-10)
    bad = Bn.copy()
    bad[0, 0] = np.nan
    with pytest.raises(dc.errors.NonFiniteError, match="B contains NaN"):
        (EA @ da.from_array(bad, chunks=25)).compute()
    with pytest.raises(dc.errors.NonFiniteError, match="A contains NaN"):
        dc.encode_operand(da.from_array(bad.T, chunks=30), 6, "matdot", 2)


def test_too_few_workers_and_lost_workers(six):
    cluster, client = six
    A, B = operands(5)
    with pytest.raises(dc.errors.TooFewWorkersError, match="needs n workers; the cluster has 6"):
        dc.encode_operand(A, 7, "polynomial", (2, 2))
    EA = dc.encode_operand(A, 6, "polynomial", (2, 2))  # threshold 4: two may be lost
    for name in list(cluster.workers)[:2]:
        client.sync(cluster.workers[name].close)
    np.testing.assert_allclose((EA @ B).compute(), A @ B, atol=1e-10)
    B2 = operands(6)[1]
    np.testing.assert_allclose((EA @ B2).compute(), A @ B2, atol=1e-10)
