"""Data-parallel training on a dask DataFrame with a persistent straggler, reshuffled
between epochs over a slow master link.

    python examples/sgd_shuffle.py [--workers 4 --epochs 20 --mbps 2]

Least squares on rows sorted by a feature and cut into the partitions of a dask
DataFrame, so each partition covers one region of the data (non-i.i.d. shares, as when
data arrives by time or by source); the target has a term a linear model cannot fit,
different in every region. ``CodedShuffle.from_dask`` deals the partitions to the
workers afresh every epoch and hands back the epoch's DataFrame, each partition resident
on its worker. Every epoch each worker runs local gradient descent on its partitions from
the current model, and the master averages the models of the first ``n - 1`` workers to
finish (it does not wait for the straggler: one worker is made 0.5 s slower on every
task by a :class:`~dask_coded.stragglers.StragglerPlugin`). The reported model is the
average of the epochs' models over the second half of the epochs so far (suffix
averaging).

Never reshuffled, the straggler's share is never learned: the model converges to the
optimum of the other shares and stays there. Reshuffled every epoch, a different share is
dropped each epoch and the model converges to the optimum of all the data; the
``"uncoded"``, ``"p2p"`` and ``"coded"`` reshuffles deal the same assignments and deliver
bit-identical partitions, so they train the same models. What differs is what the master
sends per reshuffle (measured at the transport) and how long a reshuffle takes with the
master's link throttled to ``--mbps`` MB/s (a token bucket on this process's sends; the
scheduler of the ``LocalCluster`` lives here too).
"""

from __future__ import annotations

import argparse
import sys
import time

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from distributed import Client, LocalCluster, as_completed

import dask_coded as dc
from dask_coded.bench import bytecount

LOCAL_STEPS, LR = 30, 0.1


def local_gd(w: np.ndarray, lr: float, steps: int, *frames: pd.DataFrame) -> np.ndarray:
    """``steps`` gradient steps on ``0.5 ||X w - y||^2 / m`` over the rows of the frames
    (columns ``x0 .. x{d-1}`` and ``y``), from ``w``."""
    data = pd.concat(frames)
    X, y = data.drop(columns="y").to_numpy(), data["y"].to_numpy()
    w = w.copy()
    for _ in range(steps):
        w -= lr * X.T @ (X @ w - y) / len(X)
    return w


def loss(w, X, y) -> float:
    return float(0.5 * np.mean((X @ w - y) ** 2))


def train(client, ddf, X, y, storage, epochs, strategy, reshuffle=True, seed=0, meter=None):
    """Losses per epoch (of the suffix-averaged model) and the reshuffles' reports."""
    sh = dc.CodedShuffle.from_dask(ddf, storage=storage, strategy=strategy, seed=seed,
                                   client=client, meter=meter)
    try:
        w, models, losses = np.zeros(X.shape[1]), [], []
        sh.next_epoch()
        for epoch in range(epochs):
            if reshuffle and epoch:
                sh.next_epoch()
            parts = iter(sh.collection().to_delayed())  # worker by worker
            steps = []
            for i, (worker, share) in enumerate(sh.assignment.items()):
                # one step per worker, on that worker, over the partitions it was dealt
                with dask.annotate(workers=[worker], allow_other_workers=False):
                    steps.append(dask.delayed(local_gd)(
                        w, LR, LOCAL_STEPS, *[next(parts) for _ in share],
                        dask_key_name=f"local-gd-{strategy}-{reshuffle}-{epoch}-{i}"))
            futures = client.compute(steps)
            first = []
            for f in as_completed(futures):  # the first n - 1; the straggler is dropped
                first.append(f.result())
                if len(first) == len(futures) - 1:
                    break
            client.cancel(futures)
            w = np.mean(first, axis=0)
            models.append(w)
            losses.append(loss(np.mean(models[len(models) // 2:], axis=0), X, y))
        return losses, sh.report()[1:]
    finally:
        sh.close()


def make_data(workers: int, rows: int = 24_000, d: int = 10, seed: int = 0,
              per_worker: int = 6):
    """``(X, y, dask DataFrame, optimum loss)``: ``per_worker * workers`` partitions of rows
    sorted by feature 0 (columns ``x0 .. x{d-1}``, ``y``); the target has a term a linear
    model cannot fit, different in every region of feature 0."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, d)) * np.linspace(0.5, 2, d)
    w_true = rng.standard_normal(d)
    y = X @ w_true + 2.0 * np.sin(2 * X[:, 0]) * X[:, 1] + 0.1 * rng.standard_normal(rows)
    order = np.argsort(X[:, 0])  # non-i.i.d. partitions: sorted by the first feature
    frame = pd.DataFrame(X[order], columns=[f"x{j}" for j in range(d)]).assign(y=y[order])
    ddf = dd.from_pandas(frame, npartitions=per_worker * workers, sort=True)
    return X, y, ddf, loss(np.linalg.lstsq(X, y, rcond=None)[0], X, y)


def slow_first_worker(client, cluster, seconds: float = 0.5) -> None:
    """Make the worker first in address order (the one ``CodedShuffle`` lists first,
    so the same share straggles in every run) ``seconds`` slower on every ``local-gd``
    task."""
    info = dc.workers.worker_info(client)
    slow = str(info[sorted(info)[0]]["name"])
    client.register_plugin(dc.stragglers.StragglerPlugin(dc.stragglers.SlowWorkers(seconds={slow: seconds}),
                                              match=["local-gd"], interruptible=True))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--mbps", type=float, default=2.0, help="the master's link, MB/s")
    args = p.parse_args(argv)
    X, y, ddf, best = make_data(args.workers)
    m, d, q = X.shape[0], X.shape[1], ddf.npartitions
    storage = q // args.workers + q // 4
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client, \
            bytecount.ByteMeter(client) as meter:
        slow_first_worker(client, cluster)
        bytecount.throttle(args.mbps * 1e6)
        t = time.perf_counter()
        runs = {"never reshuffled": train(client, ddf, X, y, storage, args.epochs, "coded",
                                          reshuffle=False, meter=meter)}
        seconds = {"never reshuffled": time.perf_counter() - t}
        for strategy in ("uncoded", "p2p", "coded"):
            t = time.perf_counter()
            runs[f"reshuffled, {strategy}"] = train(client, ddf, X, y, storage, args.epochs,
                                                    strategy, meter=meter)
            seconds[f"reshuffled, {strategy}"] = time.perf_counter() - t
        bytecount.throttle(None)
    print(f"least squares: {m} rows x {d} in a dask DataFrame of {q} partitions sorted by "
          f"feature 0; {args.workers} workers, one 0.5 s slower, the first "
          f"{args.workers - 1} averaged; storage {storage} partitions per worker; the "
          f"master's link throttled to {args.mbps:g} MB/s")
    shown = ["never reshuffled", "reshuffled, uncoded", "reshuffled, coded"]
    print("excess loss (loss - optimum) of the suffix-averaged model:")
    print("| epoch | " + " | ".join(shown) + " |\n|---|" + "---|" * len(shown))
    for e in range(args.epochs):
        print(f"| {e + 1} | " + " | ".join(f"{runs[r][0][e] - best:.5f}" for r in shown) + " |")
    print("\n| run | final excess loss | master MB per reshuffle | s per reshuffle | "
          "s per epoch (reshuffle and training) |\n|---|---|---|---|---|")
    for r, (losses, reports) in runs.items():
        sent = (f"{np.mean([x.master_bytes for x in reports]) / 1e6:.3f} | "
                f"{np.mean([x.seconds for x in reports]):.3f}") if reports else "- | -"
        print(f"| {r} | {losses[-1] - best:.5f} | {sent} | {seconds[r] / args.epochs:.3f} |")
    same = all(np.allclose(runs[f"reshuffled, {s}"][0], runs["reshuffled, uncoded"][0],
                           rtol=1e-9) for s in ("p2p", "coded"))
    print(f"uncoded, p2p and coded reshuffles trained the same models: {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
