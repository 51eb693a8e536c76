"""Several coded blocks per worker against fine-grained plain dask, on one cluster.

    python benchmarks/bench_blocks.py [--n 12 --calls 8 --scale 2.0 --delays released]
    python -m dask_coded bench blocks [same options]

One LocalCluster of ``n`` single-thread workers; ``A`` is persisted on the workers before
any timed call (every peer sees the same placement: plain dask's chunks spread over the
workers, the coded blocks pinned where they were encoded). Schemes:

* plain dask ``A @ x`` on ``n``, ``4n`` and ``8n`` row chunks; work stealing is on (dask's
  default), so a busy worker's queued chunks can move (their data travels with them);
* MDS, one coded block per worker (the paper's scheme), ``k = 9`` and ``k = 6`` (at n=12);
* several coded blocks per worker, ``dc.encode(A, n, k, blocks_per_worker=r)``: ``r = 4``
  and ``r = 8``; the decode takes the first ``k r + margin`` block products;
* per model, the best one-block code and the best several-blocks code the theory finds
  for it (``theory.best_blocks`` over every ``k`` and ``r`` in 2, 4, 8, each block product
  paying ``coded.auto-k.task-overhead``), marked "(theory's best)" where the fixed list
  above does not hold them: every peer and the scheme at its best for the model;
* ``dc.encode(A, n, "auto", blocks_per_worker="auto")``, encoded afresh under each model:
  it learns for ``--warm-up`` calls (two re-choices of ``(k, r)`` at the default 20, not
  timed), then its calls are timed like the others', beside the best fixed ``(k, r)`` of
  the table in hindsight (its policy is told whether released delays keep running,
  ``coded.auto-k.leftovers``).

Straggler models (delays injected in proportion to each task's share of the work, so the
whole job takes ``scale`` seconds without stragglers): the paper's shifted exponential
drawn per task and drawn once per worker per call (mu = 1 and 0.2), a heterogeneous
cluster (a quarter of the workers at half speed) and one persistent 5x slow worker.
Injected delays end when the scheduler releases a task (calls independent, as the theory
assumes); with ``--delays keep-running`` (or ``both``) delays keep their thread busy once
released, as real slow work does, and each scheme's calls run back to back, so a
straggler's leftover delays the next call. Each scheme's per-call overhead without
stragglers is measured first and printed apart. The theory column: ``theory.blocks_time``
for coded schemes (with ``leftovers`` when delays keep running), ``theory.chunks_time``
(dynamic scheduling with free stealing) for plain dask; the oracle line is
``theory.oracle_time``. Writes ``<out>/blocks.csv``.
"""

from __future__ import annotations

import argparse
import os
import sys

import dask
import numpy as np

import dask_coded as dc
from dask_coded import config, theory
from dask_coded.bench.peers import PlainMatrix
from dask_coded.bench.timing import (
    checked, cluster, measure, overheads, parser, pick, write_csv,
)

def coded_schemes(n: int) -> list[tuple[int, int]]:
    """``(k, blocks per worker)``: ``k = 3n/4`` and ``n/2`` (9 and 6 at n = 12)."""
    hi, lo = max(1, round(3 * n / 4)), max(1, n // 2)
    return [(hi, 1), (lo, 1), (hi, 4), (hi, 8), (lo, 8)]

CHUNKS = [1, 4, 8]  # plain dask: chunks per worker


def models(scale: float, names: list[str]) -> dict:
    n = len(names)
    quarter = {w: 2.0 for w in names[: max(1, n // 4)]}
    return {
        "per-task mu=1": dc.stragglers.ShiftedExponential(mu=1.0, scale=scale),
        "per-task mu=0.2": dc.stragglers.ShiftedExponential(mu=0.2, scale=scale),
        "per-worker mu=1": dc.stragglers.ShiftedExponential(mu=1.0, scale=scale, per="call"),
        "per-worker mu=0.2": dc.stragglers.ShiftedExponential(mu=0.2, scale=scale, per="call"),
        "quarter at half speed": dc.stragglers.SlowWorkers(scale=scale, factor=quarter),
        "slow worker 5x": dc.stragglers.SlowWorkers(scale=scale, factor={names[n // 2]: 5.0}),
    }


def parse(argv=None) -> argparse.Namespace:
    p = parser("blocks", __doc__, calls=8, scale=2.0)
    p.add_argument("--delays", choices=("released", "keep-running", "both"),
                   default="released",
                   help="released delays end (calls independent), keep running (calls "
                        "back to back), or both (default released)")
    p.add_argument("--warm-up", type=int, default=20,
                   help="untimed calls auto (k, r) learns from first (default 20)")
    return p.parse_args(argv)


def coded_scheme(client, A: np.ndarray, xs: list, truth: list, n: int, k: int, r: int,
                 note: str = "") -> tuple:
    """``dc.encode(A, n, k, blocks_per_worker=r)`` as a scheme row (see :func:`schemes_on`)."""
    CA = dc.encode(A, n, k, blocks_per_worker=r, client=client)
    t = CA.scheme.threshold
    label = (f"MDS k={k}" if r == 1 else f"{r} blocks/worker k={k}") + note
    return (label, "blocks", k, r, t, {f"coded-prod-t{t}-": 1 / (k * r)},
            checked(lambda x: (CA @ x).compute(), xs, truth))


def schemes_on(client, A: np.ndarray, xs: list, n: int) -> list[tuple]:
    """Every scheme as ``(label, kind, k, r, threshold, work shares, call)``."""
    truth = [A @ x for x in xs]
    out = []
    for c in CHUNKS:
        plain = PlainMatrix(A, c * n, client)
        out.append((f"plain {c if c > 1 else ''}n chunks", "chunks", c, None, None,
                    {"matmul": 1 / (c * n)},
                    checked(lambda x, p=plain: (p @ x).compute(), xs, truth)))
    for k, r in coded_schemes(n):
        out.append(coded_scheme(client, A, xs, truth, n, k, r))
    return out


def theory_best(client, model, data: tuple, n: int, names, schemes: list,
                keep_running: bool = False) -> list[tuple]:
    """The model's best one-block code and best several-blocks code by the theory
    (``theory.best_blocks``, each block product paying ``coded.auto-k.task-overhead``,
    with leftovers when released delays keep running),
    as scheme rows, where the fixed schemes do not hold them already: the peers and the
    scheme are each at their best for the model."""
    A, xs, truth = data
    overhead = float(config.get("auto-k.task-overhead"))
    have = {(row[2], row[3]) for row in schemes if row[1] == "blocks"}
    out = []
    for rs in ((1,), (2, 4, 8)):
        k, r, _ = theory.best_blocks(model, n, rs=rs, trials=500, seed=1, workers=names,
                                     overhead=overhead, leftovers=keep_running)
        if (k, r) not in have:
            out.append(coded_scheme(client, A, xs, truth, n, k, r, " (theory's best)"))
    return out


def theory_for(model, kind: str, n: int, k, r, threshold, names,
               keep_running: bool = False) -> float:
    """Expected seconds per call: dynamic scheduling for plain chunks (nothing released),
    ``blocks_time`` for coded schemes, with leftovers when released delays keep running."""
    if kind == "chunks":
        return theory.chunks_time(model, n, k * n, trials=3000, seed=1, workers=names)[0]
    return theory.blocks_time(model, n, k, r, threshold - k * r, trials=1000, seed=1,
                              workers=names, leftovers=keep_running)[0]


def run_model(client, mname: str, model, schemes: list, overhead: dict, args, names,
              keep_running: bool, data: tuple) -> list[dict]:
    mode = "delays keep running" if keep_running else "released delays end"
    oracle = theory.oracle_time(model, args.n, trials=3000, seed=1, workers=names)[0]
    print(f"\n## {mname}, {mode}  ({args.n} workers, {args.calls} calls per scheme; "
          f"oracle {oracle:.3f} s)", flush=True)
    print("| scheme | median s | p95 s | mean s | net mean s | theory s |\n"
          "|---|---|---|---|---|---|", flush=True)
    rows = []
    best = theory_best(client, model, data, args.n, names, schemes, keep_running)
    if best:
        overhead = {**overhead, **overheads(client, best)}
    for label, kind, k, r, t, work, call in schemes + best:
        client.register_plugin(dc.stragglers.StragglerPlugin(
            model, seed=7, match=("matmul", "coded-prod"), work=work,
            interruptible=not keep_running))
        times = measure(client, call, args.calls, back_to_back=keep_running)
        th = theory_for(model, kind, args.n, k, r, t, names, keep_running)
        row = {"model": mname, "keep_running": keep_running, "scheme": label, "k": k,
               "r": r or "", "median": float(np.median(times)),
               "p95": float(np.percentile(times, 95)), "mean": float(np.mean(times)),
               "net": float(np.mean(times)) - overhead[label], "theory": th, "oracle": oracle}
        rows.append(row)
        print(f"| {label} | {row['median']:.3f} | {row['p95']:.3f} | {row['mean']:.3f} | "
              f"{row['net']:.3f} | {th:.3f} |", flush=True)
    rows.append(auto_row(client, mname, model, data, args, keep_running, oracle))
    summarize(rows, oracle)
    return rows


def auto_row(client, mname: str, model, data: tuple, args, keep_running: bool,
             oracle: float) -> dict:
    """``k="auto", blocks_per_worker="auto"``, encoded afresh (``data``: A, the xs and
    their products): ``args.warm_up`` untimed
    calls to learn from, then ``args.calls`` timed ones with the delays of its chosen
    code (each block product's work ``1 / (k r)``)."""
    A, xs, truth = data
    client.register_plugin(dc.stragglers.StragglerPlugin(model, seed=7, match=("coded-prod",),
                                              interruptible=not keep_running))
    # the policy is told what the injection does with a released straggler's delay
    with dask.config.set({"coded.auto-k.leftovers": keep_running}):
        CA = dc.encode(A, args.n, "auto", blocks_per_worker="auto", client=client)
    for i in range(args.warm_up):
        (CA @ xs[i % len(xs)]).compute()
    k, r = CA.k, CA.tasks_per_worker  # each product task is 1 / (k r) of the work
    client.register_plugin(dc.stragglers.StragglerPlugin(
        model, seed=7, match=("coded-prod",), interruptible=not keep_running,
        work={CA.encoding.products_name: 1 / (k * r)}))
    call = checked(lambda x: (CA @ x).compute(), xs, truth)
    times = measure(client, call, args.calls, back_to_back=keep_running)
    label = f"auto: k={k}, {r} tasks/worker"
    row = {"model": mname, "keep_running": keep_running, "scheme": label, "k": k,
           "r": f"auto {r}", "median": float(np.median(times)),
           "p95": float(np.percentile(times, 95)), "mean": float(np.mean(times)),
           "net": float("nan"), "theory": float("nan"), "oracle": oracle}
    print(f"| {label} (after {args.warm_up} calls) | {row['median']:.3f} | {row['p95']:.3f} "
          f"| {row['mean']:.3f} | - | - |", flush=True)
    CA.release()
    return row


def summarize(rows: list[dict], oracle: float) -> None:
    auto = [r for r in rows if str(r["r"]).startswith("auto")]
    rows = [r for r in rows if r not in auto]
    multi = [r for r in rows if r["r"] not in ("", 1)]
    peers = [r for r in rows if r not in multi]
    best, peer = min(multi, key=lambda r: r["mean"]), min(peers, key=lambda r: r["mean"])
    print(f"best blocks/worker: {best['scheme']} {best['mean']:.3f} s mean; best peer "
          f"({peer['scheme']}) {peer['mean']:.3f} s: {peer['mean'] / best['mean']:.2f}x; "
          f"net mean / oracle {best['net'] / oracle:.2f}; net vs theory "
          f"{best['net'] / best['theory'] - 1:+.1%}", flush=True)
    if auto:
        fixed = min((r for r in rows if r["r"] != ""), key=lambda r: r["mean"])
        print(f"auto {auto[0]['scheme']} {auto[0]['mean']:.3f} s mean; best fixed (k, r) "
              f"in hindsight ({fixed['scheme']}) {fixed['mean']:.3f} s: auto / best "
              f"{auto[0]['mean'] / fixed['mean']:.2f}", flush=True)


def main(argv=None) -> int:
    args = parse(argv)
    n = args.n
    rng = np.random.default_rng(0)
    A = rng.standard_normal((96 * n * 4, 40))  # every chunking divides the rows evenly
    xs = [rng.standard_normal(40) for _ in range(4)]
    rows = []
    with cluster(args) as (client, names, _):
        schemes = schemes_on(client, A, xs, n)
        overhead = overheads(client, schemes)
        chosen = pick(models(args.scale, names), args.models)
        modes = {"released": [False], "keep-running": [True], "both": [False, True]}
        for keep_running in modes[args.delays]:
            for mname, model in chosen.items():
                rows += run_model(client, mname, model, schemes, overhead, args, names,
                                  keep_running, (A, xs, [A @ x for x in xs]))
    path = write_csv(rows, args.out, "blocks.csv")
    plot(rows, chosen, n, names, os.path.join(args.out, "blocks.png"))
    print(f"\nwrote {path} and {os.path.join(args.out, 'blocks.png')}")
    return 0


def plot(rows: list[dict], chosen: dict, n: int, names: list[str], path: str) -> None:
    """Time per call against ``k``, one line per blocks-per-worker ``r`` (theory, dashed;
    measured means, dots), the plain peers and the oracle as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(chosen))
    nrows = -(-len(chosen) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows), squeeze=False)
    ks = range(max(1, n // 3), n + 1)
    for ax, (mname, model) in zip(axes.ravel(), chosen.items()):
        measured = [r for r in rows if r["model"] == mname and not r["keep_running"]]
        for i, r_ in enumerate((1, 4, 8)):
            margin = 0 if r_ == 1 else 2
            th = [theory.blocks_time(model, n, k, r_, margin, 1500, 1, names)[0] for k in ks]
            ax.plot(list(ks), th, "--", color=f"C{i}", label=f"{r_} block(s)/worker, theory")
            pts = [(row["k"], row["mean"]) for row in measured
                   if row["r"] == r_ or (r_ == 1 and row["scheme"].startswith("MDS"))]
            if pts:
                ax.plot(*zip(*pts), "o", color=f"C{i}")
        for j, row in enumerate(r for r in measured if r["scheme"].startswith("plain")):
            ax.axhline(row["mean"], lw=1, color=f"C{3 + j}", label=row["scheme"])
        ax.axhline(theory.oracle_time(model, n, 1500, 1, names)[0], color="k", lw=0.8,
                   ls=":", label="oracle")
        ax.set_title(mname, fontsize=9)
        ax.set_xlabel(f"k (n = {n})")
        ax.set_ylim(bottom=0)
    for row in axes:
        row[0].set_ylabel("mean s per call (dots: measured)")
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    sys.exit(main())
