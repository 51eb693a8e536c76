"""The peers coded products are measured against, on the same cluster and data layout.

* :class:`PlainMatrix` with ``blocks=n``: plain dask ``A @ x`` on A persisted as ``n`` row
  blocks, block ``i`` on worker ``i`` (what a user does without this package);
* :class:`PlainMatrix` with ``blocks=4n``: dask's own load balancing (work stealing moves
  not-yet-started blocks off a busy worker);
* :class:`ReplicatedMatrix`: ``r``-replication: ``n / r`` row pieces, each on ``r``
  workers, the first copy of every piece wins (an ``(r, 1)`` repetition code per piece,
  run by the same first-k machinery);
* :func:`speculative_matmul`: speculative backup tasks the way Spark and cubed do it: once
  half the pieces are done, a piece running longer than ``factor`` times their median
  duration gets a duplicate on an idle worker; the first copy wins.

Work shares for :class:`~dask_coded.stragglers.StragglerPlugin`: plain block products
contain ``"matmul"`` in their keys (``1/blocks`` each), replicated products
``"coded-prod-t1-rep"`` (``r/n``), speculative products ``"spec-prod-"`` (``1/n``).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import dask.array as da
import numpy as np
from distributed import wait

from ..errors import TooFewWorkersError
from ..arrays import as_matrix
from ..matrix import encode
from ..workers import live_workers


def _workers(client) -> list[str]:
    return live_workers(client)


def _row_pieces(A: np.ndarray, pieces: int) -> list[np.ndarray]:
    return np.array_split(A, pieces)


class PlainMatrix:
    """Plain dask: ``A`` persisted as ``blocks`` row blocks, block ``i`` on worker
    ``i mod W``. ``PM @ x`` is ordinary dask ``A @ x``."""

    def __init__(self, A: Any, blocks: int, client):
        A = np.asarray(as_matrix(A))
        workers = _workers(client)
        futures = [
            client.scatter(piece, workers=[workers[i % len(workers)]], direct=True)
            for i, piece in enumerate(_row_pieces(A, blocks))
        ]
        parts = [da.from_delayed(f, shape=piece.shape, dtype=A.dtype)
                 for f, piece in zip(futures, _row_pieces(A, blocks))]
        self.array = client.persist(da.concatenate(parts))
        wait(self.array)
        self._futures = futures
        self.shape, self.blocks = A.shape, blocks

    def __matmul__(self, x):
        return self.array @ x

    def __repr__(self) -> str:
        return f"PlainMatrix(shape={self.shape}, blocks={self.blocks})"


class ReplicatedMatrix:
    """``r``-replication: ``n / r`` row pieces of A, each held by ``r`` workers; a product
    takes the first copy of each piece. Needs ``r`` to divide ``n`` and ``n`` workers."""

    def __init__(self, A: Any, n: int, r: int, client):
        if r < 1 or n % r:
            raise ValueError(f"replication needs r >= 1 dividing n={n}, got r={r}")
        workers = _workers(client)
        if len(workers) < n:
            raise TooFewWorkersError(f"r-replication on n={n} workers needs n workers, "
                                     f"the cluster has {len(workers)}")
        A = np.asarray(as_matrix(A))
        self.pieces = []
        for p, piece in enumerate(_row_pieces(A, n // r)):
            m = encode(piece, r, 1, kind="rotation", client=client,
                       workers=workers[p * r:(p + 1) * r])  # (r, 1) rotation code: copies
            m.token = f"rep-{m.token}"  # product keys: coded-prod-t1-rep-...
            self.pieces.append(m)
        self.shape, self.n, self.r = A.shape, n, r

    def __matmul__(self, x):
        return da.concatenate([m @ x for m in self.pieces])

    def __repr__(self) -> str:
        return f"ReplicatedMatrix(shape={self.shape}, n={self.n}, r={self.r})"


def _block_product(block: np.ndarray, x: np.ndarray) -> np.ndarray:
    return block @ x


class SpeculativeMatrix:
    """A persisted as ``n`` row blocks, block ``i`` pinned to worker ``i``, for
    :func:`speculative_matmul`."""

    def __init__(self, A: Any, n: int, client):
        A = np.asarray(as_matrix(A))
        self.workers = _workers(client)[:n]
        if len(self.workers) < n:
            raise TooFewWorkersError(f"speculative baseline on n={n} blocks needs n workers")
        self.blocks = [client.scatter(p, workers=[w], direct=True)
                       for p, w in zip(_row_pieces(A, n), self.workers)]
        self.client, self.shape, self.n = client, A.shape, n


def speculative_matmul(SM: SpeculativeMatrix, x: np.ndarray, factor: float = 3.0,
                       poll: float = 0.005) -> tuple[np.ndarray, int]:
    """``A @ x`` with speculative backups (:func:`speculative_map` of the block
    products); returns ``(result, backups launched)``."""
    parts, backups = speculative_map(SM.client, _block_product, SM.blocks, SM.workers, x,
                                     factor=factor, poll=poll)
    return np.concatenate(parts), backups


def speculative_map(client, func, blocks: list, workers: list[str], arg: Any,
                    factor: float = 3.0, poll: float = 0.005) -> tuple[list, int]:
    """``[func(block, arg) for block in blocks]`` with speculative backups; returns
    ``(results, backups launched)``.

    Block ``i`` runs on ``workers[i]``. Once half are done, any block running longer than
    ``factor`` times the median duration of the finished ones gets a duplicate on an idle
    worker (its block travels there); the first copy to finish wins and the other is
    cancelled. Keys: ``spec-prod-<token>-<i>``.
    """
    n = len(blocks)
    tok = uuid.uuid4().hex[:12]
    start = time.perf_counter()
    # copies[i]: [(future, worker index)] of block i; the first to finish wins
    copies = {
        i: [(client.submit(func, b, arg, key=f"spec-prod-{tok}-{i}", workers=[w],
                           allow_other_workers=False), i)]
        for i, (b, w) in enumerate(zip(blocks, workers))
    }
    winners: dict[int, Any] = {}
    durations: list[float] = []
    while len(winners) < n:
        for i, fs in copies.items():
            for f, _ in fs:
                if i not in winners and f.status == "finished":
                    winners[i] = f
                    durations.append(time.perf_counter() - start)
                elif f.status == "error":
                    f.result()
        if n / 2 <= len(winners) < n:
            now = time.perf_counter() - start
            running = {j for i, fs in copies.items() if i not in winners for f, j in fs}
            idle = [j for j in range(n) if j not in running]
            for i, fs in copies.items():
                if i in winners or len(fs) > 1 or not idle or now <= factor * np.median(durations):
                    continue
                j = idle.pop(0)
                fs.append((client.submit(func, blocks[i], arg, key=f"spec-prod-{tok}-{i}-backup",
                                         workers=[workers[j]], allow_other_workers=False), j))
        time.sleep(poll)
    losers = [f for i, fs in copies.items() for f, _ in fs if f is not winners[i]]
    client.cancel(losers)
    results = client.gather([winners[i] for i in range(n)])
    return results, sum(len(fs) - 1 for fs in copies.values())
