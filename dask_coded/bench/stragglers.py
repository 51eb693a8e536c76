"""Coded A @ x against every peer, under every straggler model, on one cluster.

    python benchmarks/bench_stragglers.py [--n 12 --calls 10 --scale 0.6 --out results]
    python -m dask_coded bench stragglers [same options]

One LocalCluster of ``n`` single-thread worker processes. For each delay model (shifted
exponential at mu = 0.2, 1, 2; one persistent slow worker at 5x; random stalls) and each
scheme (plain dask on n and on 4n row blocks, 2-replication, speculative backups, and
(n, k) MDS for every k), it times ``calls`` products (after 2 warm-up calls). Released
stragglers stop their injected sleep (``StragglerPlugin(interruptible=True)``) and each
call starts once no worker is executing, so calls are independent as in the theory. Delays are injected by :class:`dask_coded.stragglers.StragglerPlugin` in proportion
to each task's share of the work and dominate compute (A is small).

Each scheme's mean per-call overhead without stragglers is measured first; "net" is the
mean time per call minus it, which is what the theory (an expectation, with no
scheduling cost) predicts.

Writes ``<out>/stragglers.csv`` and ``<out>/stragglers.png`` (time per call against k,
one line per scheme, theory dashed) and prints the best coded scheme against each peer
as ratios measured side by side.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import numpy as np

import dask_coded as dc
from dask_coded import theory
from dask_coded.bench.timing import (
    checked, cluster, measure, overheads, parser, pick, write_csv,
)
from dask_coded.bench.peers import (
    PlainMatrix,
    ReplicatedMatrix,
    SpeculativeMatrix,
    speculative_matmul,
)


def models(scale: float, slow: str) -> dict:
    return {
        "shifted-exp mu=0.2": dc.stragglers.ShiftedExponential(mu=0.2, scale=scale),
        "shifted-exp mu=1": dc.stragglers.ShiftedExponential(mu=1.0, scale=scale),
        "shifted-exp mu=2": dc.stragglers.ShiftedExponential(mu=2.0, scale=scale),
        "slow worker 5x": dc.stragglers.SlowWorkers(scale=scale, factor={slow: 5.0}),
        "stalls p=0.1": dc.stragglers.Stalls(p=0.1, mean=3 * scale / 12, scale=scale),
    }


def theory_for(model, scheme: str, n: int, k=None, r=None, names=None) -> float:
    if isinstance(model, dc.stragglers.ShiftedExponential) and scheme in theory.SCHEMES:
        return model.scale * theory.expected_time(scheme, n, k=k, mu=model.mu, r=r)
    if scheme in theory.SCHEMES:
        return theory.monte_carlo(scheme, model, n, k=k, r=r, trials=4000, seed=1,
                                  workers=names)[0]
    return float("nan")


def parse(argv=None) -> argparse.Namespace:
    p = parser("stragglers", __doc__, calls=10, scale=0.6)
    p.add_argument("--ks", default="all", help="comma-separated k values, or 'all'")
    return p.parse_args(argv)


def schemes_on(client, A: np.ndarray, xs: list, n: int, ks: list[int]) -> list[tuple]:
    """Every scheme, as ``(label, theory scheme, k, r, work shares, call)``; each call
    checks its result against numpy. The peers see the same A, persisted first."""
    plain, plain4 = PlainMatrix(A, n, client), PlainMatrix(A, 4 * n, client)
    rep = ReplicatedMatrix(A, n, 2, client)
    spec = SpeculativeMatrix(A, n, client)
    coded = {k: dc.encode(A, n, k, client=client) for k in ks}
    truth = [A @ x for x in xs]
    check = functools.partial(checked, xs=xs, truth=truth)
    return [
        ("plain n blocks", "uncoded", None, None, {"matmul": 1 / n},
         check(lambda x: (plain @ x).compute())),
        ("plain 4n blocks", "plain-4n", None, None, {"matmul": 1 / (4 * n)},
         check(lambda x: (plain4 @ x).compute())),
        ("2-replication", "replication", None, 2, {"coded-prod-t1-rep": 2 / n},
         check(lambda x: (rep @ x).compute())),
        ("speculative", "speculative", None, None, {"spec-prod-": 1 / n},
         check(lambda x: speculative_matmul(spec, x)[0])),
    ] + [
        (f"mds k={k}", "mds", k, None, {}, check(lambda x, k=k: (coded[k] @ x).compute()))
        for k in ks
    ]


def run_model(client, mname: str, model, schemes: list, overhead: dict, args, names,
              slow: str) -> list[dict]:
    """One table: every scheme under ``model``, ``args.calls`` calls each."""
    n = args.n
    print(f"\n## {mname}  ({n} workers, {args.calls} calls per scheme; "
          f"slow worker: {slow!r})", flush=True)
    print("| scheme | median s | p95 s | mean s | net mean s | theory s |\n"
          "|---|---|---|---|---|---|", flush=True)
    rows = []
    for label, scheme, k, r, work, call in schemes:
        client.register_plugin(dc.stragglers.StragglerPlugin(
            model, seed=7, match=("matmul", "coded-prod", "spec-prod"), work=work,
            interruptible=True))
        times = measure(client, call, args.calls)
        th = theory_for(model, scheme, n, k=k, r=r, names=names)
        row = {"model": mname, "scheme": scheme, "label": label, "k": k or "",
               "median": float(np.median(times)), "p95": float(np.percentile(times, 95)),
               "mean": float(np.mean(times)), "net": float(np.mean(times)) - overhead[label],
               "theory": th, "calls": len(times)}
        rows.append(row)
        print(f"| {label} | {row['median']:.3f} | {row['p95']:.3f} | {row['mean']:.3f} "
              f"| {row['net']:.3f} | {th:.3f} |", flush=True)
    summarize(rows)
    return rows


def main(argv=None) -> int:
    args = parse(argv)
    n = args.n
    ks = list(range(1, n + 1)) if args.ks == "all" else [int(k) for k in args.ks.split(",")]
    rng = np.random.default_rng(0)
    A = rng.standard_normal((100 * n, 50))
    xs = [rng.standard_normal(50) for _ in range(4)]
    rows = []
    with cluster(args) as (client, names, _):
        slow = names[n // 2]
        schemes = schemes_on(client, A, xs, n, ks)
        overhead = overheads(client, schemes)
        chosen = pick(models(args.scale, slow), args.models)
        for mname, model in chosen.items():
            rows += run_model(client, mname, model, schemes, overhead, args, names, slow)
    path = write_csv(rows, args.out, "stragglers.csv")
    plot(rows, n, os.path.join(args.out, "stragglers.png"))
    print(f"\nwrote {path} and {os.path.join(args.out, 'stragglers.png')}")
    return 0


def summarize(rows: list[dict]) -> None:
    mds = [r for r in rows if r["scheme"] == "mds"]
    peers = [r for r in rows if r["scheme"] != "mds"]
    best = min(mds, key=lambda r: r["median"])
    best_peer = min(peers, key=lambda r: r["median"])
    plain = next(r for r in rows if r["label"] == "plain n blocks")
    spec = next(r for r in rows if r["label"] == "speculative")
    dev = [abs(r["net"] / r["theory"] - 1) for r in mds if np.isfinite(r["theory"])]
    print(f"best MDS: {best['label']} {best['median']:.3f} s; vs plain dask "
          f"{plain['median'] / best['median']:.2f}x; vs speculative "
          f"{spec['median'] / best['median']:.2f}x; vs best peer ({best_peer['label']}) "
          f"{best_peer['median'] / best['median']:.2f}x; MDS net mean vs theory: max "
          f"deviation {max(dev):.1%}, mean {np.mean(dev):.1%}", flush=True)


def plot(rows: list[dict], n: int, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), squeeze=False)
    for ax, mname in zip(axes[0], names):
        rs = [r for r in rows if r["model"] == mname]
        mds = sorted((r for r in rs if r["scheme"] == "mds"), key=lambda r: r["k"])
        ks = [r["k"] for r in mds]
        line, = ax.plot(ks, [r["median"] for r in mds], "o-", label="MDS (n, k)")
        ax.plot(ks, [r["net"] for r in mds], ":", color=line.get_color(), lw=1,
                label="MDS mean, net of overhead")
        ax.plot(ks, [r["theory"] for r in mds], "--", color=line.get_color())
        for r in rs:
            if r["scheme"] == "mds":
                continue
            line = ax.axhline(r["median"], lw=1.2, label=r["label"],
                              color=f"C{1 + ['plain n blocks', 'plain 4n blocks', '2-replication', 'speculative'].index(r['label'])}")
            if np.isfinite(r["theory"]):
                ax.axhline(r["theory"], ls="--", lw=0.8, color=line.get_color())
        ax.set_title(mname)
        ax.set_xlabel(f"k (n = {n})")
        ax.set_ylabel("median time per call (s)")
        ax.set_ylim(bottom=0)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("measured (solid) and theory (dashed)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
