"""Where coded blocks live, and their products with them.

Invariants kept:

* every coded block (an :class:`~dask_coded.graph.EncodeTask`) is pinned to one worker:
  the one its task names, else spread with the other blocks of its matrix over distinct
  live workers;
* a product runs where its block is pinned, and follows it when the block is re-pinned
  (so a product lost with its worker is recomputed where its block is re-encoded, never
  left pinned to a dead address);
* a lost worker's blocks are re-pinned to the live workers holding the fewest blocks of
  their matrix; when a worker joins (or comes back from a restart) the blocks of each
  matrix are evened out again (no live worker holds two more than another), by moves
  that wait for a quiet moment and are tried again when their worker goes meanwhile.
"""

from __future__ import annotations

import logging
from collections import Counter

from distributed.core import Status

from ..tasks import EncodeTask, spec_of
from ..keys import key_name
from .records import CodedBlock, Key

logger = logging.getLogger("dask_coded._scheduler")

#: moves given up in a row after which balancing stops until the next worker joins
MOVE_RETRIES = 20
#: seconds between a move given up and the next balancing
MOVE_RETRY_SECONDS = 0.5


def encode_spec(ts) -> EncodeTask | None:
    """The :class:`EncodeTask` behind scheduler task ``ts``, if it is one."""
    return spec_of(ts, EncodeTask)


class Pins:
    """The coded blocks' workers (one :class:`CodedBlock` per block key)."""

    def __init__(self, plugin) -> None:
        self.plugin = plugin
        self.blocks: dict[Key, CodedBlock] = {}
        #: block key -> (block, source, target): every move decided and not yet done or
        #: given up (started, waiting or copying); :meth:`balance` counts them as done
        self.planned: dict[Key, tuple[CodedBlock, str, str]] = {}
        #: block keys of the planned moves waiting for the block's products in flight to
        #: finish (:meth:`quiet` starts them again)
        self.waiting: set = set()
        #: block keys of the planned moves being copied now
        self.copying: set = set()
        #: consecutive moves given up (their target or source went meanwhile): each
        #: balances again a moment later, up to MOVE_RETRIES in a row
        self.given_up = 0

    @property
    def scheduler(self):
        return self.plugin.scheduler

    def clear(self) -> None:
        self.blocks.clear()
        self.waiting.clear()
        self.planned.clear()
        self.copying.clear()

    def forget(self, key) -> None:
        self.blocks.pop(key, None)
        self.waiting.discard(key)
        self.planned.pop(key, None)

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

    def balance(self) -> list[tuple[CodedBlock, str, str]]:
        """The moves that even out each matrix's blocks over the live workers (the
        quarantined left out): while the worker holding the most holds at least two more
        than the one holding the fewest, one block from the first to the second;
        ``[(block, from, to)]``. The moves already planned count as made, and their
        blocks stay put. A worker that joins (or comes back from a restart) takes its
        share this way."""
        moves = []
        banned = self.plugin.quarantine.workers
        for matrix in {b.matrix for b in self.blocks.values()}:
            load = Counter({w: n for w, n in self._load(matrix).items() if w not in banned})
            for block, source, target in self.planned.values():
                if block.matrix == matrix and source in load and target in load:
                    load[source] -= 1
                    load[target] += 1
            if len(load) < 2:
                continue
            chosen: set = set()
            while True:
                crowded = max(load, key=lambda w: (load[w], w))
                emptiest = min(load, key=lambda w: (load[w], w))
                if load[crowded] - load[emptiest] < 2:
                    break
                block = next((b for b in self.blocks.values() if b.matrix == matrix
                              and b.worker == crowded and b.key not in chosen
                              and b.key not in self.planned), None)
                if block is None:
                    break
                chosen.add(block.key)
                moves.append((block, crowded, emptiest))
                load[crowded] -= 1
                load[emptiest] += 1
        return moves

    def forget_worker(self, worker: str) -> None:
        """``worker`` left: the moves planned from or to it are given up (a copy under
        way finds out itself); the next worker to join balances again."""
        for key, (_, source, target) in list(self.planned.items()):
            if worker in (source, target) and key not in self.copying:
                self.forget_plan(key)

    def forget_plan(self, key) -> None:
        """The move of block ``key`` is done or given up."""
        self.planned.pop(key, None)
        self.waiting.discard(key)

    def start_moves(self) -> None:
        """Start the moves of :meth:`balance` (each on the scheduler's loop)."""
        loop = self.scheduler.loop
        for block, source, target in self.balance():
            self.planned[block.key] = (block, source, target)
            loop.add_callback(self.move, block, source, target)

    def _gave_up(self) -> None:
        """A move was given up (its target or source went, or the copy failed): balance
        again a moment later, unless MOVE_RETRIES moves in a row were given up."""
        self.given_up += 1
        if self.given_up <= MOVE_RETRIES:
            self.scheduler.loop.call_later(MOVE_RETRY_SECONDS, self.start_moves)

    def quiet(self, ts) -> None:
        """Task ``ts`` left the work in flight: start the moves waiting for it (a block
        made) or for the blocks it reads (on the next loop turn; each checks again that
        no product is in flight)."""
        for key in (ts.key, *(dep.key for dep in ts.dependencies)):
            if key in self.waiting:
                self.scheduler.loop.add_callback(self.move, *self.planned[key])

    async def move(self, block: CodedBlock, source: str, target: str) -> None:
        """Copy ``block`` from ``source`` to ``target`` peer to peer, pin it there and
        ask ``source`` to drop its copy. Never while a product of the block is in flight
        (its call keeps the block where it is): the move waits for a quiet moment (a
        product of it finishing or released, :meth:`quiet`, however many calls that
        takes), and the copy on ``source`` stays while a product there may still read
        it."""
        s = self.scheduler
        ts = s.tasks.get(block.key)
        plan = self.planned.get(block.key)
        if (s.status != Status.running or plan is None or plan[1:] != (source, target)
                or block.key in self.copying):
            return  # not this plan's turn: done, given up, or being copied
        if ts is None or target not in s.workers or block.worker != source:
            self.forget_plan(block.key)
            if ts is not None:
                self._gave_up()
            return
        if ts.state == "processing" or any(d.state not in ("memory", "released", "erred")
                                           for d in ts.dependents):
            # a block being made on source (re-encoded there) is moved once it is made
            self.waiting.add(block.key)
            return
        self.waiting.discard(block.key)
        stimulus_id = f"coded-move-block-{target}"
        if ts.state == "memory" and any(ws.address == source for ws in ts.who_has or ()):
            self.copying.add(block.key)
            try:
                failed = await s.gather_on_worker(target, {block.key: [source]})
            except Exception:  # the target or the source closing as it copies
                failed = True
            finally:
                self.copying.discard(block.key)
            self.forget_plan(block.key)
            if failed or s.tasks.get(block.key) is not ts or block.worker != source:
                self._gave_up()
                return
            self.pin(ts, block, target, stimulus_id)
            ws = s.workers.get(source)
            busy = any(d.state not in ("memory", "released", "erred") for d in ts.dependents)
            if ws is not None and ws in (ts.who_has or ()) and len(ts.who_has) > 1 and not busy:
                # (a product of a call that arrived meanwhile may still read the old copy:
                # then it stays, for the Active Memory Manager to drop once unneeded)
                s.request_remove_replicas(source, [block.key], stimulus_id=stimulus_id)
        else:
            self.forget_plan(block.key)
            self.pin(ts, block, target, stimulus_id)
        self.given_up = 0
        self.plugin.stats["moved"] += 1
