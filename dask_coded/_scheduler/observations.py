"""What the scheduler saw: straggling per call (for ``k="auto"`` and diagnostics) and what
the rewrite did (it runs in the scheduler's process on distributed)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from ..keys import key_name
from .records import CallRecord


@dataclass
class Observations:
    """One :class:`CallRecord` per product name (one name per call), the oldest dropped
    first beyond ``limit``."""

    limit: int = 500
    calls: OrderedDict = field(default_factory=OrderedDict)  # name -> CallRecord

    def _call(self, name: str) -> CallRecord:
        record = self.calls.get(name)
        if record is None:
            record = self.calls[name] = CallRecord()
            while len(self.calls) > self.limit:
                self.calls.popitem(last=False)
        return record

    def record_finished(self, name: str, worker: str | None, seconds: float,
                        at: float | None = None) -> None:
        """A product of call ``name`` computed ``seconds`` on ``worker`` and reached memory
        ``at`` seconds after its graph arrived: a product that followed another of the
        call on the same worker adds a gap, ``at - previous at - seconds``."""
        record = self._call(name)
        record.finished.append((worker, seconds))
        if at is not None and worker is not None:
            previous = record.last.get(worker)
            if previous is not None:
                record.gaps.append(at - previous - seconds)
            record.last[worker] = at
        self.calls.move_to_end(name)

    def record_decode(self, name: str, used: set, censor: float | None,
                      released_workers: list, keys: list | None = None,
                      unstarted: set | None = None) -> None:
        """A decode started early from the products ``used``; the others were detached
        (``released_workers`` and ``keys``: theirs, one each; ``unstarted``: the keys
        known never to have started)."""
        record = self._call(name)
        record.used.update(used)
        record.released.extend(released_workers)
        record.released_keys.extend(keys if keys is not None
                                    else [None] * len(released_workers))
        record.unstarted.update(unstarted or ())
        if censor is not None:
            record.censored.extend([censor] * len(released_workers))

    def record_unstarted(self, key) -> None:
        """Released product ``key`` never began executing (its worker plugin said so)."""
        record = self.calls.get(key_name(key))
        if record is not None:
            record.unstarted.add(key)

    def record_span(self, name: str, seconds: float) -> None:
        """A decode of call ``name`` could start ``seconds`` after its graph arrived."""
        record = self._call(name)
        record.span = max(record.span, seconds)

    def used(self, name: str) -> list | None:
        """Product indices the decodes of products ``name`` used (None: all of them)."""
        record = self.calls.get(name)
        return None if record is None or not record.used else sorted(record.used)

    def report(self, prefix: str = "", last: int | None = None) -> dict:
        """What was seen for product names starting with ``prefix`` (only the ``last``
        most recent names, when given)."""
        names = [n for n, r in self.calls.items() if n.startswith(prefix) and r.finished]
        if last is not None:
            names = names[-int(last):] if last > 0 else []
        records = [self.calls[n] for n in names]
        per_worker: dict = {}
        released: dict = {}
        for r in records:
            for worker, seconds in r.finished:
                per_worker.setdefault(worker, []).append(seconds)
            for worker in r.released:
                released[worker] = released.get(worker, 0) + 1
        censored = [_ran(r) for r in records]
        return {
            "observed": [s for r in records for _, s in r.finished],
            "censored": [c for cs in censored for c in cs],
            "calls": [[s for _, s in r.finished] for r in records],
            "calls_workers": [[w for w, _ in r.finished] for r in records],
            "calls_released": [list(r.released) for r in records],
            "calls_censored": censored,
            "calls_span": [r.span for r in records],
            "calls_gaps": [list(r.gaps) for r in records],
            "per_worker": per_worker,
            "released": released,
        }


def _ran(record: CallRecord) -> list:
    """The censor times of a call's released products that began executing: one that
    never started says nothing of how long a product takes (it did not run for the
    censor time), so it is left out of the fit."""
    keys = record.released_keys or [None] * len(record.censored)
    return [c for c, key in zip(record.censored, keys) if key not in record.unstarted]


@dataclass
class RewriteLog:
    """What the rewrite did, per optimizer: ``(layer, n, k, reused resident blocks,
    token)`` records, the most recent ``limit`` optimizers kept. The rewrite adds records
    from the scheduler's offload thread while handlers read them on its event loop: a
    lock guards the table."""

    limit: int = 64
    records: OrderedDict = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, optimizer: str, record: tuple) -> None:
        with self.lock:
            self.records.setdefault(optimizer, []).append(record)
            self.records.move_to_end(optimizer)
            while len(self.records) > self.limit:
                self.records.popitem(last=False)

    def of(self, optimizer: str) -> list:
        with self.lock:
            return list(self.records.get(optimizer, ()))


#: the rewrites made in this process (on distributed: the scheduler's)
REWRITES = RewriteLog()
