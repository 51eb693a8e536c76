"""``python -m dask_coded demo``: a slow worker, plain dask against coded, in numbers."""

from __future__ import annotations

import time
import warnings

import dask.array as da
import numpy as np
from distributed import Client, LocalCluster, wait

from .codes import audit, make_code
from .matrix import encode
from .stragglers import SlowWorkers, StragglerPlugin
from .workers import worker_info


def run_demo(n: int = 6, k: int = 4, seed: int = 0, slow_seconds: float = 2.0,
             calls: int = 3) -> int:
    """Encode A on an embedded LocalCluster with one slow worker; time ``A @ x`` plainly
    and coded, and check both against numpy.

    Returns a process exit code: 0 when every result matches numpy to 1e-8.
    """
    rng = np.random.default_rng(seed)
    code = make_code(n, k)
    print(f"code: {code}\n      {audit(code)}")

    A = rng.standard_normal((60_000, 100))
    xs = [rng.standard_normal(100) for _ in range(calls)]
    ok = True
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
            plain_A = client.persist(da.from_array(A, chunks=(-(-len(A) // n), -1)))
        wait(plain_A)
        CA = encode(A, n, k, client=client)
        slow = worker_info(client)[CA.workers[1]]["name"]
        client.register_plugin(StragglerPlugin(SlowWorkers({str(slow): slow_seconds}),
                                               match=("matmul", "coded-prod")))
        print(f"\ncluster: {n} workers; worker {slow!r} is slow: +{slow_seconds:g} s on each "
              f"block product it runs\nA: {A.shape}, plain dask: {n} row blocks persisted; "
              f"coded: {CA}")

        def timed(make):
            times = []
            for x in xs:
                t = time.perf_counter()
                y = make(x).compute()
                times.append(time.perf_counter() - t)
                err = np.linalg.norm(y - A @ x) / np.linalg.norm(A @ x)
                nonlocal ok
                ok &= bool(err < 1e-8)
            return float(np.median(times)), err

        t_plain, e_plain = timed(lambda x: plain_A @ x)
        t_coded, e_coded = timed(lambda x: CA @ x)
        stats = client.sync(client.scheduler.coded_first_k_stats)
    print(f"\nplain dask  A @ x: median {t_plain:6.3f} s per call   (rel. error {e_plain:.1e})"
          f"\n    every call waits for the slow worker's row block (+{slow_seconds:g} s)")
    print(f"coded (n={n}, k={k}): median {t_coded:6.3f} s per call   (rel. error {e_coded:.1e})"
          f"\n    decoded from the first {k} of {n} coded products: the slow worker's is "
          f"released unused")
    print(f"speed-up: {t_plain / t_coded:.1f}x; the scheduler plugin started "
          f"{stats.get('pruned', 0)} decodes after the first {k} of {n} products and released "
          f"{stats.get('released', 0)} stragglers")
    print("correct:", "yes" if ok else "NO")
    return 0 if ok else 1
