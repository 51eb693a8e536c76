"""The scheduler plugin's worker half: it tells the scheduler when a released coded product
stops occupying its worker.

A product the scheduler releases while it runs (its decode started without it) keeps its
worker's thread until it returns: a thread cannot be stopped, the worker marks the task
``cancelled``, and nothing reaches the scheduler when it ends. The scheduler's avoidance
(:meth:`.avoidance.Avoidance.busy`) keeps the plain tasks of coded graphs off such a worker
meanwhile, and asks the worker about the products it released (the ``coded_watch``
handler): the worker answers at once which of them are no longer running (a product often
returns before its release arrives), and posts ``{"key": key}`` under :data:`FREED_TOPIC`
when each of the others returns. So the worker is taken back at once rather than at its
next heartbeat. :class:`~dask_coded.FirstKPlugin` installs this plugin on every worker.
"""

from __future__ import annotations

from distributed.diagnostics.plugin import WorkerPlugin

from .records import FREED_TOPIC, WATCH_HANDLER

#: the worker states in which a task still holds a thread
RUNNING = frozenset({"executing", "long-running", "cancelled", "resumed"})


class FirstKWorkerPlugin(WorkerPlugin):
    """Watches released products until they return (:data:`RUNNING` states left)."""

    name = "dask-coded-first-k"
    idempotent = True

    def __init__(self) -> None:
        self.worker = None
        self.watched: set = set()  # released products still running here

    def setup(self, worker) -> None:
        self.worker = worker
        worker.handlers[WATCH_HANDLER] = self.watch

    def teardown(self, worker) -> None:
        worker.handlers.pop(WATCH_HANDLER, None)

    def _running(self, key) -> bool:
        ts = self.worker.state.tasks.get(key)
        return ts is not None and ts.state in RUNNING

    def watch(self, keys=()) -> list:
        """Products the scheduler released: returns those no longer running here, and
        watches the others until they return."""
        done = []
        for key in keys:
            if self._running(key):
                self.watched.add(key)
            else:
                done.append(key)
        return done

    def transition(self, key, start: str, finish: str, **kwargs) -> None:
        if key in self.watched and not self._running(key):
            self.watched.discard(key)
            self.worker.log_event(FREED_TOPIC, {"key": key})
