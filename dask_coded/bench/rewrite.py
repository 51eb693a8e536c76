"""Plain dask code in an iterative loop: plain, rewritten by ``coded_matmul``, and ``encode()``d.

    python -m dask_coded bench rewrite [--n 6 --k 4 --rows 60000 --cols 400 --calls 6]

One LocalCluster of ``n`` single-thread worker processes; A persisted in ``n`` row chunks
(the same placement for every scheme). Each scheme runs ``calls`` calls of
``(A @ x).compute()`` with a fresh x: plain dask; the same plain code inside
``dc.coded_matmul(n, k)`` (A encoded in its first call, resident after it); and
``dc.encode(A, n, k) @ x``. Then the same with one worker adding ``--slow`` seconds to
every product task. Prints the first call and the median of the others, and the ratios
the target is stated in: rewrite / encode()d and rewrite / plain, side by side.
"""

from __future__ import annotations

import argparse
import time
import warnings

import dask.array as da
import numpy as np
from distributed import Client, LocalCluster, wait

import dask_coded as dc
from dask_coded.workers import worker_info


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dask_coded bench rewrite", description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=6, help="workers and coded blocks (default 6)")
    p.add_argument("--k", type=int, default=4, help="products a decode needs (default 4)")
    p.add_argument("--rows", type=int, default=60_000, help="rows of A (default 60000)")
    p.add_argument("--cols", type=int, default=400, help="columns of A (default 400)")
    p.add_argument("--calls", type=int, default=6, help="calls per scheme (default 6)")
    p.add_argument("--slow", type=float, default=2.0,
                   help="seconds the slow worker adds to each product (default 2)")
    return p.parse_args(argv)


def timed_calls(make, xs, truth) -> list[float]:
    times = []
    for x, want in zip(xs, truth):
        t = time.perf_counter()
        y = make(x).compute()
        times.append(time.perf_counter() - t)
        np.testing.assert_allclose(y, want, rtol=1e-8, atol=1e-8)
    return times


def row(label: str, times: list[float]) -> float:
    rest = float(np.median(times[1:]))
    print(f"| {label} | {times[0]:.3f} | {rest:.3f} | {min(times[1:]):.3f} | "
          f"{max(times[1:]):.3f} |", flush=True)
    return rest


def main(argv=None) -> int:
    args = parse(argv)
    rng = np.random.default_rng(0)
    An = rng.standard_normal((args.rows, args.cols))
    xs = [rng.standard_normal(args.cols) for _ in range(args.calls)]
    truth = [An @ x for x in xs]
    with LocalCluster(n_workers=args.n, threads_per_worker=1, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
            A = client.persist(da.from_array(An, chunks=(-(-args.rows // args.n), -1)))
        wait(A)
        CA = dc.encode(A, args.n, args.k)
        slow = str(worker_info(client)[CA.workers[1]]["name"])
        print(f"{args.n} worker processes; A {args.rows}x{args.cols} persisted in {args.n} "
              f"row chunks; code ({args.n}, {args.k}); {args.calls} calls per scheme")
        for delay in (0.0, args.slow):
            client.register_plugin(dc.stragglers.StragglerPlugin(
                dc.stragglers.SlowWorkers({slow: delay}), match=("coded-prod", "matmul"),
                interruptible=True))
            print(f"\n### worker {slow!r} adds {delay:g} s to every product\n")
            print("| scheme | first call s | median of the rest s | min | max |\n"
                  "|---|---|---|---|---|")
            plain = row("plain dask", timed_calls(lambda x: A @ x, xs, truth))
            B = A + 0  # a fresh array name: encoded anew by the rewrite
            with dc.coded_matmul(args.n, args.k):
                rewritten = row("coded_matmul (plain code)",
                                timed_calls(lambda x: B @ x, xs, truth))
            encoded = row("dc.encode(A) @ x", timed_calls(lambda x: CA @ x, xs, truth))
            dc.release(B)
            print(f"\nrewrite / encode()d: {rewritten / encoded:.2f}; "
                  f"rewrite / plain: {rewritten / plain:.2f}", flush=True)
    return 0
