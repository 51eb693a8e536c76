"""Seeded straggler models: pure functions of (seed, worker name, task id), no dask.

A model maps ``(worker name, task id)`` to a delay in seconds, drawn from a generator
seeded by ``zlib.crc32(f"{seed}|{worker}|{task id}")`` (not ``hash()``, which is salted per
process). The task id is the key with its random tokens removed plus how many times that
worker has run such a key (:class:`TaskIds`), so a run is reproducible although every call
gets fresh keys.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

_TOKEN = re.compile(r"[0-9a-f]{8,}")


def seeded_rng(seed: int, worker: str, task_id: str) -> np.random.Generator:
    """The generator for one (seed, worker, task id): the same in every process."""
    return np.random.default_rng(zlib.crc32(f"{seed}|{worker}|{task_id}".encode()))


class DelayModel:
    """Base class of the straggler models.

    ``delay(worker, task_id, seed, work, call)`` is the seconds one task runs late;
    ``call`` names the call the task belongs to on this worker (see :class:`TaskIds`);
    ``work`` is the task's share of the whole job (``1/k`` for a coded product over ``k`` blocks,
    ``1/n`` for one of ``n`` uncoded pieces), so that models of the paper's kind scale
    with it. Every draw comes from :func:`seeded_rng`.
    """

    def delay(self, worker: str, task_id: str, seed: int, work: float = 1.0,
              call: str = "") -> float:
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
    whole job (work 1) takes without straggling. ``per="task"`` draws ``X`` for every
    task; ``per="call"`` draws one ``X`` per worker per call, shared by all of that
    worker's tasks in the call (a slow machine stays slow for the whole call); the
    ``i``-th call a worker sees draws the same ``X`` whatever its keys, so schemes timed
    one after another, each under a freshly registered plugin, meet the same slowness in
    their ``i``-th calls (common random numbers: their ratios vary far less than their
    times).
    """

    mu: float = 1.0
    scale: float = 0.05
    shift: float = 1.0
    per: str = "task"

    def __post_init__(self):
        if not self.mu > 0 or not self.scale >= 0 or not self.shift >= 0:
            raise ValueError(
                f"ShiftedExponential needs mu > 0, scale >= 0, shift >= 0; got mu={self.mu}, "
                f"scale={self.scale}, shift={self.shift}"
            )
        if self.per not in ("task", "call"):
            raise ValueError(f"per must be 'task' or 'call', got {self.per!r}")

    def delay(self, worker: str, task_id: str, seed: int, work: float = 1.0,
              call: str = "") -> float:
        draw = f"call@{call.rpartition('@')[2]}" if self.per == "call" and call else task_id
        x = seeded_rng(seed, worker, draw).exponential()
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

    def delay(self, worker: str, task_id: str, seed: int, work: float = 1.0,
              call: str = "") -> float:
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

    def delay(self, worker: str, task_id: str, seed: int, work: float = 1.0,
              call: str = "") -> float:
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

    def delay(self, worker: str, task_id: str, seed: int, work: float = 1.0,
              call: str = "") -> float:
        options = self.per_worker.get(str(worker), self.durations)
        pick = seeded_rng(seed, worker, task_id).integers(len(options))
        return float(options[pick]) * work / self.reference_work
