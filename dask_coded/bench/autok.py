"""``k="auto"`` against fixed ``k``, side by side on one cluster.

    python -m dask_coded bench autok [--n 12 --mu 0.2 --scale 2 --calls 40]

One in-process cluster of ``n`` single-thread workers; a shifted-exponential delay per
coded product (the paper's model, ``mu``, ``scale`` seconds for the whole job). By
default released stragglers keep running, as real slow work does in Dask (a released
task's thread is not interrupted), so a low ``k`` leaves long leftovers that delay the
next call; ``--interruptible`` ends them instead, as the theory assumes. With
``--encodes`` the encode tasks are delayed too, in proportion to their work (a coded block
combines all of A's rows: one job), as a slow machine would slow them, the first encodes
as well: ``auto``'s re-encodes then cost what they would, and its first encode says so. One warm-up call runs before any delay is injected
(its fast products are the outliers a naive fit collapses on). Prints, per scheme, the
mean time over every call from the first and of the last ``--last`` calls and the ``k``
in use; the ratio of ``auto`` to the best fixed ``k`` over every call; and auto's worst
10-call window against its starting k's same window (the starting k is always one of the
fixed peers).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from distributed import Client, LocalCluster

import dask_coded as dc
from dask_coded import theory
from .timing import windows


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
    p.add_argument("--encodes", action="store_true",
                   help="delay the encode tasks too, in proportion to their work")
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
    start = dc.policy.AutoK.initial_k(n)
    fixed = ([int(k) for k in args.ks.split(",")] if args.ks
             else sorted({theory.optimal_k(n, args.mu), (3 * n) // 4}))
    fixed = sorted(set(fixed) | {start})
    rng = np.random.default_rng(0)
    A, x = rng.standard_normal((100 * n, 50)), rng.standard_normal(50)
    encodes = ("coded-block", "coded-scales") if args.encodes else ()
    model = dc.stragglers.ShiftedExponential(mu=args.mu, scale=args.scale)
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=False, memory_limit=0,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        if encodes:  # the first encodes are as slow as auto's re-encodes will be
            client.register_plugin(dc.stragglers.StragglerPlugin(
                model, seed=3, match=encodes, work={e: 1.0 for e in encodes}))
        matrices = {f"k={k}": dc.encode(A, n, k, client=client) for k in fixed}
        matrices["auto"] = dc.encode(A, n, "auto", client=client)
        for m in matrices.values():
            (m @ x).compute()  # warm-up, before any delay of the products
        client.register_plugin(dc.stragglers.StragglerPlugin(
            model, seed=3, match=("coded-prod",) + encodes, work={e: 1.0 for e in encodes},
            interruptible=args.interruptible))
        print(f"n={n}, mu={args.mu}, scale {args.scale} s, {args.calls} calls each, "
              f"stragglers {'interrupted' if args.interruptible else 'keep running'}, "
              f"encodes {'delayed' if args.encodes else 'not delayed'}; "
              f"theory's optimal k = {theory.optimal_k(n, args.mu)}")
        print("| scheme | k at the end | mean of every call s | mean of last calls s | min "
              "| max |\n|---|---|---|---|---|---|")
        runs, means = {}, {}
        for label, m in matrices.items():
            runs[label] = times = run(client, m, x, args.calls)
            means[label] = float(np.mean(times))
            last = times[-args.last:]
            print(f"| {label} | {m.k} | {means[label]:.3f} | {np.mean(last):.3f} | "
                  f"{min(times):.3f} | {max(times):.3f} |", flush=True)
            time.sleep(args.scale)  # let this scheme's leftovers drain
        best = min((v, k) for k, v in means.items() if k != "auto")
        worst = float(np.max(windows(runs["auto"]) / windows(runs[f"k={start}"])))
        print(f"auto / best fixed ({best[1]}), every call: {means['auto'] / best[0]:.2f}; "
              f"auto's worst 10-call window / k={start}'s: {worst:.2f}; auto's "
              f"choices: {[(h['calls'], h.get('chosen'), h.get('why')) for h in matrices['auto'].history]}")
    return 0
