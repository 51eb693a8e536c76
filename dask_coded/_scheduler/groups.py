"""First-k decisions: when a decode may stop waiting for its unfinished products.

A group is the products of one decode (:class:`~dask_coded.graph.ProductTask`, each
carrying its group's :class:`~dask_coded.graph.GroupSpec`). Every event that touches a
group (a product finishing or leaving memory, a worker lost, a new graph, the deadline)
leads to :meth:`Groups.review`, which does one of three things:

* the finished products satisfy the group's rule: the decode is detached from the
  unfinished ones (their arguments become ``None``), runs where a product finished, and
  the stragglers are released and forgotten;
* the rule can no longer hold (the products still able to finish are too few): the
  decode is detached from the lost ones (their arguments become
  :class:`~dask_coded.kernels.Missing`, saying why) and raises
  :class:`~dask_coded.errors.TooFewResultsError` at once;
* otherwise it waits, at most ``coded.first-k.deadline`` from when the graph arrived;
  then whatever it still waits for is given up as missing, so no call waits forever.
"""

from __future__ import annotations

import logging
import time

from dask._task_spec import _execute_subgraph  # no public name: to spot fused decodes
from dask.task_spec import Task, TaskRef
from dask.utils import parse_timedelta

from .. import config
from ..tasks import Missing, ProductTask, spec_of
from .records import Key, Product, ProductGroup, PrunedDecode

logger = logging.getLogger("dask_coded._scheduler")


def product_spec(ts) -> ProductTask | None:
    """The :class:`ProductTask` behind scheduler task ``ts``, if it is one."""
    return spec_of(ts, ProductTask)


def _with_source(spec: Task, index: int, source: tuple) -> Task:
    """``spec`` with ``source`` added to the ``sources`` argument of its decode (the task
    itself, or the decode inside a fused subgraph, as dask fuses a decode with its
    consumer)."""
    if "sources" in spec.kwargs:
        sources = {**(spec.kwargs["sources"] or {}), index: source}
        return Task(spec.key, spec.func, *spec.args, **{**spec.kwargs, "sources": sources})
    if spec.func is _execute_subgraph and isinstance(spec.args[0], dict):
        inner = {k: _with_source(t, index, source) if isinstance(t, Task) else t
                 for k, t in spec.args[0].items()}
        return Task(spec.key, spec.func, inner, *spec.args[1:], **spec.kwargs)
    return spec


def drop_dependency(ts, dts) -> None:
    """Scheduler task ``ts`` no longer depends on ``dts`` (every edge between them)."""
    if ts.waiting_on:
        ts.waiting_on.discard(dts)
    ts.dependencies.discard(dts)
    dts.dependents.discard(ts)
    if dts.waiters:
        dts.waiters.discard(ts)


class Groups:
    """The product groups (by decode key) and their products (by product key)."""

    def __init__(self, plugin) -> None:
        self.plugin = plugin
        self.groups: dict[Key, ProductGroup] = {}
        self.products: dict[Key, Product] = {}
        self.pruned: dict[Key, PrunedDecode] = {}

    @property
    def scheduler(self):
        return self.plugin.scheduler

    def clear(self) -> None:
        self.groups.clear()
        self.products.clear()
        self.pruned.clear()

    # ---- bookkeeping ------------------------------------------------------------------

    def add(self, ts, worker: str | None, graph=()) -> Key | None:
        """File product ``ts`` (pinned to ``worker``) under its decode (the one in the
        new graph's keys ``graph``, when it has several); returns the decode's key."""
        spec = product_spec(ts)
        # the same expression computed again: its products keep their keys while its
        # fused decode gets a new one, and the old decode may linger
        decode = next((d for d in ts.dependents if d.key in graph),
                      next(iter(ts.dependents), None))
        if decode is None:
            return None
        group = self.groups.get(decode.key)
        if group is None:
            group = self.groups[decode.key] = ProductGroup(decode.key, spec.spec, time.time())
            deadline = config.get("first-k.deadline")
            if deadline is not None:
                self.scheduler.loop.call_later(parse_timedelta(deadline), self.expire,
                                               decode.key, group)
        group.products[spec.index] = ts.key
        product = self.products[ts.key] = Product(ts.key, decode.key, spec.index, spec.block,
                                                  worker)
        if ts.state == "memory":  # an identical graph's product, still in memory
            group.finished.add(spec.index)
            holder = next(iter(ts.who_has or ()), None)
            if group.spec.named and holder is not None:
                self._name_source(product, holder.address)
        return decode.key

    def follows(self, product_key, block_key) -> bool:
        """Whether ``product_key`` is a product of the block ``block_key``."""
        product = self.products.get(product_key)
        return product is not None and product.block == block_key

    def moved(self, key, worker: str) -> None:
        product = self.products.get(key)
        if product is not None:
            product.worker = worker

    def forget(self, key) -> None:
        pruned = self.pruned.pop(key, None)
        if pruned is not None:  # forgotten before it finished: its detached products too
            self.scheduler.loop.add_callback(self.forget_orphans, pruned.dependencies,
                                             f"coded-forget-{time.time()}")
        product = self.products.pop(key, None)
        if product is not None:
            group = self.groups.get(product.decode)
            if group is not None and group.products.get(product.index) == key:
                del group.products[product.index]
                group.finished.discard(product.index)
                group.forgotten[key] = product.index
        group = self.groups.pop(key, None)
        if group is not None:
            for p in group.products.values():
                # a product of the same key may belong to a newer graph's decode by now
                # (dask renames the fused decode of every compute): keep that one
                if p in self.products and self.products[p].decode == key:
                    del self.products[p]

    def restore(self, ts) -> None:
        """Give a decode we pruned earlier its full graph back (see :class:`PrunedDecode`):
        without this it would wait for the products it used last time only."""
        pruned = self.pruned.get(ts.key)
        if ts.state != "released" or pruned is None:
            return
        del self.pruned[ts.key]
        ts.run_spec = pruned.run_spec
        for dep in pruned.dependencies:
            dts = self.scheduler.tasks.get(dep)
            if dts is not None and dts not in ts.dependencies:
                ts.add_dependency(dts)
        group = self.groups.get(ts.key)
        if group is not None:  # a new race: it starts again at the threshold
            group.started = False
        self.plugin.stats["restored"] += 1

    # ---- events ----------------------------------------------------------------------

    def finished(self, key, worker: str | None, seconds: float) -> Key | None:
        """Product ``key`` reached memory; returns its decode when it may now start."""
        product = self.products.get(key)
        if product is None:
            return None
        group = self.groups.get(product.decode)
        if group is None:
            return None
        if seconds > 0:
            product.seconds = seconds
            self.plugin.observations.record_finished(group.name, worker, seconds,
                                                     at=time.time() - group.since)
        group.finished.add(product.index)
        if worker is not None:
            group.ran_on[product.index] = worker
        if group.spec.named and worker is not None:
            self._name_source(product, worker)
        return product.decode if not group.started and self.ready(group) else None

    def ready(self, group: ProductGroup) -> bool:
        """Whether ``group``'s decode may start: its finished products decode, and a
        decode with one spare product (``verify="detect"``), one of whose products a
        worker under suspicion computed (:attr:`Quarantine.unlocated`), has one more
        (two spares locate a wrong product), unless no other product can finish."""
        if not group.decodable():
            return False
        suspected = self.plugin.quarantine.unlocated
        if group.spec.spare != 1 or not suspected or not (
                suspected & set(group.ran_on.values())):
            return True
        return (len(group.finished) > group.threshold
                or self._viable(group) <= len(group.finished))

    def _name_source(self, product: Product, worker: str) -> None:
        """Tell a checking decode that has not started who computed ``product`` (its
        ``sources`` argument: ``{index: (address, name)}``), so that a wrong product
        is named by its worker."""
        ts = self.scheduler.tasks.get(product.decode)
        if ts is None or ts.state not in ("waiting", "released", "no-worker"):
            return
        ws = self.scheduler.workers.get(worker)
        self._keep_submitted(ts)
        ts.run_spec = _with_source(ts.run_spec, product.index,
                                   (worker, str(ws.name) if ws is not None else worker))

    def left_memory(self, key) -> Key | None:
        """Product ``key`` left memory (its worker was lost); returns its decode when the
        group needs a review (it may already have enough products elsewhere)."""
        product = self.products.get(key)
        group = self.groups.get(product.decode) if product is not None else None
        if group is None or product.index not in group.finished:
            return None
        group.finished.discard(product.index)
        group.ran_on.pop(product.index, None)
        return product.decode

    def on_worker(self, worker: str) -> set:
        """Decodes of the products pinned to ``worker``."""
        return {p.decode for p in self.products.values() if p.worker == worker}

    # ---- decisions -------------------------------------------------------------------

    def review(self, decodes, stimulus_id: str, why: str = "") -> None:
        """Start each decode whose rule holds, fail each whose rule can no longer hold."""
        tasks = self.scheduler.tasks
        for key in decodes:
            group = self.groups.get(key)
            if group is None or key not in tasks or tasks[key].state in ("memory", "erred"):
                continue  # a decode that ran has nothing left to start or fail
            if self.ready(group):
                self.start(key, stimulus_id)
            elif not group.started and not self._reachable(group):
                self.fail(group, stimulus_id, why or "its products' workers are gone")

    def start(self, key, stimulus_id: str) -> None:
        """Decode ``key`` stops waiting for its unfinished products."""
        group, ts = self.groups.get(key), self.scheduler.tasks.get(key)
        if group is None or ts is None:
            return
        mine = set(group.products.values())
        unfinished = ({d for d in ts.waiting_on or () if d.key in mine}
                      if ts.state == "waiting" else set())
        if not unfinished or not group.decodable():
            self._observe(group, [])  # every product finished: none was a straggler
            return
        if not group.started:
            seconds = [self.products[p].seconds for i, p in group.products.items()
                       if i in group.finished and p in self.products]
            pairs = [(w, d) for d in unfinished for w in (d.worker_restrictions or ())]
            released = [w for w, _ in pairs]
            self.plugin.observations.record_decode(
                group.name, set(group.finished), max(seconds) if seconds else None,
                released, [d.key for _, d in pairs],
                {d.key for _, d in pairs if d.state != "processing"})
            self._observe(group, released)
        group.started = True
        # run it where a product finished (a worker known not to straggle), not where a
        # larger input (the row scales) happens to live
        s = self.scheduler
        fast = self._holders(group)
        if fast and (not ts.worker_restrictions or ts.loose_restrictions):
            s.set_restrictions({key: fast})
            ts.loose_restrictions = True
        running: dict = {}  # worker -> the released products it is still running
        for d in unfinished:
            if d.state == "processing" and d.processing_on is not None:
                running.setdefault(d.processing_on.address, set()).add(d.key)
        self._detach(ts, unfinished, None, stimulus_id)
        self.plugin.stats["pruned"] += 1
        self.plugin.avoidance.keep_off_busy(ts, running, stimulus_id)

    def _observe(self, group: ProductGroup, released: list) -> None:
        """Tell the avoidance, once per group, whose products the decode used (the
        workers holding its finished products) and whose it released."""
        if group.observed or not group.decodable():
            return
        group.observed = True
        self.plugin.observations.record_span(group.name, time.time() - group.since)
        self.plugin.avoidance.observe(self._holders(group), released)

    def _holders(self, group: ProductGroup) -> set:
        """The workers holding ``group``'s finished products (known not to straggle)."""
        s = self.scheduler
        return {ws.address for i, p in group.products.items() if i in group.finished
                and p in s.tasks for ws in s.tasks[p].who_has or ()}

    def fail(self, group: ProductGroup, stimulus_id: str, why: str) -> None:
        """Cut the products of ``group`` that can no longer finish: the decode runs once
        the others have, and raises :class:`~dask_coded.errors.TooFewResultsError` saying why,
        instead of waiting forever."""
        ts = self.scheduler.tasks.get(group.decode)
        if ts is None or ts.state != "waiting" or not ts.waiting_on:
            return
        mine = set(group.products.values())
        lost = {d for d in ts.waiting_on if d.key in mine and not self._can_finish(d)}
        if not lost:
            return
        logger.warning("dask_coded: decode %s cannot reach its rule (%d of %d products "
                       "needed can still finish): %s", group.decode,
                       self._viable(group), group.threshold, why)
        group.started = True
        self._detach(ts, lost, why, stimulus_id)
        self.plugin.stats["failed-early"] += 1

    def expire(self, key, group: ProductGroup) -> None:
        """The deadline passed: detach whatever products the decode still waits for."""
        ts = self.scheduler.tasks.get(key)
        if self.groups.get(key) is not group or ts is None or ts.state != "waiting":
            return
        mine = set(group.products.values())
        waiting = {d for d in ts.waiting_on or () if d.key in mine}
        if not waiting:
            return
        deadline = config.get("first-k.deadline")
        where = ", ".join(sorted(
            f"{self.products[d.key].index if d.key in self.products else d.key} on "
            f"{next(iter(d.worker_restrictions or ()), 'any worker')}" for d in waiting))
        why = (f"coded.first-k.deadline ({deadline}) passed while it waited for products "
               f"{where}")
        logger.warning("dask_coded: decode %s: %s", key, why)
        group.started = True
        self._detach(ts, waiting, why, f"coded-deadline-{time.time()}")
        self.plugin.stats["expired"] += 1

    def lost_data(self, lost: set, worker: str, stimulus_id: str) -> None:
        """Tasks ``lost`` with ``worker`` cannot be made again (scattered data, which has
        no recipe, or tasks whose own inputs were lost that way earlier), and
        distributed is about to forget every task that needs them, decodes included
        (their futures would be cancelled). Called just before: cut the products that
        need them from their decodes first, as :class:`Missing`; a decode whose rule
        still holds without them decodes from the rest, one whose rule cannot hold any
        more is cut from its unfinished products too and raises
        :class:`~dask_coded.errors.TooFewResultsError` at once."""
        tasks = self.scheduler.tasks
        stack = [tasks[k] for k in lost if k in tasks]
        doomed: set = {ts for ts in stack if ts.run_spec is not None}
        while stack:  # what distributed will forget: dependents not safely in memory
            for d in stack.pop().dependents:
                if d not in doomed and d.state != "erred" and not (
                        d.state == "memory" and d.who_has):
                    doomed.add(d)
                    stack.append(d)
        cuts: dict = {}
        for d in doomed:
            product = self.products.get(d.key)
            if product is not None:
                cuts.setdefault(product.decode, set()).add(d)
        why = f"lost worker {worker} with data its products needed and nothing can make again"
        for key, cut in cuts.items():
            ts, group = tasks.get(key), self.groups.get(key)
            if ts is None or group is None or not (
                    ts.state in ("waiting", "no-worker", "processing")
                    or ts.state == "memory" and not ts.who_has):  # (to be made again)
                continue  # done, or gone already
            if any(d in doomed and d not in cut for d in ts.dependencies):
                continue  # it needs lost data by another path: nothing to save
            indices = {self.products[d.key].index for d in cut}
            group.finished -= indices
            group.started = True
            self._cut(ts, cut, why)
            if ts.state == "processing":  # its worker was sent the spec with them
                self.scheduler.transitions({key: "released"}, stimulus_id=stimulus_id)
            if not group.spec.decodable(self._able(group) - indices | group.finished):
                mine = set(group.products.values())
                self._cut(ts, {d for d in ts.dependencies if d.key in mine
                               and d.state != "memory"}, None)
                self.plugin.stats["failed-early"] += 1
            self.scheduler.loop.add_callback(self._run_if_ready, key, stimulus_id)

    def remake(self, lost, worker: str) -> None:
        """Decodes among the tasks ``lost`` with ``worker`` (finished, their results not
        fetched) are made again, and distributed is about to recompute them. One whose
        products it had released were forgotten since (their inputs lost for good) would
        be forgotten instead, its future cancelled: it is made again without them (as
        :class:`Missing`), from the products in memory or made again, or raises
        :class:`~dask_coded.errors.TooFewResultsError`. Called just before."""
        tasks = self.scheduler.tasks
        for key in lost:
            ts, group = tasks.get(key), self.groups.get(key)
            if ts is None or group is None or not group.forgotten:
                continue
            spec = ts.run_spec
            gone = {k for k in spec.dependencies if k not in tasks}
            args = {a.key for a in spec.args if isinstance(a, TaskRef)}
            if not gone or not gone <= group.forgotten.keys() & args:
                continue  # it needs no forgotten product, or lost other data for good
            why = (f"lost worker {worker} with the result; products "
                   f"{sorted(group.forgotten[k] for k in gone)} it had released were "
                   f"forgotten since, their inputs lost for good")
            self._replace_args(ts, gone, why)
            ts.has_lost_dependencies = False  # what it lost is cut out
            self.plugin.stats["remade"] += 1

    def _run_if_ready(self, key, stimulus_id: str) -> None:
        ts = self.scheduler.tasks.get(key)
        if ts is not None and ts.state == "waiting" and not ts.waiting_on:
            self.scheduler.transitions({key: "processing"}, stimulus_id=stimulus_id)

    def _cut(self, ts, detached: set, why: str | None) -> None:
        """Drop decode ``ts``'s edges to the products ``detached``: their arguments become
        ``None``, or :class:`Missing` ``why``."""
        self._replace_args(ts, {d.key for d in detached}, why)  # keeps it as submitted
        for d in detached:
            drop_dependency(ts, d)

    def _replace_args(self, ts, keys: set, why: str | None) -> None:
        """Decode ``ts``'s arguments naming the products ``keys`` become ``None``, or
        :class:`Missing` ``why`` (its run spec as submitted kept first)."""
        self._keep_submitted(ts)
        spec = ts.run_spec
        gone = None if why is None else Missing(why)
        ts.run_spec = Task(
            spec.key, spec.func,
            *[gone if isinstance(a, TaskRef) and a.key in keys else a for a in spec.args],
            **spec.kwargs,
        )

    def _detach(self, ts, detached: set, why: str | None, stimulus_id: str) -> None:
        """:meth:`_cut` the products ``detached`` from decode ``ts``, start it if it
        waits for nothing else, and release and forget the detached products nobody else
        wants."""
        s = self.scheduler
        self._cut(ts, detached, why)
        recs = {} if ts.waiting_on else {ts.key: "processing"}
        orphans = [d for d in detached if not d.dependents and not d.who_wants]
        recs.update({d.key: "released" for d in orphans})
        self.plugin.stats["released"] += len(orphans)
        # the released products stay known (state "released") until the decode finishes
        # and takes them back as dependencies (:meth:`reconnect`)
        s.transitions(recs, stimulus_id=stimulus_id)

    def _keep_submitted(self, ts) -> None:
        """Keep decode ``ts``'s run spec and dependencies as submitted (the first time
        the plugin changes them), for :meth:`reconnect` and :meth:`restore`."""
        if ts.key not in self.pruned:
            self.pruned[ts.key] = PrunedDecode(ts.run_spec,
                                               tuple(d.key for d in ts.dependencies))

    def reconnect(self, key) -> None:
        """Decode ``key`` finished: give it back the run spec and dependencies its graph
        gave it, so that a later graph naming the same key finds the task as submitted
        (distributed warns about, and ignores, a key whose dependencies changed) and a
        recompute races all the products again."""
        pruned, ts = self.pruned.get(key), self.scheduler.tasks.get(key)
        if pruned is None or ts is None or ts.state not in ("memory", "erred"):
            return
        del self.pruned[key]
        ts.run_spec = pruned.run_spec
        for dep in pruned.dependencies:
            dts = self.scheduler.tasks.get(dep)
            if dts is not None and dts not in ts.dependencies:
                ts.add_dependency(dts)
        group = self.groups.get(key)
        if group is not None:
            group.started = False

    def forget_orphans(self, keys, stimulus_id: str) -> None:
        """Forget the released products ``keys`` nobody depends on or wants (detached from a
        decode that was forgotten before it finished)."""
        tasks = self.scheduler.tasks
        gone = {k: "forgotten" for k in keys if k in tasks and tasks[k].state == "released"
                and not tasks[k].dependents and not tasks[k].who_wants}
        if gone:
            self.scheduler.transitions(gone, stimulus_id=stimulus_id)

    def _can_finish(self, product) -> bool:
        """Finished, or pinned to a live worker (or not pinned at all)."""
        pins = product.worker_restrictions
        workers = self.scheduler.workers  # a SortedDict: test membership, never intersect
        return (product.state == "memory" or not pins or product.loose_restrictions
                or any(w in workers for w in pins))

    def _able(self, group: ProductGroup) -> set:
        """Indices of the products of ``group`` that are finished or can still run."""
        tasks = self.scheduler.tasks
        return {i for i, p in group.products.items()
                if p in tasks and self._can_finish(tasks[p])}

    def _viable(self, group: ProductGroup) -> int:
        return len(self._able(group))

    def _reachable(self, group: ProductGroup) -> bool:
        return group.spec.decodable(self._able(group) | group.finished)
