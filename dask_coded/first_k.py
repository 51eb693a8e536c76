"""FirstKPlugin: the scheduler side of first-k-of-n completion.

The coded graph is ordinary: a decode depends on all ``n`` products, so it is correct on
any scheduler. This plugin only makes it fast on ``distributed``:

* ``update_graph``: pins every coded product to the worker its coded block is pinned to,
  so blocks never move, and spreads blocks encoded inside a rewritten graph over distinct
  workers;
* ``transition``: when the ``k``-th product of a group reaches memory, it drops the
  decode's edges to the unfinished products (their arguments become ``None``), lets the
  decode run, and releases the stragglers (their workers cancel them);
* ``remove_worker``: re-pins the coded blocks of a lost worker to live workers, where they
  are re-encoded in the background, and lets a decode that can no longer get ``k``
  products fail at once with a message that counts survivors.

Groups are found by key names (see :mod:`dask_coded.graph`): linear fusion renames the
decode task and drops annotations, but products are never fused (each feeds a task with
``n`` dependencies).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict

from dask._task_spec import Task, TaskRef
from dask.utils import parse_timedelta
from distributed.core import Status
from distributed.diagnostics.plugin import SchedulerPlugin

from . import config
from .graph import is_block, is_encode, key_name, product_k

logger = logging.getLogger(__name__)

_OBSERVED_GROUPS = 500  # product groups (calls) whose durations are kept for k="auto"


def _block_of(ts):
    """The coded-block dependency of a product task (resident or encoded in the graph)."""
    for dts in ts.dependencies:
        if is_block(dts.key) or is_encode(dts.key):
            return dts
    return None


class FirstKPlugin(SchedulerPlugin):
    """Let a coded decode run once any ``k`` of its ``n`` products are in memory.

    Registered by :func:`dask_coded.encode` (``client.register_plugin``; idempotent).
    ``stats`` counts what it did: ``pruned`` decodes started early, ``released``
    straggler products, ``pinned`` products, ``repinned`` blocks of lost workers.
    """

    name = "dask-coded-first-k"
    idempotent = True

    def __init__(self) -> None:
        self.scheduler = None
        self.stats: Counter = Counter()
        self.blocks: dict = {}  # block key -> token of its matrix (for re-pinning)
        # decode key -> (its run_spec and dependency keys before we pruned it)
        self.pruned: dict = {}
        # straggling observed, for k="auto": product name -> finished durations, and the
        # times at which released stragglers were cut off (censored observations)
        self.observed: OrderedDict = OrderedDict()
        self.observed_by_worker: dict = {}  # product name -> [(worker, seconds)]
        self.released_by_worker: dict = {}  # product name -> [pinned worker of each straggler]
        self.censored: dict = {}
        self._durations: dict = {}  # product key -> compute seconds, while it lives
        self.used: OrderedDict = OrderedDict()  # product name -> coded blocks decoded from

    async def start(self, scheduler) -> None:
        self.scheduler = scheduler
        scheduler.handlers["coded_first_k_stats"] = self._stats_handler
        scheduler.handlers["coded_first_k_observed"] = self._observed_handler
        scheduler.handlers["coded_first_k_used"] = self._used_handler

    def _stats_handler(self, comm=None) -> dict:
        return dict(self.stats)

    def _observed_handler(self, comm=None, prefix: str = "") -> dict:
        """Product durations (seconds) of product names starting with ``prefix``."""
        names = [name for name in self.observed if name.startswith(prefix)]
        per_worker: dict = {}
        released: dict = {}
        for name in names:
            for worker, seconds in self.observed_by_worker.get(name, ()):
                per_worker.setdefault(worker, []).append(seconds)
            for worker in self.released_by_worker.get(name, ()):
                released[worker] = released.get(worker, 0) + 1
        return {
            "observed": [d for name in names for d in self.observed[name]],
            "censored": [d for name in names for d in self.censored.get(name, ())],
            "per_worker": per_worker,
            "released": released,
        }

    def _used_handler(self, comm=None, name: str = "") -> list | None:
        """Coded block indices the decodes of product ``name`` used (None: all of them)."""
        used = self.used.get(name)
        return None if used is None else sorted(used)

    def _record(self, key, startstops, worker) -> None:
        seconds = sum(ss["stop"] - ss["start"] for ss in startstops or ()
                      if ss.get("action") == "compute")
        if seconds <= 0:
            return
        name = key_name(key)
        self._durations[key] = seconds
        self.observed.setdefault(name, []).append(seconds)
        self.observed_by_worker.setdefault(name, []).append((worker, seconds))
        self.observed.move_to_end(name)
        while len(self.observed) > _OBSERVED_GROUPS:
            old, _ = self.observed.popitem(last=False)
            self.censored.pop(old, None)
            self.observed_by_worker.pop(old, None)
            self.released_by_worker.pop(old, None)

    # ---- pin products where their blocks live ------------------------------------------

    def update_graph(self, scheduler, *, tasks=(), **kwargs) -> None:
        live = sorted(ws.address for ws in scheduler.running) or sorted(scheduler.workers)
        products = []
        for key in tasks:
            if is_block(key):
                self.blocks[key] = key_name(key)
            elif is_encode(key) and live:
                # one coded block per worker, as encode() does; loosely, since the graph
                # can re-encode it anywhere
                ts = scheduler.tasks.get(key)
                if ts is not None and not ts.worker_restrictions:
                    ts.worker_restrictions = {live[int(key[1]) % len(live)]}
                    ts.loose_restrictions = True
            elif product_k(key) is not None:
                products.append(key)
        for key in tasks:
            if key in self.pruned:
                self._restore(scheduler, key)
        decodes = {}
        for key in products:
            ts = scheduler.tasks.get(key)
            if ts is None:
                continue
            block = _block_of(ts)
            if block is not None and block.worker_restrictions:
                ts.worker_restrictions = set(block.worker_restrictions)
                ts.loose_restrictions = block.loose_restrictions
                self.stats["pinned"] += 1
            decodes.update({d.key: key for d in ts.dependents})
        if decodes:
            # products of an earlier identical graph may still be in memory: such a decode
            # sees no k-th transition to memory, so check it once the graph is in
            scheduler.loop.add_callback(self._check_decodes, decodes)

    def _restore(self, scheduler, key) -> None:
        """Give a decode we pruned earlier its full graph back when an identical graph is
        submitted while the old task lingers (the scheduler then keeps the old TaskState:
        without this it would wait for the ``k`` products it used last time)."""
        ts = scheduler.tasks.get(key)
        if ts is None or ts.state != "released":
            return
        spec, dep_keys = self.pruned.pop(key)
        ts.run_spec = spec
        for dep in dep_keys:
            dts = scheduler.tasks.get(dep)
            if dts is not None and dts not in ts.dependencies:
                ts.add_dependency(dts)
        self.stats["restored"] += 1

    def _check_decodes(self, decodes: dict) -> None:
        for key, product in decodes.items():
            ts = self.scheduler.tasks.get(key)
            if ts is not None and ts.state == "waiting" and ts.waiting_on and self._k_done(
                ts, product
            ):
                self._start_decode(key, key_name(product))

    # ---- first k of n ------------------------------------------------------------------

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        if finish == "forgotten":
            self.blocks.pop(key, None)
            self.pruned.pop(key, None)
            self._durations.pop(key, None)
            return
        if finish != "memory" or product_k(key) is None:
            return
        self._record(key, kwargs.get("startstops"), kwargs.get("worker"))
        ts = self.scheduler.tasks.get(key)
        if ts is None:
            return
        for dts in ts.dependents:
            if dts.state == "waiting" and dts.waiting_on and self._k_done(dts, key):
                # never mutate the graph inside a transition: do it on the next loop turn
                self.scheduler.loop.add_callback(self._start_decode, dts.key, key_name(key))

    @staticmethod
    def _k_done(dts, key) -> bool:
        name, k = key_name(key), product_k(key)
        done = sum(d.state == "memory" and key_name(d.key) == name for d in dts.dependencies)
        return done >= k

    def _start_decode(self, key, product_name: str, reason: str = "first-k") -> None:
        """Drop ``key``'s edges to its unfinished products of ``product_name`` and run it."""
        s = self.scheduler
        ts = s.tasks.get(key)
        if ts is None or ts.state != "waiting" or not ts.waiting_on:
            return
        pruned = {d for d in ts.waiting_on if key_name(d.key) == product_name}
        if not pruned or pruned != ts.waiting_on:
            return  # still waiting on something else (e.g. another input): not ours to start
        pruned_keys = {d.key for d in pruned}
        self.pruned[key] = (ts.run_spec, [d.key for d in ts.dependencies])
        if reason == "first-k":  # the stragglers ran at least as long as the k-th product
            finished = [d for d in ts.dependencies
                        if key_name(d.key) == product_name and d.state == "memory"]
            self.used.setdefault(product_name, set()).update(d.key[-1] for d in finished)
            self.used.move_to_end(product_name)
            while len(self.used) > _OBSERVED_GROUPS:
                self.used.popitem(last=False)
            done = [self._durations.get(d.key, 0.0) for d in finished]
            self.released_by_worker.setdefault(product_name, []).extend(
                w for d in pruned for w in (d.worker_restrictions or ()))
            if done:
                self.censored.setdefault(product_name, []).extend([max(done)] * len(pruned))
        for d in pruned:
            ts.waiting_on.discard(d)
            ts.dependencies.discard(d)
            d.dependents.discard(ts)
            if d.waiters:
                d.waiters.discard(ts)
        spec = ts.run_spec
        ts.run_spec = Task(
            spec.key,
            spec.func,
            *[None if isinstance(a, TaskRef) and a.key in pruned_keys else a for a in spec.args],
            **spec.kwargs,
        )
        recs = {key: "processing"}
        for d in pruned:
            if not d.dependents and not d.who_wants:
                recs[d.key] = "released"
                self.stats["released"] += 1
        self.stats["pruned" if reason == "first-k" else "failed-early"] += 1
        s.transitions(recs, stimulus_id=f"coded-{reason}-{time.time()}")

    # ---- worker loss -------------------------------------------------------------------

    def remove_worker(self, scheduler, worker: str, **kwargs) -> None:
        self._fail_hopeless_decodes(scheduler, worker)
        # Re-encode lost blocks after a grace period, so that a cluster shutting down
        # (workers leave first) does not start re-encoding everything.
        delay = parse_timedelta(config.get("first-k.repin-delay"))
        scheduler.loop.call_later(delay, self._repin_lost)

    def _repin_lost(self) -> None:
        s = self.scheduler
        if s.status != Status.running or not s.workers:
            return
        live = list(s.workers)
        for key in list(self.blocks):
            ts = s.tasks.get(key)
            if ts is not None and ts.worker_restrictions and not ts.worker_restrictions & set(live):
                self._repin(ts, live)

    def _repin(self, ts, live: list[str]) -> None:
        """Move a lost coded block's pin to the live worker holding the fewest blocks of
        the same matrix; it is re-encoded there (from A) in the background."""
        s = self.scheduler
        token = key_name(ts.key)
        load = Counter({w: 0 for w in live})
        for key, tok in self.blocks.items():
            other = s.tasks.get(key)
            if tok == token and other is not None and other.worker_restrictions:
                for w in other.worker_restrictions & set(live):
                    load[w] += 1
        target = min(live, key=lambda w: (load[w], w))
        if load[target]:
            logger.warning(
                "dask_coded: no free worker for lost coded block %s; sharing %s, which now "
                "straggles for %d blocks", ts.key, target, load[target] + 1
            )
        ts.worker_restrictions = {target}
        ts.loose_restrictions = False
        self.stats["repinned"] += 1
        if ts.state == "no-worker":
            s.transitions({ts.key: "processing"}, stimulus_id=f"coded-repin-{time.time()}")

    def _fail_hopeless_decodes(self, scheduler, worker: str) -> None:
        """Start (so that it raises) every decode that can no longer get ``k`` products."""
        decodes = {}
        for ts in list(scheduler.tasks.values()):
            if product_k(ts.key) is None:
                continue
            for dts in ts.dependents:
                if dts.state == "waiting" and dts.waiting_on:
                    decodes[dts.key] = (dts, key_name(ts.key), product_k(ts.key))
        for key, (dts, name, k) in decodes.items():
            viable = sum(
                self._viable(d, scheduler) for d in dts.dependencies if key_name(d.key) == name
            )
            if viable < k:
                logger.warning(
                    "dask_coded: decode %s can get only %d of %d products it needs after "
                    "losing %s", key, viable, k, worker,
                )
                scheduler.loop.add_callback(self._start_decode, key, name, "lost")

    @staticmethod
    def _viable(product, scheduler) -> bool:
        """Can this product still finish without a coded block being re-encoded?"""
        if product.state == "memory":
            return True
        pins = product.worker_restrictions
        if pins and not pins & set(scheduler.workers):
            return False
        block = _block_of(product)
        return block is None or any(ws.address in scheduler.workers for ws in block.who_has or ())
