"""Logistic regression by gradient coding and by coded products, against scikit-learn."""

import numpy as np
import pytest
from distributed import Client, LocalCluster

import dask_coded as dc

sklearn = pytest.importorskip("sklearn")
from sklearn.datasets import load_breast_cancer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402


def objective(X, y, w, l2):
    z = X @ w
    return np.mean(np.logaddexp(0, z) - y * z) + 0.5 * l2 * w @ w


def sklearn_fit(X, y, l2):
    """scikit-learn's optimum of the same objective: C = 1 / (l2 m), no intercept."""
    fit = LogisticRegression(C=1 / (l2 * len(y)), fit_intercept=False, tol=1e-12,
                             max_iter=100000).fit(X, y)
    w = fit.coef_.ravel()
    return w, objective(X, y, w, l2)


def breast_cancer():
    X, y = load_breast_cancer(return_X_y=True)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    return np.hstack([X, np.ones((len(X), 1))]), y.astype(float)


def synthetic(m=600, d=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, d))
    y = (rng.random(m) < 1 / (1 + np.exp(-X @ rng.standard_normal(d)))).astype(float)
    return X, y


@pytest.fixture(scope="module")
def cluster_client():
    with LocalCluster(n_workers=6, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


@pytest.mark.parametrize("method", ["gradient-coding", "coded-matvec"])
@pytest.mark.parametrize("data", ["breast-cancer", "synthetic"])
def test_reaches_scikit_learns_optimum(cluster_client, method, data):
    X, y = breast_cancer() if data == "breast-cancer" else synthetic()
    l2 = 1.0 / len(y)
    w_ref, best = sklearn_fit(X, y, l2)
    res = dc.logistic_regression(X, y, 6, method, stragglers=2, l2=l2, client=cluster_client)
    assert res.converged, res.message
    assert abs(res.loss - best) <= 1e-6 * best
    assert res.loss == pytest.approx(objective(X, y, res.w, l2), rel=1e-12)
    np.testing.assert_allclose(res.w, w_ref, atol=1e-3 * np.abs(w_ref).max())
    assert res.time_to(best) <= sum(res.seconds)
    assert all(len(u) >= 4 for u in res.used)  # every evaluation: n - s = 4 or more workers
    assert "loss" in res._repr_html_() and "<svg" in res._repr_html_()


def test_a_slow_worker_is_left_out(cluster_client):
    X, y = synthetic(seed=1)
    info = dc.workers.worker_info(cluster_client)
    slow = str(info[sorted(info)[2]]["name"])
    cluster_client.register_plugin(dc.stragglers.StragglerPlugin(
        dc.stragglers.SlowWorkers(seconds={slow: 30.0}), match=("coded-prod",), interruptible=True))
    try:
        res = dc.logistic_regression(X, y, 6, stragglers=1, l2=1e-3, max_iter=5,
                                     client=cluster_client)
    finally:
        cluster_client.unregister_worker_plugin(dc.stragglers.StragglerPlugin.name)
    assert res.used and all(2 not in u for u in res.used)


def test_local_scheduler_and_bad_input():
    X, y = synthetic(m=200)
    l2 = 1e-2
    _, best = sklearn_fit(X, y, l2)
    res = dc.logistic_regression(X, y, 4, stragglers=1, l2=l2, client=None)
    assert abs(res.loss - best) <= 1e-6 * best
    with pytest.raises(dc.CodedError, match="method must be"):
        dc.logistic_regression(X, y, 4, "newton", client=None)
    with pytest.raises(ValueError, match="labels 0 and 1"):
        dc.logistic_regression(X, 2 * y, 4, client=None)
    with pytest.raises(dc.errors.BlockShapeError, match="one label per row"):
        dc.logistic_regression(X, y[:-1], 4, client=None)
