"""Persistent stragglers: workers whose coded products are released in most recent calls,
and the plain work of coded graphs kept off them.

Coding the products is not enough when a slow machine also runs the rest of an
iteration (the elementwise updates, the sums, dask's ``chunk_sum`` tree, the cuts of the
decoded product). Every decode that starts early says which workers finished its products
and which were released (:meth:`Avoidance.observe`). A worker released in at least
``coded.avoid.released`` of its last ``coded.avoid.window`` observed groups is *avoided*:
the tasks of a new graph that holds coded products, other than the products and the
encoded data (which stay pinned to their blocks' workers), get loose restrictions to the
other workers (:meth:`Avoidance.restrict`): they run elsewhere while another worker is
running, and fetch what the avoided worker holds. Within one call, the tasks downstream of
a decode that started early are kept off the workers whose products it released, which
are still running them (:meth:`Avoidance.keep_off_busy`); so are the plain tasks of the
next coded graphs until those workers say the released products returned
(:meth:`Avoidance.busy`, :mod:`.worker_plugin`), and the tasks already queued on a
worker whose every thread runs a released product are moved (:meth:`Avoidance.move_queued`;
the one case where a task of a graph without coded products is touched). A worker whose
products were used by the last ``coded.avoid.recover`` decodes that saw it is taken
back. ``coded.avoid.enabled: false`` turns it all off.
"""

from __future__ import annotations

from collections import defaultdict, deque

from distributed.metrics import time as clock

from .. import config
from ..keys import as_key
from ..tasks import ProductTask, spec_of
from .records import WATCH_HANDLER


class Avoidance:
    """Which workers are avoided, from the decodes' observations, and the restrictions
    that keep a coded graph's plain tasks off them."""

    def __init__(self, plugin) -> None:
        self.plugin = plugin
        self.seen: dict = defaultdict(deque)  # worker -> recent groups: True if released
        self.avoided: set[str] = set()
        self.released_at: dict[str, float] = {}  # worker -> when a running product was released
        self.running: dict = defaultdict(set)  # worker -> released products still running there

    def clear(self) -> None:
        self.seen.clear()
        self.avoided.clear()
        self.released_at.clear()
        self.running.clear()

    def observe(self, used_workers, released_workers) -> None:
        """One decode started early: the workers whose products it used, and those whose
        products it released."""
        window = int(config.get("avoid.window"))
        for worker, released in [(w, False) for w in set(used_workers)] + [
                (w, True) for w in set(released_workers)]:
            seen = self.seen[worker]
            seen.append(released)
            while len(seen) > window:
                seen.popleft()
            self._update(worker)

    def _update(self, worker: str) -> None:
        seen = self.seen[worker]
        recover = int(config.get("avoid.recover"))
        if worker in self.avoided:
            if len(seen) >= recover and not any(list(seen)[-recover:]):
                self.avoided.discard(worker)
                self.plugin.stats["avoid-recovered"] += 1
            return
        window = int(config.get("avoid.window"))
        if len(seen) >= min(window, 3) and sum(seen) >= float(config.get("avoid.released")) * len(seen):
            self.avoided.add(worker)
            self.plugin.stats["avoid-marked"] += 1

    def forget_worker(self, worker: str) -> None:
        self.seen.pop(worker, None)
        self.avoided.discard(worker)
        self.released_at.pop(worker, None)
        self.running.pop(worker, None)

    def freed(self, worker: str, key, started: bool = True) -> None:
        """A released product ``key`` left ``worker`` (its worker plugin said so; ``started``:
        whether it had begun executing there)."""
        if not started:
            self.plugin.observations.record_unstarted(key)
        keys = self.running.get(worker)
        if keys is not None:
            keys.discard(key)
            if not keys:
                self.running.pop(worker, None)
                self.released_at.pop(worker, None)

    async def _watch(self, worker: str, keys: list) -> None:
        """Ask ``worker``'s plugin to watch released products ``keys``: those it says are
        no longer running are freed now, the others when it posts that they returned.
        A worker that cannot answer is left to its next heartbeat (:meth:`busy`)."""
        try:
            answer = await getattr(self.plugin.scheduler.rpc(worker), WATCH_HANDLER)(keys=keys)
        except Exception:  # gone, or without the plugin: the heartbeat decides
            return
        if not isinstance(answer, dict):  # the worker closed while it answered
            return
        unstarted = set(map(as_key, answer.get("unstarted", ())))
        for key in map(as_key, answer.get("done", ())):
            self.freed(worker, key, key not in unstarted)

    def busy(self) -> set[str]:
        """Workers still running a released product, as far as the scheduler can tell:
        one was released there and the worker has neither said it returned
        (:meth:`freed`) nor sent a heartbeat since that counts no ``cancelled`` task (a
        released task that keeps running is ``cancelled`` on its worker; the heartbeat
        covers a product that returned before its release reached the worker)."""
        s = self.plugin.scheduler
        out = set()
        for worker in list(self.running):
            ws, when = s.workers.get(worker), self.released_at.get(worker, 0.0)
            counts = ((ws.metrics or {}).get("task_counts") or {}) if ws is not None else {}
            if ws is None or (when < ws.last_seen and not counts.get("cancelled", 0)):
                self.running.pop(worker, None)  # gone, or it reported none running since
                self.released_at.pop(worker, None)
            else:
                out.add(worker)
        return out

    def restrict(self, tasks) -> int:
        """Loose restrictions to the workers neither avoided, busy (:meth:`busy`) nor
        quarantined on ``tasks`` (the plain tasks of a coded graph): a task without
        restrictions gets the other workers, a task with loose ones (set by an earlier
        graph's avoidance, or by the user) loses the banned workers among them, unless
        none would be left; strict restrictions are never touched. Returns how many
        tasks were restricted."""
        banned = self._banned()
        if not banned:
            return 0
        others = {w for w in self.plugin.scheduler.workers if w not in banned}
        if not others:
            return 0
        count = 0
        for ts in tasks:
            if ts.state not in ("released", "waiting", "no-worker"):
                continue
            narrowed = self._narrowed(ts, banned, others)
            if narrowed is None or narrowed == ts.worker_restrictions:
                continue
            self._loosely(ts, narrowed)
            count += 1
        self.plugin.stats["avoid-restricted"] += count
        return count

    def _banned(self) -> set[str]:
        """The workers a coded graph's plain tasks are kept off: quarantined, and, unless
        ``coded.avoid.enabled`` is false, busy or avoided."""
        return self.plugin.quarantine.workers | (
            self.busy() | self.avoided if config.get("avoid.enabled") else set())

    @staticmethod
    def _narrowed(ts, banned: set, others: set) -> set | None:
        """The workers ``ts`` may run on without ``banned``: its loose worker
        restrictions (or ``others``, without any) less ``banned``; ``None`` when it has
        restrictions of other kinds or strict ones (kept as they are), or none would be
        left."""
        if (ts.host_restrictions or ts.resource_restrictions
                or (ts.worker_restrictions and not ts.loose_restrictions)):
            return None
        return (ts.worker_restrictions or others) - banned or None

    def _loosely(self, ts, workers: set) -> None:
        self.plugin.scheduler.set_restrictions({ts.key: set(workers)})
        ts.loose_restrictions = True

    def keep_off_busy(self, decode_ts, running: dict, stimulus_id: str = "coded-busy") -> int:
        """A decode started early: the products it released that are still running
        (``running``: worker -> product keys) keep their workers busy (a worker cannot
        stop a running task), yet the scheduler counts those workers idle. The tasks
        downstream of the decode that are not assigned yet get loose restrictions to the
        other workers, so the rest of the call does not queue behind a released product;
        :meth:`busy` holds the workers until they are :meth:`freed`. Tasks already
        queued there are moved (:meth:`move_queued`)."""
        if not running or not config.get("avoid.enabled"):
            return 0
        now = clock()  # the clock of the workers' last_seen
        for worker, keys in running.items():
            self.running[worker] |= set(keys)
            self.released_at[worker] = now
            self.plugin.scheduler.loop.add_callback(self._watch, worker, list(keys))
        downstream, stack = [], list(decode_ts.dependents)
        seen = {decode_ts}
        while stack:
            ts = stack.pop()
            if ts in seen:
                continue
            seen.add(ts)
            downstream.append(ts)
            stack.extend(ts.dependents)
        for worker in running:
            self.move_queued(worker, stimulus_id)
        return self.restrict(downstream)

    def move_queued(self, worker: str, stimulus_id: str) -> int:
        """Tasks already assigned to ``worker`` when every one of its threads runs a
        released product wait behind those products, which the scheduler has forgotten:
        they are given back to the scheduler with loose restrictions to the workers
        neither busy, avoided nor quarantined, and run there. Products and tasks with
        strict restrictions stay (a task some thread may be running is, at worst,
        computed twice). Returns how many were moved."""
        s = self.plugin.scheduler
        ws = s.workers.get(worker)
        if (ws is None or not config.get("avoid.enabled")
                or len(self.running.get(worker, ())) < ws.nthreads):
            return 0
        banned = self._banned()
        others = {w for w in s.workers if w not in banned}
        moved = {}
        for ts in list(ws.processing):
            narrowed = (None if spec_of(ts, ProductTask) is not None
                        else self._narrowed(ts, banned, others))
            if narrowed is not None:
                self._loosely(ts, narrowed)
                moved[ts.key] = "released"
        if moved:
            s.transitions(moved, stimulus_id=stimulus_id)
            self.plugin.stats["avoid-moved"] += len(moved)
        return len(moved)
