"""CodedShuffle: deal partitions afresh to the workers every epoch, with coded multicast.

The client is the master: it holds the data set. Each epoch draws a new assignment
(seeded) and delivers it with ordinary dask operations, by one of the deliveries of
:mod:`.delivery` (plan, send, keep):

* ``"uncoded"``: the master scatters every missing partition to its worker; workers
  cache whole partitions (:func:`next_caches`);
* ``"p2p"``: a worker copies a missing partition from a peer that holds it (dask's
  dependency transfer); the master sends only what no worker holds;
* ``"coded"``: XOR packets, each scattered *once* by the master and relayed by the
  workers of its group. With the segment placement (:mod:`.placement`, carried out by
  :mod:`.segmented` and the workers' :mod:`.relay` handlers) where it applies; else over
  whole-partition caches (:func:`plan_delivery`): the master scatters each packet to one
  member, the others fetch it as a dependency and each decodes its partition with a task
  that XORs out its cached parts.

Every partition a worker holds, share or cache, has a key of its own
(``coded-shuffle-<token>-w<worker>-p<id>-e<epoch>``). A peer that fetches one as a
dependency leaves a replica, and the Active Memory Manager, which keeps one replica of a
key, may then delete the *owner's* copy (measured: 3 caches lost in 4 epochs of the p2p
strategy). So the coordinator stops the AMM while any shuffle is open (restarting it
when the last one closes, if it ran) and the session drops the stray replicas itself
after each epoch, keeping the owner's. Each epoch reports the bytes its plan sends; a benchmark
that passes a byte meter (:class:`dask_coded.bench.bytecount.ByteMeter`) also gets the
bytes each endpoint really wrote.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from dask.utils import parse_bytes, parse_timedelta
from distributed import Client, wait
from distributed.utils import CancelledError

from .._scheduler.records import SHUFFLE_TOPIC
from ..handles import Handle
from ..workers import default_client
from .. import config
from ..errors import CodedError, TooFewWorkersError
from .collections import FrameFormat
from .coordinator import ShuffleCoordinator
from .deal import DEALS, deal
from .delivery import Segments, WholePartitions
from .placement import Placement
from .segmented import SegmentedCaches

if TYPE_CHECKING:
    import dask.array as da
    import dask.dataframe as dd

logger = logging.getLogger(__name__)

STRATEGIES = ("coded", "uncoded", "p2p")
PLACEMENTS = ("auto", "segments", "partitions")


@dataclass
class EpochReport:
    """What one epoch cost: planned, and measured at the transport when the shuffle has a
    byte meter (:class:`dask_coded.bench.bytecount.ByteMeter`; else those are ``None``).

    The master is the client (which holds the data) together with the scheduler.
    """

    epoch: int
    planned_master_bytes: int
    unicast_bytes: int  # what one unicast per request would cost the master
    packets: int
    coded_packets: int
    seconds: float
    lost_workers: list[str] = field(default_factory=list)
    master_bytes: int | None = None  # written by the client and the scheduler
    master_data_bytes: int | None = None  # the part of master_bytes carrying partitions
    scheduler_bytes: int | None = None  # the scheduler's part (0 in the client's process)
    peer_bytes: int | None = None  # written by the workers


@dataclass
class _Cost:
    """What an epoch's plans (one per attempt) cost the master."""

    master_bytes: int = 0
    unicast_bytes: int = 0
    coded_packets: int = 0
    packets: int = 0

    def __iadd__(self, plan) -> "_Cost":
        """Add a plan's cost (the interface every delivery's plan has)."""
        self.master_bytes += plan.master_bytes
        self.unicast_bytes += plan.unicast_bytes
        self.coded_packets += plan.coded_packets
        self.packets += plan.packet_count
        return self


def _measured(before: dict, after: dict, workers: list[str]) -> dict:
    """The transport counts of one epoch, as :class:`EpochReport` fields."""
    def delta(name: str) -> int:
        return after[name] - before[name]

    return {
        "master_bytes": delta("client") + delta("scheduler"),
        "master_data_bytes": delta("client_data") + delta("scheduler_data"),
        "scheduler_bytes": delta("scheduler"),
        "peer_bytes": sum(after["workers"].get(w, 0) - before["workers"].get(w, 0)
                          for w in workers),
    }


class CodedShuffle(Handle):
    """Reshuffle ``partitions`` among the workers every epoch (see the module doc).

    Parameters
    ----------
    partitions : list of numpy.ndarray
        The data set, held by the master; one dtype for all.
    storage : int
        Partitions each worker may hold (its share included): at least ``ceil(q / n)``.
    client : distributed.Client, optional
        The master's client; default: the current one.
    strategy : {"coded", "uncoded", "p2p"}
    seed : int
        Seeds the assignments: the same seed gives the same assignments for every
        strategy.
    deal : {"balanced", "random"}
        How each epoch deals the partitions (:mod:`dask_coded.shuffle.deal`):
        ``"balanced"`` spreads every worker's old batch evenly over the new batches (a
        stratified reshuffle: each partition still lands on each worker with probability
        ``1 / n``), which evens the coded packets' demands; ``"random"``: a uniformly
        random assignment.
    cache_policy : {"recent", "diverse"}
        What a worker keeps beyond its share when it caches whole partitions
        (:func:`next_caches`).
    placement : {"auto", "segments", "partitions"}
        How the coded strategy caches. ``"segments"``: every partition is split into
        segments cached by fixed sets of workers (:class:`Placement`), which is what the
        paper's gain needs; ``"partitions"``: whole partitions, kept by ``cache_policy``
        and coded by :func:`plan_delivery`. ``"auto"``: segments unless a partition would
        need more than ``coded.shuffle.max-segments`` of them, or its segments would be
        smaller than ``coded.shuffle.min-segment-bytes`` on average (0 by default: set it
        for a master whose link is fast, where whole partitions' fewer pieces can deliver
        faster though they send more bytes). The other strategies always cache whole
        partitions.
    meter : dask_coded.bench.bytecount.ByteMeter, optional
        Counts the bytes each endpoint writes, for the epoch reports (the measurement
        harness: it wraps the transport in every process, so it is opt-in).
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> CodedShuffle:
        if args and isinstance(args[0], Client):  # before __init__ binds the arguments
            raise TypeError("CodedShuffle takes the partitions first and the client as a "
                            "keyword: CodedShuffle(partitions, storage, client=client)")
        return super().__new__(cls)

    def __init__(self, partitions: list, storage: int, *, client: Client | None = None,
                 strategy: str = "coded", seed: int = 0, cache_policy: str = "recent",
                 placement: str = "auto", meter: Any = None, deal: str = "balanced"):
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
        if deal not in DEALS:
            raise ValueError(f"deal must be one of {DEALS}, got {deal!r}")
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
        parts = [np.asarray(p) for p in partitions]
        if not parts:
            raise ValueError("partitions is empty")
        dtypes = {p.dtype for p in parts}
        if len(dtypes) > 1:
            raise ValueError(f"partitions must share one dtype, got {sorted(map(str, dtypes))}")
        if strategy == "coded" and parts[0].dtype.hasobject:
            raise TypeError(
                f"the coded strategy XORs the partitions' bytes, and dtype {parts[0].dtype} "
                f"holds Python object references; use strategy='uncoded' or 'p2p', or convert "
                f"the partitions to a fixed-size dtype")
        if not isinstance(storage, (int, np.integer)) or isinstance(storage, bool):
            raise TypeError(f"storage must be a whole number of partitions, got {storage!r}")
        client = _client(client)
        self.client, self.token = client, uuid.uuid4().hex[:10]
        client.register_plugin(ShuffleCoordinator())
        # lists become tuples through msgpack
        self.workers = list(client.sync(client.scheduler.coded_shuffle_open, token=self.token))
        try:
            if not self.workers:
                raise TooFewWorkersError("the cluster has no workers to shuffle partitions among")
            share = -(-len(parts) // len(self.workers))
            if storage < share:
                raise ValueError(
                    f"storage={storage} partitions is smaller than one epoch's share "
                    f"(ceil({len(parts)} / {len(self.workers)} workers) = {share})"
                )
            self.parts, self.storage = parts, int(storage)
            self.strategy, self.policy = strategy, cache_policy
            self.rng, self.deal = np.random.default_rng(seed), deal
            self.format = None  # how from_dask's partitions come back (collection())
            self._frames, self._frames_epoch = {}, None  # collection()'s pandas partitions
            self.sizes = [as_size(p) for p in parts]
            self.epoch = 0
            self.closed = False
            self.held: dict[str, dict[int, Any]] = {w: {} for w in self.workers}  # w -> {pid: fut}
            self.order: dict[str, list[int]] = {w: [] for w in self.workers}  # most recent first
            self.assignment: dict[str, list[int]] = {}
            self.reports: list[EpochReport] = []
            self.meter = meter
            # how long a scatter waits for its (running) worker: a dead one fails it quickly
            self.scatter_timeout = parse_timedelta(config.get("shuffle.scatter-timeout"))
            self._placement_choice = placement
            self._next = None  # the next epoch: (shares, where a worker plans its delivery)
            self._whole, self._segments = WholePartitions(strategy), Segments()
            self.segments: SegmentedCaches | None = self._segmented_caches()
        except BaseException:
            # a refused construction leaves no session behind
            client.sync(client.scheduler.coded_shuffle_close, token=self.token)
            raise

    def __repr__(self) -> str:
        how = repr(self.segments.placement) if self.segments else "whole partitions"
        return (f"CodedShuffle({self.strategy!r}, {len(self.parts)} partitions on "
                f"{len(self.workers)} workers, storage {self.storage}, deal {self.deal!r}; "
                f"caches: {how}; "
                f"epoch {self.epoch})")

    # ---- public -------------------------------------------------------------------------

    @classmethod
    def from_dask(cls, collection: da.Array | dd.DataFrame, storage: int, *,
                  client: Client | None = None, strategy: str = "coded", seed: int = 0,
                  deal: str = "balanced", **kwargs: Any) -> CodedShuffle:
        """A shuffle of the partitions of a dask DataFrame or Array (its blocks along
        axis 0); each epoch, :meth:`collection` hands back one of the same kind whose
        partitions are resident where the shuffle put them.

        The partitions are computed and gathered to this client once: the client is the
        master, which holds the data set and sends what the workers lack (the coded
        packets are XORs of its partitions). ``storage`` counts partitions, as in the
        constructor; ``client`` defaults to the current one. Pandas partitions keep
        their index, column names and dtypes
        (:class:`~dask_coded.shuffle.collections.FrameFormat`).
        """
        from .collections import format_of

        client = _client(client)
        fmt = format_of(collection, strategy)
        parts = fmt.parts(client, collection)
        sh = cls(parts, storage=storage, strategy=strategy, seed=seed, deal=deal,
                 client=client, **kwargs)
        sh.format = fmt
        return sh

    def collection(self) -> da.Array | dd.DataFrame:
        """This epoch's data as a dask collection of the kind :meth:`from_dask` took:
        the partitions worker by worker (in :attr:`assignment` order), each computed on
        the worker that holds it. Every row is in it exactly once."""
        if self.format is None:
            raise CodedError("collection() is for shuffles made with CodedShuffle.from_dask; "
                             "this one holds numpy partitions: use futures(worker)")
        if not self.assignment:
            raise CodedError("no epoch was dealt yet: call next_epoch() first")
        if self._frames_epoch != self.epoch:
            # the pandas partitions, made on their workers once per epoch and held until
            # the next (a graph made from the collection names them but does not hold them)
            self._frames = {
                p: self.client.submit(
                    self.format.to_partition, self.held[w][p], workers=[w],
                    allow_other_workers=False,
                    key=f"coded-shuffle-{self.token}-frame-e{self.epoch}-p{p}")
                for w in self.workers for p in self.assignment.get(w, ())
            } if isinstance(self.format, FrameFormat) else {}
            self._frames_epoch = self.epoch
        futures, shapes = [], []
        for w in self.workers:
            for p in self.assignment.get(w, ()):
                futures.append(self._frames.get(p, self.held[w][p]))
                shapes.append(self.parts[p].shape)
        return self.format.collection(futures, shapes)

    def epochs(self, count: int) -> Iterator[da.Array | dd.DataFrame]:
        """Deal and deliver ``count`` epochs, yielding each one's :meth:`collection`."""
        for _ in range(count):
            self.next_epoch()
            yield self.collection()

    def next_epoch(self, progress: bool = False) -> dict[str, list[int]]:
        """Deal a fresh random assignment and deliver it; ``{worker: [partition ids]}``.

        Each worker's share is in its memory afterwards (:meth:`futures`, :meth:`keys`).
        ``progress=True`` shows dask's progress bar while the partitions arrive.
        A worker lost since the last epoch, or during this one, is dropped: the survivors
        keep what reached them, its share is dealt among them and the rest of the epoch is
        re-planned; the epoch's report lists it.
        """
        if self.closed:
            raise CodedError("this CodedShuffle is closed; create a new one")
        lost, joined = self._update_members()
        if (lost or joined) and self.segments is not None:  # a placement is for one set
            self.segments.release()                          # of workers
            self.segments = self._segmented_caches()
        prefetched, self._next = self._next, None
        self._frames = {}  # the last epoch's pandas partitions (a collection holds its own)
        complete = sum(map(len, self.held.values())) == len(self.parts)  # nothing lost
        if prefetched is not None and not lost and not joined and complete:
            shares, planner = prefetched
        else:
            shares, planner = self._deal(self.assignment), None
        before = self.meter.totals() if self.meter is not None else None
        t = time.perf_counter()
        shares, new, cost, _ = self._deliver_epoch(shares, planner, lost, joined, complete,
                                                   progress)
        seconds = time.perf_counter() - t
        owners = {f.key: w for w, fs in new.items() for f in fs.values()}
        if self.segments is not None:
            owners.update({f.key: w for w, f in self.segments.stores.items()})
        self.client.run_on_scheduler(_drop_stray_replicas, owners=owners)
        measured = _measured(before, self.meter.totals(), self.workers) if before else {}
        self.epoch += 1
        self.reports.append(EpochReport(
            epoch=self.epoch, planned_master_bytes=cost.master_bytes,
            unicast_bytes=cost.unicast_bytes, packets=cost.packets,
            coded_packets=cost.coded_packets, seconds=seconds, lost_workers=lost, **measured,
        ))
        self._announce(self.reports[-1])
        self.assignment = {w: sorted(shares[w]) for w in self.workers}
        return self.assignment

    def _announce(self, report: EpochReport) -> None:
        """Tell the scheduler what the epoch cost (an event under :data:`SHUFFLE_TOPIC`,
        which the coded dashboard page lists)."""
        msg = {"shuffle": self.token, "strategy": self.strategy, "epoch": report.epoch,
               "planned_master_bytes": int(report.planned_master_bytes),
               "unicast_bytes": int(report.unicast_bytes),
               "master_bytes": report.master_bytes, "peer_bytes": report.peer_bytes,
               "seconds": round(float(report.seconds), 4)}
        try:
            self.client.log_event(SHUFFLE_TOPIC, msg)
        except Exception:  # a closing client: the page misses one epoch
            logger.debug("could not post epoch %d's bytes", report.epoch, exc_info=True)

    def _deliver_epoch(self, shares: dict, planner, lost: list, joined: list,
                       complete: bool, progress: bool) -> tuple:
        """Plan, send and keep this epoch's deliveries, re-planning among the survivors
        when a worker is lost midway (``lost`` grows). Returns ``(shares, new, cost,
        delivered by segments)``."""
        cost = _Cost()
        for attempt in itertools.count():
            self._attempt = attempt  # in the keys: a retry after a loss never reuses a key
            # segments need their slices in place and the workers of the last epoch
            segmented = (self.segments is not None and self.segments.in_place and not lost
                         and not joined and complete)
            new: dict[str, dict[int, Any]] = {w: {} for w in self.workers}
            if self.segments is not None and not segmented:
                self.segments.slots = None  # the slices are cut afresh after this epoch
            try:
                delivery = self._segments if segmented else self._whole
                plan, planner = delivery.plan(self, shares, planner)
                cost += plan
                delivery.send(self, plan, planner, shares, new)
                for w in self.workers:  # what a worker already holds of its share stays
                    for p in shares[w]:
                        if p not in new[w]:
                            new[w][p] = self.held[w][p]
                if attempt == 0:
                    self._plan_ahead(shares)
            except (TimeoutError, OSError, KeyError):  # a scatter or RPC found its worker
                # gone (KeyError: the scheduler forgot the worker between the data's
                # arrival and the scatter's bookkeeping)
                gone = [w for w in self.workers if w not in set(self._live())]
                if not gone:
                    raise
            else:
                delivered = [f for fs in new.values() for f in fs.values()]
                if progress:
                    from distributed import progress as progress_bar

                    progress_bar(delivered)  # dask's own bar (a widget in Jupyter)
                gone = self._wait_or_lost(delivered)
                if not gone:
                    break
            lost += gone
            shares = self._lost_during_epoch(shares, gone, new)
        (self._segments if self.segments is not None else self._whole).keep(
            self, shares, new, segmented)
        return shares, new, cost, segmented

    def _lost_during_epoch(self, shares: dict, gone: list[str], new: dict) -> dict:
        """A worker died during the epoch: the survivors keep what reached them and the
        master re-sends the lost workers' shares, dealt among the survivors."""
        warnings.warn(f"CodedShuffle: lost workers {gone} during epoch {self.epoch + 1}; "
                      f"their shares are re-sent to the survivors", stacklevel=3)
        self._next = None  # planned for the old workers and shares
        shares = self._redeal(shares, gone, new)
        if self.segments is not None:
            self.segments.release()
            self.segments = self._segmented_caches()
        return shares

    def futures(self, worker: str) -> list:
        """Futures of ``worker``'s share this epoch, in partition-id order."""
        if self.closed:
            raise CodedError("this CodedShuffle is closed: its partitions were released")
        if worker not in self.assignment:
            raise CodedError(f"{worker!r} holds no share this epoch; the workers with "
                             f"shares are {sorted(self.assignment)}")
        return [self.held[worker][p] for p in self.assignment[worker]]

    def keys(self, worker: str) -> list:
        return [f.key for f in self.futures(worker)]

    def report(self) -> list[EpochReport]:
        return list(self.reports)

    def release(self) -> None:
        """Release every partition held on the cluster (the same as :meth:`close`)."""
        self.close()

    def close(self) -> None:
        """Release every partition held on the cluster."""
        for fs in self.held.values():
            for f in fs.values():
                f.release()
        if self.segments is not None:
            self.segments.release()
        self._next, self._frames = None, {}
        self.held = {w: {} for w in self.workers}
        self.closed = True
        self.client.sync(self.client.scheduler.coded_shuffle_close, token=self.token)

    # ---- internals ----------------------------------------------------------------------

    def part_key(self, w: str, p: int) -> str:
        """The key of partition ``p`` delivered to worker ``w`` this epoch."""
        return (f"coded-shuffle-{self.token}-w{self.workers.index(w)}-p{p}-e{self.epoch}"
                f"-a{self._attempt}")

    def _plan_ahead(self, shares: dict) -> None:
        """Deal the next epoch now and let a worker plan its delivery during this one, in
        a thread beside its tasks (the owners after this epoch are ``shares``): the worker
        with the least to receive. Dropped if a worker is lost: the next epoch then deals
        afresh among the survivors."""
        if self.segments is None:
            return
        nxt = self._deal(shares)
        old, new = self._index(shares), self._index(nxt)
        key = f"coded-shuffle-{self.token}-e{self.epoch + 1}-ahead"
        idle = min(range(len(self.workers)),
                   key=lambda i: (len(shares[self.workers[i]] - set(self.held[self.workers[i]])),
                                  i))
        self._next = (nxt, self.segments.start_plan(old, new, key, worker=idle))

    def _index(self, assignment: dict) -> dict[int, int]:
        """``{partition: worker index}`` of ``{worker: partitions}``."""
        return {p: i for i, w in enumerate(self.workers) for p in assignment[w]}

    def owners(self, shares: dict) -> tuple[dict, dict]:
        """``{partition: worker index}`` now and after ``shares`` is dealt."""
        return self._index(self.held), self._index(shares)

    def prefix(self) -> str:
        """The key prefix of this epoch's (and attempt's) tasks."""
        return f"coded-shuffle-{self.token}-e{self.epoch}-a{self._attempt}"

    def _segmented_caches(self) -> SegmentedCaches | None:
        """Segments for the current workers, if the strategy and storage allow them."""
        if self.strategy != "coded" or self._placement_choice == "partitions":
            return None
        placement = Placement.for_storage(len(self.workers), len(self.parts), self.storage,
                                          max_segments=int(config.get("shuffle.max-segments")))
        if placement is None:
            if self._placement_choice == "segments":
                raise ValueError(
                    f"placement='segments' needs storage beyond one share and at most "
                    f"coded.shuffle.max-segments segments per partition; storage="
                    f"{self.storage} for {len(self.parts)} partitions on "
                    f"{len(self.workers)} workers allows none")
            return None
        mean_bytes = sum(self.sizes) / len(self.sizes)
        if (self._placement_choice == "auto" and mean_bytes / placement.segment_count
                < parse_bytes(config.get("shuffle.min-segment-bytes"))):
            return None  # segments below the set size: their bookkeeping outweighs the bytes
        return SegmentedCaches(self.client, placement, self.workers, self.parts,
                               self.scatter_timeout)

    def _deal(self, old: dict) -> dict[str, set[int]]:
        """The next assignment, dealt from the owners ``old`` (``{worker: partitions}``)."""
        return deal(self.deal, self.rng, self.workers, len(self.parts),
                    {w: set(ps) for w, ps in old.items()})

    def _wait_or_lost(self, futures: list) -> list[str]:
        """Wait for ``futures``; return the workers lost meanwhile (then stop waiting)."""
        while True:
            try:
                wait(futures, timeout=0.5)
            except (TimeoutError, CancelledError):  # cancelled: a holder died, it may be
                pass
            if all(f.status == "finished" for f in futures):
                return []
            live = set(self._live())
            gone = [w for w in self.workers if w not in live]
            if gone:
                return gone
            for f in futures:
                if f.status in ("error", "cancelled"):
                    f.result()  # a real failure (not a lost worker): raise it

    def _redeal(self, shares: dict, gone: list[str], new: dict) -> dict:
        """Survivors keep their shares (and the partitions that reached them); the lost
        workers' partitions go round-robin to the survivors with the smallest shares."""
        survivors = [w for w in self.workers if w not in gone]
        if not survivors:
            raise TooFewWorkersError("every worker of the shuffle is gone")
        orphans = sorted(p for w in gone for p in shares[w])
        shares = {w: set(shares[w]) for w in survivors}
        for p in orphans:
            shares[min(survivors, key=lambda w: (len(shares[w]), w))].add(p)
        for w in survivors:
            self.held[w].update({p: f for p, f in new[w].items() if f.status == "finished"})
        for w in gone:
            self.held.pop(w, None)
            self.order.pop(w, None)
        self.workers = survivors
        return shares

    def _live(self) -> list[str]:
        """The shuffle's workers the scheduler still knows."""
        return list(self.client.sync(self.client.scheduler.coded_shuffle_live,
                                     token=self.token))

    def _update_members(self) -> tuple[list[str], list[str]]:
        """Drop the workers lost and take in those that joined since the last epoch (the
        scheduler's :class:`ShuffleCoordinator` saw them go and come)."""
        changes = self.client.sync(self.client.scheduler.coded_shuffle_changes,
                                   token=self.token)
        joined = [w for w in changes["joined"] if w not in self.workers]
        for w in joined:
            self.held[w], self.order[w] = {}, []
        self.workers = sorted(self.workers + joined)
        return self._drop_lost_workers(set(self._live())), joined

    def _drop_lost_workers(self, live: set) -> list[str]:
        lost = [w for w in self.workers if w not in live]
        if lost:
            warnings.warn(f"CodedShuffle: lost workers {lost}; their shares are re-sent by "
                          f"the master to the {len(self.workers) - len(lost)} survivors",
                          stacklevel=3)
            self.workers = [w for w in self.workers if w in live]
            if not self.workers:
                raise TooFewWorkersError("every worker of the shuffle is gone")
            for w in lost:
                self.held.pop(w, None)
                self.order.pop(w, None)
        # partitions whose holder lost them (e.g. a restarted worker) are no longer held
        for w in self.workers:
            for p, f in list(self.held[w].items()):
                if f.status in ("lost", "error", "cancelled"):
                    del self.held[w][p]
        return lost


def _drop_stray_replicas(owners: dict, dask_scheduler=None) -> int:
    """Free every replica of ``owners``' keys except the owner's (scheduler side)."""
    dropped = 0
    for key, owner in owners.items():
        ts = dask_scheduler.tasks.get(key)
        if ts is None or not ts.who_has or owner not in {ws.address for ws in ts.who_has}:
            continue
        for ws in list(ts.who_has):
            if ws.address != owner:
                dask_scheduler.request_remove_replicas(
                    ws.address, [key], stimulus_id=f"coded-shuffle-trim-{time.time()}")
                dropped += 1
    return dropped


def as_size(a: np.ndarray) -> int:
    return int(np.asarray(a).nbytes)


def _client(client: Client | None) -> Client:
    """``client``, else the current one; the master must be a ``distributed`` client."""
    client = client if client is not None else default_client()
    if client is None:
        raise CodedError("a coded shuffle needs a distributed client, its master: start "
                         "one (Client(...)) or pass client=")
    return client
