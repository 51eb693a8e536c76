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
from dataclasses import dataclass
from typing import Any, NamedTuple

import dask
import numpy as np
from dask.task_spec import Alias, DataNode, GraphNode, List, Task, TaskRef
from dask.utils import parse_bytes
from dask.array.optimization import optimize as default_array_optimize
from dask.array.routines import _tensordot
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
from .flip import LINEAR_IN_A, flip_left_products
from .tasks import BesideTask
from .graph import (
    coded_pair_tasks, encode_tasks, encoded_operand_tasks, fold_cuts, operand_keys,
    operand_products, product_group,
)
from .keys import (
    BLOCK_PREFIX, DECODE_PREFIX, NORMS_PREFIX, ROWS_PREFIX, SCALES_PREFIX, key_name,
)
from .kernels import (
    encode_and_race, identity, join_chunks, linear_product, take_block, take_rows, zero_rows,
)
from .resident import Resident
from .schemes import SCHEMES, Scheme, build, lookup
from .schemes.polynomial import PolynomialScheme
from .theory import optimal_k, plan_matmul
from .workers import default_client, live_workers

SCHEMES_2D = ("polynomial", "matdot", "auto")


@dataclass(frozen=True)
class _Match:
    """A codable layer: left operand ``a`` (its row chunks ``rows``), right operand ``b``."""

    a: str
    a_ind: tuple
    b: str
    b_ind: tuple
    rows: tuple  # A's row chunks
    dtype: np.dtype  # the product's, as dask declares it: result_type(A, B)
    a_dtype: np.dtype

    @property
    def encode_dtype(self) -> str:
        """The dtype A's coded blocks are encoded in: the product's precision (float32 at
        least), so a float32 A times a float64 x keeps float64's accuracy; float64 for an
        integer or boolean A (as :func:`dask_coded.encode`)."""
        if self.a_dtype.kind != "f":
            return np.dtype(np.float64).str
        return np.promote_types(self.dtype, np.float32).str


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
        matches = {name: _codable(hlg, layer) for name, layer in hlg.layers.items()}
        coded = frozenset(name for name, (m, _) in matches.items() if m is not None)
        for name, layer in hlg.layers.items():
            match, reason = matches[name]
            if match is None:
                if reason is not None:
                    self._record(RewriteRecord(name, None, None, False, None, reason=reason))
                continue
            operation = _operation(hlg, match, name in flipped)
            res = resident.get(match.a)
            if res is not None and res.shape != (sum(match.rows), res.shape[1]):
                res = None
            # "auto" keeps an encoded A's resident 1-D code; a named 2-D scheme is obeyed
            code2d = None if res is not None and self.scheme == "auto" else (
                self._two_sided(hlg, match))
            if code2d is not None:
                tasks, dec_key, reused, token = self._pair_tasks(name, layer, match, code2d)
                total = _sum_after(hlg, name)
                if total is None:
                    tasks.update(_cut_layer(hlg, name, layer, match, dec_key))
                else:  # C is whole: its blocks replace dask's sum tree
                    layers[total] = MaterializedLayer(_cut_sum(hlg, total, match, dec_key))
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
            heavy = _heavy_operand(hlg, match, self.k * self.blocks_per_worker,
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
                              _content(hlg, match.a) if self.local else None,
                              layer.dims[match.a_ind[1]] if not self.local else None)
                     if res is None else None)
            tasks, reused, ready, dec, whole = self._coded_tasks(
                hlg, name, layer, match, scheme, res, token, coded)
            ran_plain = not self.local and (self.scheduler, name) in PLAIN_LAYERS
            source = _persisted_source(hlg, match.a)
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
            total = _sum_after(hlg, name) if whole else None
            if total is not None:  # the decode holds the whole sum: its rows replace the tree
                layers[total] = MaterializedLayer(_rows_of_sum(hlg, total, layer, match, dec))
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
                 m: _Match, offsets: list) -> tuple[list, Any, dict, bool]:
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

    def _two_sided(self, hlg: HighLevelGraph, m: _Match) -> PolynomialScheme | None:
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

    def _pair_tasks(self, name: str, layer: Blockwise, m: _Match, code: PolynomialScheme
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

    def _coded_tasks(self, hlg: HighLevelGraph, name: str, layer: Blockwise, m: _Match,
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
            return _inlined(hlg, key, self.inline_bytes, coded) or TaskRef(key)

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


def _content(hlg: HighLevelGraph, name: str) -> str | None:
    """A token of the data in dask array ``name``'s own layer when it holds its chunks
    (``da.from_array`` of a numpy array): two arrays given the same ``name=`` with other
    data then get other encodings in this process, as plain dask computes each afresh."""
    layer = hlg.layers.get(name)
    if not isinstance(layer, MaterializedLayer):
        return None
    return tokenize(*[layer[k] for k in sorted(layer, key=str)])


def _inlined(hlg: HighLevelGraph, key, budget: int, coded=frozenset()) -> GraphNode | None:
    """``key``'s task with every task it depends on nested in it, when they bottom out in
    data held in the graph of at most ``budget`` bytes (a numpy operand, sliced, reshaped
    or rechunked by dask) and none is a product the rewrite codes (layers ``coded``: the
    operand ``r`` of ``A.T @ r`` with ``r = A @ w - b`` waits for the coded ``A @ w``,
    it does not redo it plainly in every product); else None (the operand is computed,
    or persisted, or too large)."""
    used = 0

    def node(k, near):
        nonlocal used
        if key_name(k) in coded:
            return None
        layer = near if near is not None and k in near else hlg.layers.get(key_name(k))
        if layer is None or k not in layer:
            return None
        value = layer[k]
        if isinstance(value, np.ndarray):
            value = DataNode(k, value)
        if isinstance(value, DataNode):
            used += getattr(value.value, "nbytes", budget + 1)
            return value if used <= budget else None
        if isinstance(value, Alias):
            target = node(value.target, layer)
            return None if target is None else Task(k, identity, target)
        if not isinstance(value, Task):
            return None
        subs = {}
        for dep in value.dependencies:
            sub = node(dep, layer)
            if sub is None:
                return None
            subs[dep] = sub
        return value.substitute(subs)

    return node(key, None)


def _sum_after(hlg: HighLevelGraph, name: str) -> str | None:
    """The last layer of dask's sum over the contracted blocks that follows matmul layer
    ``name`` (``A @ B`` is a ``chunk_sum`` Blockwise, ``_chunk_sum-partial`` layers for a
    deep tree, then ``_chunk_sum-aggregate``, each read only by the next), or None when
    the graph has another shape."""
    readers: dict = {}
    for layer, deps in hlg.dependencies.items():
        for d in deps:
            readers.setdefault(d, []).append(layer)
    current, prefix = name, "chunk_sum-"
    while True:
        following = readers.get(current, [])
        if len(following) != 1 or not following[0].startswith(prefix):
            return None
        (current,), prefix = following, "_chunk_sum-"
        if current.startswith("_chunk_sum-aggregate-"):
            return current


def _edges(hlg: HighLevelGraph, m: _Match) -> tuple[list[int], list[int]]:
    """Where the row chunks of A and the column chunks of B start and end in ``C``."""
    cols = hlg.layers[m.b].collection_annotations["chunks"][1]
    return (list(itertools.accumulate(m.rows, initial=0)),
            list(itertools.accumulate(cols, initial=0)))


def _cut_layer(hlg: HighLevelGraph, name: str, layer: Blockwise, m: _Match,
               dec_key) -> dict:
    """The matmul layer's output blocks cut from the decoded ``C``: blocks along the
    contracted axis other than the first are zeros (``C`` already holds the whole
    contraction)."""
    out = layer.output_indices
    rows, cols = _edges(hlg, m)
    where = out.index(m.a_ind[1])
    tasks = {}
    for g in itertools.product(*(range(layer.dims[i]) for i in out)):
        coord = dict(zip(out, g))
        i, c, j = coord[m.a_ind[0]], coord[m.a_ind[1]], coord[m.b_ind[1]]
        key = (name, *g)
        tasks[key] = Task(key, take_block, TaskRef(dec_key), rows[i], rows[i + 1],
                          cols[j], cols[j + 1], where, c == 0)
    return tasks


def _rows_of_sum(hlg: HighLevelGraph, total: str, layer: Blockwise, m: _Match,
                 dec: str) -> dict:
    """Layer ``total`` (dask's sum over the contracted blocks of a 1-D coded layer) as the
    rows of the decodes themselves: each decode already holds the whole contraction, so
    key ``(total, i, *rest)`` is rows ``i`` of the decode of ``rest`` (the sum of the cut
    blocks, all zeros but the first), in the sum's declared dtype."""
    out, contracted = layer.output_indices, m.a_ind[1]
    rest = [ix for ix in out[1:] if ix != contracted]
    offsets = list(itertools.accumulate(m.rows, initial=0))
    dtype = (hlg.layers[total].collection_annotations or {}).get("dtype")
    dtype = None if dtype is None else np.dtype(dtype).str
    tasks = {}
    for g in itertools.product(*(range(layer.dims[i]) for i in rest)):
        coord = {**dict(zip(rest, g)), contracted: 0}
        dec_key = (dec, *[coord[ix] for ix in out[1:]])
        for i in range(len(m.rows)):
            key = (total, i, *g)
            tasks[key] = Task(key, take_rows, TaskRef(dec_key), offsets[i], offsets[i + 1],
                              dtype, out.index(contracted))
    return tasks


def _cut_sum(hlg: HighLevelGraph, total: str, m: _Match, dec_key) -> dict:
    """Layer ``total`` (the sum over the contracted blocks) as the blocks of the decoded
    ``C`` itself: key ``(total, i, j)`` is ``C[rows i, columns j]``, what the sum of the
    cut blocks along the contracted axis adds up to (all but the first are zeros)."""
    rows, cols = _edges(hlg, m)
    dtype = (hlg.layers[total].collection_annotations or {}).get("dtype")
    dtype = None if dtype is None else np.dtype(dtype).str  # the sum's, as dask declares it
    return {(total, i, j): Task((total, i, j), take_block, TaskRef(dec_key), rows[i],
                                rows[i + 1], cols[j], cols[j + 1], None, True, dtype)
            for i in range(len(rows) - 1) for j in range(len(cols) - 1)}


def _codable(hlg: HighLevelGraph, layer) -> tuple[_Match | None, str | None]:
    """``(match, None)`` for a matmul/tensordot layer whose left operand is a 2-D, real,
    numpy-backed array whose row axis becomes the output's first axis (any chunking: a
    transpose ``A.T`` with one row chunk too), with a real operand and a floating result;
    ``(None, reason)`` for a product layer that stays plain dask (integer products stay
    exact, complex ones are not coded), saying why; ``(None, None)`` for any other
    layer."""
    if not isinstance(layer, Blockwise) or getattr(layer.task, "func", None) not in LINEAR_IN_A:
        return None, None
    if len(layer.indices) != 2 or layer.new_axes:
        return None, "a product of more than two operands"
    (a, a_ind), (b, b_ind) = layer.indices
    if a_ind is None or b_ind is None or len(a_ind) != 2 or a_ind[0] != layer.output_indices[0]:
        return None, "its left operand is not a matrix whose rows are the result's rows"
    if a_ind[0] in b_ind or a_ind[1] not in b_ind or a_ind[1] not in layer.output_indices:
        return None, "it contracts other axes than the left operand's columns"
    if layer.task.func is _tensordot and (
        layer.task.kwargs.get("is_sparse") or tuple(layer.task.kwargs["axes"][0]) != (1,)
    ):
        return None, "a tensordot over other axes than the left operand's columns, or sparse"
    if a not in hlg.layers:
        return None, f"its left operand {a!r} is not in the graph"
    ann = hlg.layers[a].collection_annotations or {}
    chunks, dtype = ann.get("chunks"), ann.get("dtype")
    if chunks is None or dtype is None:
        return None, f"the graph does not say the chunks and dtype of {a!r}"
    if "numpy" not in str(ann.get("chunk_type", "numpy")):
        return None, f"the left operand's chunks are {ann.get('chunk_type')}, not numpy arrays"
    b_ann = (hlg.layers[b].collection_annotations or {}) if b in hlg.layers else {}
    if b_ann.get("dtype") is None:
        return None, f"the graph does not say the dtype of {b!r}"
    dtype, b_dtype = np.dtype(dtype), np.dtype(b_ann["dtype"])
    if dtype.kind not in "biuf" or b_dtype.kind not in "biuf":
        return None, f"a {dtype} @ {b_dtype} product: only real products are coded"
    if np.result_type(dtype, b_dtype).kind != "f":
        return None, (f"an integer product ({dtype} @ {b_dtype}) stays exact in plain dask; "
                      f"cast an operand to float to code it")
    return _Match(a, tuple(a_ind), b, tuple(b_ind), tuple(chunks[0]),
                  np.result_type(dtype, b_dtype), dtype), None


def _nbytes(hlg: HighLevelGraph, name: str) -> int:
    ann = hlg.layers[name].collection_annotations or {}
    return int(np.prod([sum(c) for c in ann["chunks"]])) * np.dtype(ann["dtype"]).itemsize


def _heavy_operand(hlg: HighLevelGraph, m: _Match, blocks: int, budget: int) -> str | None:
    """Why coding layer ``m`` would move more data than it saves, or None: every coded
    product needs the whole right operand (the contraction spans all of A's columns), so
    a right operand larger than one coded block and than ``budget`` bytes (``X.T @ X``,
    the Gram matrix) would travel to every worker, where plain dask multiplies each chunk
    beside its data."""
    b, a = _nbytes(hlg, m.b), _nbytes(hlg, m.a)
    if b <= max(budget, a // blocks):
        return None
    return (f"its right operand ({b / 2**20:.1f} MiB) would travel whole to every worker of "
            f"the code, where plain dask multiplies each chunk beside its data (X.T @ X: "
            f"compute the Gram matrix plainly, or dc.encode X and multiply by vectors)")



def _persisted_source(hlg: HighLevelGraph, name: str):
    """How the encodings of layer ``name`` read a persisted array, so that no task of the
    graph gets another reader (which would change how dask's optimizer fuses it, and so
    the graph's keys): ``(name, None)`` when ``name`` is persisted (its chunks are
    futures), ``(source, "T")`` when it is the transpose of a persisted ``source`` (read
    its chunks and transpose them), else ``None``."""
    def persisted(n):
        layer = hlg.layers.get(n)
        return (isinstance(layer, MaterializedLayer) and len(layer) > 0
                and all(isinstance(v, TaskRef) for v in layer.values()))

    if persisted(name):
        return name, None
    layer = hlg.layers.get(name)
    if (isinstance(layer, Blockwise) and len(layer.indices) == 1
            and getattr(layer.task, "func", None) is np.transpose):
        (source, ind), = layer.indices
        if (ind is not None and len(ind) == 2 and tuple(layer.output_indices) == ind[::-1]
                and persisted(source)):
            return source, "T"
    return None


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
    (``reads == (source, "T")``, :func:`_persisted_source`), from the persisted chunks,
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


def _operation(hlg: HighLevelGraph, m: _Match, flipped: bool = False) -> str:
    """What a matched layer computes, for its record: ``A`` or ``A.T`` (a transpose on
    the left) times ``x`` (a vector, or one column) or ``B`` (a matrix); ``flipped``
    (:func:`flip_left_products`): ``x @ A`` or ``B @ A``."""
    left = "A.T" if m.a.startswith("transpose-") else "A"
    chunks = (hlg.layers[m.b].collection_annotations or {}).get("chunks") or ()
    vector = len(m.b_ind) == 1 or len(chunks) < 2 or sum(chunks[1]) <= 1
    if flipped:
        return f"{'x' if vector else 'B'} @ A"
    return f"{left} @ {'x' if vector else 'B'}"


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
