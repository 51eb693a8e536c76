"""Workers found returning wrong products: counted, and quarantined past a limit.

A decode that checks its products (``verify=``, :mod:`dask_coded.verify`) and finds them
inconsistent reports it as an event under :data:`~dask_coded.suspects.TOPIC`; the plugin
hands each to :meth:`Quarantine.record`. A worker located as wrong in
``coded.verify.quarantine-after`` decodes is *quarantined*: its coded blocks are re-pinned
to other workers and made again there (from their lineage, never copied from it), no new
block is placed on it, the plain tasks of coded graphs keep off it, and with
``coded.verify.retire`` it is retired through the scheduler.
"""

from __future__ import annotations

import logging
import time

from .. import config
from ..keys import as_key
from ..suspects import Suspect, Suspects

logger = logging.getLogger("dask_coded._scheduler")


class Quarantine:
    """The scheduler's :class:`~dask_coded.verify.Suspects` and the quarantined workers."""

    def __init__(self, plugin) -> None:
        self.plugin = plugin
        self.suspects = Suspects()
        self.workers: set[str] = set()
        #: workers among the candidates of a disagreement no decode has located yet: a
        #: decode with one spare product that one of them computed waits for one more
        #: product, so that a wrong one is located (named), not only detected
        self.unlocated: set[str] = set()

    def clear(self) -> None:
        self.suspects.clear()
        self.workers.clear()
        self.unlocated.clear()

    def record(self, msg: dict) -> None:
        """Count one inconsistent decode (an event's ``msg``); quarantine a worker that
        reached the limit."""
        msg = {**msg, "suspects": self._named(msg.get("suspects", ())),
               "candidates": self._named(msg.get("candidates", ()))}
        if msg["candidates"] and not msg["suspects"]:
            self.unlocated.update(address for address, _ in msg["candidates"])
        limit = config.get("verify.quarantine-after")
        for suspect in self.suspects.record(msg):
            if limit is not None and suspect.located >= int(limit) and not suspect.quarantined:
                self.plugin.scheduler.loop.add_callback(self.quarantine, suspect)

    def _named(self, pairs) -> list:
        """``[address, name]`` for each entry; one the decode could only give by its
        coded block's key is found where that block is pinned."""
        out = []
        for address, name, *block in pairs:
            if block:
                pinned = self.plugin.pins.blocks.get(as_key(block[0]))
                ws = self.plugin.scheduler.workers.get(pinned.worker) if pinned else None
                if ws is not None:
                    address, name = ws.address, str(ws.name)
            out.append([address, str(name)])
        return out

    def quarantine(self, suspect: Suspect) -> None:
        """Keep coded work off ``suspect``'s worker from now on."""
        s, worker = self.plugin.scheduler, suspect.worker
        if suspect.quarantined or worker not in s.workers:
            return
        others = [w for w in s.workers if w != worker and w not in self.workers]
        if not others:
            logger.warning("dask_coded: worker %s returned wrong products in %d decodes, "
                           "but no other worker is left to take its coded blocks",
                           worker, suspect.located)
            return
        suspect.quarantined = True
        self.workers.add(worker)
        self.unlocated.clear()  # the wrong worker is found: its fellow candidates are not
        logger.warning("dask_coded: worker %s (name %s) returned wrong products in %d "
                       "decodes: quarantined (its coded blocks are made again elsewhere)",
                       worker, suspect.name, suspect.located)
        self.plugin.stats["quarantined"] += 1
        self.plugin.pins.evacuate(worker, f"coded-quarantine-{time.time()}")
        if config.get("verify.retire"):
            s.loop.add_callback(s.retire_workers, workers=[worker],
                                stimulus_id=f"coded-retire-{time.time()}")
