"""Coded blocks encoded inside rewritten graphs, kept resident for the next graph.

The blocks and row scales of an :class:`~dask_coded.graph.EncodeTask` with ``keep=True``
are held in memory for a pseudo-client, so that the next graph multiplying the same array
reuses them. Each resident matrix belongs to the clients whose graphs made or used it: a
client's release (or its leaving) drops only its own claim, and the blocks go when no
client claims them. Least recently used matrices go first beyond
``coded.rewrite.max-resident`` bytes.

The rewrite runs in the scheduler's offload thread and asks which blocks are in memory:
it reads :attr:`Residency.snapshot`, a mapping replaced whole on the event loop, never the
tables the loop changes.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from dask.utils import parse_bytes

from .. import config
from ..keys import key_name
from .groups import drop_dependency
from .pins import encode_spec
from .records import PLUGIN_NAME, ResidentMatrix

RESIDENT_CLIENT = "dask-coded-resident"  # the pseudo-client that keeps rewritten blocks
#: states of a resident key that is in memory or being made (not held back, not lost)
UNDER_WAY = frozenset({"waiting", "queued", "processing", "no-worker", "memory"})


class Residency:
    """The resident matrices, by token, least recently used first."""

    def __init__(self, plugin) -> None:
        self.plugin = plugin
        self.matrices: OrderedDict[str, ResidentMatrix] = OrderedDict()
        self.snapshot: dict[str, frozenset] = {}  # token -> keys in memory (read-only copy)
        self.under_way: dict[str, frozenset] = {}  # token -> keys in memory or being made
        self._keys: frozenset = frozenset()
        self._calls: dict = {}  # requested key -> BesideCall waiting for it

    @property
    def scheduler(self):
        return self.plugin.scheduler

    def clear(self) -> None:
        self._calls.clear()
        self.matrices.clear()
        self.snapshot, self.under_way = {}, {}
        self._keys = frozenset()

    @property
    def calls(self) -> dict:
        """Requested keys of graphs whose encodings wait for them to be done."""
        return self._calls

    def keys(self) -> frozenset:
        """Every resident key."""
        return self._keys

    def refresh(self) -> None:
        """Rebuild :attr:`snapshot` and :attr:`under_way` (on the event loop, after any
        change)."""
        tasks = self.scheduler.tasks
        self._keys = frozenset(k for m in self.matrices.values() for k in m.keys)
        self.snapshot = {
            t: frozenset(k for k in m.keys if k in tasks and tasks[k].state == "memory")
            for t, m in self.matrices.items()}
        self.under_way = {
            t: frozenset(k for k in m.keys if k in tasks and tasks[k].state in UNDER_WAY)
            for t, m in self.matrices.items()}

    def keep(self, new: list, tasks, client: str | None) -> None:
        """Keep the new resident blocks and scales ``new`` in memory, claimed by
        ``client``; mark the matrices this graph (``tasks``) uses as recently used and
        claimed by it too; release the least recently used beyond the byte limit."""
        s = self.scheduler
        # blocks first: their dependencies are A's chunks, which name the source (the
        # row scales may be made from per-chunk norms)
        for ts in sorted(new, key=lambda ts: encode_spec(ts).index is None):
            token = encode_spec(ts).matrix
            m = self.matrices.get(token)
            if m is None:
                source = _source(ts)
                m = self.matrices[token] = ResidentMatrix(token, source)
            m.keys.add(ts.key)
        if new:
            s.client_desires_keys([ts.key for ts in new], RESIDENT_CLIENT)
            self.plugin.stats["resident-encoded"] += sum(
                encode_spec(ts).index is not None for ts in new)
        used = set()
        for key in tasks:
            ts = s.tasks.get(key)
            if ts is None:
                continue
            for t in (ts, *ts.dependencies):
                spec = encode_spec(t)
                if spec is not None and spec.keep:
                    used.add(spec.matrix)
        for token in used & self.matrices.keys():
            self.matrices.move_to_end(token)
            if client is not None:
                self.matrices[token].owners.add(client)
        limit = parse_bytes(config.get("rewrite.max-resident"))
        while len(self.matrices) > 1 and self.nbytes() > limit:
            oldest = next(iter(self.matrices))
            if oldest in used:
                break
            self._release(oldest)
        self.refresh()

    def nbytes(self) -> int:
        tasks = self.scheduler.tasks
        return sum(tasks[k].nbytes for m in self.matrices.values() for k in m.keys
                   if k in tasks and tasks[k].nbytes > 0)

    def report(self, client: str | None = None) -> dict:
        """``{token: {"source", "keys", "bytes"}}`` of the resident matrices ``client``
        claims (all of them when ``client`` is ``None``)."""
        tasks = self.scheduler.tasks
        return {t: {"source": m.source, "keys": len(m.keys),
                    "bytes": sum(max(tasks[k].nbytes, 0) for k in m.keys if k in tasks)}
                for t, m in self.matrices.items() if client is None or client in m.owners}

    def release(self, client: str | None, source: str | None = None, tokens=()) -> int:
        """Drop ``client``'s claim on the matrices encoded from dask array ``source`` (or
        with these ``tokens``); a matrix no client claims any more is released. Returns
        how many matrices ``client`` claimed."""
        chosen = [t for t, m in self.matrices.items()
                  if ((source is not None and m.source == source) or t in (tokens or ()))
                  and (client is None or client in m.owners)]
        for token in chosen:
            m = self.matrices[token]
            m.owners.discard(client)
            if client is None or not m.owners:
                self._release(token)
        self.refresh()
        return len(chosen)

    def client_left(self, client: str) -> None:
        """``client`` is gone: its claims go with it."""
        for token, m in list(self.matrices.items()):
            if client in m.owners:
                m.owners.discard(client)
                if not m.owners:
                    self._release(token)
        self.refresh()

    def _release(self, token: str) -> None:
        m = self.matrices.pop(token)
        keys = [k for k in m.keys if k in self.scheduler.tasks]
        if keys and RESIDENT_CLIENT in self.scheduler.clients:
            self.scheduler.client_releases_keys(keys, RESIDENT_CLIENT,
                                                stimulus_id=f"coded-release-{token}")
        self.plugin.stats["resident-released"] += 1

    def encode_beside(self, dependents: list, keys, stimulus_id: str) -> None:
        """Plain tasks ``dependents`` (:class:`~dask_coded.tasks.BesideTask`) run without
        waiting for the encodings they name: their edges to them are dropped (before the
        graph's first transitions) and each runs as its plain task. The encodings, wanted
        by the pseudo-client (:meth:`keep`), start once the graph's requested ``keys``
        are done, so that they never hold up its tasks on a worker's thread, and then
        below any other task in priority."""
        s = self.scheduler
        encodings: set = set()
        for ts in dependents:
            spec = ts.run_spec
            for key in spec.beside:
                dts = s.tasks.get(key)
                if dts is None:
                    continue
                drop_dependency(ts, dts)
                encodings.add(dts)
            ts.run_spec = spec.plain
        if not encodings:  # a layer that ran plainly before: its encodings are on their way
            return
        # the encodings and the steps only they need (rows cut from A's chunks, norms)
        low = set(encodings) | {d for e in encodings for d in e.dependencies
                                if d.dependents and d.dependents <= encodings}
        for ts in low:
            ts.priority = (ts.priority[0] + 1, *ts.priority[1:])
        self.plugin.stats["encoded-beside"] += len(encodings)
        waiting = BesideCall({k for k in keys or () if k in s.tasks},
                             [ts.key for ts in encodings], stimulus_id)
        for k in waiting.keys:
            self._calls.setdefault(k, []).append(waiting)
        # on the next loop turn: the graph's tasks are not scheduled yet
        s.loop.add_callback(self.call_done, None)

    def call_done(self, key) -> None:
        """Requested key ``key`` of a graph with encodings beside it is done (or ``None``:
        check them all): start the encodings of every such graph that has nothing left
        to run."""
        s = self.scheduler
        calls = self._calls.pop(key, []) if key is not None else [
            c for cs in self._calls.values() for c in cs]
        for call in calls:
            call.keys = {k for k in call.keys if k in s.tasks
                         and s.tasks[k].state not in ("memory", "erred", "released")}
            if call.keys or call.started:
                continue
            call.started = True
            for k in list(self._calls):
                self._calls[k] = [c for c in self._calls[k] if c is not call]
                if not self._calls[k]:
                    del self._calls[k]
            recs = {k: "waiting" for k in call.encodings if k in s.tasks
                    and s.tasks[k].state == "released" and s.tasks[k].who_wants}
            if recs:
                s.transitions(recs, stimulus_id=call.stimulus_id)


@dataclass
class BesideCall:
    """A graph whose encodings wait for its requested ``keys`` to be done."""

    keys: set
    encodings: list
    stimulus_id: str
    started: bool = False


def resident_keys(token: str, scheduler: str | None, under_way: bool = False) -> frozenset:
    """The keys of ``token``'s coded blocks and row scales that the running scheduler at
    address ``scheduler``, in this process, holds in memory (the rewrite, running there,
    then leaves their encode tasks out of the next graph); with ``under_way``, also those
    it is making (not held back for a call, not lost). Safe from any thread: it reads
    the plugin's snapshots, which the event loop replaces whole."""
    from distributed import Scheduler

    for s in list(Scheduler._instances):
        if scheduler is None or s.address != scheduler or s.status.name != "running":
            continue
        plugin = s.plugins.get(PLUGIN_NAME)
        residency = getattr(plugin, "residency", None)
        if residency is not None:
            table = residency.under_way if under_way else residency.snapshot
            return table.get(token, frozenset())
    return frozenset()


def _source(ts) -> str | None:
    """The name of the dask array a coded block is made from: its first dependency that
    is not one of the package's own steps (rows cut from a chunk, per-chunk norms)."""
    seen, frontier = set(), list(ts.dependencies)
    while frontier:
        d = frontier.pop(0)
        if d.key in seen:
            continue
        seen.add(d.key)
        name = key_name(d.key)
        if not name.startswith("coded-"):
            return name
        frontier.extend(d.dependencies)
    return None
