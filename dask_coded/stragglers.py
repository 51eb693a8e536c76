"""Seeded straggler models and the WorkerPlugin that injects them.

A model maps ``(worker name, task id)`` to a delay in seconds, drawn from a generator
seeded by ``zlib.crc32(f"{seed}|{worker}|{task id}")`` (not ``hash()``, which is salted per
process). The task id is the key with its random tokens removed plus how many times that
worker has run such a key (:class:`TaskIds`), so a run is reproducible although every call
gets fresh keys.

:class:`StragglerPlugin` wraps ``distributed.worker._run_task_simple`` (a private
function: pinned dask range) so the delay falls inside the task's *compute* interval and
shows in the task stream. :func:`local_stragglers` applies the same models to the
local-scheduler race of :func:`dask_coded.kernels.first_k_threads` (worker names there
are the coded block indices ``"0" .. "n-1"``).
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from distributed.diagnostics.plugin import WorkerPlugin

from .graph import key_name


_TOKEN = re.compile(r"[0-9a-f]{8,}")


def seeded_rng(seed: int, worker: str, task_id: str) -> np.random.Generator:
    """The generator for one (seed, worker, task id): the same in every process."""
    return np.random.default_rng(zlib.crc32(f"{seed}|{worker}|{task_id}".encode()))


class TaskIds:
    """Stable ids for tasks: ``"<key without tokens>#<occurrence on this worker>"``."""

    def __init__(self) -> None:
        self._counts: Counter = Counter()
        self._lock = threading.Lock()

    def __call__(self, worker: str, key) -> str:
        rest = key[1:] if isinstance(key, tuple) else ()
        stable = _TOKEN.sub("", key_name(key)) + repr(tuple(rest))
        with self._lock:
            self._counts[worker, stable] += 1
            return f"{stable}#{self._counts[worker, stable]}"

    def __reduce__(self):
        return (TaskIds, ())  # a copy in another process starts counting afresh


class DelayModel:
    """Base class: ``delay(worker, key, seed)`` seconds to add to one task."""

    def delay(self, worker: str, task_id: str, seed: int) -> float:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class ShiftedExponential(DelayModel):
    """The paper's model: ``scale * (shift + X / mu)``, ``X ~ Exp(1)``, on every task.

    ``mu`` is the straggling rate (larger: less straggling); ``scale`` the seconds one
    unit of work takes.
    """

    mu: float = 1.0
    scale: float = 0.05
    shift: float = 1.0

    def __post_init__(self):
        if not self.mu > 0 or not self.scale >= 0 or not self.shift >= 0:
            raise ValueError(
                f"ShiftedExponential needs mu > 0, scale >= 0, shift >= 0; got mu={self.mu}, "
                f"scale={self.scale}, shift={self.shift}"
            )

    def delay(self, worker: str, task_id: str, seed: int) -> float:
        x = seeded_rng(seed, worker, task_id).exponential()
        return self.scale * (self.shift + x / self.mu)


@dataclass(frozen=True)
class SlowWorkers(DelayModel):
    """Persistent stragglers: the named workers add ``seconds[name]`` to every task."""

    seconds: Mapping[str, float] = field(default_factory=dict)

    def delay(self, worker: str, task_id: str, seed: int) -> float:
        return float(self.seconds.get(str(worker), 0.0))


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
        Seeds every draw together with the worker's name and the task key.
    match : sequence of str, optional
        Only tasks whose key name contains one of these strings are delayed (default:
        every task).

    Register with ``client.register_plugin(StragglerPlugin(...))``; registering another
    one replaces it, and ``client.unregister_worker_plugin(StragglerPlugin.name)`` removes
    it.
    """

    name = "dask-coded-stragglers"

    def __init__(self, model: DelayModel, seed: int = 0, match: Sequence[str] | None = None):
        if not isinstance(model, DelayModel):
            raise TypeError(f"model must be a DelayModel, got {type(model).__name__}")
        self.model, self.seed = model, int(seed)
        self.match = None if match is None else tuple(match)
        self.task_ids = TaskIds()

    def delay(self, worker_name: str, key) -> float:
        """Seconds to add to ``key`` on this worker (0 when it does not match)."""
        if not _matches(key, self.match):
            return 0.0
        return self.model.delay(worker_name, self.task_ids(worker_name, key), self.seed)

    def setup(self, worker) -> None:
        import distributed.worker as dw

        with _INSTALL_LOCK:
            runner = dw._run_task_simple
            if not hasattr(runner, "_coded_plugins"):
                runner = _wrap_runner(runner)
                dw._run_task_simple = runner
            runner._coded_plugins[worker.address] = self

    def teardown(self, worker) -> None:
        import distributed.worker as dw

        getattr(dw._run_task_simple, "_coded_plugins", {}).pop(worker.address, None)


def _wrap_runner(original):
    plugins: dict[str, StragglerPlugin] = {}

    def _run_task_simple(task, data, time_delay):
        from distributed.worker import get_worker

        try:
            worker = get_worker()
        except ValueError:
            return original(task, data, time_delay)
        plugin = plugins.get(worker.address)
        if plugin is not None:
            seconds = plugin.delay(str(worker.name), task.key)
            if seconds > 0:
                task = _Delayed(task, seconds)
        return original(task, data, time_delay)

    _run_task_simple._coded_plugins = plugins
    _run_task_simple._coded_original = original
    return _run_task_simple


class _Delayed:
    """A task that sleeps, then runs: the sleep counts as compute time."""

    def __init__(self, task, seconds: float):
        self.task, self.seconds = task, seconds
        self.key = task.key

    def __call__(self, data):
        time.sleep(self.seconds)
        return self.task(data)

    def __getattr__(self, name):
        return getattr(self.task, name)


# ---- local scheduler ----------------------------------------------------------------------

_LOCAL: dict = {}


@contextlib.contextmanager
def local_stragglers(model: DelayModel, seed: int = 0) -> Iterator[None]:
    """Apply ``model`` to the coded products raced on the local scheduler (any thread)."""
    previous = _LOCAL.get("model")
    _LOCAL["model"] = (model, int(seed), TaskIds())
    try:
        yield
    finally:
        _LOCAL["model"] = previous


def local_delay(index: int) -> float:
    """Delay for coded block ``index``'s product under :func:`local_stragglers` (else 0)."""
    current = _LOCAL.get("model")
    if current is None:
        return 0.0
    model, seed, task_ids = current
    return model.delay(str(index), task_ids(str(index), "coded-product"), seed)
