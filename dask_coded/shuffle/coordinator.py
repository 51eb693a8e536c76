"""The scheduler side of coded shuffling: who takes part in each shuffle.

:class:`ShuffleCoordinator` (a ``SchedulerPlugin``; :class:`~dask_coded.CodedShuffle`
registers it) keeps, per shuffle, the workers taking part and what changed since the
master last asked: workers lost (``remove_worker``) and workers that joined
(``add_worker``, a nanny's replacement included). It installs the workers' relay plugin
(:class:`~dask_coded.shuffle.relay.RelayPlugin`) itself, on every worker present and
future. The client stays the master that holds the data; each epoch starts by asking the
coordinator who is in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.protocol.pickle import dumps

from .relay import RelayPlugin

logger = logging.getLogger(__name__)


@dataclass
class Members:
    """The workers of one shuffle, and the changes the master has not yet seen."""

    workers: list[str]
    lost: list[str] = field(default_factory=list)
    joined: list[str] = field(default_factory=list)


class ShuffleCoordinator(SchedulerPlugin):
    """Tracks each shuffle's workers (see the module doc)."""

    name = "dask-coded-shuffle"
    idempotent = True

    def __init__(self) -> None:
        self.scheduler = None
        self.sessions: dict[str, Members] = {}
        self._amm_was_running = False

    async def start(self, scheduler) -> None:
        self.scheduler = scheduler
        scheduler.handlers.update({
            "coded_shuffle_open": self.open,
            "coded_shuffle_changes": self.changes,
            "coded_shuffle_live": self.live,
            "coded_shuffle_close": self.close_session,
        })
        await scheduler.register_worker_plugin(None, dumps(RelayPlugin()), RelayPlugin.name,
                                               idempotent=True)

    def _running(self) -> list[str]:
        return sorted(ws.address for ws in self.scheduler.running)

    def _amm(self):
        return self.scheduler.extensions.get("amm")

    def open(self, comm=None, token: str = "") -> list[str]:
        """Start tracking shuffle ``token``; its workers are the running ones. The first
        open shuffle stops the Active Memory Manager (it would drop the copies a
        shuffle caches on purpose); the last one closed starts it again if it ran."""
        if not self.sessions and self._amm() is not None:
            self._amm_was_running = bool(self._amm().running)
            self._amm().stop()
        self.sessions[token] = Members(self._running())
        return list(self.sessions[token].workers)

    def changes(self, comm=None, token: str = "") -> dict:
        """``{"lost": [...], "joined": [...]}`` since the last call; the joined become
        members."""
        m = self.sessions[token]
        out = {"lost": m.lost, "joined": [w for w in m.joined if w in self.scheduler.workers]}
        m.workers = [w for w in m.workers if w not in m.lost] + out["joined"]
        m.lost, m.joined = [], []
        return out

    def live(self, comm=None, token: str = "") -> list[str]:
        """The members the scheduler still knows."""
        return [w for w in self.sessions[token].workers if w in self.scheduler.workers]

    def close_session(self, comm=None, token: str = "") -> None:
        if self.sessions.pop(token, None) is not None:
            # its plans ahead go too (the workers keep a few per open shuffle)
            self.scheduler.loop.add_callback(self._forget_plans, token)
        if not self.sessions and self._amm_was_running and self._amm() is not None:
            self._amm().start()
            self._amm_was_running = False

    async def _forget_plans(self, token: str) -> None:
        try:
            await self.scheduler.broadcast(
                msg={"op": "dask_coded_shuffle_forget", "shuffle": f"coded-shuffle-{token}"},
                on_error="ignore")
        except Exception:  # a worker leaving: its plans go with it
            logger.debug("could not drop shuffle %s's plans", token, exc_info=True)

    def remove_worker(self, scheduler, worker: str, **kwargs) -> None:
        for m in self.sessions.values():
            if worker in m.joined:
                m.joined.remove(worker)
            elif worker in m.workers and worker not in m.lost:
                m.lost.append(worker)

    def add_worker(self, scheduler, worker: str) -> None:
        for m in self.sessions.values():
            if worker not in m.workers and worker not in m.joined:
                m.joined.append(worker)

    def restart(self, scheduler) -> None:
        self.sessions.clear()
