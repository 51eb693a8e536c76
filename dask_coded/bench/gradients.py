"""Coded sums (gradient coding) against plain dask and speculative backups, on one cluster.

    python benchmarks/bench_gradients.py [--n 12 --calls 10 --scale 1.0 --stragglers 1,2,3]
    python -m dask_coded bench gradients [same options]

One LocalCluster of ``n`` single-thread workers. The job: the gradient of a logistic loss
summed over ``n`` row partitions of a seeded data set. Every scheme sees the same
placement (partition ``i`` on worker ``i`` before the timed calls; the coded assignments hold
``s + 1`` partitions each, placed once):

* plain dask: one task per partition (no restrictions: work stealing is on, dask's
  default), then a sum task;
* speculative backups: a partition still running after 3x the median of the finished
  half is duplicated on an idle worker, the first copy wins;
* gradient coding, ``s = 1, 2, 3``: :class:`dask_coded.sums.CodedPartitions`, any
  ``n - s`` workers' partial sums decode the exact sum.

Straggler models (injected in proportion to each task's work: ``1/n`` for a plain
partition, ``(s + 1)/n`` for a coded assignment): one slowness per worker per call
(``ShiftedExponential(per="call")``) at mu = 1 and mu = 0.2, and one persistent 5x slow
worker. Released stragglers stop their injected sleep and each call starts once no worker
is executing, so calls are independent as in the theory. Each scheme's mean per-call
overhead without stragglers is measured first; "net" is the mean minus it, which the
theory predicts (``theory.expected_time("gradient", n, s=s, mu=mu)``).

Then logistic regression to the optimum (scipy's L-BFGS on the whole data, the objective
of scikit-learn's ``LogisticRegression``) under the 5x slow worker: time until the loss
is within 1e-6 relative, gradient coding (the smallest ``s``) against uncoded (``s = 0``:
every worker waited for) and coded products (``k = n - s``).
Writes ``<out>/gradients.csv`` and ``<out>/gradients-logistic.png``.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid

import numpy as np
import scipy.optimize

import dask_coded as dc
from dask_coded import theory
from dask_coded.apps.logistic import _Gradient, _loss_terms, logistic_regression
from dask_coded.bench.peers import speculative_map
from dask_coded.bench.timing import cluster, measure, overheads, parser, pick, write_csv
from dask_coded.sums import CodedPartitions


def models(scale: float, slow: str) -> dict:
    return {
        "per-worker mu=1": dc.stragglers.ShiftedExponential(mu=1.0, scale=scale, per="call"),
        "per-worker mu=0.2": dc.stragglers.ShiftedExponential(mu=0.2, scale=scale, per="call"),
        "slow worker 5x": dc.stragglers.SlowWorkers(scale=scale, factor={slow: 5.0}),
    }


def parse(argv=None) -> argparse.Namespace:
    p = parser("gradients", __doc__, calls=10, scale=1.0)
    p.add_argument("--stragglers", default="1,2,3", help="comma-separated s (default 1,2,3)")
    p.add_argument("--logistic-scale", type=float, default=0.5,
                   help="job seconds in the logistic regression part; 0 skips it")
    return p.parse_args(argv)


def _apply(part, fn):
    return fn(part)


def _add(*values):
    grads, losses = zip(*values)
    return sum(grads), sum(losses)


def data(n: int, rows: int = 400, d: int = 30, seed: int = 0):
    """A seeded logistic problem: ``X`` (with an intercept column), labels ``y``."""
    rng = np.random.default_rng(seed)
    X = np.hstack([rng.standard_normal((n * rows, d - 1)), np.ones((n * rows, 1))])
    w = rng.standard_normal(d) / np.sqrt(d)
    y = (rng.random(n * rows) < 1 / (1 + np.exp(-3 * X @ w))).astype(float)
    return X, y


def place(client, parts: list, workers: list[str]) -> list:
    """Partition ``i`` on worker ``i`` only (fresh keys: no replica left by another peer)."""
    return [client.scatter(p, workers=[wk], direct=True, hash=False)
            for p, wk in zip(parts, workers)]


def schemes_on(client, parts: list, workers: list[str], coded: dict, w):
    """Every scheme as ``(label, theory scheme, s, work shares, call)``; each call checks
    its sum against numpy. Plain dask and speculative backups get their own fresh
    placement (a backup copies a partition to a second worker, which would let plain dask
    run it there); the coded assignments are placed once and never move."""
    n = len(workers)
    fn = _Gradient(w)
    truth = _add(*[fn(p) for p in parts])
    placed, spec_placed = place(client, parts, workers), place(client, parts, workers)

    def checked(run):
        def call():
            grad, loss = run()
            np.testing.assert_allclose(grad, truth[0], rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(loss, truth[1], rtol=1e-9)
        return call

    def plain():
        tok = uuid.uuid4().hex[:12]
        futures = [client.submit(_apply, p, fn, key=f"plain-grad-{tok}-{i}")
                   for i, p in enumerate(placed)]
        out = client.submit(_add, *futures, key=f"plain-sum-{tok}").result()
        return out

    def speculative():
        return _add(*speculative_map(client, _apply, spec_placed, workers, fn)[0])

    return [
        ("plain dask", "uncoded", None, {"plain-grad": 1 / n}, checked(plain)),
        ("speculative", "speculative", None, {"spec-prod-": 1 / n}, checked(speculative)),
    ] + [
        (f"gradient coding s={s}", "gradient", s, {f"coded-prod-t{n - s}-": (s + 1) / n},
         checked(lambda s=s: coded[s].sum(fn).compute()))
        for s in coded
    ]


def theory_for(model, scheme: str, n: int, s, names) -> float:
    if scheme not in theory.SCHEMES:
        return float("nan")
    if isinstance(model, dc.stragglers.ShiftedExponential):
        return model.scale * theory.expected_time(scheme, n, mu=model.mu, s=s)
    return theory.monte_carlo(scheme, model, n, s=s, trials=4000, seed=1, workers=names)[0]


def run_model(client, mname: str, model, schemes: list, overhead: dict, args,
              names) -> list[dict]:
    print(f"\n## {mname}  ({args.n} workers, {args.calls} calls per scheme)", flush=True)
    print("| scheme | median s | p95 s | mean s | net mean s | theory s |\n"
          "|---|---|---|---|---|---|", flush=True)
    rows = []
    for label, scheme, s, work, call in schemes:
        client.register_plugin(dc.stragglers.StragglerPlugin(
            model, seed=7, match=("plain-grad", "spec-prod", "coded-prod"), work=work,
            interruptible=True))
        times = measure(client, call, args.calls)
        th = theory_for(model, scheme, args.n, s, names)
        row = {"model": mname, "scheme": label, "s": "" if s is None else s,
               "median": float(np.median(times)), "p95": float(np.percentile(times, 95)),
               "mean": float(np.mean(times)), "net": float(np.mean(times)) - overhead[label],
               "theory": th}
        rows.append(row)
        print(f"| {label} | {row['median']:.3f} | {row['p95']:.3f} | {row['mean']:.3f} | "
              f"{row['net']:.3f} | {th:.3f} |", flush=True)
    coded = [r for r in rows if r["scheme"].startswith("gradient")]
    peers = [r for r in rows if not r["scheme"].startswith("gradient")]
    best, peer = min(coded, key=lambda r: r["median"]), min(peers, key=lambda r: r["median"])
    dev = [abs(r["net"] / r["theory"] - 1) for r in coded if np.isfinite(r["theory"])]
    print(f"best gradient code: {best['scheme']} {best['median']:.3f} s; best peer "
          f"({peer['scheme']}) {peer['median']:.3f} s: {peer['median'] / best['median']:.2f}x; "
          f"coded net mean vs theory: max deviation {max(dev):.1%}", flush=True)
    return rows


def logistic(client, X, y, n: int, s: int, model, out: str) -> None:
    """Time to the optimum's loss within 1e-6 relative, coded against uncoded."""
    m = len(y)
    l2 = 1.0 / m

    def f(w):
        z = X @ w
        return (_loss_terms(z, y) / m + 0.5 * l2 * w @ w,
                X.T @ (1 / (1 + np.exp(-z)) - y) / m + l2 * w)

    best = scipy.optimize.minimize(f, np.zeros(X.shape[1]), jac=True, method="L-BFGS-B",
                                   options={"gtol": 1e-12, "ftol": 0, "maxiter": 2000}).fun
    runs = {"uncoded (s=0)": ("gradient-coding", 0, None),
            f"gradient coding s={s}": ("gradient-coding", s, None),
            f"coded products k={n - s}": ("coded-matvec", s, {"coded-prod": 1 / (n - s)})}
    print(f"\n## logistic regression to the optimum's loss ({m} rows, {n} workers, "
          f"{model})", flush=True)
    print("| method | evaluations | seconds to 1e-6 | seconds per evaluation |\n|---|---|---|---|")
    results = {}
    for label, (method, stragglers, work) in runs.items():
        if work is None:
            work = {"coded-prod": (stragglers + 1) / n}
        client.register_plugin(dc.stragglers.StragglerPlugin(model, seed=7, match=("coded-prod",),
                                                  work=work, interruptible=True))
        r = results[label] = logistic_regression(X, y, n, method, stragglers=stragglers,
                                                 l2=l2, client=client)
        print(f"| {label} | {len(r.losses)} | {r.time_to(best):.2f} | "
              f"{np.mean(r.seconds):.3f} |", flush=True)
    base = results["uncoded (s=0)"].time_to(best)
    for label, r in results.items():
        if label != "uncoded (s=0)":
            print(f"{label}: {base / r.time_to(best):.2f}x faster to the optimum than uncoded")
    plot_logistic(results, best, os.path.join(out, "gradients-logistic.png"))


def plot_logistic(results: dict, best: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for label, r in results.items():
        ax.semilogy(np.cumsum(r.seconds), np.maximum(np.array(r.losses) - best, 1e-16),
                    label=label)
    ax.axhline(1e-6 * best, ls=":", color="gray", lw=1)
    ax.set_xlabel("seconds")
    ax.set_ylabel("loss - optimal loss")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    args = parse(argv)
    n = args.n
    ss = [int(s) for s in args.stragglers.split(",")]
    X, y = data(n)
    parts = list(zip(np.array_split(X, n), np.array_split(y, n)))
    w = np.random.default_rng(1).standard_normal(X.shape[1]) * 0.1
    rows = []
    with cluster(args) as (client, names, workers):
        coded = {s: CodedPartitions(parts, n, s, client=client) for s in ss}
        schemes = schemes_on(client, parts, workers, coded, w)
        overhead = overheads(client, schemes)
        chosen = pick(models(args.scale, names[n // 2]), args.models)
        for mname, model in chosen.items():
            schemes = schemes_on(client, parts, workers, coded, w)  # fresh peer placement
            rows += run_model(client, mname, model, schemes, overhead, args, names)
        if args.logistic_scale > 0:
            slow = dc.stragglers.SlowWorkers(scale=args.logistic_scale, factor={names[n // 2]: 5.0})
            logistic(client, X, y, n, min(ss), slow, args.out)
    path = write_csv(rows, args.out, "gradients.csv")
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
