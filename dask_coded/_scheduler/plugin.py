"""FirstKPlugin: the scheduler side of first-threshold-of-n completion.

The coded graph is ordinary: a decode depends on all its products, so it is correct on
any scheduler. This plugin only makes it fast and keeps it live on ``distributed``:

* ``update_graph``: pins every product to the worker its coded block is pinned to (blocks
  never move), spreads blocks encoded inside a rewritten graph over distinct workers, and
  fails at once a decode that cannot get ``threshold`` products;
* ``transition``: when the ``threshold``-th product of a group reaches memory, drops the
  decode's edges to the unfinished products (their arguments become ``None``), lets the
  decode run, and releases and forgets the stragglers (their workers cancel them);
* ``remove_worker``: fails every decode that can no longer get ``threshold`` products and,
  after ``coded.first-k.repin-delay``, re-pins the lost coded blocks to the live workers
  holding the fewest blocks of the same matrix, where they are re-encoded;
* ``add_worker``: moves a block off a worker that holds two of one matrix onto the new
  worker (invariant: no worker holds two blocks of a matrix while a worker holds none);
* residency: the coded blocks a rewritten graph encodes (stable keys, see
  :mod:`dask_coded.keys`) are kept in memory for a pseudo-client, so the next graph that
  multiplies the same array reuses them; least recently used first out beyond
  ``coded.rewrite.max-resident``; ``dask_coded.release`` drops them;
* ``restart``: forgets everything; ``remove_client``: the last client gone, the resident
  matrices are released.

It knows nothing about codes: a group is the products feeding one decode, and its
threshold is read from the product keys (:mod:`dask_coded.keys`).
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict, defaultdict

from dask._task_spec import Task, TaskRef
from dask.utils import parse_bytes, parse_timedelta
from distributed.core import Status
from distributed.diagnostics.plugin import SchedulerPlugin

from .. import config
from ..keys import (
    is_block, is_call_block, is_scales, key_name, product_index, threshold_of, token_of,
)
from .state import (
    PLUGINS,
    REWRITES,
    CodedBlock,
    Key,
    Observations,
    ProductGroup,
    PrunedDecode,
    ResidentMatrix,
)

RESIDENT_CLIENT = "dask-coded-resident"  # the pseudo-client that keeps rewritten blocks

logger = logging.getLogger(__name__)


class FirstKPlugin(SchedulerPlugin):
    """Let a coded decode run once ``threshold`` of its products are in memory.

    Registered by :func:`dask_coded.encode` and :func:`dask_coded.coded_matmul`
    (``client.register_plugin``; idempotent). ``stats`` counts what it did: ``pruned``
    decodes started early, ``released`` straggler products, ``pinned`` products,
    ``repinned`` blocks of lost workers, ``moved`` blocks spread onto joining workers,
    ``failed-early`` decodes that could no longer get enough products.
    """

    name = "dask-coded-first-k"
    idempotent = True

    def __init__(self) -> None:
        self.scheduler = None
        self.stats: Counter = Counter()
        self.groups: dict[Key, ProductGroup] = {}  # decode key -> its group
        self.group_of: dict[Key, Key] = {}  # product key -> decode key
        self.pinned: defaultdict[str, set] = defaultdict(set)  # worker -> product keys
        self.pinned_to: dict[Key, str] = {}  # product key -> its worker
        self.blocks: dict[Key, CodedBlock] = {}
        self.pruned: dict[Key, PrunedDecode] = {}
        self.observations = Observations()
        self.resident: OrderedDict[str, ResidentMatrix] = OrderedDict()  # token -> matrix
        self._seconds: dict[Key, float] = {}  # finished product -> compute seconds

    # ---- registration ------------------------------------------------------------------

    async def start(self, scheduler) -> None:
        self.scheduler = scheduler
        for name, handler in self._handlers().items():
            scheduler.handlers[name] = handler
        PLUGINS.add(self)

    def _handlers(self) -> dict:
        """Every RPC handler this plugin serves (called as ``client.scheduler.<name>``)."""
        return {
            "coded_first_k_stats": lambda comm=None: dict(self.stats),
            "coded_first_k_observed": (
                lambda comm=None, prefix="", last=None: self.observations.report(prefix, last)),
            "coded_first_k_used": self._used,
            "coded_first_k_tracked": lambda comm=None: self.tracked(),
            "coded_rewrites": lambda comm=None, optimizer="": REWRITES.of(optimizer),
            "coded_resident": lambda comm=None: self.resident_report(),
            "coded_release": self.release,
        }

    def _used(self, comm=None, name: str = "") -> list | None:
        """Product indices the decodes of products ``name`` used (None: all of them)."""
        used = self.observations.used.get(name)
        return None if used is None else sorted(used)

    def tracked(self) -> dict:
        """How many groups, products, blocks and pruned decodes the plugin tracks (all
        leave with their tasks: a growing count is a leak)."""
        return {"groups": len(self.groups), "products": len(self.group_of),
                "blocks": len(self.blocks), "pruned": len(self.pruned),
                "pinned": sum(map(len, self.pinned.values()))}

    def restart(self, scheduler) -> None:
        self.groups.clear()
        self.group_of.clear()
        self.pinned.clear()
        self.pinned_to.clear()
        self.blocks.clear()
        self.pruned.clear()
        self._seconds.clear()
        self.resident.clear()

    # ---- new graphs --------------------------------------------------------------------

    def update_graph(self, scheduler, *, tasks=(), stimulus_id: str = "", **kwargs) -> None:
        live = sorted(ws.address for ws in scheduler.running) or sorted(scheduler.workers)
        products, spread, resident, scales = [], {}, [], []
        for key in tasks:
            ts = scheduler.tasks.get(key)
            if ts is None:
                continue
            if is_block(key) and key not in self.blocks:
                if not ts.worker_restrictions and live:
                    # encoded in a graph: one block per worker, kept resident unless it
                    # serves one call only
                    spread[key] = live[int(key[1]) % len(live)]
                    if not is_call_block(key):
                        resident.append(ts)
                worker = spread.get(key) or next(iter(ts.worker_restrictions or ()), None)
                self.blocks[key] = CodedBlock(key, (key_name(key), *key[2:]), worker)
            elif is_scales(key) and len(key) > 1:
                scales.append(ts)
            elif threshold_of(key) is not None:
                products.append(ts)
            if key in self.pruned:
                self._restore(ts)
        if spread:
            scheduler.set_restrictions(spread)
        # row scales stay with the blocks encoded beside them (in whatever order the
        # graph lists them)
        encoded = {token_of(b.key) for b in resident}
        resident += [ts for ts in scales if token_of(ts.key) in encoded]
        self._keep_resident(resident, tasks, products)
        decodes = {self._add_product(ts) for ts in products} - {None}
        if decodes:
            # never transition inside update_graph: the new tasks are not scheduled yet
            scheduler.loop.add_callback(self._check_groups, decodes, stimulus_id)
        if any(b.worker not in scheduler.workers for b in self.blocks.values() if b.worker):
            # a call arrived, so the cluster is not shutting down: re-pin lost blocks now
            # (the products above stay where the blocks were: a group judged short of
            # products fails now, as it would have mid-call)
            self._repin_lost(stimulus_id)

    def _add_product(self, ts) -> Key | None:
        """Pin a product where its block lives and file it under its decode."""
        block = next((d for d in ts.dependencies if is_block(d.key)), None)
        if block is not None and block.worker_restrictions:
            worker = next(iter(block.worker_restrictions))
            self.scheduler.set_restrictions({ts.key: worker})
            ts.loose_restrictions = block.loose_restrictions
            if not block.loose_restrictions:
                self.pinned[worker].add(ts.key)
                self.pinned_to[ts.key] = worker
            self.stats["pinned"] += 1
        decode = next(iter(ts.dependents), None)
        if decode is None:
            return None
        group = self.groups.get(decode.key)
        if group is None:
            group = self.groups[decode.key] = ProductGroup(
                decode.key, key_name(ts.key), threshold_of(ts.key))
        group.products.add(ts.key)
        if ts.state == "memory":  # an identical graph's product, still in memory
            group.finished.add(ts.key)
        self.group_of[ts.key] = decode.key
        return decode.key

    def _restore(self, ts) -> None:
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
        self.stats["restored"] += 1

    def _check_groups(self, decodes, stimulus_id: str) -> None:
        """Start each decode that already has enough products, fail each that cannot get
        enough (its products pinned to workers that are gone)."""
        for key in decodes:
            group = self.groups.get(key)
            if group is None or group.started:
                continue
            if len(group.finished) >= group.threshold:
                self._start_decode(key, stimulus_id)
            elif self._viable(group) < group.threshold:
                self._fail(group, stimulus_id, "its products' workers are gone")

    # ---- first threshold of n ----------------------------------------------------------

    def transition(self, key, start, finish, *args, stimulus_id: str = "", **kwargs) -> None:
        if finish == "forgotten":
            self._forget(key)
            return
        decode = self.group_of.get(key)
        if decode is None:
            return
        group = self.groups[decode]
        if finish != "memory":
            group.finished.discard(key)
            return
        seconds = sum(ss["stop"] - ss["start"] for ss in kwargs.get("startstops") or ()
                      if ss.get("action") == "compute")
        if seconds > 0:
            self._seconds[key] = seconds
            self.observations.record_finished(group.name, kwargs.get("worker"), seconds)
        group.finished.add(key)
        if len(group.finished) >= group.threshold and not group.started:
            # never mutate the graph inside a transition: do it on the next loop turn
            self.scheduler.loop.add_callback(self._start_decode, decode, stimulus_id)

    def _forget(self, key) -> None:
        self.blocks.pop(key, None)
        self.pruned.pop(key, None)
        self._seconds.pop(key, None)
        decode = self.group_of.pop(key, None)
        if decode is not None:
            group = self.groups.get(decode)
            if group is not None:
                group.products.discard(key)
                group.finished.discard(key)
        worker = self.pinned_to.pop(key, None)
        if worker is not None:
            self.pinned[worker].discard(key)
            if not self.pinned[worker]:
                del self.pinned[worker]
        group = self.groups.pop(key, None)
        if group is not None:
            for product in group.products:
                self.group_of.pop(product, None)

    def _start_decode(self, key, stimulus_id: str) -> None:
        """Decode ``key`` stops waiting for its unfinished products."""
        group, ts = self.groups.get(key), self.scheduler.tasks.get(key)
        if group is None or group.started or ts is None or ts.state != "waiting":
            return
        unfinished = {d for d in ts.waiting_on or () if d.key in group.products}
        if not unfinished:
            return
        seconds = [self._seconds.get(p, 0.0) for p in group.finished]
        self.observations.record_decode(
            group.name, {product_index(p) for p in group.finished},
            max(seconds) if seconds else None,
            [w for d in unfinished for w in (d.worker_restrictions or ())])
        group.started = True
        # run it where a product finished (a worker known not to straggle), not where a
        # larger input (the row scales) happens to live
        fast = {ws.address for p in group.finished if p in self.scheduler.tasks
                for ws in self.scheduler.tasks[p].who_has or ()}
        if fast and not ts.worker_restrictions:
            self.scheduler.set_restrictions({key: fast})
            ts.loose_restrictions = True
        # the decode runs now, or when its other inputs (if any) are in memory
        self._cut(ts, unfinished, stimulus_id)
        self.stats["pruned"] += 1

    def _fail(self, group: ProductGroup, stimulus_id: str, why: str) -> None:
        """Cut the products of ``group`` that can no longer finish: the decode runs once
        the others have, and raises :class:`~dask_coded.TooFewResultsError` counting them,
        instead of waiting forever."""
        ts = self.scheduler.tasks.get(group.decode)
        if group.started or ts is None or ts.state != "waiting" or not ts.waiting_on:
            return
        lost = {d for d in ts.waiting_on if d.key in group.products and not self._can_finish(d)}
        if not lost:
            return
        logger.warning("dask_coded: decode %s can get only %d of the %d products it needs: %s",
                       group.decode, self._viable(group), group.threshold, why)
        group.started = True
        self._cut(ts, lost, stimulus_id)
        self.stats["failed-early"] += 1

    def _cut(self, ts, cut: set, stimulus_id: str) -> None:
        """Drop decode ``ts``'s edges to the products ``cut`` (their arguments become
        ``None``), start it if it waits for nothing else, and release and forget the cut
        products nobody else wants."""
        s, cut_keys = self.scheduler, {d.key for d in cut}
        self.pruned[ts.key] = PrunedDecode(ts.run_spec, tuple(d.key for d in ts.dependencies))
        for d in cut:
            ts.waiting_on.discard(d)
            ts.dependencies.discard(d)
            d.dependents.discard(ts)
            if d.waiters:
                d.waiters.discard(ts)
        spec = ts.run_spec
        ts.run_spec = Task(
            spec.key, spec.func,
            *[None if isinstance(a, TaskRef) and a.key in cut_keys else a for a in spec.args],
            **spec.kwargs,
        )
        recs = {} if ts.waiting_on else {ts.key: "processing"}
        orphans = [d for d in cut if not d.dependents and not d.who_wants]
        recs.update({d.key: "released" for d in orphans})
        self.stats["released"] += len(orphans)
        s.transitions(recs, stimulus_id=stimulus_id)
        # a released product nobody wants would linger in the scheduler: forget it
        gone = {d.key: "forgotten" for d in orphans
                if d.state == "released" and not d.dependents and not d.who_wants}
        if gone:
            s.transitions(gone, stimulus_id=stimulus_id)

    def _can_finish(self, product) -> bool:
        """Finished, or pinned to a live worker (or not pinned at all)."""
        pins = product.worker_restrictions
        return (product.state == "memory" or not pins or product.loose_restrictions
                or bool(pins & self.scheduler.workers.keys()))

    def _viable(self, group: ProductGroup) -> int:
        """Products of ``group`` that are finished or can still run."""
        tasks = self.scheduler.tasks
        return sum(self._can_finish(tasks[p]) for p in group.products if p in tasks)

    # ---- resident blocks of rewritten graphs --------------------------------------------

    def _keep_resident(self, new: list, tasks, products: list) -> None:
        """Keep the blocks and scales of rewritten graphs in memory (for a pseudo-client),
        mark the matrices this graph uses as recently used, and release the least
        recently used beyond ``coded.rewrite.max-resident`` bytes."""
        s = self.scheduler
        for ts in new:
            token = token_of(ts.key)
            m = self.resident.get(token)
            if m is None:
                source = next((key_name(d.key) for d in ts.dependencies
                               if not is_block(d.key)), None)
                m = self.resident[token] = ResidentMatrix(token, source)
            m.keys.add(ts.key)
        if new:
            s.client_desires_keys([ts.key for ts in new], RESIDENT_CLIENT)
            self.stats["resident-encoded"] += sum(is_block(ts.key) for ts in new)
        # in use: the blocks in this graph, and those its products read from memory
        used = {token_of(k) for k in tasks if is_block(k) or is_scales(k)}
        used |= {token_of(d.key) for ts in products for d in ts.dependencies
                 if is_block(d.key)}
        for token in used & self.resident.keys():
            self.resident.move_to_end(token)
        limit = parse_bytes(config.get("rewrite.max-resident"))
        while len(self.resident) > 1 and self._resident_bytes() > limit:
            oldest = next(iter(self.resident))
            if oldest in used:
                break
            self._release_matrix(oldest)

    def _resident_bytes(self) -> int:
        tasks = self.scheduler.tasks
        return sum(tasks[k].nbytes for m in self.resident.values() for k in m.keys
                   if k in tasks and tasks[k].nbytes > 0)

    def resident_report(self) -> dict:
        """``{token: {"source", "keys", "bytes"}}`` of the resident rewritten matrices."""
        tasks = self.scheduler.tasks
        return {t: {"source": m.source, "keys": len(m.keys),
                    "bytes": sum(max(tasks[k].nbytes, 0) for k in m.keys if k in tasks)}
                for t, m in self.resident.items()}

    def release(self, comm=None, source: str | None = None, tokens=None) -> int:
        """Release the resident matrices encoded from dask array ``source`` (or with these
        ``tokens``); returns how many."""
        chosen = [t for t, m in self.resident.items()
                  if (source is not None and m.source == source) or t in (tokens or ())]
        for token in chosen:
            self._release_matrix(token)
        return len(chosen)

    def _release_matrix(self, token: str) -> None:
        m = self.resident.pop(token)
        keys = [k for k in m.keys if k in self.scheduler.tasks]
        if keys and RESIDENT_CLIENT in self.scheduler.clients:
            self.scheduler.client_releases_keys(keys, RESIDENT_CLIENT,
                                                stimulus_id=f"coded-release-{token}")
        self.stats["resident-released"] += 1

    def remove_client(self, scheduler, client: str) -> None:
        """The last client is gone: release the resident matrices (they were kept for its
        next graphs; kept on, a cluster shutting down would warn about losing them)."""
        others = set(scheduler.clients) - {client, RESIDENT_CLIENT, "fire-and-forget"}
        if client != RESIDENT_CLIENT and not others and self.resident:
            for token in list(self.resident):
                self._release_matrix(token)

    # ---- workers leaving and joining ---------------------------------------------------

    def remove_worker(self, scheduler, worker: str, *, stimulus_id: str = "", **kwargs) -> None:
        lost = self.pinned.pop(worker, set())
        for p in lost:
            self.pinned_to.pop(p, None)
        affected = {self.group_of[p] for p in lost if p in self.group_of}
        for key in affected:
            group = self.groups.get(key)
            if group is not None and not group.started and self._viable(group) < group.threshold:
                scheduler.loop.add_callback(self._fail, group, stimulus_id,
                                            f"lost worker {worker}")
        if any(b.worker == worker for b in self.blocks.values()):
            # a grace period, so that a cluster shutting down (workers leave first) does
            # not start re-encoding everything
            delay = parse_timedelta(config.get("first-k.repin-delay"))
            scheduler.loop.call_later(delay, self._repin_lost, stimulus_id)

    def _load(self, matrix: str) -> Counter:
        """Blocks of ``matrix`` per live worker."""
        load = Counter({w: 0 for w in self.scheduler.workers})
        for block in self.blocks.values():
            if block.matrix == matrix and block.worker in load:
                load[block.worker] += 1
        return load

    def _repin_lost(self, stimulus_id: str) -> None:
        """Pin every block whose worker is gone to the live worker holding the fewest
        blocks of its matrix; it is re-encoded there."""
        s = self.scheduler
        if s.status != Status.running or not s.workers:
            return
        for block in list(self.blocks.values()):
            ts = s.tasks.get(block.key)
            if ts is None or block.worker is None or block.worker in s.workers:
                continue
            load = self._load(block.matrix)
            target = min(load, key=lambda w: (load[w], w))
            if load[target]:
                logger.warning("dask_coded: no free worker for lost coded block %s; %s now "
                               "holds %d blocks of its matrix", block.key, target,
                               load[target] + 1)
            self._pin_block(ts, block, target, stimulus_id)
            self.stats["repinned"] += 1

    def _pin_block(self, ts, block: CodedBlock, worker: str, stimulus_id: str) -> None:
        block.worker = worker
        self.scheduler.set_restrictions({ts.key: worker})
        ts.loose_restrictions = False
        if ts.state == "no-worker":
            self.scheduler.transitions({ts.key: "processing"}, stimulus_id=stimulus_id)

    def add_worker(self, scheduler, worker: str) -> None:
        moves = []
        for matrix in {b.matrix for b in self.blocks.values()}:
            load = self._load(matrix)
            crowded = max(load, key=lambda w: (load[w], w))
            if load[crowded] < 2:
                continue
            block = next(b for b in self.blocks.values()
                         if b.matrix == matrix and b.worker == crowded)
            moves.append((block, crowded))
        for block, source in moves:
            scheduler.loop.add_callback(self._move_block, block, source, worker)

    async def _move_block(self, block: CodedBlock, source: str, target: str) -> None:
        """Copy ``block`` from ``source`` to ``target`` peer to peer, pin it there and
        drop the copy on ``source``."""
        s = self.scheduler
        ts = s.tasks.get(block.key)
        if ts is None or target not in s.workers or block.worker != source:
            return
        stimulus_id = f"coded-move-block-{target}"
        if ts.state == "memory" and any(ws.address == source for ws in ts.who_has or ()):
            failed = await s.gather_on_worker(target, {block.key: [source]})
            if failed or s.tasks.get(block.key) is not ts or block.worker != source:
                return
            self._pin_block(ts, block, target, stimulus_id)
            if source in s.workers:
                await s.delete_worker_data(source, [block.key], stimulus_id)
        else:
            self._pin_block(ts, block, target, stimulus_id)
        self.stats["moved"] += 1
