"""Injecting straggler models: a WorkerPlugin on ``distributed``, a hook on the local race.

:class:`StragglerPlugin` wraps ``distributed.worker._run_task_simple`` (a private
function: pinned dask range) so the delay falls inside the task's *compute* interval and
shows in the task stream; :func:`install` lets several such plugins (the delays, and
:class:`~dask_coded.stragglers.corrupt.CorruptProducts`) wrap the same worker's tasks. :func:`local_stragglers` applies the same models to the
local-scheduler race of :func:`dask_coded.kernels.race_products` (worker names there are
the product indices ``"0" .. "n-1"``). This is the test and benchmark harness: nothing in
the product imports it.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections import Counter
import time
from collections.abc import Iterator, Mapping, Sequence

import dask.config
import distributed.worker as dw
from distributed.core import Status
from distributed.diagnostics.plugin import WorkerPlugin

from ..keys import key_name, threshold_of
from .models import DelayModel

_TOKEN = re.compile(r"[0-9a-f]{8,}")


class TaskIds:
    """Stable ids for tasks: ``"<key without tokens>#<occurrence on this worker>"``, and
    for calls: ``"<name without tokens>@<how many calls of that name this worker saw>"``,
    where a *call* is every key sharing one name, tokens included (the tasks of one
    ``compute``)."""

    def __init__(self) -> None:
        self._counts: Counter = Counter()
        self._calls: dict = {}
        self._lock = threading.Lock()

    def call(self, worker: str, key) -> str:
        """The id of the call ``key`` belongs to, on this worker."""
        name = key_name(key)
        stable = _TOKEN.sub("", name)
        with self._lock:
            seen = self._calls.setdefault((worker, stable), {})
            if name not in seen:
                if len(seen) > 64:  # old calls are done: keep the table small
                    seen.pop(next(iter(seen)))
                seen[name] = self._counts["calls", worker, stable] = (
                    self._counts["calls", worker, stable] + 1)
            return f"{stable}@{seen[name]}"

    def __call__(self, worker: str, key) -> str:
        rest = key[1:] if isinstance(key, tuple) else ()
        stable = _TOKEN.sub("", key_name(key)) + repr(tuple(rest))
        with self._lock:
            self._counts[worker, stable] += 1
            return f"{stable}#{self._counts[worker, stable]}"

    def __reduce__(self):
        return (TaskIds, ())  # a copy in another process starts counting afresh


def _matches(key, match: Sequence[str] | None) -> bool:
    return match is None or any(m in key_name(key) for m in match)


# ---- distributed: wrap the worker's task runner -------------------------------------------

_INSTALL_LOCK = threading.Lock()


class StragglerPlugin(WorkerPlugin):
    """Inject a :class:`DelayModel`'s delays into tasks on every worker.

    Parameters
    ----------
    model : DelayModel
    seed : int
        Seeds every draw together with the worker's name and the task's id.
    match : sequence of str, optional
        Only tasks whose key name contains one of these strings are delayed (default:
        every task).
    work : mapping {str: float}, optional
        Work share of tasks whose key name contains the string (first match wins). A coded
        product ``coded-prod-t<threshold>-...`` not listed gets ``1/threshold``; any other task ``1``.
    interruptible : bool
        End an injected delay early once the scheduler releases the task. Real slow
        work cannot be interrupted (a released straggler keeps its thread busy, the
        default); benchmarks use this to make successive calls independent, as the
        theory assumes.

    Notes
    -----
    Register with ``client.register_plugin(StragglerPlugin(...))``; registering another
    one replaces it, and ``client.unregister_worker_plugin(StragglerPlugin.name)`` removes
    it.
    """

    name = "dask-coded-stragglers"

    def __init__(self, model: DelayModel, seed: int = 0, match: Sequence[str] | None = None,
                 work: Mapping[str, float] | None = None, interruptible: bool = False):
        if not isinstance(model, DelayModel):
            raise TypeError(f"model must be a DelayModel, got {type(model).__name__}")
        self.model, self.seed = model, int(seed)
        self.interruptible = bool(interruptible)
        self.match = None if match is None else tuple(match)
        self.work = dict(work or {})
        self.task_ids = TaskIds()

    def work_of(self, key) -> float:
        """The work share of ``key`` (see ``work``)."""
        name = key_name(key)
        for part, share in self.work.items():
            if part in name:
                return float(share)
        t = threshold_of(key)
        return 1.0 / t if t else 1.0

    def delay(self, worker_name: str, key) -> float:
        """Seconds to add to ``key`` on this worker (0 when it does not match)."""
        if not _matches(key, self.match):
            return 0.0
        task_id = self.task_ids(worker_name, key)
        return self.model.delay(worker_name, task_id, self.seed, self.work_of(key),
                                call=self.task_ids.call(worker_name, key))

    def wrap(self, worker, task):
        """``task`` delayed by :meth:`delay` on ``worker`` (as it is when no delay)."""
        seconds = self.delay(str(worker.name), task.key)
        return _Delayed(task, seconds, self.interruptible) if seconds > 0 else task

    def setup(self, worker) -> None:
        install(worker, self)

    def teardown(self, worker) -> None:
        uninstall(worker, self)


def install(worker, plugin) -> None:
    """Have ``plugin.wrap(worker, task)`` wrap every task ``worker`` runs, as one of the
    wrappers registered under the plugin's ``name`` (another of that name is replaced)."""
    with _INSTALL_LOCK:
        runner = dw._run_task_simple
        if not hasattr(runner, "_coded_plugins"):
            runner = _wrap_runner(runner)
            dw._run_task_simple = runner
        runner._coded_plugins.setdefault(worker.address, {})[plugin.name] = plugin


def uninstall(worker, plugin) -> None:
    """Stop ``plugin`` wrapping ``worker``'s tasks."""
    with _INSTALL_LOCK:
        wrappers = getattr(dw._run_task_simple, "_coded_plugins", {}).get(worker.address, {})
        if wrappers.get(plugin.name) is plugin:
            del wrappers[plugin.name]


def _wrap_runner(original):
    plugins: dict[str, dict] = {}  # worker address -> {plugin name: plugin}

    def _run_task_simple(task, data, time_delay):
        try:
            worker = dw.get_worker()
        except ValueError:
            return original(task, data, time_delay)
        for plugin in list(plugins.get(worker.address, {}).values()):
            task = plugin.wrap(worker, task)
        return original(task, data, time_delay)

    _run_task_simple._coded_plugins = plugins
    _run_task_simple._coded_original = original
    return _run_task_simple


class TaskWrapper:
    """A task run through another callable: everything but the call is the task's own
    (what :meth:`StragglerPlugin.wrap` and its peers return)."""

    def __init__(self, task):
        self.task, self.key = task, task.key

    def __getattr__(self, name):
        return getattr(self.task, name)


_CLOSING = (Status.closing, Status.closed, Status.failed)


class _Delayed(TaskWrapper):
    """A task that sleeps, then runs: the sleep counts as compute time. With
    ``interruptible``, the sleep ends early once the scheduler has released the task or
    the worker is closing."""

    def __init__(self, task, seconds: float, interruptible: bool = False):
        super().__init__(task)
        self.seconds, self.interruptible = seconds, interruptible

    def __call__(self, data):
        if not self.interruptible:
            time.sleep(self.seconds)
            return self.task(data)
        worker = dw.get_worker()
        end = time.monotonic() + self.seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.01))
            ts = worker.state.tasks.get(self.key)
            if (ts is None or ts.state in ("cancelled", "released", "forgotten")
                    or worker.status in _CLOSING):
                break
        return self.task(data)


# ---- local scheduler ----------------------------------------------------------------------

@contextlib.contextmanager
def local_stragglers(model: DelayModel, seed: int = 0, work: float = 1.0) -> Iterator[None]:
    """Apply ``model`` to the coded products raced on the local scheduler (any thread);
    every product gets work share ``work``; product ``j`` is worker ``str(j)``."""
    task_ids = TaskIds()

    def delay(index: int) -> float:
        task_id = task_ids(str(index), "coded-product")  # one product per worker per call
        return model.delay(str(index), task_id, int(seed), float(work), call=task_id)

    with dask.config.set({"coded.local-race.delay": delay}):
        yield
