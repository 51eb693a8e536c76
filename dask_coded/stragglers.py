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

from .graph import key_name, product_k

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
    """Base class of the straggler models.

    ``delay(worker, task_id, seed, work)`` is the seconds one task runs late; ``work`` is
    the task's share of the whole job (``1/k`` for a coded product over ``k`` blocks,
    ``1/n`` for one of ``n`` uncoded pieces), so that models of the paper's kind scale
    with it. Every draw comes from :func:`seeded_rng`.
    """

    def delay(self, worker: str, task_id: str, seed: int, work: float = 1.0) -> float:
        raise NotImplementedError  # pragma: no cover

    def sample(self, size: int, seed: int = 0, work: float = 1.0,
               workers: Sequence[str] = ("0",)) -> np.ndarray:
        """``size`` delays per worker, shape ``(size, len(workers))``: for Monte Carlo."""
        return np.array([[self.delay(str(w), f"sample#{i}", seed, work) for w in workers]
                         for i in range(size)])


@dataclass(frozen=True)
class ShiftedExponential(DelayModel):
    """The paper's model: a task of work share ``w`` takes ``scale * w * (shift + X / mu)``
    seconds, ``X ~ Exp(1)``, on every worker.

    ``mu`` is the straggling rate (larger: less straggling); ``scale`` the seconds the
    whole job (work 1) takes without straggling.
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

    def delay(self, worker: str, task_id: str, seed: int, work: float = 1.0) -> float:
        x = seeded_rng(seed, worker, task_id).exponential()
        return self.scale * work * (self.shift + x / self.mu)

    def sample(self, size: int, seed: int = 0, work: float = 1.0,
               workers: Sequence[str] = ("0",)) -> np.ndarray:
        x = np.random.default_rng(seed).exponential(size=(size, len(workers)))
        return self.scale * work * (self.shift + x / self.mu)


@dataclass(frozen=True)
class SlowWorkers(DelayModel):
    """Persistent stragglers: every task takes ``scale * work`` seconds, on the named
    workers ``factor[name]`` times that, plus ``seconds[name]``.

    ``SlowWorkers(seconds={"3": 2.0})`` adds 2 s to every task of worker 3 (and nothing
    elsewhere); ``SlowWorkers(scale=1.0, factor={"3": 5})`` makes worker 3 five times
    slower than the others.
    """

    seconds: Mapping[str, float] = field(default_factory=dict)
    factor: Mapping[str, float] = field(default_factory=dict)
    scale: float = 0.0

    def __post_init__(self):
        bad = {w: f for w, f in self.factor.items() if not f >= 1}
        if bad or any(not d >= 0 for d in self.seconds.values()) or not self.scale >= 0:
            raise ValueError(
                f"SlowWorkers needs factor >= 1, seconds >= 0 and scale >= 0; got "
                f"factor={dict(self.factor)}, seconds={dict(self.seconds)}, scale={self.scale}"
            )

    def delay(self, worker: str, task_id: str, seed: int, work: float = 1.0) -> float:
        worker = str(worker)
        return (self.scale * work * float(self.factor.get(worker, 1.0))
                + float(self.seconds.get(worker, 0.0)))


@dataclass(frozen=True)
class Stalls(DelayModel):
    """Transient stalls (GC pauses, noisy neighbours): every task takes ``scale * work``
    seconds, and with probability ``p`` it hits a stall of ``Exp(mean)`` seconds, on any
    worker, independently."""

    p: float = 0.1
    mean: float = 0.5
    scale: float = 0.05

    def __post_init__(self):
        if not 0 <= self.p <= 1 or not self.mean >= 0 or not self.scale >= 0:
            raise ValueError(
                f"Stalls needs 0 <= p <= 1, mean >= 0, scale >= 0; got p={self.p}, "
                f"mean={self.mean}, scale={self.scale}"
            )

    def delay(self, worker: str, task_id: str, seed: int, work: float = 1.0) -> float:
        rng = seeded_rng(seed, worker, task_id)
        stall = rng.exponential(self.mean) if rng.random() < self.p else 0.0
        return self.scale * work + stall


@dataclass(frozen=True)
class Trace(DelayModel):
    """Replays recorded task durations: each task's delay is one of ``durations`` (seconds
    for work ``reference_work``, scaled to the task's work), drawn with the seeded rng; with
    ``per_worker``, a worker named there replays its own list."""

    durations: Sequence[float] = ()
    per_worker: Mapping[str, Sequence[float]] = field(default_factory=dict)
    reference_work: float = 1.0

    def __post_init__(self):
        lists = [self.durations, *self.per_worker.values()]
        if not len(self.durations) or any(len(d) == 0 for d in lists):
            raise ValueError("Trace needs a non-empty list of durations (and per worker)")
        if any(not d >= 0 for ds in lists for d in ds):
            raise ValueError("Trace durations must be >= 0 seconds")

    @classmethod
    def from_task_stream(cls, records: Sequence[Mapping], prefix: str = "",
                         reference_work: float = 1.0) -> "Trace":
        """Build from ``distributed.get_task_stream`` records (compute intervals of keys
        whose name contains ``prefix``), one list per worker and one pooled."""
        pooled: list[float] = []
        per_worker: dict[str, list[float]] = {}
        for rec in records:
            if prefix not in str(rec.get("key", "")):
                continue
            for ss in rec.get("startstops", ()):
                if ss.get("action") == "compute":
                    d = float(ss["stop"] - ss["start"])
                    pooled.append(d)
                    per_worker.setdefault(str(rec.get("worker")), []).append(d)
        return cls(tuple(pooled), {w: tuple(d) for w, d in per_worker.items()}, reference_work)

    def delay(self, worker: str, task_id: str, seed: int, work: float = 1.0) -> float:
        options = self.per_worker.get(str(worker), self.durations)
        pick = seeded_rng(seed, worker, task_id).integers(len(options))
        return float(options[pick]) * work / self.reference_work


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
        product ``coded-prod-k<k>-...`` not listed gets ``1/k``; any other task ``1``.
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
        k = product_k(key)
        return 1.0 / k if k else 1.0

    def delay(self, worker_name: str, key) -> float:
        """Seconds to add to ``key`` on this worker (0 when it does not match)."""
        if not _matches(key, self.match):
            return 0.0
        task_id = self.task_ids(worker_name, key)
        return self.model.delay(worker_name, task_id, self.seed, self.work_of(key))

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
                task = _Delayed(task, seconds, plugin.interruptible)
        return original(task, data, time_delay)

    _run_task_simple._coded_plugins = plugins
    _run_task_simple._coded_original = original
    return _run_task_simple


class _Delayed:
    """A task that sleeps, then runs: the sleep counts as compute time. With
    ``interruptible``, the sleep ends early once the scheduler has released the task."""

    def __init__(self, task, seconds: float, interruptible: bool = False):
        self.task, self.seconds, self.interruptible = task, seconds, interruptible
        self.key = task.key

    def __call__(self, data):
        if not self.interruptible:
            time.sleep(self.seconds)
            return self.task(data)
        from distributed.worker import get_worker

        state = get_worker().state
        end = time.monotonic() + self.seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.01))
            ts = state.tasks.get(self.key)
            if ts is None or ts.state in ("cancelled", "released", "forgotten"):
                break
        return self.task(data)

    def __getattr__(self, name):
        return getattr(self.task, name)


# ---- local scheduler ----------------------------------------------------------------------

_LOCAL: dict = {}


@contextlib.contextmanager
def local_stragglers(model: DelayModel, seed: int = 0, work: float = 1.0) -> Iterator[None]:
    """Apply ``model`` to the coded products raced on the local scheduler (any thread);
    every product gets work share ``work``."""
    previous = _LOCAL.get("model")
    _LOCAL["model"] = (model, int(seed), TaskIds(), float(work))
    try:
        yield
    finally:
        _LOCAL["model"] = previous


def local_delay(index: int) -> float:
    """Delay for coded block ``index``'s product under :func:`local_stragglers` (else 0)."""
    current = _LOCAL.get("model")
    if current is None:
        return 0.0
    model, seed, task_ids, work = current
    return model.delay(str(index), task_ids(str(index), "coded-product"), seed, work)
