"""Coded sums of any function over partitions: ``sum(fn(p) for p in partitions)`` from the
first ``n - s`` of ``n`` workers (gradient coding, :mod:`dask_coded.schemes.gradient`).

:class:`CodedPartitions` places the data once: the partitions are split into ``n`` parts
and worker ``j`` receives the *assignment* of the ``s + 1`` parts its row of the code names
(``("coded-block-<token>", j)``, pinned there like a coded block: the scheduler plugin
re-pins it when the worker is lost). ``CP.sum(fn)`` is a ``dask.delayed`` object whose
graph is one product per worker (``partial_sum``: that worker's coded partial sum) and a
decode; the scheduler plugin starts the decode once ``n - s`` products are done and
releases the rest. :func:`coded_sum` keeps the placements it made, so a loop that calls
it with the same partitions places them once.

Memory: each partition is held by ``s + 1`` workers in the assignments, plus where it was
computed or scattered (kept, so a lost worker's assignment can be rebuilt).

Losses: a lost worker's assignment is made again on a live worker from the partitions
(the scheduler plugin re-pins it). A partition scattered from this process is lost with
its worker for good (scattered data has no recipe); before each sum, the assignments that
needed a lost partition are placed again from the values the caller passed, which are
kept by reference (:meth:`CodedPartitions.repair`). A partition the caller passed as a
Future and lost cannot be placed again: the sum says so.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.base import is_dask_collection, tokenize
from dask.delayed import Delayed
from dask.highlevelgraph import HighLevelGraph
from distributed import Future

from .handles import Handle
from . import cluster
from .errors import CodedError, TooFewResultsError, TooFewWorkersError
from .graph import EncodeTask, product_group
from .keys import BLOCK_PREFIX, DECODE_PREFIX, product_name
from .kernels import Assignment, make_assignment, partial_sum

from .schemes import build
from .workers import default_client, pick_workers

_PLACED: OrderedDict[str, CodedPartitions] = OrderedDict()  # coded_sum's placements, LRU
_MAX_PLACED = 8


def split_partitions(partitions: Any) -> list:
    """The partitions of ``partitions``: a list or tuple as it is; a dask array by its
    chunks along axis 0 (other axes joined); a dask DataFrame or Bag by its partitions."""
    if isinstance(partitions, da.Array):
        if partitions.ndim > 1:
            partitions = partitions.rechunk({i: -1 for i in range(1, partitions.ndim)})
        return list(partitions.to_delayed().ravel())
    if is_dask_collection(partitions) and hasattr(partitions, "to_delayed"):
        return list(partitions.to_delayed())
    if isinstance(partitions, (list, tuple)):
        return list(partitions)
    raise TypeError(f"partitions must be a list of partitions (dask collections, futures or "
                    f"values), a dask array, DataFrame or Bag; got {type(partitions).__name__}")


def part_indices(count: int, n: int) -> list[tuple[int, ...]]:
    """Partition indices of each of the ``n`` parts: contiguous, sizes differing by at
    most one."""
    return [tuple(int(i) for i in part) for part in np.array_split(np.arange(count), n)]


class CodedPartitions(Handle):
    """Partitions placed for coded sums: worker ``j`` holds the assignment of parts its row of
    a :class:`~dask_coded.schemes.GradientCode` names.

    Parameters
    ----------
    partitions : list, dask array, DataFrame or Bag
        See :func:`split_partitions`; at least ``n`` of them.
    n : int
        Workers (one assignment each).
    stragglers : int
        ``s``: any ``n - s`` workers finish a sum; each partition is held by ``s + 1``.
    kind : {"auto", "fractional", "cyclic"}
        The gradient code (see :class:`~dask_coded.schemes.GradientCode`).
    client : distributed.Client, optional
        Default: the current client; without one the assignments stay in this process and the
        partial sums race in threads. With an asynchronous client,
        ``CP = await CodedPartitions(...)``.
    """

    def __init__(self, partitions: Any, n: int, stragglers: int = 1, kind: str = "auto",
                 client: Any = None):
        self.scheme = build("gradient", n, stragglers=stragglers, kind=kind)
        items = split_partitions(partitions)
        if len(items) < n:
            raise CodedError(f"a coded sum over n={n} workers needs at least n partitions, "
                             f"got {len(items)}; split the data into n or more")
        self.count = len(items)
        self._items = items  # the caller's partitions, by reference: lost ones placed again
        self.parts = part_indices(len(items), n)
        self.client = client if client is not None else default_client()
        self.token = uuid.uuid4().hex[:16]
        self.assignments: list = []
        self._placement: list[str] | None = None
        self._generation = -1  # assignments placed again get new keys: ...-1, -2, ...
        self.calls = 0
        self._last_products: str | None = None
        self._placing = None
        if self.client is None:
            values = dask.compute(*items)
            self.assignments = [self._assignment(j, values) for j in range(n)]
        else:  # an asynchronous client: `await CodedPartitions(...)` finishes the placing
            self._placing = self.client.sync(self._place, items)

    def __await__(self):
        async def placed():
            if self._placing is not None:
                placing, self._placing = self._placing, None
                await placing
            return self
        return placed().__await__()

    n = property(lambda self: self.scheme.n)
    stragglers = property(lambda self: self.scheme.s)

    @property
    def local(self) -> bool:
        """True when the assignments live in this process (no distributed client)."""
        return self.client is None

    def _support(self, j: int) -> tuple[tuple[float, ...], tuple[tuple[int, ...], ...]]:
        return (self.scheme.coefficients(j),
                tuple(self.parts[i] for i in self.scheme.support(j)))

    def _assignment(self, j: int, values: Sequence) -> Assignment:
        coefficients, indices = self._support(j)
        return make_assignment(coefficients, indices, *[values[i] for idx in indices for i in idx])

    async def _place(self, items: list) -> None:
        """Compute or scatter the partitions, then build each worker's assignment on it."""
        client = self.client
        await cluster.ainstall(client)
        workers = (await client.scheduler.identity(n_workers=-1))["workers"]
        if len(workers) < self.n:
            raise TooFewWorkersError(f"a coded sum over n={self.n} workers needs n workers; "
                                     f"the cluster has {len(workers)}")
        self._placement = self.scheme.placement(pick_workers(workers, self.n, False))
        futures, self._partitions = await cluster.put(client, items)  # ours: released with us
        self._held = futures  # kept: a lost worker's assignment is rebuilt from them
        # the partition's error is raised here, where the data was placed
        self.assignments = await self._place_assignments(dict(enumerate(self._placement)))

    @property
    def workers(self) -> list[str] | None:
        """The worker each assignment is pinned to now (``None`` on the local scheduler):
        asked of the scheduler with a synchronous client, so an assignment re-pinned
        after a worker was lost shows its new worker."""
        placement = None if self._placement is None else list(self._placement)
        if (placement is None or not self.assignments or self.client.asynchronous
                or self.client.status != "running"):
            return placement
        pinned = cluster.pinned_workers(self.client, [f.key for f in self.assignments])
        return [pinned.get(f.key) or w for f, w in zip(self.assignments, placement)]

    async def _place_assignments(self, where: dict) -> list:
        """Assignments ``j`` (``where``: ``j -> worker``, ``None`` for the plugin's choice)
        built on the held partitions; returns their futures in the order of ``where``."""
        self._generation += 1
        name = f"{BLOCK_PREFIX}{self.token}" + (f"-{self._generation}" if self._generation else "")
        tasks = {}
        for j, worker in where.items():
            coefficients, indices = self._support(j)
            held = [self._held[i] for idx in indices for i in idx]
            tasks[(name, j)] = EncodeTask((name, j), make_assignment, coefficients, indices,
                                          *held, matrix=self.token, index=j, worker=worker,
                                          keep=False, code=self.scheme.summary)
        return await cluster.place_encoded(self.client, tasks)

    def _gone(self, i: int) -> bool:
        """Partition ``i`` is lost for good: forgotten, or scattered and lost with its
        worker (a computed partition is made again by the scheduler)."""
        f = self._held[i]
        return f.status == "cancelled" or (
            f.status == "lost" and not isinstance(self._items[i], Future)
            and not is_dask_collection(self._items[i]))

    def _lost(self) -> list[int]:
        """Assignments the cluster lost for good: forgotten, or lost with their worker
        while a partition they need is lost for good too (otherwise the scheduler makes
        them again)."""
        return [j for j, f in enumerate(self.assignments)
                if f.status == "cancelled" or (f.status == "lost" and any(
                    self._gone(i) for idx in self._support(j)[1] for i in idx))]

    def repair(self):
        """Place again the assignments lost for good (their worker and a partition they
        need were lost): the lost partitions are scattered or computed again from what
        the caller passed. ``sum`` does this itself with a synchronous client; with an
        asynchronous one, ``await CP.repair()``. Returns the indices ``j`` placed again.

        Raises
        ------
        TooFewResultsError
            A partition the caller passed as a Future was lost: nothing can place it again.
        """
        if self.local:
            return []
        return self.client.sync(self._repair)

    async def _repair(self) -> list[int]:
        lost = self._lost()
        if not lost:
            return []
        needed = sorted({i for j in lost for idx in self._support(j)[1] for i in idx})
        gone = [i for i in needed if self._gone(i)]
        theirs = [i for i in gone if isinstance(self._items[i], Future)]
        if theirs:
            raise TooFewResultsError(
                f"the coded sum's assignments {lost} were lost with their workers, and so "
                f"were partitions {theirs}, which were passed as Futures: they cannot be "
                f"placed again; pass the partitions again (CodedPartitions(...))")
        if gone:
            again, ours = await cluster.put(self.client, [self._items[i] for i in gone])
            replaced = {self._held[i].key for i in gone}
            self._partitions = [f for f in self._partitions if f.key not in replaced] + ours
            for i, f in zip(gone, again):
                self._held[i] = f
        placed = await self._place_assignments(dict.fromkeys(lost))
        where = await self.client.who_has(placed)
        for j, f in zip(lost, placed):
            self.assignments[j] = f
            self._placement[j] = next(iter(where.get(f.key, ())), self._placement[j])
        return lost

    def __repr__(self) -> str:
        where = "local" if self.local else f"{len(set(self.workers or ()))} workers"
        return (f"CodedPartitions({self.count} partitions in {self.n} parts, "
                f"stragglers={self.stragglers}, {self.scheme.kind!r}, {where})")

    def sum(self, fn: Callable[[Any], Any]) -> Delayed:
        """``sum(fn(p) for p in partitions)`` as a ``dask.delayed`` object that completes
        from the first ``n - stragglers`` workers.

        ``fn`` maps one partition to a real numpy array or number, or a tuple of them
        (summed elementwise); it runs where the partitions are. A NaN or Inf result
        raises :class:`~dask_coded.errors.NonFiniteError` naming the partition.
        """
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {type(fn).__name__}")
        if self._placing is not None:
            raise CodedError("the partitions are still being placed: with an asynchronous "
                             "client, `CP = await CodedPartitions(...)` first")
        if not self.assignments:
            raise CodedError("these CodedPartitions were released; place the partitions "
                             "again")
        if not self.local and self._lost():
            if self.client.asynchronous:
                raise CodedError(f"the coded sum's assignments {self._lost()} were lost "
                                 f"with their workers and a partition they need; `await "
                                 f"CP.repair()` places them again, then sum")
            self.repair()
        self.calls += 1
        token = f"{self.token}-{uuid.uuid4().hex[:12]}"
        key = f"{DECODE_PREFIX}{token}"
        self._last_products = product_name(self.scheme.threshold, token)
        tasks = product_group(self.scheme, token, self.assignments, fn, key, local=self.local,
                              product=partial_sum)
        return Delayed(key, HighLevelGraph.from_collections(key, tasks, dependencies=()))

    def last_used(self) -> list[int]:
        """Workers (indices ``j``) whose partial sums the last decode used (distributed;
        awaitable with an asynchronous client)."""
        if self.local or self._last_products is None:
            return []
        return self.client.sync(self._last_used)

    async def _last_used(self) -> list[int]:
        return await cluster.first_k_used(self.client, self._last_products, self.n)

    def release(self) -> None:
        """Drop the assignments and the partitions computed or scattered for them (futures
        the caller passed in are the caller's: they stay)."""
        if not self.local:
            for f in self.assignments + getattr(self, "_partitions", []):
                f.release()
        self.assignments = []
        self._partitions = self._held = []


def coded_sum(fn: Callable[[Any], Any], partitions: Any, n: int, stragglers: int = 1, *,
              kind: str = "auto", client: Any = None) -> Delayed:
    """``sum(fn(p) for p in partitions)``, complete once any ``n - stragglers`` of ``n``
    workers have sent their coded partial sums (gradient coding).

    The partitions are placed on first use and kept for later calls with the same
    partitions, ``n``, ``stragglers`` and ``kind`` (the last few placements are kept; call
    ``CodedPartitions`` yourself to hold one explicitly).

    Parameters
    ----------
    fn : callable
        One partition -> a real numpy array or number, or a tuple of them.
    partitions : list, dask array, DataFrame or Bag
        At least ``n`` partitions (see :func:`split_partitions`).
    n : int
        Workers.
    stragglers : int
        How many workers the sum does not wait for.
    kind : {"auto", "fractional", "cyclic"}
    client : distributed.Client, optional

    Returns
    -------
    dask.delayed.Delayed
    """
    client = client if client is not None else default_client()
    if client is not None and client.asynchronous:
        raise CodedError("coded_sum places the partitions in the call, which an "
                         "asynchronous client cannot do; use `CP = await "
                         "dask_coded.CodedPartitions(partitions, n, stragglers)`, then "
                         "`await client.compute(CP.sum(fn))`")
    items = split_partitions(partitions)
    key = tokenize([p.key if isinstance(p, Future) else p for p in items], n, stragglers,
                   kind, id(client))
    placed = _PLACED.get(key)
    if placed is None or not placed.assignments:
        placed = _PLACED[key] = CodedPartitions(items, n, stragglers, kind, client)
        while len(_PLACED) > _MAX_PLACED:
            _PLACED.popitem(last=False)[1].release()
    _PLACED.move_to_end(key)
    return placed.sum(fn)
