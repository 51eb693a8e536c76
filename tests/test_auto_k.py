"""k="auto": k follows the straggling the scheduler observes."""

import dask
import numpy as np
import pytest
from distributed import Client, LocalCluster

import dask_coded as dc
from dask_coded import theory


def test_auto_k_moves_to_the_optimum_for_the_observed_mu():
    A, x = np.random.default_rng(0).standard_normal((240, 5)), np.ones(5)
    with dask.config.set({"coded.auto-k.every": 6, "coded.auto-k.min-calls": 4,
                          "coded.auto-k.max-step": 8}), \
            LocalCluster(n_workers=8, threads_per_worker=1, processes=False,
                         dashboard_address=None) as cluster, Client(cluster) as client:
        client.register_plugin(dc.StragglerPlugin(dc.ShiftedExponential(mu=0.2, scale=0.4),
                                                  seed=3, match=("coded-prod",)))
        CA = dc.encode(A, 8, "auto", client=client)
        assert CA.auto and CA.k == theory.optimal_k(8, 1.0) == 6
        for _ in range(7):
            np.testing.assert_allclose((CA @ x).compute(), A @ x)
        first = CA.history[0]
        assert first["observed"] == 5  # calls 1-5 (the 6th is the one re-choosing k)
        assert 0.1 < first["mu"] < 0.4  # fitted from what the scheduler saw (true: 0.2)
        assert CA.k == first["chosen"] == theory.optimal_k(8, first["mu"]) < 6
        np.testing.assert_allclose((CA @ x).compute(), A @ x)  # re-encoded, still right


def test_auto_blocks_per_worker_moves_to_several_blocks_under_per_call_straggling():
    """A slow worker stays slow for the whole call: at the first re-choice (r = 1, where
    the model cannot be told) the policy takes several blocks per worker, which wins in
    either model when block products are cheap to schedule; products stay correct."""
    A, x = np.random.default_rng(1).standard_normal((480, 5)), np.ones(5)
    with dask.config.set({"coded.auto-k.every": 6, "coded.auto-k.min-calls": 4,
                          "coded.auto-k.task-overhead": 0.002}), \
            LocalCluster(n_workers=8, threads_per_worker=1, processes=False,
                         dashboard_address=None) as cluster, Client(cluster) as client:
        client.register_plugin(dc.StragglerPlugin(
            dc.ShiftedExponential(mu=1.0, scale=0.4, per="call"), seed=5,
            match=("coded-prod",), interruptible=True))
        CA = dc.encode(A, 8, "auto", blocks_per_worker="auto", client=client)
        assert (CA.k, CA.blocks_per_worker) == (6, 1)
        for _ in range(7):
            np.testing.assert_allclose((CA @ x).compute(), A @ x)
        first = CA.history[0]
        assert first["per"] == "either" and 0.4 < first["mu"] < 2.5
        assert (CA.k, CA.blocks_per_worker) == first["chosen"] and CA.blocks_per_worker > 1
        np.testing.assert_allclose((CA @ x).compute(), A @ x)  # re-encoded, still right


def test_auto_k_needs_a_cluster():
    with pytest.raises(dc.CodedError, match="distributed client"):
        dc.encode(np.ones((10, 2)), 4, "auto", client=None)
    with pytest.raises(dc.CodeParameterError, match="integer or 'auto'"):
        dc.encode(np.ones((10, 2)), 4, "best", client=None)
    with pytest.raises(dc.CodeParameterError, match="together with k='auto'"):
        dc.encode(np.ones((10, 2)), 4, 3, blocks_per_worker="auto", client=None)
