"""Workers found returning wrong products: the table a checking decode's reports feed.

A decode that checks its products (``verify=``, :mod:`dask_coded.verify`) and finds
them inconsistent posts an event under :data:`TOPIC`; the scheduler plugin counts each in
its :class:`Suspects` (and quarantines a repeat offender), a decode raced on this
process's local scheduler counts it in :data:`LOCAL`. Plain data: the scheduler side
imports this module and nothing of the codes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

#: the event topic a worker's decode reports inconsistencies under
TOPIC = "dask-coded-verify"


@dataclass
class Suspect:
    """A worker whose products a check found wrong: ``located`` decodes named it,
    ``disagreed`` decodes found a disagreement among products that included its own
    without locating it; ``first``/``last`` when (seconds since the epoch);
    ``quarantined`` it gets no more products."""

    worker: str
    name: str
    located: int = 0
    disagreed: int = 0
    first: float = 0.0
    last: float = 0.0
    quarantined: bool = False

    def as_dict(self) -> dict:
        return {"worker": self.worker, "name": self.name, "located": self.located,
                "disagreed": self.disagreed, "first": self.first, "last": self.last,
                "quarantined": self.quarantined}


class Suspects:
    """The :class:`Suspect` table of one scheduler (or of this process's local
    scheduler), fed by :func:`dask_coded.verify.event` records."""

    def __init__(self) -> None:
        self.table: dict[str, Suspect] = {}
        self.events = 0
        self._lock = threading.Lock()

    def record(self, msg: Mapping, when: float | None = None) -> list[Suspect]:
        """Count one inconsistent decode; returns the suspects it located."""
        when = time.time() if when is None else when
        located = []
        with self._lock:
            self.events += 1
            for kind, pairs in (("located", msg.get("suspects", ())),
                                ("disagreed", msg.get("candidates", ()))):
                for address, name, *_ in pairs:
                    s = self.table.get(address)
                    if s is None:
                        s = self.table[address] = Suspect(address, str(name), first=when)
                    setattr(s, kind, getattr(s, kind) + 1)
                    s.last = when
                    if kind == "located":
                        located.append(s)
        return located

    def __reduce__(self):
        return (Suspects, ())  # a table travels empty (a plugin registered from a client)

    def report(self) -> list[dict]:
        """Every suspect, most often located first."""
        with self._lock:
            rows = sorted(self.table.values(), key=lambda s: (-s.located, -s.disagreed))
            return [s.as_dict() for s in rows]

    def clear(self) -> None:
        with self._lock:
            self.table.clear()
            self.events = 0


#: suspects found by decodes raced on this process's local scheduler
LOCAL = Suspects()
