"""Iterative ML loops written as a dask user writes them: plain dask, the same code under
``coded_matmul``, and the ``dc.encode`` path, per iteration.

    python -m dask_coded bench loops [--n 6 --k 5 --rows 60000 --cols 200 --iters 6]

One LocalCluster of ``n`` single-thread worker processes. ``X`` (``rows`` x ``cols``, ``n``
row chunks) and ``y`` are persisted once; each peer gets its own persisted copy (a fresh
name, the same chunking and the same placement policy), so the rewrite encodes in its
first iteration. The loops, each written with no knowledge of this package:

* least squares by gradient descent: ``r = X @ w - y; g = X.T @ r / m``;
* logistic regression by gradient descent: ``p = 1 / (1 + exp(-X @ w)); g = X.T @ (p - y) / m``;
* logistic regression by L-BFGS (``scipy.optimize.minimize``, the loss and gradient
  computed by dask each evaluation).

Peers: plain dask; the same function inside ``dc.coded_matmul(n, k)`` (its default
``first_call="plain"``: the first iteration plain dask, the coded blocks made beside it);
the same with ``first_call="coded"`` (encoded in the first iteration's graph); and the
function given ``CX = dc.encode(X, n, k)`` and ``CX.T`` in place of ``X`` and ``X.T``
(the products coded, the rest plain dask; the encoding, before the loop, is reported
apart as "encode s"). Models: no straggler; one worker slow by ``--slow`` seconds for
every product task (its matmul chunks, the coded products); the same worker slow by
``--slow`` seconds for **every** task it runs (a slow machine). Reported: the first
iteration, the first two together (a first call made plain pays for the encoding it left
to the next), the median of the others, the records of what the rewrite coded, and the
ratios the targets are stated in. Every peer's final ``w`` is checked against plain
dask's to 1e-10 (relative).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import dask
import dask.array as da
import numpy as np
import scipy.optimize
from distributed import Client, LocalCluster, wait

import dask_coded as dc
from dask_coded.workers import worker_info


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dask_coded bench loops", description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=6, help="workers and coded blocks (default 6)")
    p.add_argument("--k", type=int, default=5, help="products a decode needs (default 5)")
    p.add_argument("--rows", type=int, default=60_000, help="rows of X (default 60000)")
    p.add_argument("--cols", type=int, default=200, help="columns of X (default 200)")
    p.add_argument("--iters", type=int, default=6, help="iterations per loop (default 6)")
    p.add_argument("--slow", type=float, default=0.5,
                   help="seconds the slow worker adds to each task (default 0.5)")
    p.add_argument("--loops", default="all", help="comma-separated loop names, or 'all'")
    p.add_argument("--models", default="all", help="comma-separated model names, or 'all'")
    return p.parse_args(argv)


# ---- the loops, as a dask user writes them (X, X.T: any objects with @) ---------------

def least_squares(X, XT, y, iters: int, clock: list) -> np.ndarray:
    m = X.shape[0]
    w = np.zeros(X.shape[1])
    for _ in range(iters):
        t = time.perf_counter()
        r = X @ w - y
        g = XT @ r / m
        w = w - 0.5 * g.compute()
        clock.append(time.perf_counter() - t)
    return w


def logistic_gd(X, XT, y, iters: int, clock: list) -> np.ndarray:
    m = X.shape[0]
    w = np.zeros(X.shape[1])
    for _ in range(iters):
        t = time.perf_counter()
        p = 1 / (1 + da.exp(-(X @ w)))
        g = XT @ (p - y) / m
        w = w - 2.0 * g.compute()
        clock.append(time.perf_counter() - t)
    return w


def logistic_lbfgs(X, XT, y, iters: int, clock: list) -> np.ndarray:
    m = X.shape[0]

    def f(w):
        t = time.perf_counter()
        z = X @ w
        loss = (da.logaddexp(0, z) - y * z).sum() / m
        g = XT @ (1 / (1 + da.exp(-z)) - y) / m
        out = dask.compute(loss, g)
        clock.append(time.perf_counter() - t)
        return float(out[0]), np.asarray(out[1])

    res = scipy.optimize.minimize(f, np.zeros(X.shape[1]), jac=True, method="L-BFGS-B",
                                  options={"maxiter": iters, "maxfun": iters + 2})
    return res.x


LOOPS = {"least-squares GD": least_squares, "logistic GD": logistic_gd,
         "logistic L-BFGS": logistic_lbfgs}


def pick(table: dict, spec: str) -> dict:
    return table if spec == "all" else {k: table[k] for k in spec.split(",")}


def main(argv=None) -> int:
    args = parse(argv)
    rng = np.random.default_rng(0)
    Xn = rng.standard_normal((args.rows, args.cols)) / np.sqrt(args.cols)
    wn = rng.standard_normal(args.cols)
    yn = (rng.random(args.rows) < 1 / (1 + np.exp(-Xn @ wn))).astype(float)
    chunks = -(-args.rows // args.n)
    rows = []
    with LocalCluster(n_workers=args.n, threads_per_worker=1, dashboard_address=None) as lc, \
            Client(lc) as client:
        def persisted():
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
                X = client.persist(da.from_array(Xn.copy(), chunks=(chunks, -1), name=False))
                y = client.persist(da.from_array(yn.copy(), chunks=chunks, name=False))
            wait([X, y])
            return X, y

        names = worker_info(client)
        slow = str(names[sorted(names)[1]]["name"])
        models = {"no straggler": None,
                  "slow products": ("coded-prod", "matmul"),
                  "slow machine (every task)": ()}
        print(f"{args.n} worker processes; X {args.rows}x{args.cols} in {args.n} row chunks; "
              f"code ({args.n}, {args.k}); worker {slow!r} slow by {args.slow:g} s per task; "
              f"{args.iters} iterations per loop")
        for mname, match in pick(models, args.models).items():
            seconds = 0.0 if match is None else args.slow
            client.register_plugin(dc.stragglers.StragglerPlugin(
                dc.stragglers.SlowWorkers({slow: seconds}), match=match or None, interruptible=True))
            for lname, loop in pick(LOOPS, args.loops).items():
                print(f"\n### {lname}, {mname}\n\n| peer | encode s | first s | first two s "
                      f"| median of the rest s | coded products |\n|---|---|---|---|---|---|",
                      flush=True)
                medians, results = {}, {}
                for peer in ("plain dask", "coded_matmul", "coded_matmul, first call coded",
                             "dc.encode"):
                    X, y = persisted()
                    clock: list = []
                    note, encode = "", ""
                    if peer == "plain dask":
                        results[peer] = loop(X, X.T, y, args.iters, clock)
                    elif peer.startswith("coded_matmul"):
                        first = "coded" if peer.endswith("coded") else "plain"
                        with dc.coded_matmul(args.n, args.k, first_call=first) as opt:
                            results[peer] = loop(X, X.T, y, args.iters, clock)
                        records = opt.rewrites
                        ops = sorted({r.operation for r in records if r.reason is None})
                        coded = [r for r in records if r.reason is None and not r.beside]
                        beside = sum(r.beside for r in records)
                        note = f"{len(coded)} of {len(records)}: {', '.join(ops)}" + (
                            f" ({beside} plain, encoding beside)" if beside else "")
                    else:
                        start = time.perf_counter()
                        CX = dc.encode(X, args.n, args.k)
                        CXT = CX.T
                        wait([*CX.blocks, *CXT.blocks])
                        encode = f"{time.perf_counter() - start:.3f}"
                        results[peer] = loop(CX, CXT, y, args.iters, clock)
                        CX.release()
                    dc.release(X)
                    del X, y  # this peer's copy goes with its futures
                    medians[peer] = float(np.median(clock[1:]))
                    rows.append({"model": mname, "loop": lname, "peer": peer,
                                 "first": clock[0], "median": medians[peer]})
                    print(f"| {peer} | {encode} | {clock[0]:.3f} | {clock[0] + clock[1]:.3f} | "
                          f"{medians[peer]:.3f} | {note} |", flush=True)
                base = results["plain dask"]
                for peer, w in results.items():
                    np.testing.assert_allclose(w, base, rtol=1e-10, atol=1e-12,
                                               err_msg=f"{peer} differs from plain dask")
                firsts = {r["peer"]: r["first"] for r in rows
                          if r["model"] == mname and r["loop"] == lname}
                print(f"\nplain / coded_matmul: {medians['plain dask'] / medians['coded_matmul']:.2f}x; "
                      f"coded_matmul / dc.encode: {medians['coded_matmul'] / medians['dc.encode']:.2f}; "
                      f"first iteration / plain's: coded_matmul "
                      f"{firsts['coded_matmul'] / firsts['plain dask']:.2f}, first call coded "
                      f"{firsts['coded_matmul, first call coded'] / firsts['plain dask']:.2f}",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
