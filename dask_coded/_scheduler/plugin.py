"""FirstKPlugin: the scheduler side of coded products, forwarding the scheduler's hooks.

The coded graph is ordinary: a decode depends on all its products, so it is correct on
any scheduler. This plugin only makes it fast and keeps it live on ``distributed``; each
concern lives in its own module and owns its records:

* :mod:`.groups`: first-k decisions (start a decode once its rule holds, fail it at once
  when the rule can no longer hold, detach it at the deadline);
* :mod:`.pins`: coded blocks pinned one per worker, products with their blocks, re-pinned
  after a loss (``coded.first-k.repin-delay``, or at once when a call arrives) and spread
  back out when a worker joins;
* :mod:`.residency`: blocks encoded inside rewritten graphs, kept for the clients that
  made or used them;
* :mod:`.observations`: straggling per call, for ``k="auto"`` and diagnostics;
* :mod:`.quarantine`: workers whose products a checking decode found wrong
  (``verify=``), quarantined past ``coded.verify.quarantine-after``;
* :mod:`.avoidance`: the plain tasks of coded graphs kept off persistent stragglers and
  off workers still running a product a decode released; :mod:`.worker_plugin`, which
  this plugin installs on every worker, says when such a product returns.

It recognises the package's tasks by their type (:class:`~dask_coded.graph.ProductTask`,
:class:`~dask_coded.graph.EncodeTask`), never by key names, and never knows which scheme
made a group: only its rule.
"""

from __future__ import annotations

import time
from collections import Counter

from dask.utils import parse_timedelta
from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.protocol.pickle import dumps

from .. import config
from ..suspects import TOPIC as VERIFY_TOPIC
from ..tasks import BesideTask, spec_of
from .avoidance import Avoidance
from .groups import Groups, product_spec
from .observations import REWRITES, Observations
from .pins import Pins, encode_spec
from .quarantine import Quarantine
from .records import FREED_TOPIC, PLUGIN_NAME
from .residency import RESIDENT_CLIENT, UNDER_WAY, Residency
from .worker_plugin import FirstKWorkerPlugin

__all__ = ["FirstKPlugin", "RESIDENT_CLIENT"]


class FirstKPlugin(SchedulerPlugin):
    """Let a coded decode run once its products satisfy its rule.

    Registered by every entry point through :func:`dask_coded.cluster.install`
    (``client.register_plugin``; idempotent). ``stats`` counts what it did: ``pruned``
    decodes started early, ``released`` straggler products, ``pinned`` products,
    ``repinned`` blocks of lost workers, ``moved`` blocks spread onto joining workers,
    ``failed-early`` decodes that could no longer reach their rule, ``remade`` finished
    decodes lost with their worker and made again without the products forgotten since,
    ``expired`` decodes detached at the deadline, ``quarantined`` workers found
    returning wrong products and ``evacuated`` blocks moved off them.
    """

    name = PLUGIN_NAME
    idempotent = True

    def __init__(self) -> None:
        self.scheduler = None
        self.stats: Counter = Counter()
        self.observations = Observations()
        self.group_table = Groups(self)
        self.pins = Pins(self)
        self.residency = Residency(self)
        self.avoidance = Avoidance(self)
        self.quarantine = Quarantine(self)

    # ---- what tests and diagnostics read ----------------------------------------------

    @property
    def groups(self):
        return self.group_table.groups

    @property
    def blocks(self):
        return self.pins.blocks

    @property
    def resident(self):
        return self.residency.matrices

    def tracked(self) -> dict:
        """How many groups, products, blocks and pruned decodes the plugin tracks (all
        leave with their tasks: a growing count is a leak)."""
        g = self.group_table
        return {"groups": len(g.groups), "products": len(g.products),
                "blocks": len(self.pins.blocks), "pruned": len(g.pruned),
                "pinned": sum(p.worker is not None for p in g.products.values())}

    # ---- registration ------------------------------------------------------------------

    async def start(self, scheduler) -> None:
        self.scheduler = scheduler
        for name, handler in self._handlers().items():
            scheduler.handlers[name] = handler
        await scheduler.register_worker_plugin(
            None, dumps(FirstKWorkerPlugin()), name=FirstKWorkerPlugin.name, idempotent=True)

    def _handlers(self) -> dict:
        """Every RPC handler this plugin serves (called as ``client.scheduler.<name>``).
        Those about resident data answer for the calling ``client`` only."""
        return {
            "coded_first_k_stats": lambda comm=None: dict(self.stats),
            "coded_first_k_observed": (
                lambda comm=None, prefix="", last=None: self.observations.report(prefix, last)),
            "coded_first_k_used": lambda comm=None, name="": self.observations.used(name),
            "coded_first_k_tracked": lambda comm=None: self.tracked(),
            "coded_rewrites": lambda comm=None, optimizer="": REWRITES.of(optimizer),
            "coded_resident": lambda comm=None, client=None: self.residency.report(client),
            "coded_release": self._release,
            "coded_suspects": lambda comm=None: self.quarantine.suspects.report(),
        }

    def _release(self, comm=None, client: str | None = None, source: str | None = None,
                 tokens=None) -> int:
        if client is None:
            raise ValueError("coded_release needs the calling client's id (client=...)")
        return self.residency.release(client, source, tokens or ())

    def restart(self, scheduler) -> None:
        self.group_table.clear()
        self.pins.clear()
        self.residency.clear()
        self.avoidance.clear()
        self.quarantine.clear()

    def log_event(self, topic, msg) -> None:
        if topic == "all" and isinstance(msg, dict) and msg.get("action") == "remove-worker":
            # logged by remove_worker before it forgets what needed data it cannot remake
            tasks = self.scheduler.tasks
            self.group_table.remake(msg.get("lost-computed-tasks") or (), msg.get("worker"))
            lost = set(msg.get("lost-scattered-tasks") or ()) | {
                k for k in msg.get("lost-computed-tasks") or ()
                if k in tasks and tasks[k].has_lost_dependencies}
            if lost:
                self.group_table.lost_data(lost, msg.get("worker"), msg.get("stimulus_id", ""))
        elif topic == VERIFY_TOPIC and isinstance(msg, dict):
            self.quarantine.record(msg)
        elif topic == FREED_TOPIC and isinstance(msg, dict):
            self.avoidance.freed(msg.get("worker"), msg.get("key"),
                                 bool(msg.get("started", True)))


    # ---- new graphs --------------------------------------------------------------------

    def update_graph(self, scheduler, *, tasks=(), client=None, stimulus_id: str = "",
                     **kwargs) -> None:
        blocks, products, resident, beside = [], [], [], []
        for key in tasks:
            ts = scheduler.tasks.get(key)
            if ts is None:
                continue
            if spec_of(ts, BesideTask) is not None:
                beside.append(ts)
            spec = encode_spec(ts)
            if spec is not None:
                if spec.index is not None:
                    blocks.append(ts)
                if spec.keep:
                    resident.append(ts)
            elif product_spec(ts) is not None:
                products.append(ts)
            if key in self.group_table.pruned:
                self.group_table.restore(ts)
        self.pins.place_blocks(blocks)
        if self.pins.lost():
            # a call arrived, so the cluster is not shutting down: re-pin lost blocks now,
            # before this graph's products are placed with them (they wait for the
            # re-encode instead of failing)
            self.pins.repin_lost(stimulus_id)
        known = self.residency.keys()
        self.residency.keep([ts for ts in resident if ts.key not in known], tasks, client)
        if beside:
            self.residency.encode_beside(beside, kwargs.get("keys"), stimulus_id)
        decodes = set()
        graph = set(tasks) if products else set()
        for ts in products:
            worker = self.pins.place_product(ts, product_spec(ts).block)
            decodes.add(self.group_table.add(ts, worker, graph))
        decodes.discard(None)
        if products:
            # a coded graph: its plain tasks stay off the persistent stragglers
            mine = {ts.key for ts in products} | {ts.key for ts in blocks}
            self.avoidance.restrict([scheduler.tasks[k] for k in tasks
                                     if k in scheduler.tasks and k not in mine
                                     and encode_spec(scheduler.tasks[k]) is None])
        if decodes:
            # never transition inside update_graph: the new tasks are not scheduled yet
            scheduler.loop.add_callback(self.group_table.review, decodes, stimulus_id)

    # ---- tasks -------------------------------------------------------------------------

    def transition(self, key, start, finish, *args, stimulus_id: str = "", **kwargs) -> None:
        if finish in ("memory", "erred", "released", "forgotten") and self.residency.calls:
            if key in self.residency.calls:
                self.scheduler.loop.add_callback(self.residency.call_done, key)
        if self.pins.waiting and finish in ("memory", "erred", "released"):
            ts = self.scheduler.tasks.get(key)
            if ts is not None:
                self.pins.quiet(ts)
        if finish == "forgotten":
            self.group_table.forget(key)
            self.pins.forget(key)
            return
        if (start in UNDER_WAY or finish in UNDER_WAY) and key in self.residency.keys():
            self.scheduler.loop.add_callback(self.residency.refresh)
        if finish in ("memory", "erred") and key in self.group_table.pruned:
            self.scheduler.loop.add_callback(self.group_table.reconnect, key)
        if finish == "memory":
            seconds = sum(ss["stop"] - ss["start"] for ss in kwargs.get("startstops") or ()
                          if ss.get("action") == "compute")
            decode = self.group_table.finished(key, kwargs.get("worker"), seconds)
        elif start == "memory":
            decode = self.group_table.left_memory(key)
        else:
            return
        if decode is not None:
            # never mutate the graph inside a transition: do it on the next loop turn
            self.scheduler.loop.add_callback(self.group_table.review, {decode},
                                             stimulus_id)

    # ---- clients, workers ----------------------------------------------------------------

    def remove_client(self, scheduler, client: str) -> None:
        if client != RESIDENT_CLIENT:
            self.residency.client_left(client)

    def remove_worker(self, scheduler, worker: str, *, stimulus_id: str = "", **kwargs) -> None:
        self.avoidance.forget_worker(worker)
        self.pins.forget_worker(worker)
        affected = self.group_table.on_worker(worker)
        if affected:
            scheduler.loop.add_callback(self.group_table.review, affected, stimulus_id,
                                        f"lost worker {worker}")
        if self.pins.holds_blocks(worker):
            # a grace period, so that a cluster shutting down (workers leave first) does
            # not start re-encoding everything
            delay = parse_timedelta(config.get("first-k.repin-delay"))
            scheduler.loop.call_later(delay, self.pins.repin_lost,
                                      f"coded-repin-{time.time()}")

    def add_worker(self, scheduler, worker: str) -> None:
        self.pins.start_moves()
