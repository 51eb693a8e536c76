"""The peers: plain dask, replication and speculative backups give numpy's answer."""

import numpy as np
import pytest
from distributed import Client, LocalCluster

import dask_coded as dc
from dask_coded.workers import worker_info
from dask_coded.bench.peers import (
    PlainMatrix,
    ReplicatedMatrix,
    SpeculativeMatrix,
    speculative_matmul,
)


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=4, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((103, 7)), rng.standard_normal(7)


def test_plain_matrix(client, data):
    A, x = data
    for blocks in (4, 16):
        P = PlainMatrix(A, blocks, client)
        assert P.array.numblocks[0] == blocks
        np.testing.assert_allclose((P @ x).compute(), A @ x)


def test_replicated_matrix_takes_the_first_copy(client, data):
    A, x = data
    R = ReplicatedMatrix(A, 4, 2, client)
    assert len(R.pieces) == 2 and all(len(set(m.workers)) == 2 for m in R.pieces)
    np.testing.assert_allclose((R @ x).compute(), A @ x)
    with pytest.raises(ValueError, match="dividing n=4"):
        ReplicatedMatrix(A, 4, 3, client)


def test_speculative_backs_up_a_straggler(client, data):
    A, x = data
    S = SpeculativeMatrix(A, 4, client)
    y, backups = speculative_matmul(S, x)
    np.testing.assert_allclose(y, A @ x)
    assert backups == 0  # nobody straggled
    info = worker_info(client)
    slow = str(info[S.workers[3]]["name"])
    client.register_plugin(dc.stragglers.StragglerPlugin(
        dc.stragglers.SlowWorkers(seconds={slow: 2.0}, scale=0.2), work={"spec-prod-": 0.25},
        match=("spec-prod-",)))
    try:
        y, backups = speculative_matmul(S, x)
    finally:
        client.unregister_worker_plugin(dc.stragglers.StragglerPlugin.name)
    np.testing.assert_allclose(y, A @ x)
    assert backups == 1  # the slow block was duplicated on an idle worker
