"""A @ B with both operands large: 2-D codes against plain dask and 1-D MDS, one cluster.

    python benchmarks/bench_matmul2d.py [--n 12 --calls 6 --scale 2.0]
    python -m dask_coded bench matmul2d [same options]

First the numerics: the worst relative decode error over survivor sets (``dc.audit``) of
the interpolation each 2-D code needs: at the roots of unity, in the Chebyshev basis at
Chebyshev points (``dc.matmul``'s two choices), and with monomials at the same real
points (the classic real polynomial code, the anchor).

Then one LocalCluster of ``n`` single-thread worker processes; ``A`` (r x s) and ``B``
(s x t, at least as large as A). With ``--operands numpy`` they are numpy arrays on the
client, as a pipeline that makes both in every step has them; with ``--operands dask``
they are dask arrays persisted on the workers before the timed calls (the same chunks and
placement for every scheme), as in a pipeline of dask arrays. Per call: plain dask
``A @ B`` (dask's blockwise matmul and its tree sum; work stealing on), 1-D MDS of A
(``dc.encode(A)`` once, then ``CA @ B``: all of B goes to every worker), and
``dc.matmul`` polynomial and MatDot (numpy operands encoded on the client; dask operands
encoded on the workers), polynomial (3, 3) with A encoded once (``dc.encode_operand(A)``
before the calls, as the 1-D MDS row's A; each call encodes only B); with dask operands
also the plain ``A @ B`` inside ``dc.coded_matmul(n, scheme="auto")``.
Delays: one slowness per worker per call (``ShiftedExponential(per="call")``, mu = 1)
in proportion to each product's share of the flops, released delays end. Bytes are every
process's writes during the calls (``bench.bytecount``), per product, beside the count of
the encoded operands the theory counts. ``--mbps`` limits what the master (this process:
the client, and the scheduler LocalCluster runs here) sends, a token bucket on its
connections (``bench.bytecount.throttle``), as a link between machines would; workers
send to each other unlimited. The theory column is the expected call under the
same model without overhead: for a code, the threshold-th fastest of ``n`` products
(``theory.blocks_time``); for plain dask, dynamic scheduling of its block products with
free stealing (``theory.chunks_time``); last, the oracle (``theory.oracle_time``), which
no scheme beats, and the best code with several products per worker
(``theory.best_blocks``).
"""

from __future__ import annotations

import sys
import warnings

import dask.array as da
import numpy as np
from distributed import wait

import dask_coded as dc
from dask_coded import theory
from dask_coded.bench import bytecount
from dask_coded.bench.bytecount import ByteMeter
from dask_coded.bench.timing import cluster, measure, overheads, parser, write_csv
from dask_coded.codes import audit, make_code
from dask_coded.schemes.polynomial import PolynomialScheme

CONFIGS = [("polynomial", (2, 2)), ("polynomial", (2, 3)), ("polynomial", (3, 3)),
           ("matdot", 3), ("matdot", 5)]
TIMED = [(kind, splits, "auto") for kind, splits in CONFIGS] + [("polynomial", (3, 3), "complex")]


def threshold(kind: str, splits) -> int:
    return splits[0] * splits[1] if kind == "polynomial" else 2 * splits - 1


def numerics(ns=(8, 12, 16, 24)) -> None:
    print("## decode accuracy: worst relative error over survivor sets\n")
    print("| scheme | n | threshold | roots of unity | Chebyshev basis, Chebyshev points | "
          "monomials, Chebyshev points |")
    print("|---|---|---|---|---|---|")
    for kind, splits in CONFIGS:
        t = threshold(kind, splits)
        for n in ns:
            if t > n:
                continue
            errors = [audit(make_code(n, t, family), trials=300).worst_error
                      for family in ("rotation", "chebyshev", "vandermonde")]
            print(f"| {kind} {splits} | {n} | {t} | "
                  + " | ".join(f"{e:.1e}" for e in errors) + " |", flush=True)


def parse(argv=None):
    p = parser("matmul2d", __doc__, calls=6, scale=2.0)
    p.add_argument("--rows", type=int, default=1200, help="rows of A (default 1200)")
    p.add_argument("--inner", type=int, default=600, help="columns of A, rows of B")
    p.add_argument("--cols", type=int, default=1200, help="columns of B (default 1200)")
    p.add_argument("--operands", choices=("numpy", "dask"), default="numpy",
                   help="numpy on the client, or dask persisted on the workers "
                        "(default numpy)")
    p.add_argument("--runs", type=int, default=1,
                   help="times every scheme is timed, in turn, on the same cluster (each "
                        "run draws its own delays); more than one adds the spread")
    p.add_argument("--mbps", type=float, default=None,
                   help="limit what the master (this process: the client and the "
                        "scheduler) sends to MB/s during the timed calls, as a network "
                        "link would; workers in processes of their own (not --threads) "
                        "send to each other unlimited (default: no limit)")
    return p.parse_args(argv)


def costs(code: PolynomialScheme, A, B, operands: str) -> tuple[float, dict]:
    """Bytes the theory sends to the workers per call, and each product's share of the
    work: numpy operands travel encoded (``|A| / m + |B| / p`` per worker, twice that
    with complex points); dask operands are gathered by each encoding worker (``|A| +
    |B|``)."""
    m, p = (code.m, code.p) if code.kind == "polynomial" else (code.m, code.m)
    if operands == "dask":
        size = A.nbytes + B.nbytes
    else:
        size = (1 if code.real else 2) * (A.nbytes / m + B.nbytes / p)
    work = 1 / code.threshold if code.kind == "polynomial" else 1 / m
    return code.n_blocks * size, {f"coded-prod-t{code.threshold}-": work}


def theory_seconds(model, n: int, threshold: int, work: float) -> float:
    """Expected seconds of a call that decodes from the first ``threshold`` of ``n``
    products of work ``work`` each, one per worker (``theory.blocks_time`` scaled: its
    products have work ``1 / threshold``)."""
    return theory.blocks_time(model, n, threshold, 1)[0] * work * threshold


def schemes_on(client, A, B, n: int, operands: str, model) -> list[tuple]:
    """``(label, theory bytes to workers per call, work shares, theory seconds, call)``
    for each scheme (theory seconds under ``model``: plain dask's as dynamic scheduling
    with free stealing of its block products, ``theory.chunks_time``)."""

    def expected(kind, threshold, work):
        if kind == "plain":
            return theory.chunks_time(model, n, plain_tasks)[0]
        return theory_seconds(model, n, threshold, work)

    want = A @ B
    k = max(1, round(3 * n / 4))
    chunks_a, chunks_b = (A.shape[0] // 4, A.shape[1] // 3), (B.shape[0] // 3, B.shape[1] // 3)
    plain_tasks = 4 * 3 * 3
    if operands == "dask":  # persisted on the workers: every scheme starts from there
        A, B = client.persist([da.from_array(A, chunks=chunks_a),
                               da.from_array(B, chunks=chunks_b)])
        wait([A, B])
        plain_a, plain_b = A, B
    else:
        plain_a = plain_b = None
    CA = dc.encode(A, n, k, client=client)

    def plain():
        a = plain_a if plain_a is not None else da.from_array(A, chunks=chunks_a)
        b = plain_b if plain_b is not None else da.from_array(B, chunks=chunks_b)
        return (a @ b).compute()

    def checked(make):
        def call():
            np.testing.assert_allclose(make(), want, rtol=1e-8, atol=1e-8 * np.abs(want).max())
        return call

    out = [
        # dask fuses each block product with the first sum of its tree: "chunk_sum-..."
        # tasks hold the products, "_chunk_sum-..." the rest of the tree
        ("plain dask A @ B", A.nbytes + B.nbytes,
         {"_chunk_sum": 0.0, "chunk_sum": 1 / plain_tasks},
         expected("plain", None, None), checked(plain)),
        (f"1-D MDS of A, k={k}", n * B.nbytes, {f"coded-prod-t{k}-": 1 / k},
         expected("mds", k, 1 / k), checked(lambda: (CA @ B).compute())),
    ]
    for kind, splits, points in TIMED:
        if threshold(kind, splits) > n:
            continue
        code = PolynomialScheme(n, kind, splits, A.shape, B.shape, points)
        size, work = costs(code, A, B, operands)
        out.append((f"{kind} {splits} {code.points}", size, work,
                    expected(kind, code.threshold, next(iter(work.values()))),
                    checked(lambda kind=kind, splits=splits, points=points:
                            dc.matmul(A, B, n, kind, splits, points=points).compute())))
    # A encoded once, like the 1-D MDS row's A: each call encodes and sends only B (the
    # polynomial split with the most pieces that n allows)
    splits = max((s for kind, s in CONFIGS if kind == "polynomial" and s[0] * s[1] <= n),
                 key=lambda s: s[0] * s[1], default=None)
    if splits is not None:
        once = PolynomialScheme(n, "polynomial", splits, A.shape, B.shape)
        EA = dc.encode_operand(A, n, "polynomial", splits, client=client)
        size = n * B.nbytes if operands == "dask" else once.n_blocks * B.nbytes / once.p * (
            1 if once.real else 2)
        out.append((f"polynomial {splits} {once.points}, A encoded once", size,
                    {f"coded-prod-t{once.threshold}-": 1 / once.threshold},
                    expected("polynomial", once.threshold, 1 / once.threshold),
                    checked(lambda: (EA @ B).compute())))
    if operands == "dask":
        plan = dc.plan_matmul(A.shape, B.shape, n)
        # a copy of A that was never encoded (the rewrite would multiply CA's resident
        # blocks, the 1-D code above): what a user who calls no dc function has
        fresh = client.persist(da.from_array(A.compute(), chunks=chunks_a, name=False))
        wait(fresh)

        def rewritten():
            with dc.coded_matmul(n, k, scheme="auto") as optimizer:
                out = (fresh @ B).compute()
            (record,) = [r for r in optimizer.rewrites if r.reason is None]
            assert record.token is not None, "the rewrite used dc.encode's blocks: not the 2-D code"
            return out

        if plan.scheme == "mds":
            cost = (n * B.nbytes, {f"coded-prod-t{plan.threshold}-": 1 / plan.threshold})
        else:  # A's encoded operands resident after the first call: B to each product
            work = costs(PolynomialScheme(n, plan.scheme, plan.splits, A.shape, B.shape),
                         A, B, operands)[1]
            cost = (n * B.nbytes, work)
        # the plain layer's keys that now cut C into blocks ("chunk_sum") carry no work
        out.append((f"coded_matmul(scheme='auto'): {plan.scheme} {plan.splits}", cost[0],
                    {**cost[1], "chunk_sum": 0.0},
                    expected(plan.scheme, plan.threshold, next(iter(cost[1].values()))),
                    checked(rewritten)))
    return out


def timed(client, schemes: list, overhead: dict, model, args, seed: int) -> list[dict]:
    """Each scheme's calls under the straggler model (the same draws for every scheme:
    ``seed``), printed as a table row: times, the same less the overhead, theory, and
    the bytes every process wrote per product."""
    print("| scheme | mean s | median s | net mean s | theory s | MB sent per product | "
          "theory MB |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    with ByteMeter(client) as meter:
        for label, theory_bytes, work, theory_s, call in schemes:
            client.register_plugin(dc.stragglers.StragglerPlugin(
                model, seed=seed, match=("chunk_sum", "coded-prod"), work=work,
                interruptible=True))
            before = meter.totals()
            times = measure(client, call, args.calls)
            after = meter.totals()
            sent = (after["client"] - before["client"]
                    + sum(after["workers"].values()) - sum(before["workers"].values()))
            per = sent / (args.calls + 2) / args.n / 1e6
            row = {"scheme": label, "mean": float(np.mean(times)),
                   "median": float(np.median(times)),
                   "net": float(np.mean(times)) - overhead[label], "theory": theory_s,
                   "mb_per_product": per, "theory_mb": theory_bytes / args.n / 1e6}
            rows.append(row)
            print(f"| {label} | {row['mean']:.3f} | {row['median']:.3f} | {row['net']:.3f} | "
                  f"{theory_s:.3f} | {per:.2f} | {row['theory_mb']:.2f} |", flush=True)
    return rows


def best_ratios(rows: list[dict]) -> dict[str, tuple]:
    """Of one run: per kind of 2-D code (A and B encoded in each call; A encoded once),
    the fastest, and plain dask's and 1-D MDS's mean over its mean."""
    plain, mds = rows[0], rows[1]
    pools = {"A and B encoded in each call": [
                 r for r in rows[2:] if "encoded once" not in r["scheme"]
                 and not r["scheme"].startswith("coded_matmul")],
             "A encoded once, as for 1-D MDS": [
                 r for r in rows if "encoded once" in r["scheme"]]}
    out = {}
    for what, pool in pools.items():
        if pool:
            best = min(pool, key=lambda r: r["mean"])
            out[what] = (best["scheme"], plain["mean"] / best["mean"],
                         mds["mean"] / best["mean"])
    return out


def spread(runs: list[list[dict]]) -> None:
    """Each scheme's mean per call over the runs (lowest and highest run), and the best
    2-D codes' ratios in every run."""
    print(f"\n## over {len(runs)} runs: mean s per call (lowest run, highest run)\n")
    print("| scheme | mean of runs | lowest | highest |")
    print("|---|---|---|---|")
    for i, row in enumerate(runs[0]):
        means = [run[i]["mean"] for run in runs]
        print(f"| {row['scheme']} | {np.mean(means):.3f} | {min(means):.3f} | "
              f"{max(means):.3f} |")
    ratios = [best_ratios(run) for run in runs]
    for what in ratios[0]:
        print(f"\nbest 2-D code, {what}, per run: " + "; ".join(
            f"{r[what][0]} {r[what][1]:.2f}x vs plain dask, {r[what][2]:.2f}x vs 1-D MDS"
            for r in ratios))


def main(argv=None) -> int:
    args = parse(argv)
    # numpy operands embedded in plain dask's graph in every call: the pattern measured
    warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
    numerics()
    rng = np.random.default_rng(0)
    A = rng.standard_normal((args.rows, args.inner))
    B = rng.standard_normal((args.inner, args.cols))
    model = dc.stragglers.ShiftedExponential(mu=1.0, scale=args.scale, per="call")
    runs = []
    with cluster(args) as (client, names, _):
        schemes = schemes_on(client, A, B, args.n, args.operands, model)
        bytecount.throttle(args.mbps * 1e6 if args.mbps else None)
        try:
            overhead = overheads(client, schemes)
            link = f", the master's link at {args.mbps:g} MB/s" if args.mbps else ""
            for run in range(args.runs):
                print(f"\n## A {A.shape} @ B {B.shape} ({args.operands}), {args.n} workers, "
                      f"per-worker mu=1, job {args.scale} s, {args.calls} calls{link}"
                      + (f", run {run + 1} of {args.runs}" if args.runs > 1 else "") + "\n")
                runs.append(timed(client, schemes, overhead, model, args, seed=7 + run))
                for what, (label, vs_plain, vs_mds) in best_ratios(runs[-1]).items():
                    print(f"\nbest 2-D code, {what}: {label}; vs plain dask "
                          f"{vs_plain:.2f}x; vs 1-D MDS {vs_mds:.2f}x")
        finally:
            bytecount.throttle(None)
    if len(runs) > 1:
        spread(runs)
    rows = runs[0]
    plain = rows[0]
    oracle = theory.oracle_time(model, args.n)[0]
    print(f"\noracle (the work split by each worker's speed in the call, known in advance): "
          f"{oracle:.3f} s, {plain['theory'] / oracle:.2f}x faster than plain dask's theory; "
          f"one product per worker at best "
          f"{min(r['theory'] for r in rows[1:]):.3f} s (theory)")
    k, r, several = theory.best_blocks(model, args.n)
    print(f"several products per worker at best (A coded by rows, {r} blocks per worker, "
          f"k={k}, all of B on every worker; any layout that gives each worker less of B "
          f"restricts which products can stand in for which): {several:.3f} s (theory, no "
          f"per-block overhead), {plain['theory'] / several:.2f}x faster than plain dask's "
          f"theory")
    every = [{**row, "run": i + 1} for i, run in enumerate(runs) for row in run]
    print(f"wrote {write_csv(every, args.out, 'matmul2d.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
