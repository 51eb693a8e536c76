"""Where coded blocks live, and their products with them.

Invariants kept:

* every coded block (an :class:`~dask_coded.graph.EncodeTask`) is pinned to one worker:
  the one its task names, else spread with the other blocks of its matrix over distinct
  live workers;
* a product runs where its block is pinned, and follows it when the block is re-pinned
  (so a product lost with its worker is recomputed where its block is re-encoded, never
  left pinned to a dead address);
* a lost worker's blocks are re-pinned to the live workers holding the fewest blocks of
  their matrix; a joining worker takes a block from a worker that holds two of one
  matrix while it holds none.
"""

from __future__ import annotations

import logging
from collections import Counter

from distributed.core import Status

from ..tasks import EncodeTask, spec_of
from ..keys import key_name
from .records import CodedBlock, Key

logger = logging.getLogger("dask_coded._scheduler")


def encode_spec(ts) -> EncodeTask | None:
    """The :class:`EncodeTask` behind scheduler task ``ts``, if it is one."""
    return spec_of(ts, EncodeTask)


class Pins:
    """The coded blocks' workers (one :class:`CodedBlock` per block key)."""

    def __init__(self, plugin) -> None:
        self.plugin = plugin
        self.blocks: dict[Key, CodedBlock] = {}
        #: block key -> (block, source, target): moves waiting for the block's products
        #: in flight to finish (:meth:`quiet` starts them)
        self.waiting: dict[Key, tuple[CodedBlock, str, str]] = {}

    @property
    def scheduler(self):
        return self.plugin.scheduler

    def clear(self) -> None:
        self.blocks.clear()
        self.waiting.clear()

    def forget(self, key) -> None:
        self.blocks.pop(key, None)
        self.waiting.pop(key, None)

    # ---- new graphs ------------------------------------------------------------------

    def place_blocks(self, blocks: list) -> None:
        """Pin the coded blocks of a new graph: where their task says, else where most of
        the data they are made from already is (a systematic block, made from its own
        rows, encodes without a transfer), else spread by index over the live workers;
        the blocks of one code and column on distinct workers while there are enough."""
        s = self.scheduler
        live = sorted(ws.address for ws in s.running) or sorted(s.workers)
        banned = self.plugin.quarantine.workers
        live = [w for w in live if w not in banned] or live
        pins = {}
        taken: dict = {}  # (matrix, *column) -> workers holding one of its blocks
        # blocks made from little data choose first: they gain most from staying put
        for ts in sorted(blocks, key=lambda ts: len(ts.dependencies)):
            spec = encode_spec(ts)
            if ts.key in self.blocks:
                continue
            group = (spec.matrix, *self._column(ts.key))
            if group not in taken:
                taken[group] = Counter(b.worker for b in self.blocks.values()
                                       if b.matrix == group)
            worker = spec.worker
            if worker in banned:  # quarantined since the client chose it
                worker = None
            if worker is None and ts.worker_restrictions and not (
                    ts.worker_restrictions & banned):
                worker = next(iter(ts.worker_restrictions))
            if worker is None and live:
                worker = self._near_its_data(ts, live, taken[group], spec.index or 0)
            taken[group][worker] += 1
            if worker is not None and ts.worker_restrictions != {worker}:
                pins[ts.key] = worker
            self.blocks[ts.key] = CodedBlock(ts.key, (spec.matrix, *self._column(ts.key)),
                                             worker, spec.code)
        if pins:
            s.set_restrictions(pins)
            for key in pins:
                s.tasks[key].loose_restrictions = False

    @staticmethod
    def _near_its_data(ts, live: list, count: Counter, index: int) -> str:
        """Among the live workers holding the fewest blocks of its code (``count``), the
        one holding the most bytes of ``ts``'s inputs, else the first from ``index``."""
        held: dict = {}
        for dep in ts.dependencies:
            for ws in dep.who_has or ():
                held[ws.address] = held.get(ws.address, 0) + (dep.nbytes or 1)
        fewest = min(count.get(w, 0) for w in live)
        ring = live[index % len(live):] + live[:index % len(live)]
        free = [w for w in ring if count.get(w, 0) == fewest]
        return max(free, key=lambda w: held.get(w, 0))  # ties: the first in the ring

    @staticmethod
    def _column(key) -> tuple:
        return tuple(key[2:]) if isinstance(key, tuple) else ()

    def track(self, ts) -> None:
        """Track a block placed by other means (submitted pinned to one worker)."""
        if ts.key not in self.blocks and ts.worker_restrictions and not ts.loose_restrictions:
            self.blocks[ts.key] = CodedBlock(
                ts.key, (key_name(ts.key), *self._column(ts.key)),
                next(iter(ts.worker_restrictions)))

    def place_product(self, ts, block_key) -> str | None:
        """Pin product ``ts`` where its block is pinned; returns that worker (``None``:
        the product is not pinned strictly)."""
        block = self.scheduler.tasks.get(block_key) if block_key is not None else None
        if block is None or not block.worker_restrictions:
            return None
        self.track(block)
        worker = next(iter(block.worker_restrictions))
        self.scheduler.set_restrictions({ts.key: worker})
        ts.loose_restrictions = block.loose_restrictions
        self.plugin.stats["pinned"] += 1
        return None if block.loose_restrictions else worker

    # ---- workers leaving and joining -------------------------------------------------

    def lost(self) -> list[CodedBlock]:
        """Blocks pinned to workers that are gone."""
        workers = self.scheduler.workers
        return [b for b in self.blocks.values() if b.worker and b.worker not in workers]

    def holds_blocks(self, worker: str) -> bool:
        return any(b.worker == worker for b in self.blocks.values())

    def _load(self, matrix: tuple) -> Counter:
        """Blocks of ``matrix`` per live worker."""
        load = Counter({w: 0 for w in self.scheduler.workers})
        for block in self.blocks.values():
            if block.matrix == matrix and block.worker in load:
                load[block.worker] += 1
        return load

    def repin_lost(self, stimulus_id: str) -> None:
        """Pin every block whose worker is gone to the live worker holding the fewest
        blocks of its matrix; it is re-encoded there, and its products follow."""
        s = self.scheduler
        if s.status != Status.running or not s.workers:
            return
        for block in self.lost():
            ts = s.tasks.get(block.key)
            if ts is None:
                continue
            load = self._load(block.matrix)
            load = {w: n for w, n in load.items()
                    if w not in self.plugin.quarantine.workers} or load
            target = min(load, key=lambda w: (load[w], w))
            if load[target]:
                logger.warning("dask_coded: no free worker for lost coded block %s; %s now "
                               "holds %d blocks of its matrix", block.key, target,
                               load[target] + 1)
            self.pin(ts, block, target, stimulus_id)
            self.plugin.stats["repinned"] += 1

    def pin(self, ts, block: CodedBlock, worker: str, stimulus_id: str) -> None:
        """Pin block ``ts`` to ``worker``, with every product of it not yet in memory."""
        s = self.scheduler
        block.worker = worker
        moved = [ts] + [d for d in ts.dependents
                        if d.state != "memory" and self.plugin.group_table.follows(d.key, ts.key)]
        s.set_restrictions({t.key: worker for t in moved})
        recs = {}
        for t in moved:
            t.loose_restrictions = False
            self.plugin.group_table.moved(t.key, worker)
            if t.state == "no-worker":
                recs[t.key] = "processing"
        if recs:
            s.transitions(recs, stimulus_id=stimulus_id)

    def evacuate(self, worker: str, stimulus_id: str) -> None:
        """Pin every block on ``worker`` (quarantined) to the other worker holding the
        fewest blocks of its matrix, and drop it there: it is made again from its
        lineage on the new worker (nothing is copied from ``worker``), its products
        follow."""
        s, banned = self.scheduler, self.plugin.quarantine.workers
        released = {}
        for block in [b for b in self.blocks.values() if b.worker == worker]:
            ts = s.tasks.get(block.key)
            load = {w: n for w, n in self._load(block.matrix).items() if w not in banned}
            if ts is None or not load:
                continue
            target = min(load, key=lambda w: (load[w], w))
            self.pin(ts, block, target, stimulus_id)
            if ts.state == "memory":
                released[ts.key] = "released"
            self.plugin.stats["evacuated"] += 1
        if released:
            s.transitions(released, stimulus_id=stimulus_id)

    def rebalance(self, worker: str) -> list[tuple[CodedBlock, str]]:
        """The moves that give joining ``worker`` its fair share of each matrix's blocks
        (``floor(blocks / live workers)``), each taken from the worker holding the most,
        while that one holds at least two more than it: ``[(block, from)]``."""
        moves = []
        if worker in self.plugin.quarantine.workers:
            return moves
        for matrix in {b.matrix for b in self.blocks.values()}:
            load = self._load(matrix)
            if worker not in load:
                continue
            fair = sum(load.values()) // len(load)
            chosen: set = set()
            while load[worker] < fair:
                crowded = max(load, key=lambda w: (load[w], w))
                if load[crowded] - load[worker] < 2:
                    break
                block = next(b for b in self.blocks.values() if b.matrix == matrix
                             and b.worker == crowded and b.key not in chosen)
                chosen.add(block.key)
                moves.append((block, crowded))
                load[crowded] -= 1
                load[worker] += 1
        return moves

    def quiet(self, ts) -> None:
        """Task ``ts`` left the work in flight: start the moves waiting for it (a block
        made) or for the blocks it reads (on the next loop turn; each checks again that
        no product is in flight)."""
        for key in (ts.key, *(dep.key for dep in ts.dependencies)):
            waiting = self.waiting.get(key)
            if waiting is not None:
                self.scheduler.loop.add_callback(self.move, *waiting)

    async def move(self, block: CodedBlock, source: str, target: str) -> None:
        """Copy ``block`` from ``source`` to ``target`` peer to peer, pin it there and
        ask ``source`` to drop its copy. Never while a product of the block is in flight
        (its call keeps the block where it is): the move waits for a quiet moment (a
        product of it finishing or released, :meth:`quiet`, however many calls that
        takes), and the copy on ``source`` stays while a product there may still read
        it."""
        s = self.scheduler
        ts = s.tasks.get(block.key)
        if (ts is None or target not in s.workers or block.worker != source
                or s.status != Status.running):
            self.waiting.pop(block.key, None)
            return
        if ts.state == "processing" or any(d.state not in ("memory", "released", "erred")
                                           for d in ts.dependents):
            # a block being made on source (re-encoded there) is moved once it is made
            self.waiting[block.key] = (block, source, target)
            return
        self.waiting.pop(block.key, None)
        stimulus_id = f"coded-move-block-{target}"
        if ts.state == "memory" and any(ws.address == source for ws in ts.who_has or ()):
            failed = await s.gather_on_worker(target, {block.key: [source]})
            if failed or s.tasks.get(block.key) is not ts or block.worker != source:
                return
            self.pin(ts, block, target, stimulus_id)
            ws = s.workers.get(source)
            busy = any(d.state not in ("memory", "released", "erred") for d in ts.dependents)
            if ws is not None and ws in (ts.who_has or ()) and len(ts.who_has) > 1 and not busy:
                # (a product of a call that arrived meanwhile may still read the old copy:
                # then it stays, for the Active Memory Manager to drop once unneeded)
                s.request_remove_replicas(source, [block.key], stimulus_id=stimulus_id)
        else:
            self.pin(ts, block, target, stimulus_id)
        self.plugin.stats["moved"] += 1
