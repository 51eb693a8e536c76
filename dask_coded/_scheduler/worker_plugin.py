"""The scheduler plugin's worker half: it tells the scheduler when a released coded product
stops occupying its worker.

A product the scheduler releases while it runs (its decode started without it) keeps its
worker's thread until it returns: a thread cannot be stopped, the worker marks the task
``cancelled``, and nothing reaches the scheduler when it ends. The scheduler's avoidance
(:meth:`.avoidance.Avoidance.busy`) keeps the plain tasks of coded graphs off such a worker
meanwhile, and asks the worker about the products it released (the ``coded_watch``
handler): the worker answers at once which of them are no longer running (a product often
returns before its release arrives), and posts ``{"key": key, "started": bool}`` under
:data:`FREED_TOPIC` when each of the others leaves. So the worker is taken back at once
rather than at its next heartbeat. Each answer also says whether the product ever began
executing here (the plugin remembers the tasks that did): the page shows a released
product that never started apart from a straggler cut off while it ran.
:class:`~dask_coded.FirstKPlugin` installs this plugin on every worker.
"""

from __future__ import annotations

from collections import OrderedDict

from distributed.diagnostics.plugin import WorkerPlugin

from .records import FREED_TOPIC, WATCH_HANDLER

#: the worker states in which a task still holds a thread
RUNNING = frozenset({"executing", "long-running", "cancelled", "resumed"})
#: the worker states in which a task may still start (it waits for a thread or its inputs)
PENDING = frozenset({"ready", "constrained", "waiting", "fetch", "flight"})
#: how many of the tasks that began executing here are remembered (the most recent)
STARTED = 10_000


class FirstKWorkerPlugin(WorkerPlugin):
    """Watches released products until they return (:data:`RUNNING` states left)."""

    name = "dask-coded-first-k"
    idempotent = True

    def __init__(self) -> None:
        self.worker = None
        self.watched: set = set()  # released products still running (or pending) here
        self.started: OrderedDict = OrderedDict()  # recent keys that began executing here

    def setup(self, worker) -> None:
        self.worker = worker
        worker.handlers[WATCH_HANDLER] = self.watch

    def teardown(self, worker) -> None:
        worker.handlers.pop(WATCH_HANDLER, None)

    def _in(self, key, states: frozenset) -> bool:
        ts = self.worker.state.tasks.get(key)
        return ts is not None and ts.state in states

    def watch(self, keys=()) -> dict:
        """Products the scheduler released: ``{"done": [keys no longer running here],
        "unstarted": [those of them that never began executing here]}``; the others
        (running, or still pending until their release arrives) are watched until they
        leave."""
        done, unstarted = [], []
        for key in keys:
            if self._in(key, RUNNING | PENDING):
                self.watched.add(key)
                continue
            done.append(key)
            if key not in self.started:
                unstarted.append(key)
        return {"done": done, "unstarted": unstarted}

    def transition(self, key, start: str, finish: str, **kwargs) -> None:
        if finish == "executing":
            self.started[key] = None
            while len(self.started) > STARTED:
                self.started.popitem(last=False)
        if key in self.watched and not self._in(key, RUNNING | PENDING):
            self.watched.discard(key)
            self.worker.log_event(FREED_TOPIC, {"key": key, "started": key in self.started})
