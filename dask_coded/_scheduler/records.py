"""The scheduler side's state, one small typed record per entity.

Each record lives in exactly one table, keyed by its task's key (or its matrix's name), so
forgetting an entity is one ``pop``. Plain data: the concern modules (:mod:`.groups`,
:mod:`.pins`, :mod:`.residency`, :mod:`.observations`) keep them consistent with the
scheduler's tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..tasks import GroupSpec

Key = Any  # a dask key

#: the name the scheduler plugin is registered under (``FirstKPlugin.name``)
PLUGIN_NAME = "dask-coded-first-k"
#: the event topic ``k="auto"``'s re-choices are posted under (the scheduler keeps
#: events: ``client.get_events(AUTO_TOPIC)``, the coded dashboard page)
AUTO_TOPIC = "dask-coded-auto"
#: the event topic a worker posts under when a released coded product it was asked to
#: watch returns, freeing the worker (:mod:`.worker_plugin`)
FREED_TOPIC = "dask-coded-freed"
#: the worker's RPC handler that watches released products (:mod:`.worker_plugin`)
WATCH_HANDLER = "coded_watch"
#: the event topic a ``CodedShuffle`` posts each epoch's bytes under
SHUFFLE_TOPIC = "dask-coded-shuffle"


@dataclass
class ProductGroup:
    """The products of one decode (``index -> key``) and which of them are in memory.

    ``started``: the decode was detached from its unfinished products (it started
    early, or was failed because its rule can no longer hold); ``since``: when the group
    was first seen (the scheduler's clock), for the deadline; ``observed``: which
    workers it used and released was told to the avoidance (once per group);
    ``forgotten``: its products distributed forgot while the decode was kept (released
    stragglers whose inputs were lost), which a decode made again goes without."""

    decode: Key
    spec: GroupSpec
    since: float
    products: dict = field(default_factory=dict)  # index -> product key
    finished: set = field(default_factory=set)  # indices in memory
    ran_on: dict = field(default_factory=dict)  # index -> the worker that computed it
    forgotten: dict = field(default_factory=dict)  # product key -> index, once forgotten
    started: bool = False
    observed: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def threshold(self) -> int:
        return self.spec.threshold

    def decodable(self) -> bool:
        return self.spec.decodable(self.finished)


@dataclass
class Product:
    """One coded product: its group, its index in it, the block it multiplies (if
    resident), the worker it is pinned to (``None``: not pinned strictly) and its compute
    seconds once finished."""

    key: Key
    decode: Key
    index: int
    block: Key | None = None
    worker: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class PrunedDecode:
    """A decode started before all its products finished (or given the workers of its
    products, ``sources``): its run spec and dependencies as submitted, restored when it
    finishes and when an identical graph arrives while the old task lingers (the
    scheduler then keeps the old TaskState)."""

    run_spec: Any
    dependencies: tuple


@dataclass
class CodedBlock:
    """A coded block pinned to one worker. ``matrix`` names the blocks that are spread
    over distinct workers together (one code, one column block)."""

    key: Key
    matrix: tuple
    worker: str | None
    #: what encodes it, in a few words (the encode task's ``code``)
    code: str = ""


@dataclass
class ResidentMatrix:
    """The coded blocks and row scales of an array encoded inside a rewritten graph, kept
    in memory (for a pseudo-client) so that the next graph reuses them, for as long as one
    of its ``owners`` (client ids) keeps it."""

    token: str
    source: str | None  # the dask array's name
    keys: set = field(default_factory=set)
    owners: set = field(default_factory=set)


@dataclass
class CallRecord:
    """What one call (one product name) showed: per finished product its worker and
    compute seconds; the product indices the decodes used; the workers of the released
    stragglers and their censor times (they ran at least as long as the last product
    used), their keys and which of those never began executing (``unstarted``: still
    waiting on the scheduler at the release, or in their worker's queue, as its worker
    plugin said); ``span``: seconds from when the call's graph arrived until its decodes
    could start (the slowest of its decodes): what the call cost, queueing included;
    ``gaps``: per product that followed another of the same call on its worker, the
    seconds between the two reaching memory less its own compute (the cost of one more
    product task, scheduling and transfer of its result included); ``last``: per worker,
    when its latest product reached memory (seconds after the graph arrived)."""

    finished: list = field(default_factory=list)  # [(worker, seconds)]
    used: set = field(default_factory=set)
    released: list = field(default_factory=list)  # [worker]
    released_keys: list = field(default_factory=list)  # [key], one per released
    unstarted: set = field(default_factory=set)  # released keys that never started
    censored: list = field(default_factory=list)  # [seconds]
    span: float = 0.0
    gaps: list = field(default_factory=list)  # [seconds]
    last: dict = field(default_factory=dict)  # worker -> seconds after arrival


class RewriteRecord(NamedTuple):
    """What ``coded_matmul``'s rewrite did with one product layer of a graph.

    ``layer``: the dask layer's name; ``n``, ``threshold``: the code's workers and the
    products a decode waits for (``None`` when left plain); ``reused``: the products ran
    on coded data already resident, so the graph encoded nothing; ``token``: the resident
    encoding's token (``None`` when not kept); ``scheme``: ``"mds"``, ``"polynomial"``,
    ``"matdot"``, or ``None`` when the layer stayed plain dask; ``operation``: what the
    layer computes (``"A @ x"``, ``"A.T @ x"``, ``"A @ B"``); ``reason``: why it stayed
    plain (``None`` when coded); ``beside``: the layer ran as plain dask while the coded
    blocks the code names (``n``, ``threshold``, ``token``) were encoded beside it, in
    the background, for the next graph (``coded.rewrite.first-call: plain``).
    """

    layer: str
    n: int | None
    threshold: int | None
    reused: bool
    token: str | None
    scheme: str | None = None
    operation: str = "A @ x"
    reason: str | None = None
    beside: bool = False
