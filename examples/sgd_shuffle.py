"""Data-parallel SGD for least squares, reshuffled between epochs with CodedShuffle.

    python examples/sgd_shuffle.py [--workers 4 --epochs 15]

The data set is sorted by a feature before it is cut into partitions, so each partition
covers one region of the data (non-i.i.d. shares, as when data arrives by time or by
source), and the target has a term the linear model cannot fit that differs between
regions, so each region's own fit pulls the model its own way. Every epoch each worker runs local SGD on its share from the current model, and
the master averages the workers' models. Compared: never reshuffling (each worker keeps
its first share) against reshuffling every epoch with the "uncoded" and the "coded"
strategy (same assignments: same seed). Prints the loss per epoch and what the master
sent.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from distributed import Client, LocalCluster

import dask_coded as dc


def local_sgd(w: np.ndarray, lr: float, steps: int, seed: int, *shares: np.ndarray) -> np.ndarray:
    """``steps`` SGD steps on ``0.5 ||X w - y||^2 / m`` over the rows of the shares
    (each row is ``[x | y]``)."""
    data = np.concatenate(shares)
    X, y = data[:, :-1], data[:, -1]
    rng = np.random.default_rng(seed)
    w = w.copy()
    for i in rng.integers(0, len(X), size=steps):
        w -= lr * (X[i] @ w - y[i]) * X[i]
    return w


def loss(w, X, y) -> float:
    return float(0.5 * np.mean((X @ w - y) ** 2))


def train(client, parts, X, y, storage, epochs, strategy, reshuffle=True, seed=0):
    sh = dc.CodedShuffle(client, parts, storage=storage, strategy=strategy, seed=seed)
    w = np.zeros(X.shape[1])
    losses, master = [], []
    assignment = sh.next_epoch()
    for epoch in range(epochs):
        if reshuffle and epoch:
            assignment = sh.next_epoch()
        lr = 0.05 / (1 + epoch)  # decaying, so the noise floor does not hide the bias
        futures = [client.submit(local_sgd, w, lr, 500, seed * 1000 + epoch, *sh.futures(wk),
                                 workers=[wk], pure=False) for wk in assignment]
        w = np.mean(client.gather(futures), axis=0)
        losses.append(loss(w, X, y))
    master = [r.master_bytes for r in sh.report()[1:]]
    sh.close()
    return losses, master


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--epochs", type=int, default=15)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    m, d, q = 24_000, 10, 6 * args.workers
    X = rng.standard_normal((m, d)) * np.linspace(0.5, 2, d)
    w_true = rng.standard_normal(d)
    # misspecified: a term the linear model cannot fit, different in every region of x0,
    # so each region's own least-squares fit differs from the global one
    y = X @ w_true + 2.0 * np.sin(2 * X[:, 0]) * X[:, 1] + 0.1 * rng.standard_normal(m)
    order = np.argsort(X[:, 0])  # non-i.i.d. partitions: sorted by the first feature
    data = np.column_stack([X, y])[order]
    parts = np.array_split(data, q)
    best = loss(np.linalg.lstsq(X, y, rcond=None)[0], X, y)
    storage = q // args.workers + q // 4
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        runs = {
            "never reshuffled": train(client, parts, X, y, storage, args.epochs, "coded",
                                      reshuffle=False),
            "reshuffled, uncoded": train(client, parts, X, y, storage, args.epochs, "uncoded"),
            "reshuffled, coded": train(client, parts, X, y, storage, args.epochs, "coded"),
        }
    print(f"least squares: {m} rows x {d}; {q} partitions sorted by feature 0; "
          f"{args.workers} workers; optimum loss {best:.5f}")
    print("| epoch | " + " | ".join(runs) + " |\n|---|" + "---|" * len(runs))
    for e in range(args.epochs):
        print(f"| {e + 1} | " + " | ".join(f"{runs[r][0][e]:.5f}" for r in runs) + " |")
    for r, (losses, master) in runs.items():
        sent = np.mean(master) / 1e6 if master else 0.0
        print(f"{r}: final loss {losses[-1]:.5f} (optimum {best:.5f}); master sent "
              f"{sent:.2f} MB per reshuffle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
