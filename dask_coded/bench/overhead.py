"""Per-call cost of ``CA @ x`` against plain dask ``A @ x``, no stragglers, one cluster.

    python -m dask_coded bench overhead [--n 6 --k 4 --calls 30]

Both run side by side (alternating calls) on the same LocalCluster of ``n`` single-thread
worker processes: plain dask on ``A`` persisted as ``n`` row blocks, coded on
``dc.encode(A, n, k)``. Prints, per size, the median and p90 time per call, the ratio
coded / plain next to the inherent extra work ``n / k`` (each coded product is a block of
``rows / k`` rows, ``n`` of them), and the decode task's share of the coded call (from the
task stream).
"""

from __future__ import annotations

import argparse
import time

import dask.array as da
import numpy as np
from distributed import Client, LocalCluster, get_task_stream, wait

import dask_coded as dc

SIZES = [(6_000, 100), (60_000, 100), (300_000, 100)]


def timed(fn):
    """``(seconds, result)`` of one call."""
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def run(client: Client, n: int, k: int, rows: int, cols: int, calls: int) -> dict:
    rng = np.random.default_rng(0)
    A = rng.standard_normal((rows, cols))
    plain_A = client.persist(da.from_array(A, chunks=(-(-rows // n), cols)))
    wait(plain_A)
    CA = dc.encode(A, n, k, client=client)
    xs = [rng.standard_normal(cols) for _ in range(calls)]
    for x in xs[:3]:  # warm up both paths
        (plain_A @ x).compute()
        (CA @ x).compute()
    plain, coded = [], []
    with get_task_stream(client) as stream:
        for x in xs:
            seconds, _ = timed(lambda: (plain_A @ x).compute())
            plain.append(seconds)
            seconds, y = timed(lambda: (CA @ x).compute())
            coded.append(seconds)
            np.testing.assert_allclose(y, A @ x, rtol=1e-8, atol=1e-8)
    decode = [
        sum(ss["stop"] - ss["start"] for ss in rec["startstops"] if ss["action"] == "compute")
        for rec in stream.data
        if "coded-dec-" in str(rec["key"])  # linear fusion may rename it
    ]
    CA.release()
    return {
        "plain": np.median(plain), "plain_p90": np.percentile(plain, 90),
        "coded": np.median(coded), "coded_p90": np.percentile(coded, 90),
        "decode": np.median(decode) if decode else float("nan"),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dask_coded bench overhead", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=6)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--calls", type=int, default=30)
    args = p.parse_args(argv)
    with LocalCluster(n_workers=args.n, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        print(f"LocalCluster: {args.n} worker processes x 1 thread; code (n, k) = "
              f"({args.n}, {args.k}); {args.calls} calls each, alternating")
        print("| A | plain median (p90) ms | coded median (p90) ms | coded/plain | n/k "
              "| decode ms | decode share |")
        print("|---|---|---|---|---|---|---|")
        for rows, cols in SIZES:
            r = run(client, args.n, args.k, rows, cols, args.calls)
            print(f"| {rows}x{cols} | {r['plain'] * 1e3:.1f} ({r['plain_p90'] * 1e3:.1f}) "
                  f"| {r['coded'] * 1e3:.1f} ({r['coded_p90'] * 1e3:.1f}) "
                  f"| {r['coded'] / r['plain']:.2f} | {args.n / args.k:.2f} "
                  f"| {r['decode'] * 1e3:.2f} | {r['decode'] / r['coded']:.1%} |", flush=True)
    return 0

