"""The controller of a ``k="auto"`` matrix: when to re-choose its code, and the switch.

A :class:`Retuner` drives one :class:`~dask_coded.matrix.CodedMatrix`. Its policy
(:class:`~dask_coded.policy.AutoK`) decides *what* code to use from what the scheduler
observed; the retuner decides *when*, runs the re-encode (one thread at a time, its
tasks below the products in priority) or regroups the same blocks into more or fewer
product tasks per worker (no re-encode), and swaps the matrix's immutable
:class:`~dask_coded.matrix.Encoding` in one assignment, so a product is built from one
encoding whole. Every change is on probation: the old encoding is kept until the new
one has run ``policy.probation`` calls; if the new one is slower per call
(:func:`~dask_coded.policy.worse`), the old one comes back at once, without a
re-encode, and the policy never chooses the new one again.

Invariant: one lock (:attr:`Retuner.lock`) guards the re-choice in flight, the
probation and the swap; at most one re-choice runs at a time.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from . import config
from ._scheduler.records import AUTO_TOPIC
from .policy import AutoK, code_of, worse
from .schemes.mds import exact_blocks

logger = logging.getLogger(__name__)


class Retunable(Protocol):
    """What the retuner needs of the matrix it drives (a
    :class:`~dask_coded.matrix.CodedMatrix`): its encoding, its code's ``(k, r)``, what
    the scheduler observed of its calls, and a way to encode it again and to swap."""

    encoding: Any
    calls: int
    k: int
    blocks_per_worker: int
    tasks_per_worker: int
    _transposed: bool

    def observed(self, last: int | None = None) -> dict: ...

    def _encode_again(self, k: int, transpose: bool, r: int | None = None,
                      background: bool = False, tasks_per_worker: int | None = None
                      ) -> Any: ...

    def _switch_to(self, fresh: Any) -> None: ...

    def _restore(self, encoding: Any) -> None: ...


@dataclass(frozen=True)
class Probation:
    """A change on trial: the encoding it replaced (kept, to come back to), that
    encoding's seconds per call before the change, and the calls count at the switch."""

    previous: Any  # the Encoding it replaced
    before: tuple
    since: int


def _plain(value):
    """``value`` as msgpack takes it: tuples as lists, numpy numbers as floats (rounded),
    non-finite floats as ``None``."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return round(float(value), 4) if np.isfinite(value) else None
    return value


class Retuner:
    """Re-chooses a matrix's code from the observed straggling (see the module)."""

    def __init__(self, matrix: Retunable, policy: AutoK):
        self.matrix = matrix
        self.policy = policy
        self.lock = threading.RLock()
        self._pending: tuple[threading.Thread, dict] | None = None
        self.probation: Probation | None = None

    @property
    def history(self) -> list[dict]:
        """What each re-choice measured and chose (``"why"``: why it kept the code, or
        why the regret guard turned a change back)."""
        return self.policy.history

    @property
    def running(self) -> threading.Thread | None:
        """The re-choice thread in flight, if any."""
        return self._pending[0] if self._pending is not None else None

    def summary(self) -> str:
        """One line: how many re-choices ran, and what the last one did and why."""
        made = [h for h in self.history if "chosen" in h]
        if not made:
            return "auto: no re-choice yet"
        last = made[-1]
        now = last["chosen"]
        did = "kept" if now == code_of(last) else "chose"
        why = f" ({last['why']})" if last.get("why") else ""
        return (f"auto: {len(made)} re-choice{'s' if len(made) > 1 else ''}, the last at "
                f"call {last['calls']} {did} {now}{why}")

    def on_call(self, calls: int) -> None:
        """Call ``calls`` of the matrix is being built: adopt a finished re-encode, judge
        a change on probation, and start a re-choice when one is due."""
        with self.lock:
            self._adopt()
            self._judge(calls)
            if self.probation is None and self._pending is None and self.policy.due(calls):
                if self.policy.background:
                    self._start(calls)
                else:
                    self._retune(calls)

    def retune(self) -> int:
        """Re-choose now (a re-choice in flight finishes first; its encoding is dropped:
        this one is newer); returns the ``k`` in use."""
        with self.lock:
            pending, self._pending = self._pending, None
            if pending is not None:
                pending[0].join()
            self._retune(self.matrix.calls)
            return self.matrix.k

    def release(self) -> None:
        """Drop the re-choice in flight (its blocks go with its thread) and the encoding
        kept for probation."""
        with self.lock:
            self._pending = None
            self.probation = None

    # ---- the steps ---------------------------------------------------------------------

    def _retune(self, calls: int) -> None:
        box = self._rechoose(self.matrix.k, self.matrix.tasks_per_worker, calls)
        self._switch(box, calls)
        self._announce()

    def _announce(self) -> None:
        """Tell the scheduler what the last re-choice did (an event under
        :data:`AUTO_TOPIC`, which the coded dashboard page lists)."""
        if not self.history:
            return
        last = self.history[-1]
        msg = {"matrix": str(getattr(self.matrix, "token", ""))[:24],
               "calls": int(last.get("calls", 0)), "code": _plain(code_of(last)),
               "chosen": _plain(last.get("chosen")), "why": str(last.get("why") or ""),
               "mu": _plain(last.get("mu"))}
        client = getattr(self.matrix, "client", None)
        try:
            if client is not None and not client.asynchronous and client.status == "running":
                client.log_event(AUTO_TOPIC, msg)
        except Exception:  # a closing client: the page misses one line
            logger.debug("could not post an auto re-choice", exc_info=True)

    def _rechoose(self, k: int, r: int, calls: int) -> dict:
        """The policy's re-choice from ``(k, r)`` (``r``: product tasks per worker):
        ``{"fresh": CodedMatrix or None, "regroup": blocks per task or None, "before":
        the current code's seconds per call}``. A code with the same ``k`` whose tasks
        per worker divide the encoding's blocks per worker is a regrouping: no
        re-encode."""
        m = self.matrix
        encoding = m.encoding
        seen = dict(m.observed(last=self.policy.window))
        seen["encode_seconds"] = encoding.seconds
        blocks = encoding.scheme.blocks_per_worker
        if self.policy.choose_r:
            free = frozenset((k, t) for t in range(1, blocks + 1) if blocks % t == 0)
            k_new, r_new = self.policy.choose_blocks(k, r, seen, calls, free)
        else:
            k_new, r_new = self.policy.choose(k, seen, calls), r
        box = {"before": tuple(seen.get("calls_span") or ()), "fresh": None, "regroup": None}
        if (k_new, r_new) == (k, r):
            return box
        if k_new == k and blocks % r_new == 0:
            box["regroup"] = blocks // r_new
        else:
            finest = exact_blocks(m.n, k_new, int(config.get("auto-k.encode-blocks")))
            box["fresh"] = m._encode_again(k_new, transpose=m._transposed,
                                           r=math.lcm(r_new, finest) if self.policy.choose_r
                                           else r_new,
                                           background=True, tasks_per_worker=r_new)
        return box

    def _start(self, calls: int) -> None:
        box: dict = {}
        k, r = self.matrix.k, self.matrix.tasks_per_worker

        def run() -> None:
            try:
                box.update(self._rechoose(k, r, calls))
            except Exception as e:  # the client closed, a worker left: keep the code
                box["error"] = e

        thread = threading.Thread(target=run, name="dask-coded-retune", daemon=True)
        self._pending = (thread, box)
        thread.start()

    def _adopt(self) -> None:
        if self._pending is None or self._pending[0].is_alive():
            return
        _, box = self._pending
        self._pending = None
        if "error" in box:
            logger.warning("k='auto': a background re-choice failed (%s); keeping k=%d",
                           box["error"], self.matrix.k)
            return
        self._switch(box, self.matrix.calls)
        self._announce()

    def _switch(self, box: dict, calls: int) -> None:
        fresh, regroup = box.get("fresh"), box.get("regroup")
        if fresh is None and regroup is None:
            return
        previous = self.matrix.encoding
        if fresh is not None:
            self.matrix._switch_to(fresh)
        else:
            self.matrix._restore(replace(previous, blocks_per_task=regroup))
        self.probation = Probation(previous, box.get("before", ()), calls)

    def _judge(self, calls: int) -> None:
        """End a probation whose calls have run: keep the new code, or go back."""
        trial = self.probation
        if trial is None or calls - trial.since <= self.policy.probation:
            return
        m = self.matrix
        after = m.observed(last=self.policy.probation)["calls_span"]
        if len(after) < self.policy.probation:
            return  # the calls have not all run yet
        self.probation = None
        if worse(list(trial.before), after, self.policy.tolerance):
            now = (m.k, m.tasks_per_worker)
            m._restore(trial.previous)
            self.policy.rejected.add(now)
            self.policy.history.append({
                "calls": calls, "k": now[0], "r": now[1],
                "chosen": (m.k, m.tasks_per_worker) if self.policy.choose_r else m.k,
                "why": f"regret: {now} was slower per call than the code before it"})
            self._announce()
