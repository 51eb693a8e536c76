"""The scheduler plugin's state, in small typed records.

Everything here is plain data; :mod:`.plugin` keeps it consistent with the scheduler's
tasks (entries leave when their task is forgotten or the scheduler restarts).
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

Key = Any  # a dask key


@dataclass
class ProductGroup:
    """The products of one decode, which may start once ``threshold`` are in memory."""

    decode: Key
    name: str  # the products' key name
    threshold: int
    products: set = field(default_factory=set)
    finished: set = field(default_factory=set)
    started: bool = False


@dataclass(frozen=True)
class PrunedDecode:
    """A decode started before all its products finished: its run spec and dependencies
    as submitted, restored when an identical graph arrives while the old task lingers
    (the scheduler then keeps the old TaskState)."""

    run_spec: Any
    dependencies: tuple


@dataclass
class CodedBlock:
    """A resident coded block: which matrix it belongs to and the worker it is pinned to."""

    key: Key
    matrix: tuple  # the key without the block index: shared by the blocks of one code
    worker: str | None


@dataclass
class ResidentMatrix:
    """The coded blocks and row scales of a dask array encoded inside a rewritten graph,
    kept in memory (for a pseudo-client) so that the next graph reuses them."""

    token: str
    source: str | None  # the dask array's name
    keys: set = field(default_factory=set)


@dataclass
class RewriteLog:
    """What the rewrite did, per optimizer (it runs in the scheduler's process on
    distributed): ``(layer, n, k, reused resident blocks, token)`` records, the most
    recent ``limit`` optimizers kept."""

    limit: int = 64
    records: OrderedDict = field(default_factory=OrderedDict)

    def add(self, optimizer: str, record: tuple) -> None:
        self.records.setdefault(optimizer, []).append(record)
        self.records.move_to_end(optimizer)
        while len(self.records) > self.limit:
            self.records.popitem(last=False)

    def of(self, optimizer: str) -> list:
        return list(self.records.get(optimizer, ()))


#: the rewrites made in this process (on distributed: the scheduler's)
REWRITES = RewriteLog()

#: the scheduler plugins in this process; the rewrite runs beside them on distributed
PLUGINS: weakref.WeakSet = weakref.WeakSet()


def resident_keys(token: str, scheduler: str | None) -> set:
    """The keys of ``token``'s coded blocks and row scales that the running scheduler at
    address ``scheduler``, in this process, holds in memory (the rewrite, running there,
    then leaves their encode tasks out of the next graph)."""
    for plugin in list(PLUGINS):
        s = getattr(plugin, "scheduler", None)
        if (scheduler is None or s is None or s.address != scheduler
                or s.status.name != "running"):
            continue
        matrix = plugin.resident.get(token)
        if matrix is not None:
            tasks = plugin.scheduler.tasks
            return {k for k in matrix.keys if k in tasks and tasks[k].state == "memory"}
    return set()


@dataclass
class Observations:
    """Straggling seen per product name (one name per call), for ``k="auto"`` and the
    diagnostics: durations of finished products per worker, censor times of released
    stragglers (they ran at least as long as the last product used), the workers those
    stragglers were pinned to, and the product indices each decode used. Bounded: the
    oldest ``limit`` names are dropped first."""

    limit: int = 500
    finished: OrderedDict = field(default_factory=OrderedDict)  # name -> [(worker, s)]
    censored: dict = field(default_factory=dict)  # name -> [s]
    released: dict = field(default_factory=dict)  # name -> [worker]
    used: dict = field(default_factory=dict)  # name -> {index}

    def record_finished(self, name: str, worker: str | None, seconds: float) -> None:
        self.finished.setdefault(name, []).append((worker, seconds))
        self.finished.move_to_end(name)
        while len(self.finished) > self.limit:
            old, _ = self.finished.popitem(last=False)
            for table in (self.censored, self.released, self.used):
                table.pop(old, None)

    def record_decode(self, name: str, used: set, censor: float | None,
                      released_workers: list) -> None:
        """A decode started early from the products ``used``; the others were cut off."""
        self.used.setdefault(name, set()).update(used)
        self.released.setdefault(name, []).extend(released_workers)
        if censor is not None:
            self.censored.setdefault(name, []).extend([censor] * len(released_workers))

    def report(self, prefix: str = "", last: int | None = None) -> dict:
        """What was seen for product names starting with ``prefix`` (only the ``last``
        most recent names, when given)."""
        names = [name for name in self.finished if name.startswith(prefix)]
        if last is not None:
            names = names[-int(last):] if last > 0 else []
        per_worker: dict = {}
        released: dict = {}
        for name in names:
            for worker, seconds in self.finished[name]:
                per_worker.setdefault(worker, []).append(seconds)
            for worker in self.released.get(name, ()):
                released[worker] = released.get(worker, 0) + 1
        return {
            "observed": [s for name in names for _, s in self.finished[name]],
            "censored": [c for name in names for c in self.censored.get(name, ())],
            "calls": [[s for _, s in self.finished[name]] for name in names],
            "calls_workers": [[w for w, _ in self.finished[name]] for name in names],
            "calls_released": [list(self.released.get(name, ())) for name in names],
            "calls_censored": [list(self.censored.get(name, ())) for name in names],
            "per_worker": per_worker,
            "released": released,
        }
