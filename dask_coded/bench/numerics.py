"""Worst-case accuracy and throughput of every code family.

    python -m dask_coded bench numerics [--rows 1000000] [--out docs/numerics.md]

For each (n, k): every family's worst-case condition number and worst relative decode
error over survivor sets (float64; exhaustive where C(n, k) <= 50,000, else sampled plus
structured sets plus a local search), then encode and decode throughput in GB/s beside
numpy's own matmul on the same shapes:

* encode: k blocks -> n coded blocks, vs numpy ``G @ X`` with X the stacked blocks;
* decode: a ``rows``-row result (k results of rows/k rows, x 1-D) from a non-systematic
  survivor set with its factorisation cached, vs numpy ``inv(G[S]) @ R`` (the same shape
  of work with the inverse precomputed). ``ratio`` = decode time / that matmul's time.
"""

from __future__ import annotations

import argparse
import sys
import time

import dask
import numpy as np

import dask_coded as dc
from dask_coded.codes import FAMILIES, MAX_N
from dask_coded.codes.survivors import generator_rows

PAIRS = [(6, 4), (12, 8), (12, 9), (16, 12), (20, 16), (24, 16), (24, 20), (30, 26), (32, 24)]


def best_time(fn, repeat=5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def throughput(code: dc.MDSCode, rows: int, rng: np.random.Generator) -> dict:
    k, s = code.k, code.symbols
    r = code.coded_rows(-(-rows // k))
    blocks = [rng.standard_normal(r) for _ in range(k)]
    X = np.stack(blocks).reshape(k * s, -1)
    nbytes = X.nbytes
    t_enc = best_time(lambda: code.encode(blocks))
    t_enc_np = best_time(lambda: code.generator @ X)
    coded = code.encode(blocks)
    # parity-heavy, never the fast path; a least-squares code decodes from its threshold
    survivors = tuple(range(code.n - code.threshold, code.n))
    results = {j: coded[j] for j in survivors}
    code.decode(results)  # warm the factorisation cache
    t_dec = best_time(lambda: code.decode(results))
    # numpy's own solve of the same system (a pseudo-inverse when it is overdetermined)
    inv = np.linalg.pinv(code.generator[generator_rows(np.array([survivors]), s)[0]])
    R = np.stack([coded[j] for j in survivors]).reshape(len(survivors) * s, -1)
    t_dec_np = best_time(lambda: inv @ R)
    return {
        "enc_gbs": nbytes / t_enc / 1e9,
        "enc_np_gbs": nbytes / t_enc_np / 1e9,
        "dec_gbs": nbytes / t_dec / 1e9,
        "dec_np_gbs": nbytes / t_dec_np / 1e9,
        "dec_ms": t_dec * 1e3,
        "dec_np_ms": t_dec_np * 1e3,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dask_coded bench numerics", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the decoded result")
    p.add_argument("--trials", type=int, default=2000, help="sampled survivor sets when large")
    p.add_argument("--out", help="also write the markdown table to this file")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)

    lines = [
        "| n | k | family | auto | worst cond | worst rel. error | sets | encode GB/s (numpy) "
        "| decode GB/s (numpy) | decode ms (numpy ms, ratio) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    print(lines[0])
    for n, k in PAIRS:
        auto = dc.make_code(n, k).kind
        for kind in sorted(FAMILIES):
            if n > MAX_N[kind]:
                continue
            code = dc.make_code(n, k, kind)
            a = dc.audit(code, trials=args.trials, rng=0)
            # speed only: the reference family's decodes are timed though they miss the
            # accuracy bound a decode enforces (its errors are the audit columns)
            with dask.config.set({"coded.decode.max-error": float("inf")}):
                t = throughput(code, args.rows, rng)
            sets = f"{'all' if a.exhaustive else 'sampled'} {a.sets_checked}/{a.total_sets}"
            line = (
                f"| {n} | {k} | {kind} | {'*' if kind == auto else ''} | {a.worst_cond:.3g} "
                f"| {a.worst_error:.2e} | {sets} | {t['enc_gbs']:.2f} ({t['enc_np_gbs']:.2f}) "
                f"| {t['dec_gbs']:.2f} ({t['dec_np_gbs']:.2f}) "
                f"| {t['dec_ms']:.2f} ({t['dec_np_ms']:.2f}, {t['dec_ms'] / t['dec_np_ms']:.2f}x) |"
            )
            lines.append(line)
            print(line, flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write(f"<!-- made by: python {' '.join(sys.argv)} -->\n")
            f.write("\n".join(lines) + "\n")
    return 0

