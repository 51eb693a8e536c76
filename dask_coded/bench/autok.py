"""``k="auto"`` against fixed ``k``, side by side on one cluster.

    python -m dask_coded bench autok [--n 12 --mu 0.2 --scale 2 --calls 40]

One in-process cluster of ``n`` single-thread workers; a shifted-exponential delay per
coded product (the paper's model, ``mu``, ``scale`` seconds for the whole job). By
default released stragglers keep running, as real slow work does in Dask (a released
task's thread is not interrupted), so a low ``k`` leaves long leftovers that delay the
next call; ``--interruptible`` ends them instead, as the theory assumes. One warm-up call
runs before any delay is injected (its fast products are the outliers a naive fit
collapses on). Prints, per scheme, the mean time of the last ``--last`` calls and the
``k`` in use, and the ratio of ``auto`` to the best fixed ``k``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from distributed import Client, LocalCluster

import dask_coded as dc
from dask_coded import theory


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dask_coded bench autok", description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=12, help="workers (default 12)")
    p.add_argument("--mu", type=float, default=0.2, help="straggling rate (default 0.2)")
    p.add_argument("--scale", type=float, default=2.0,
                   help="seconds of the whole job without straggling (default 2)")
    p.add_argument("--calls", type=int, default=40, help="calls per scheme (default 40)")
    p.add_argument("--last", type=int, default=10, help="calls averaged (default 10)")
    p.add_argument("--ks", default="", help="fixed k values (default: optimal_k and 3n/4)")
    p.add_argument("--interruptible", action="store_true",
                   help="released stragglers stop their injected delay")
    return p.parse_args(argv)


def run(client, matrix, x, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        np.asarray((matrix @ x).compute())
        times.append(time.perf_counter() - t)
    return times


def main(argv=None) -> int:
    args = parse(argv)
    n = args.n
    fixed = ([int(k) for k in args.ks.split(",")] if args.ks
             else sorted({theory.optimal_k(n, args.mu), (3 * n) // 4}))
    rng = np.random.default_rng(0)
    A, x = rng.standard_normal((100 * n, 50)), rng.standard_normal(50)
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=False, memory_limit=0,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        matrices = {f"k={k}": dc.encode(A, n, k, client=client) for k in fixed}
        matrices["auto"] = dc.encode(A, n, "auto", client=client)
        for m in matrices.values():
            (m @ x).compute()  # warm-up, before any delay
        client.register_plugin(dc.stragglers.StragglerPlugin(
            dc.stragglers.ShiftedExponential(mu=args.mu, scale=args.scale), seed=3,
            match=("coded-prod",), interruptible=args.interruptible))
        print(f"n={n}, mu={args.mu}, scale {args.scale} s, {args.calls} calls each, "
              f"stragglers {'interrupted' if args.interruptible else 'keep running'}; "
              f"theory's optimal k = {theory.optimal_k(n, args.mu)}")
        print("| scheme | k at the end | mean of last calls s | min | max |\n|---|---|---|---|---|")
        means = {}
        for label, m in matrices.items():
            times = run(client, m, x, args.calls)[-args.last:]
            means[label] = float(np.mean(times))
            print(f"| {label} | {m.k} | {means[label]:.3f} | {min(times):.3f} | "
                  f"{max(times):.3f} |", flush=True)
            time.sleep(args.scale)  # let this scheme's leftovers drain
        best = min((v, k) for k, v in means.items() if k != "auto")
        print(f"auto / best fixed ({best[1]}): {means['auto'] / best[0]:.2f}; auto's "
              f"choices: {[(h['calls'], h.get('chosen')) for h in matrices['auto'].history]}")
    return 0
