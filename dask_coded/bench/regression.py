"""Coded gradient descent against uncoded, under injected stragglers, on one cluster.

    python benchmarks/bench_regression.py [--n 10 --k 8 --iters 30 --mu 1.0 --scale 1.0]
    python -m dask_coded bench regression [same options]

The paper's experiment: least squares by gradient descent on a 10-worker cluster with a
(10, 8) code for A and A^T, against the same function with n = k (uncoded), both under
the shifted-exponential straggler model (released stragglers end their injected delay,
so iterations are independent). Prints time per iteration, the final residual of both
runs beside numpy.linalg.lstsq's, and the speed-up.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import dask_coded as dc


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--mu", type=float, default=1.0)
    p.add_argument("--scale", type=float, default=1.0, help="seconds of one whole product")
    p.add_argument("--threads", action="store_true", help="in-process workers")
    args = p.parse_args(argv)
    from distributed import Client, LocalCluster

    rng = np.random.default_rng(0)
    A = rng.standard_normal((200 * args.n, 40))
    y = A @ rng.standard_normal(40) + 0.1 * rng.standard_normal(len(A))
    best = float(np.linalg.norm(A @ np.linalg.lstsq(A, y, rcond=None)[0] - y))
    with LocalCluster(n_workers=args.n, threads_per_worker=1, processes=not args.threads,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.register_plugin(dc.stragglers.StragglerPlugin(
            dc.stragglers.ShiftedExponential(mu=args.mu, scale=args.scale), seed=0,
            match=("coded-prod",), interruptible=True))
        runs = {}
        for label, k in (("uncoded", args.n), (f"coded ({args.n}, {args.k})", args.k)):
            runs[label] = dc.linear_regression(A, y, args.n, k, iters=args.iters, client=client)
    print(f"least squares {A.shape}, {args.iters} iterations, {args.n} workers, "
          f"shifted exponential mu={args.mu}, scale={args.scale} s; lstsq residual {best:.6f}")
    for label, r in runs.items():
        print(f"{label:>16}: {np.median(r.seconds):.3f} s per iteration (median), "
              f"total {sum(r.seconds):.2f} s, final residual {r.residuals[-1]:.6f}")
    (u, c) = runs.values()
    print(f"speed-up coded vs uncoded: {sum(u.seconds) / sum(c.seconds):.2f}x "
          f"(theory for one product: "
          f"{dc.theory.expected_time('uncoded', args.n, mu=args.mu) / dc.theory.expected_time('mds', args.n, args.k, args.mu):.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
