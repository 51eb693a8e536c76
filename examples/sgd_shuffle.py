"""Data-parallel training with a persistent straggler, reshuffled between epochs.

    python examples/sgd_shuffle.py [--workers 4 --epochs 20]

Least squares on data sorted by a feature and cut into partitions, so each partition
covers one region of the data (non-i.i.d. shares, as when data arrives by time or by
source); the target has a term a linear model cannot fit, different in every region.
Every epoch each worker runs local gradient descent on its share from the current model,
and the master averages the models of the first ``n - 1`` workers to finish (it does not
wait for the straggler: one worker is made 0.5 s slower on every task by a
:class:`~dask_coded.stragglers.StragglerPlugin`). The reported model is the average of the epochs'
models over the second half of the epochs so far (suffix averaging).

Never reshuffled, the straggler's share is never learned: the model converges to the
optimum of the other shares and stays there. Reshuffled every epoch (``CodedShuffle``,
"uncoded" and "coded" strategies, the same assignments), a different share is dropped
each epoch and the model converges to the optimum of all the data. Prints the excess
loss per epoch and what the master sent per reshuffle.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from distributed import Client, LocalCluster, as_completed

import dask_coded as dc

LOCAL_STEPS, LR = 30, 0.1


def local_gd(w: np.ndarray, lr: float, steps: int, *shares: np.ndarray) -> np.ndarray:
    """``steps`` gradient steps on ``0.5 ||X w - y||^2 / m`` over the rows of the shares
    (each row is ``[x | y]``), from ``w``."""
    data = np.concatenate(shares)
    X, y = data[:, :-1], data[:, -1]
    w = w.copy()
    for _ in range(steps):
        w -= lr * X.T @ (X @ w - y) / len(X)
    return w


def loss(w, X, y) -> float:
    return float(0.5 * np.mean((X @ w - y) ** 2))


def train(client, parts, X, y, storage, epochs, strategy, reshuffle=True, seed=0):
    """Losses per epoch (of the suffix-averaged model) and the reshuffles' reports."""
    sh = dc.CodedShuffle(client, parts, storage=storage, strategy=strategy, seed=seed)
    try:
        w, models, losses = np.zeros(X.shape[1]), [], []
        assignment = sh.next_epoch()
        for epoch in range(epochs):
            if reshuffle and epoch:
                assignment = sh.next_epoch()
            futures = [client.submit(local_gd, w, LR, LOCAL_STEPS, *sh.futures(wk),
                                     key=f"local-gd-{strategy}-{reshuffle}-{epoch}-{i}",
                                     workers=[wk], allow_other_workers=False)
                       for i, wk in enumerate(assignment)]
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


def make_data(workers: int, rows: int = 24_000, d: int = 10, seed: int = 0):
    """``(X, y, partitions, optimum loss)``: ``6 workers`` partitions of ``[x | y]`` rows
    sorted by feature 0; the target has a term a linear model cannot fit, different in
    every region of feature 0."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, d)) * np.linspace(0.5, 2, d)
    w_true = rng.standard_normal(d)
    y = X @ w_true + 2.0 * np.sin(2 * X[:, 0]) * X[:, 1] + 0.1 * rng.standard_normal(rows)
    order = np.argsort(X[:, 0])  # non-i.i.d. partitions: sorted by the first feature
    parts = np.array_split(np.column_stack([X, y])[order], 6 * workers)
    return X, y, parts, loss(np.linalg.lstsq(X, y, rcond=None)[0], X, y)


def slow_first_worker(client, cluster, seconds: float = 0.5) -> None:
    """Make the worker first in address order (the one ``CodedShuffle`` deals the first
    share to, so the same share straggles in every run) ``seconds`` slower on every
    ``local-gd`` task."""
    info = dc.workers.worker_info(client)
    slow = str(info[sorted(info)[0]]["name"])
    client.register_plugin(dc.stragglers.StragglerPlugin(dc.stragglers.SlowWorkers(seconds={slow: seconds}),
                                              match=["local-gd"], interruptible=True))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--epochs", type=int, default=20)
    args = p.parse_args(argv)
    X, y, parts, best = make_data(args.workers)
    m, d, q = X.shape[0], X.shape[1], len(parts)
    storage = q // args.workers + q // 4
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        slow_first_worker(client, cluster)
        runs = {
            "never reshuffled": train(client, parts, X, y, storage, args.epochs, "coded",
                                      reshuffle=False),
            "reshuffled, uncoded": train(client, parts, X, y, storage, args.epochs, "uncoded"),
            "reshuffled, coded": train(client, parts, X, y, storage, args.epochs, "coded"),
        }
    print(f"least squares: {m} rows x {d}; {q} partitions sorted by feature 0; "
          f"{args.workers} workers, one 0.5 s slower, the first {args.workers - 1} averaged; "
          f"storage {storage} partitions per worker")
    print("excess loss (loss - optimum) of the suffix-averaged model:")
    print("| epoch | " + " | ".join(runs) + " |\n|---|" + "---|" * len(runs))
    for e in range(args.epochs):
        print(f"| {e + 1} | " + " | ".join(f"{runs[r][0][e] - best:.5f}" for r in runs) + " |")
    for r, (losses, reports) in runs.items():
        sent = (f"the master sends {np.mean([x.planned_master_bytes for x in reports]) / 1e6:.3f}"
                f" MB per reshuffle" if reports else "no reshuffles")
        print(f"{r}: final excess loss {losses[-1] - best:.5f}; {sent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
