"""The least-squares gradient four ways on one cluster: plain dask, gradient coding, coded
products and Lagrange coded computing.

    python benchmarks/bench_lagrange.py [--n 12 --calls 10 --scale 1.0 --parts 4]
    python -m dask_coded bench lagrange [same options]

One LocalCluster of ``n`` single-thread workers. The job: ``g = X.T @ (X @ w - y)`` for a
seeded ``X`` (``n * rows`` by ``d``), checked against numpy on every call. Placement is
made once, before the timed calls:

* plain dask: ``X`` cut into ``n`` row partitions, partition ``i`` on worker ``i``; one
  gradient task per partition (work stealing on, dask's default), then a sum;
* gradient coding, ``s = 1``: :class:`~dask_coded.CodedPartitions` of the same ``n``
  partitions; any ``n - 1`` workers' partial sums decode the sum;
* coded products: ``CA = dc.encode(X, n, k)`` and its ``CA.T`` (``k = n - 1``); a gradient
  is two coded products, ``CA.T @ (CA @ w - y)``, each from the first ``k`` of ``n``;
* Lagrange: ``X`` and ``y`` cut into ``--parts`` parts ``k``,
  ``dc.encode(parts, n, scheme="lagrange", degree=2)``; one product per worker (``f`` on its
  coded part), any ``(k - 1) 2 + 1`` decode every part's gradient.

Straggler models (injected in proportion to each task's work, the whole gradient being
work 1: ``1/n`` for a plain partition, ``(s + 1)/n`` for a gradient-coded assignment,
``1/(2k)`` for one coded product, ``1/k`` for a Lagrange product): one slowness per worker
per call at mu = 1 and mu = 0.2, and one persistent 5x slow worker. Released stragglers
stop their injected sleep and each call starts once no worker is executing. Each
scheme's mean per-call overhead without stragglers is measured first; "net" is the mean
minus it; "theory" is :func:`dask_coded.theory.expected_time` (the model's scale times it)
or, for the slow worker, :func:`~dask_coded.theory.monte_carlo`.
Writes ``<out>/lagrange.csv``.
"""

from __future__ import annotations

import sys
import uuid

import numpy as np

import dask_coded as dc
from dask_coded import theory
from dask_coded.bench.timing import cluster, measure, overheads, parser, pick, write_csv


def models(scale: float, slow: str) -> dict:
    return {
        "per-worker mu=1": dc.stragglers.ShiftedExponential(mu=1.0, scale=scale, per="call"),
        "per-worker mu=0.2": dc.stragglers.ShiftedExponential(mu=0.2, scale=scale, per="call"),
        "slow worker 5x": dc.stragglers.SlowWorkers(scale=scale, factor={slow: 5.0}),
    }


def parse(argv=None):
    p = parser("lagrange", __doc__, calls=10, scale=1.0)
    p.add_argument("--parts", type=int, default=None,
                   help="Lagrange data parts k (default n // 3; (k - 1) 2 + 1 <= n)")
    p.add_argument("--rows", type=int, default=2000, help="rows of X per worker")
    return p.parse_args(argv)


def gradient(part, w):
    """Degree 2 in the part ``(X, y)``."""
    X, y = part
    return X.T @ (X @ w - y)


def _sum(*values):
    return sum(values)


def data(n: int, rows: int, d: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n * rows, d))
    return X, X @ rng.standard_normal(d) + 0.1 * rng.standard_normal(n * rows)


def schemes_on(client, X, y, workers: list[str], k_parts: int) -> list:
    """Every scheme as ``(label, theory kwargs, work shares, call)``, placed once."""
    n = len(workers)
    w = np.random.default_rng(1).standard_normal(X.shape[1])
    truth = X.T @ (X @ w - y)
    rows = list(zip(np.array_split(X, n), np.array_split(y, n)))
    placed = [client.scatter(p, workers=[wk], direct=True, hash=False)
              for p, wk in zip(rows, workers)]
    CP = dc.encode(rows, n, scheme="gradient", stragglers=1, client=client)
    k = n - 1
    CA = dc.encode(X, n, k, client=client)
    CAT = CA.T
    parts = list(zip(np.array_split(X, k_parts), np.array_split(y, k_parts)))
    L = dc.encode(parts, n, scheme="lagrange", degree=2, client=client)

    def checked(run):
        def call():
            np.testing.assert_allclose(run(), truth, rtol=1e-8, atol=1e-8 * abs(truth).max())
        return call

    def plain():
        tok = uuid.uuid4().hex[:12]
        futures = [client.submit(gradient, p, w, key=f"plain-grad-{tok}-{i}")
                   for i, p in enumerate(placed)]
        return client.submit(_sum, *futures, key=f"plain-sum-{tok}").result()

    t = L.threshold
    return [
        ("plain dask", {"scheme": "uncoded"}, {"plain-grad": 1 / n}, checked(plain)),
        ("gradient coding s=1", {"scheme": "gradient", "s": 1},
         {f"coded-prod-t{n - 1}-": 2 / n}, checked(lambda: CP.sum(lambda p: gradient(p, w))
                                                   .compute())),
        (f"coded products k={k}", {"scheme": "mds", "k": k},
         {f"coded-prod-t{k}-": 1 / (2 * k)}, checked(lambda: (CAT @ (CA @ w - y)).compute())),
        (f"Lagrange k={k_parts} (t={t})", {"scheme": "lagrange", "k": k_parts, "degree": 2},
         {f"coded-prod-t{t}-": 1 / k_parts}, checked(lambda: sum(L.map(gradient, w).compute()))),
    ]


def theory_for(model, kwargs: dict, n: int, names: list[str]) -> float:
    if isinstance(model, dc.stragglers.ShiftedExponential):
        return model.scale * theory.expected_time(n=n, mu=model.mu, **kwargs)
    return theory.monte_carlo(model=model, n=n, trials=4000, seed=1, workers=names,
                              **kwargs)[0]


def main(argv=None) -> int:
    args = parse(argv)
    n = args.n
    k_parts = args.parts or max(2, n // 3)
    if (k_parts - 1) * 2 + 1 > n:
        raise SystemExit(f"--parts {k_parts}: Lagrange's threshold (k - 1) 2 + 1 exceeds n={n}")
    X, y = data(n, args.rows)
    rows = []
    with cluster(args) as (client, names, workers):
        schemes = schemes_on(client, X, y, workers, k_parts)
        overhead = overheads(client, [(s[0], s[-1]) for s in schemes])
        for mname, model in pick(models(args.scale, names[n // 2]), args.models).items():
            print(f"\n## {mname}  ({n} workers, {args.calls} calls per scheme)", flush=True)
            print("| scheme | median s | p95 s | mean s | net mean s | theory s |\n"
                  "|---|---|---|---|---|---|", flush=True)
            for label, kwargs, work, call in schemes:
                client.register_plugin(dc.stragglers.StragglerPlugin(
                    model, seed=7, match=("plain-grad", "coded-prod"), work=work,
                    interruptible=True))
                times = measure(client, call, args.calls)
                row = {"model": mname, "scheme": label, "median": float(np.median(times)),
                       "p95": float(np.percentile(times, 95)), "mean": float(np.mean(times)),
                       "net": float(np.mean(times)) - overhead[label],
                       "theory": theory_for(model, kwargs, n, names)}
                rows.append(row)
                print(f"| {label} | {row['median']:.3f} | {row['p95']:.3f} | "
                      f"{row['mean']:.3f} | {row['net']:.3f} | {row['theory']:.3f} |",
                      flush=True)
            here = {r["scheme"]: r["median"] for r in rows if r["model"] == mname}
            plain = here.pop("plain dask")
            print("speed-up over plain dask (median): " + ", ".join(
                f"{label} {plain / t:.2f}x" for label, t in here.items()), flush=True)
    print(f"\nwrote {write_csv(rows, args.out, 'lagrange.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
