"""``coded_matmul``: rewrite plain dask ``A @ x`` / ``dot`` / ``tensordot`` into coded tasks.

Inside ``with coded_matmul(n, k):`` dask's array optimizer is replaced by
:class:`CodedOptimizer`, which turns every matmul/tensordot ``Blockwise`` layer whose left
operand is a 2-D, row-chunked, real numpy-backed array into coded tasks, then runs dask's
default optimizer (which would otherwise fuse the matmul layer away). The output keys stay
those of the original layer, so the rest of the graph is untouched.

* A plain dask A is encoded inside the first graph that multiplies it (``n`` encode tasks
  per column block of A, with keys that depend only on A's name and the code), and the
  scheduler plugin keeps those coded blocks resident: the next graph that multiplies the
  same array names the same blocks and only x travels (``dask_coded.release(A)`` drops
  them; ``coded.rewrite.max-resident`` bounds their memory). Products and decode follow,
  and :class:`~dask_coded._scheduler.FirstKPlugin` starts the decode after the first
  ``k`` products.
* A that was encoded with :func:`dask_coded.encode` (same dask array, or its ``.T``) reuses
  the resident coded blocks instead: only x travels.
* A numpy x (sliced or reshaped by dask) is embedded in each product task, up to
  ``coded.rewrite.inline-bytes``: products start without waiting for a task to make it.
* Where every block cut from a decoded product goes to one task (the compute's
  ``finalize``), that task takes the decode and cuts it itself
  (:func:`dask_coded.graph.fold_cuts`, after dask's optimizer): one scheduler round trip
  after the decode, as for ``CA @ x``.
* On the local scheduler each output is one task that races the ``n`` products in
  threads, on coded blocks encoded in the first graph and kept in this process
  (:data:`dask_coded.resident.LOCAL`) or on those of :func:`dask_coded.encode`.
* With ``scheme="polynomial"``, ``"matdot"`` or ``"auto"``, a product whose right operand
  is a matrix runs as a 2-D code instead, ``C`` decoded once and cut back into the
  layer's blocks (and, where dask's sum over the contracted blocks follows, into that
  sum's output blocks, which replace its tree): on distributed, A's encoded operands are
  encoded in the first graph and kept resident like the 1-D code's blocks, and each
  product encodes B's operand from B's chunks
  (:func:`dask_coded.graph.operand_products`); on the local scheduler both operands are
  encoded in each call (:func:`dask_coded.graph.coded_pair_tasks`).

Whether the graph runs on ``distributed`` is decided by pickling: dask ships the optimizer
to the scheduler (where it runs) only on ``distributed``, and the pickled copy builds the
distributed form.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import threading
import uuid
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, NamedTuple

import dask
import numpy as np
from dask.task_spec import List, Task, TaskRef
from dask.utils import parse_bytes
from dask.array.optimization import optimize as default_array_optimize
from dask.blockwise import Blockwise
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer
from dask.tokenize import tokenize

from . import config
from . import resident as residents
from . import cluster
from ._scheduler.observations import REWRITES
from ._scheduler.records import RewriteRecord
from ._scheduler.residency import resident_keys
from .errors import CodeParameterError, PlainProductWarning, TooFewWorkersError
from .flip import flip_left_products
from .tasks import BesideTask
from .graph import (
    coded_pair_tasks, encode_tasks, encoded_operand_tasks, fold_cuts, operand_keys,
    operand_products, product_group,
)
from .keys import (
    BLOCK_PREFIX, DECODE_PREFIX, NORMS_PREFIX, ROWS_PREFIX, SCALES_PREFIX, key_name,
)
from .kernels import encode_and_race, join_chunks, linear_product, take_rows, zero_rows
from .layers import (
    Match, codable, content_token, cut_layer, cut_sum, heavy_operand, inlined, operation_of,
    persisted_source, rows_of_sum, sum_after,
)
from .resident import Resident
from .schemes import SCHEMES, Scheme, build, lookup
from .schemes.polynomial import PolynomialScheme
from .theory import optimal_k, plan_matmul
from .workers import default_client, live_workers

SCHEMES_2D = ("polynomial", "matdot", "auto")


class CodedOptimizer:
    """An ``array_optimize`` function: coded rewrite, dask's default optimizer, then the
    cut of each decode folded into its consumer (:func:`~dask_coded.graph.fold_cuts`).

    :attr:`rewrites` lists ``(layer name, n, threshold, reused, token)`` for each layer it
    rewrote, wherever it ran (on ``distributed``, in the scheduler); ``reused``: the
    products ran on coded blocks already resident (of :func:`dask_coded.encode`, or of an
    earlier graph), so this graph encoded nothing.
    """

    codes_products = True  # what resident.rewrite_active() looks for

    def __init__(self, n: int, k: int | None, kind: str | None = None, local: bool = True,
                 resident: dict | None = None, uid: str | None = None, client=None,
                 blocks_per_worker: int = 1, inline_bytes: int | None = None,
                 scheme: str = "mds", splits: Any = None, points: str = "auto",
                 scheduler: str | None = None, verify: str | None = None,
                 errors: int | None = None, first_call: str | None = None):
        # refuse bad parameters now, at the `with`
        if scheme != "auto" and lookup(scheme).data not in ("rows", "pair"):
            raise CodeParameterError(
                f"coded_matmul codes products: scheme must be 'auto' or one of "
                f"{sorted(k for k, c in SCHEMES.items() if c.data in ('rows', 'pair'))}, "
                f"got {scheme!r}")
        if k is None and scheme in ("mds", "auto"):
            # left out: the theory's best k before anything is observed (what k="auto"
            # starts from), recorded with every product it codes
            k = optimal_k(int(n), float(config.get("auto-k.initial-mu")))
        if verify is not None and scheme not in ("mds", "polynomial"):
            raise CodeParameterError(f"verify={verify!r} checks the 'mds' and 'polynomial' "
                                     f"schemes' products; scheme={scheme!r} does not take it")
        if k is not None:
            build("mds", n, k=k, rows=1, blocks_per_worker=blocks_per_worker, kind=kind,
                  verify=verify, errors=errors)
        self.verify, self.errors = verify, errors
        if scheme != "auto" and lookup(scheme).data == "pair":
            build(scheme, n, splits=splits, shape_a=(1, 1), shape_b=(1, 1), points=points,
                  verify=verify, errors=errors)
        self.scheme, self.splits, self.points = scheme, splits, points
        self.n, self.k, self.kind, self.local = n, k, kind, local
        self.blocks_per_worker = blocks_per_worker
        # read where the `with` runs, so the client's dask.config decides on the scheduler
        self.inline_bytes = (parse_bytes(config.get("rewrite.inline-bytes"))
                             if inline_bytes is None else inline_bytes)
        self.first_call = config.get("rewrite.first-call") if first_call is None else first_call
        if self.first_call not in ("plain", "coded"):
            raise CodeParameterError(f"first_call (coded.rewrite.first-call) must be 'plain' or "
                                     f"'coded', got {self.first_call!r}")
        self.uid = uid or uuid.uuid4().hex
        # the scheduler the graphs go to: only its resident blocks may be left out of them
        self.scheduler = scheduler
        self._resident = resident
        self._client = client
        self._warned: set = set()

    def __reduce__(self):
        # pickled <=> shipped to a distributed scheduler: build the distributed form there
        return (CodedOptimizer,
                (self.n, self.k, self.kind, False, self.resident(local=False), self.uid, None,
                 self.blocks_per_worker, self.inline_bytes, self.scheme, self.splits,
                 self.points, self.scheduler, self.verify, self.errors, self.first_call))

    @property
    def rewrites(self) -> list[RewriteRecord]:
        """What the rewrite did with each product layer (coded, or left plain and why):
        here, and on the scheduler of this optimizer's client."""
        here = [RewriteRecord(*r) for r in REWRITES.of(self.uid)]
        c = self._client
        if c is None or c.asynchronous or c.status != "running":
            return here
        there = [RewriteRecord(*r)
                 for r in c.sync(c.scheduler.coded_rewrites, optimizer=self.uid)]
        return there + [r for r in here if r not in there]  # one log when in one process

    def warn_plain(self) -> None:
        """Warn, once per reason, about the product layers the rewrite left plain (on
        distributed the rewrite runs on the scheduler: this reads its records)."""
        for record in self.rewrites:
            if record.reason is not None:
                self._warn(record)

    def resident(self, local: bool) -> dict[str, Resident]:
        """Resident encodings to reuse, by dask array name."""
        return self._resident if self._resident is not None else residents.snapshot(local)

    def __call__(self, dsk, keys, **kwargs):
        if not isinstance(dsk, HighLevelGraph):
            return default_array_optimize(dsk, keys, **kwargs)
        coded, beside = self.rewrite_beside(dsk)
        optimized = default_array_optimize(coded, keys, **kwargs)
        if beside:
            optimized = _hang_beside(optimized, beside)
        return optimized if coded is dsk else fold_cuts(optimized, keys)

    # ---- the rewrite -------------------------------------------------------------------

    def rewrite(self, hlg: HighLevelGraph) -> HighLevelGraph:
        """Return ``hlg`` with coded layers in place of codable ones (``hlg`` itself when
        there are none)."""
        return self.rewrite_beside(hlg)[0]

    def rewrite_beside(self, hlg: HighLevelGraph) -> tuple[HighLevelGraph, dict]:
        """:meth:`rewrite`, and the encodings to make beside the layers left as dask built
        them (``coded.rewrite.first-call: plain``), which :func:`_hang_beside` adds to
        the graph once dask has optimized it."""
        resident = self.resident(self.local)
        beside: dict = {}
        original = hlg
        hlg, flipped = flip_left_products(hlg)
        layers, dependencies = dict(hlg.layers), dict(hlg.dependencies)
        matches = {name: codable(hlg, layer) for name, layer in hlg.layers.items()}
        coded = frozenset(name for name, (m, _) in matches.items() if m is not None)
        for name, layer in hlg.layers.items():
            match, reason = matches[name]
            if match is None:
                if reason is not None:
                    self._record(RewriteRecord(name, None, None, False, None, reason=reason))
                continue
            operation = operation_of(hlg, match, name in flipped)
            res = resident.get(match.a)
            if res is not None and res.shape != (sum(match.rows), res.shape[1]):
                res = None
            # "auto" keeps an encoded A's resident 1-D code; a named 2-D scheme is obeyed
            code2d = None if res is not None and self.scheme == "auto" else (
                self._two_sided(hlg, match))
            if code2d is not None:
                tasks, dec_key, reused, token = self._pair_tasks(name, layer, match, code2d)
                total = sum_after(hlg, name)
                if total is None:
                    tasks.update(cut_layer(hlg, name, layer, match, dec_key))
                else:  # C is whole: its blocks replace dask's sum tree
                    layers[total] = MaterializedLayer(cut_sum(hlg, total, match, dec_key))
                    dependencies[total] = {name}
                layers[name] = MaterializedLayer(tasks)
                self._record(RewriteRecord(name, self.n, code2d.threshold, reused, token,
                                           code2d.name, operation))
                continue
            if self.k is None and res is None:
                self._record_plain(name, operation,
                                   f"no k given for a 1-D code, and scheme={self.scheme!r} "
                                   f"codes only A @ B with B a matrix of known chunks whose "
                                   f"rows are A's columns")
                continue
            heavy = heavy_operand(hlg, match, self.k * self.blocks_per_worker,
                                   self.inline_bytes)
            if heavy is not None:
                self._record_plain(name, operation, heavy)
                continue
            if res is None and sum(match.rows) < self.k * self.blocks_per_worker:
                self._record_plain(name, operation,
                                   f"its left operand has {sum(match.rows)} rows, fewer than "
                                   f"the {self.k * self.blocks_per_worker} row blocks of the "
                                   f"code (lower k, or blocks_per_worker)")
                continue
            if res is not None:
                scheme = res.scheme
            else:
                # rows equilibrated (the row scales are resident beside the blocks on
                # distributed, kept with them in this process on the local scheduler)
                scheme = self._in_graph_scheme(sum(match.rows))
            token = (tokenize(match.a, scheme, match.encode_dtype,
                              content_token(hlg, match.a) if self.local else None,
                              layer.dims[match.a_ind[1]] if not self.local else None)
                     if res is None else None)
            tasks, reused, ready, dec, whole = self._coded_tasks(
                hlg, name, layer, match, scheme, res, token, coded)
            ran_plain = not self.local and (self.scheduler, name) in PLAIN_LAYERS
            source = persisted_source(hlg, match.a)
            tasks = _read_transposed(tasks, source, match.a)
            if ran_plain or (not ready and not self.local and self.first_call == "plain"
                             and source is not None):
                # A is not encoded yet: this graph runs the layer as dask built it (dask
                # fuses it as in plain dask), and A's coded blocks are made beside it, in
                # the background, for the next graph; a layer that ran plainly keeps that
                # form in any later graph naming the same keys (a line search)
                PLAIN_LAYERS.add((self.scheduler, name))
                if not ran_plain:
                    beside.update(_encodings(tasks, token))
                self._record(RewriteRecord(name, scheme.code.n, scheme.code.k, False, token,
                                           scheme.name, operation, beside=True))
                continue
            layers[name] = MaterializedLayer(tasks)
            total = sum_after(hlg, name) if whole else None
            if total is not None:  # the decode holds the whole sum: its rows replace the tree
                layers[total] = MaterializedLayer(rows_of_sum(hlg, total, layer, match, dec))
                dependencies[total] = {name}
            self._record(RewriteRecord(name, scheme.code.n, scheme.code.k, reused, token,
                                       scheme.name, operation))
        for product, name in flipped.items():
            if layers[product] is hlg.layers[product]:  # left plain: as it was written
                layers[name] = original.layers[name]
                dependencies[name] = original.dependencies[name]
        if all(layers[n] is layer for n, layer in original.layers.items()):
            return original, beside
        return HighLevelGraph(layers, dependencies), beside

    def _record(self, record: RewriteRecord) -> None:
        """Log what the rewrite did with a layer; on the local scheduler (this process), a
        layer left plain says why at once, once per reason."""
        REWRITES.add(self.uid, tuple(record))
        if record.reason is not None and self.local:
            self._warn(record)

    def _record_plain(self, name: str, operation: str, reason: str) -> None:
        """Log that matched layer ``name`` (computing ``operation``) stays plain dask, and
        why."""
        self._record(RewriteRecord(name, None, None, False, None, operation=operation,
                                   reason=reason))

    def _warn(self, record: RewriteRecord) -> None:
        if record.reason in self._warned:
            return
        self._warned.add(record.reason)
        warnings.warn(f"coded_matmul left {record.layer} as plain dask: {record.reason}",
                      PlainProductWarning, stacklevel=2)

    def _in_graph_scheme(self, rows: int) -> Scheme:
        """The MDS scheme for an A encoded in the graph. On distributed, with the code
        family left to ``"auto"`` and one block per worker, a systematic code where it is
        certified: its first ``k`` blocks are A's own row blocks, made where A's rows
        already are, so the first call's decode needs no block that mixes all of A (the
        parities are made meanwhile)."""
        params = dict(k=self.k, rows=rows, blocks_per_worker=self.blocks_per_worker,
                      verify=self.verify, errors=self.errors)
        if (not self.local and self.blocks_per_worker == 1
                and (self.kind or config.get("code-kind")) == "auto"):
            try:
                return build("mds", self.n, kind="gaussian", **params)
            except CodeParameterError:
                pass  # not accurate enough for (n, k): the best certified family
        return build("mds", self.n, kind=self.kind, **params)

    def _encoded(self, scheme: Scheme, token: str, row_chunks: list, column: int,
                 m: Match, offsets: list) -> tuple[list, Any, dict, bool]:
        """The keys of A's coded blocks and row scales for one column, the tasks that
        make them (none when they are all resident on the scheduler already: the graph
        then leaves A's chunks out), and whether a coded graph can start on them: the
        blocks in memory decode already (the scales and any ``threshold`` blocks: the
        others, still being made, are waited for as stragglers are), or every block and
        the scales are being made (none held back for a call still running, none lost).
        The keys depend only on A and the code, so the next graph finds them; each block
        is made from the row chunks it mixes only."""
        encoded = encode_tasks(scheme, token, row_chunks, column=column,
                               dtype=m.encode_dtype, row_starts=offsets)
        blocks = [k for k in encoded if key_name(k).startswith(BLOCK_PREFIX)]
        scales = next(k for k in encoded if key_name(k).startswith(SCALES_PREFIX))
        in_memory = resident_keys(token, self.scheduler)
        if {*blocks, scales} <= in_memory:
            return blocks, scales, {}, True
        decodable = scales in in_memory and scheme.decodable(
            j for j, block in enumerate(blocks) if block in in_memory)
        started = {*blocks, scales} <= resident_keys(token, self.scheduler, under_way=True)
        return blocks, scales, encoded, decodable or started

    def _two_sided(self, hlg: HighLevelGraph, m: Match) -> PolynomialScheme | None:
        """The 2-D code for layer ``m`` when one was asked for and its right operand is a
        matrix (more than one column); None for the 1-D MDS path (or ``"auto"`` choosing
        it by :func:`~dask_coded.theory.plan_matmul`)."""
        if self.scheme == "mds" or len(m.b_ind) != 2 or m.b_ind[0] != m.a_ind[1]:
            return None
        b_chunks = (hlg.layers[m.b].collection_annotations or {}).get("chunks")
        a_chunks = (hlg.layers[m.a].collection_annotations or {}).get("chunks")
        if b_chunks is None or a_chunks is None or sum(b_chunks[1]) < 2:
            return None
        shape_a = (sum(a_chunks[0]), sum(a_chunks[1]))
        shape_b = (sum(b_chunks[0]), sum(b_chunks[1]))
        scheme, splits = self.scheme, self.splits
        if scheme == "auto":
            plan = plan_matmul(shape_a, shape_b, self.n)
            if plan.scheme == "mds":
                return None
            scheme, splits = plan.scheme, plan.splits
        check = dict(verify=self.verify, errors=self.errors) if scheme == "polynomial" else {}
        return build(scheme, self.n, splits=splits, shape_a=shape_a, shape_b=shape_b,
                     points=self.points, **check)

    def _pair_tasks(self, name: str, layer: Blockwise, m: Match, code: PolynomialScheme
                    ) -> tuple[dict, tuple, bool, str | None]:
        """The tasks of a 2-D code for layer ``name``: ``n`` products and the decode of
        ``C = A @ B``; with the decode's key, whether A's encoded operands were already
        resident, and their token (None on the local scheduler).

        On distributed, A's encoded operands are encoded in the graph with keys that
        depend only on A and the code, and kept resident, as the 1-D code's blocks: the
        next graph that multiplies the same A leaves their encode tasks out; each product
        gathers B's chunks and encodes B's operand itself. Locally both are encoded in
        each call, in the task that races the products."""
        tok = tokenize(name, code, uuid.uuid4().hex)  # products and decode: every call
        dec_key = (f"{DECODE_PREFIX}{tok}", 0)
        a_nb, b_nb = layer.numblocks[m.a], layer.numblocks[m.b]
        a_keys = [[(m.a, i, c) for c in range(a_nb[1])] for i in range(a_nb[0])]
        b_keys = [[(m.b, c, j) for j in range(b_nb[1])] for c in range(b_nb[0])]
        if self.local:
            return (coded_pair_tasks(code, a_keys, b_keys, tok, dec_key, local=True),
                    dec_key, False, None)
        token = tokenize(m.a, code.with_b((code.shape_a[1], 1)))
        encoded = encoded_operand_tasks(code, token, a_keys)
        reused = set(encoded) <= resident_keys(token, self.scheduler)
        tasks = {} if reused else encoded
        blocks, scales = operand_keys(encoded)
        tasks.update(operand_products(code, tok, blocks, b_keys, dec_key, scales))
        return tasks, dec_key, reused, token

    def _coded_tasks(self, hlg: HighLevelGraph, name: str, layer: Blockwise, m: Match,
                     scheme: Scheme, res: Resident | None, token: str | None,
                     coded: frozenset = frozenset()) -> _CodedLayer:
        """The layer's output keys, computed from coded tasks: per output block ``g``, a
        product group (its coded blocks resident, or encoded in this graph), then the
        decoded rows cut back into the layer's row chunks (:class:`_CodedLayer` says what
        else). ``coded``: the layers this rewrite codes (never inlined into an
        operand)."""
        func, kwargs = layer.task.func, dict(layer.task.kwargs)
        out = layer.output_indices
        contracted = m.a_ind[1]
        grouping = 1 if res is None else res.blocks_per_task
        tok = tokenize(name, scheme, res is not None, grouping)
        dec = f"{DECODE_PREFIX}{tok}"
        offsets = list(itertools.accumulate(m.rows, initial=0))
        tasks: dict = {}
        reused = res is not None
        ready = True  # a coded graph can start on every column's blocks

        def block_key(arr, ind, coord, row=None):
            nb = layer.numblocks[arr]
            return (arr, *[
                0 if nb[ax] == 1 else (row if ix == out[0] else coord[ix])
                for ax, ix in enumerate(ind)
            ])

        def operand_of(key):
            return inlined(hlg, key, self.inline_bytes, coded) or TaskRef(key)

        # on distributed, A encoded in the graph holds all of A's columns, as a resident
        # encoding does: one product group per output block, not one per contracted block
        # (A.T @ r with A's rows in many chunks: few, larger products)
        spanning = res is None and not self.local and layer.dims[contracted] > 1
        for g in itertools.product(*(range(layer.dims[i]) for i in out[1:])):
            coord = dict(zip(out[1:], g))
            dec_key = (dec, *g)
            if (res is not None or spanning) and coord[contracted] != 0:
                # the resident blocks hold all of A's columns: the contraction is complete
                # in the first contracted block; the others contribute zeros
                first = (dec, *[0 if ix == contracted else coord[ix] for ix in out[1:]])
                for i in range(len(m.rows)):
                    key = (name, i, *g)
                    tasks[key] = Task(key, zero_rows, TaskRef(first), offsets[i], offsets[i + 1])
                continue
            if res is not None or spanning:
                operand = List(*[operand_of(block_key(m.b, m.b_ind, {**coord, contracted: c}))
                                 for c in range(layer.dims[contracted])])
                if not self.local and any(isinstance(o, TaskRef) for o in operand.args):
                    # computed chunks: joined once, so each product fetches one array
                    # (n transfers, not n per chunk)
                    joined = (f"coded-operand-{tok}", *g)
                    tasks[joined] = Task(joined, join_chunks, operand,
                                         m.b_ind.index(contracted))
                    operand = TaskRef(joined)
                product = functools.partial(linear_product, func, kwargs,
                                            b_axis=m.b_ind.index(contracted))
            if res is not None:
                blocks, scales = res.blocks, res.scales
            elif spanning:
                a_rows = [[block_key(m.a, m.a_ind, {**coord, contracted: c}, i)
                           for c in range(layer.dims[contracted])] for i in range(len(m.rows))]
                blocks, scales, encoded, decodable = self._encoded(scheme, token, a_rows, 0,
                                                                   m, offsets)
                ready = ready and decodable
                if encoded:
                    tasks.update(encoded)
                else:
                    reused = True
            else:
                operand = operand_of(block_key(m.b, m.b_ind, coord))
                product = functools.partial(linear_product, func, kwargs)
                a_keys = [block_key(m.a, m.a_ind, coord, i) for i in range(len(m.rows))]
                kept = residents.LOCAL.get((token, coord[contracted])) if self.local else None
                if kept is not None:
                    (blocks, scales), reused = kept, True
                elif self.local:
                    blocks, ready = None, False
                    tasks[dec_key] = Task(dec_key, encode_and_race, scheme, product,
                                          List(*[TaskRef(a) for a in a_keys]), operand,
                                          functools.partial(residents.LOCAL.remember,
                                                            (token, coord[contracted]), m.a),
                                          m.encode_dtype, m.dtype.str)
                else:
                    # keys depend only on A and the code: the next graph reuses them, and
                    # leaves their encode tasks out once they are all in memory
                    blocks, scales, encoded, decodable = self._encoded(
                        scheme, token, a_keys, coord[contracted], m, offsets)
                    ready = ready and decodable
                    if encoded:
                        tasks.update(encoded)
                    else:
                        reused = True
            if blocks is not None:
                block_dtype = np.dtype(m.encode_dtype if res is None or res.dtype is None
                                       else res.dtype)
                tasks.update(product_group(scheme, tok, blocks, operand, dec_key, index=g,
                                           local=self.local, product=product, scales=scales,
                                           dtype=m.dtype,
                                           block_eps=float(np.finfo(block_dtype).eps),
                                           blocks_per_task=grouping))
            for i in range(len(m.rows)):
                key = (name, i, *g)
                tasks[key] = Task(key, take_rows, TaskRef(dec_key), offsets[i], offsets[i + 1])
        whole = (res is not None or spanning) and layer.dims[contracted] > 1
        return _CodedLayer(tasks, reused, ready, dec, whole)


class _CodedLayer(NamedTuple):
    """A rewritten layer's tasks; whether they reuse coded blocks (of
    :func:`dask_coded.encode`, or of an earlier graph: resident on the scheduler, or kept in
    this process on the local scheduler); whether a coded graph can start on them (every
    block and the scales in memory or being made on the scheduler, or the blocks in
    memory decode already); the decodes' key name; whether each decode holds the whole
    contraction (the layer's other contracted blocks are zeros)."""

    tasks: dict
    reused: bool
    ready: bool
    decode: str
    whole: bool


class _PlainLayers:
    """``(scheduler, layer name)`` of the layers the rewrite ran plainly, the most recent
    ``limit`` kept (a lock: the rewrite runs in the scheduler's offload thread)."""

    def __init__(self, limit: int = 100_000):
        self._names: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.limit = limit

    def add(self, item: tuple) -> None:
        with self._lock:
            self._names[item] = None
            self._names.move_to_end(item)
            while len(self._names) > self.limit:
                self._names.popitem(last=False)

    def __contains__(self, item) -> bool:
        with self._lock:
            return item in self._names


PLAIN_LAYERS = _PlainLayers()


def _encodings(tasks: dict, token: str) -> dict:
    """The tasks among ``tasks`` that encode A (coded blocks, row scales and their steps,
    all named by ``token``)."""
    names = {f"{prefix}{token}"
             for prefix in (BLOCK_PREFIX, SCALES_PREFIX, ROWS_PREFIX, NORMS_PREFIX)}
    return {k: t for k, t in tasks.items() if key_name(k) in names}


def _hang_beside(dsk: dict, encodings: dict) -> dict:
    """The optimized graph ``dsk`` with ``encodings`` beside it: one of its tasks names
    the coded blocks and row scales as a :class:`~dask_coded.tasks.BesideTask`, so they
    reach the scheduler, whose plugin has them made without that task waiting for them.
    ``dsk`` itself when none of its tasks can carry them."""
    host = next((k for k in sorted(dsk, key=str) if type(dsk[k]) is Task), None)
    if host is None:
        return dsk
    made = [k for k in encodings if key_name(k).startswith((BLOCK_PREFIX, SCALES_PREFIX))]
    out = {**dsk, **encodings}
    out[host] = BesideTask(dsk[host], made)
    return out


def _read_transposed(tasks: dict, reads: tuple | None, left: str) -> dict:
    """``tasks`` reading the chunks of ``left``, the transpose of a persisted array
    (``reads == (source, "T")``, :func:`persisted_source`), from the persisted chunks,
    transposed inside them, as plain dask's fused tasks do: no separate transpose task,
    and every graph naming an encoding's keys gives them the same inputs."""
    if reads is None or reads[1] != "T":
        return tasks
    source = reads[0]

    def read(task):
        subs = {d: Task(None, np.transpose, TaskRef((source, d[2], d[1])))
                for d in getattr(task, "dependencies", ()) if key_name(d) == left}
        return task.substitute(subs) if subs else task

    return {k: read(t) for k, t in tasks.items()}


@contextlib.contextmanager
def coded_matmul(n: int, k: int | None = None, kind: str | None = None,
                 keep: bool = True, blocks_per_worker: int = 1, *, scheme: str = "mds",
                 splits: Any = None, points: str = "auto",
                 allow_shared_workers: bool = False, verify: str | None = None,
                 errors: int | None = None,
                 first_call: str | None = None) -> Iterator[CodedOptimizer]:
    """Run plain dask matrix products coded, inside a ``with`` block.

    Parameters
    ----------
    n, k : int
        The (n, k) code for arrays encoded in the graph; arrays encoded with
        :func:`dask_coded.encode` keep their own code and resident blocks. Left out, ``k``
        is the theory's best for ``n`` workers at ``coded.auto-k.initial-mu``
        (:func:`dask_coded.theory.optimal_k`; ``opt.rewrites`` show it), with ``"mds"``
        and ``"auto"``; with ``"polynomial"`` or ``"matdot"`` matrix-vector products then
        stay plain.
    kind : str, optional
        Code family (default ``coded.code-kind``).
    keep : bool
        Keep the coded blocks of arrays encoded inside the block resident after it (the
        default: a loop that enters the block every iteration encodes once); ``False``
        releases them on exit. :func:`dask_coded.release` releases one array's.
    blocks_per_worker : int
        Coded blocks per worker for arrays encoded in the graph (see
        :func:`dask_coded.encode`).
    scheme : {"mds", "polynomial", "matdot", "auto"}
        ``"mds"``: A encoded (the resident 1-D code above). The others apply to products
        whose right operand is a matrix (more than one column), with ``splits`` and
        ``points`` as for :func:`dask_coded.matmul`: on distributed A's encoded operands
        are made in the first graph and kept resident like the coded blocks above
        (``keep``, :func:`dask_coded.release`), B's in each call inside the products; on
        the local scheduler both in each call; ``"auto"`` chooses per product by
        :func:`~dask_coded.plan_matmul` (1-D MDS with ``k`` when it sends the fewest
        bytes).
    splits, points
        For the 2-D schemes (see :func:`dask_coded.matmul`).
    allow_shared_workers : bool
        With a synchronous client, fewer than ``n`` workers raise
        :class:`~dask_coded.errors.TooFewWorkersError` at the ``with``, as
        :func:`dask_coded.encode` does (a shared worker that straggles delays all its
        blocks); ``True`` spreads the blocks round-robin instead.
    verify, errors
        Check every decode of arrays encoded in the graph against spare products, as
        :func:`dask_coded.encode` does (``"mds"``, and ``"polynomial"`` for ``A @ B``);
        an array encoded with :func:`dask_coded.encode` keeps its own ``verify``.
    first_call : {"plain", "coded"}, optional
        On distributed, the first graph that multiplies a *persisted* array not yet
        encoded: ``"plain"`` runs that product as plain dask and makes the coded blocks
        beside it, in the background; the next graph runs coded once every block and the
        row scales are being made or in memory (or the scales and any ``k`` blocks are in
        memory). ``"coded"`` encodes in the first graph and waits for the encoding.
        Default ``coded.rewrite.first-call`` (``"plain"``).

    Yields
    ------
    CodedOptimizer
        The installed optimizer (its ``rewrites`` list what it rewrote, and whether it
        reused blocks encoded by :func:`dask_coded.encode`).

    Examples
    --------
    >>> with dask_coded.coded_matmul(n=12, k=9):       # doctest: +SKIP
    ...     (A @ x).sum().compute()
    >>> with dask_coded.coded_matmul(n=12, scheme="polynomial", splits=(3, 3)):  # doctest: +SKIP
    ...     (A @ B).compute()
    """
    client = default_client()
    sync = client is not None and not client.asynchronous
    optimizer = CodedOptimizer(n, k, kind, client=client if sync else None,
                               scheduler=getattr(getattr(client, "scheduler", None),
                                                 "address", None),
                               blocks_per_worker=blocks_per_worker, scheme=scheme,
                               splits=splits, points=points, verify=verify, errors=errors,
                               first_call=first_call)
    if sync:
        workers = live_workers(client)
        if not allow_shared_workers and len(workers) < n:
            raise TooFewWorkersError(
                f"coded_matmul(n={n}) spreads its coded blocks over n workers; the cluster "
                f"has {len(workers)}: lower n, add workers, or pass allow_shared_workers=True "
                f"(a shared worker that straggles delays all of its blocks)")
        cluster.install(client)
    try:
        with dask.config.set(array_optimize=optimizer):
            yield optimizer
    finally:
        if sync and client.status == "running":
            optimizer.warn_plain()
        if not keep:
            tokens = [r.token for r in optimizer.rewrites if r.token is not None]
            residents.LOCAL.release(tokens=tokens)
            if sync and client.status == "running":
                client.sync(client.scheduler.coded_release, client=client.id, tokens=tokens)
