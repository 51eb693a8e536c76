import numpy as np
import pytest
from distributed import Client, LocalCluster

import dask_coded as dc


def problem(m=400, d=6, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, d))
    return A, A @ rng.standard_normal(d) + 0.05 * rng.standard_normal(m)


def test_local_gradient_descent_reaches_lstsq():
    A, y = problem()
    res = dc.linear_regression(A, y, 5, 3, iters=60, client=None)
    best = np.linalg.norm(A @ np.linalg.lstsq(A, y, rcond=None)[0] - y)
    assert res.residuals[-1] == pytest.approx(best, rel=1e-6)
    # 1/L steps always descend (up to rounding, once converged)
    assert np.all(np.diff(res.residuals) <= 1e-12 * res.residuals[0])


def test_distributed_coded_and_uncoded_agree_and_report_survivors():
    A, y = problem()
    with LocalCluster(n_workers=5, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        info = dc.workers.worker_info(client)
        coded = dc.linear_regression(A, y, 5, 3, iters=30, client=client)
        uncoded = dc.linear_regression(A, y, 5, 5, iters=30, client=client)
        slow = str(info[coded.A.workers[4]]["name"])
        client.register_plugin(dc.stragglers.StragglerPlugin(dc.stragglers.SlowWorkers(seconds={slow: 0.5}),
                                                  match=("coded-prod",), interruptible=True))
        slowed = dc.linear_regression(A, y, 5, 3, iters=3, client=client, x0=coded.x)
    np.testing.assert_allclose(coded.x, uncoded.x, rtol=1e-8)
    # each decode had at least k = 3 finished products (more when some finished before
    # the plugin started it), from distinct coded blocks; the uncoded run (k = n) needs 5
    assert len(coded.used) == 30
    assert all(3 <= len(a) <= 5 and len(set(a)) == len(a) and set(a) <= set(range(5))
               for pair in coded.used for a in pair)
    assert all(a == t == [0, 1, 2, 3, 4] for a, t in uncoded.used)
    assert all(4 not in used_a for used_a, _ in slowed.used)  # the slow worker never used
    with pytest.raises(ValueError, match="rows but y has"):
        dc.linear_regression(A, y[:-1], 5, 3, iters=1, client=None)


def test_straggling_report_names_the_slow_worker():
    A, y = problem()
    with LocalCluster(n_workers=4, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        CA = dc.encode(A, 4, 3, client=client)
        slow_addr = CA.workers[1]
        slow = str(dc.workers.worker_info(client)[slow_addr]["name"])
        client.register_plugin(dc.stragglers.StragglerPlugin(
            dc.stragglers.SlowWorkers(seconds={slow: 0.3}, scale=0.02), match=("coded-prod",)))
        for _ in range(4):
            (CA @ np.ones(6)).compute()
        report = CA.straggling()
        html = CA._repr_html_()
    assert report[slow_addr]["released"] == 4
    fast = [w for w in CA.workers if w != slow_addr]
    assert all(report[w]["finished"] == 4 and report[w]["released"] == 0 for w in fast)
    assert all(report[w]["median"] < 0.2 for w in fast)
    assert "finished / released" in html and ", 4 / 0" in html


@pytest.mark.parametrize("A, y, kwargs, match", [
    (problem()[0], problem()[1], {"iters": 0}, "iters must be a positive integer"),
    (np.zeros((40, 4)), np.ones(40), {"iters": 2}, "A is all zeros"),
    (problem()[0], problem()[1], {"iters": 500, "step": 10.0}, "diverged at iteration .* too large"),
])
def test_bad_settings_are_named(A, y, kwargs, match):
    with pytest.raises(ValueError, match=match):
        dc.linear_regression(A, y, 5, 3, client=None, **kwargs)
    assert "-" in repr(dc.RegressionResult(x=np.zeros(2)))  # no iterations: no residual
