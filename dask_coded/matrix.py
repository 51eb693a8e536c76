"""Coded matrices: encode A once, then ``CA @ x`` waits for the first ``threshold`` products.

``encode(A, n, k)`` builds a scheme (:mod:`dask_coded.schemes`), encodes A's row blocks
into its coded blocks and keeps each resident on its worker (pinned: a block never
moves). ``CA @ x`` is a dask Array built by :func:`dask_coded.graph.product_group`: the
products run where their blocks live, and the scheduler plugin
(:class:`~dask_coded._scheduler.FirstKPlugin`) starts the decode once ``threshold``
products are done and releases the stragglers. Only x and the results travel.

Without a distributed client the coded blocks are numpy arrays in this process and each
product group races its products in threads.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, replace
from html import escape
from typing import Any

import dask.array as da
import numpy as np
from dask.highlevelgraph import HighLevelGraph
from distributed import futures_of
from distributed import progress as progress_bar

from . import cluster, config, resident
from .arrays import as_array, as_matrix
from .codes import audit, check_real_dtype
from .errors import BlockShapeError, CodedError, CodeParameterError
from .handles import Handle
from .graph import EncodeTask, product_group, tasks_name
from .keys import BLOCK_PREFIX, DECODE_PREFIX, SCALES_PREFIX
from .kernels import check_finite_operand, encode_block, identity, row_scales
from .policy import AutoK
from .retuner import Retuner
from .schemes import Scheme, build
from .schemes.mds import check_divisor, exact_blocks
from .suspects import LOCAL as LOCAL_SUSPECTS
from .workers import default_client, pick_workers

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Encoding:
    """One encoding of A, swapped whole: the scheme, its coded blocks (Futures, or numpy
    arrays on the local scheduler) and row scales, the workers they were placed on, the
    token naming its products, the seconds its encode took, and the coded blocks each
    product task multiplies (``blocks_per_task``, a divisor of the scheme's blocks per
    worker: regrouping the tasks needs no re-encode)."""

    scheme: Scheme
    token: str
    blocks: tuple = ()
    scales: Any = None
    placement: tuple | None = None
    seconds: float | None = None
    blocks_per_task: int = 1

    @property
    def tasks_per_worker(self) -> int:
        """Product tasks per worker in a call: ``blocks_per_worker / blocks_per_task``."""
        return self.scheme.blocks_per_worker // self.blocks_per_task

    @property
    def products_name(self) -> str:
        """What names this encoding's product tasks (each grouping its own)."""
        return tasks_name(self.scheme, self.token, self.blocks_per_task)

    def __repr__(self) -> str:
        code = self.scheme.code
        took = f", encoded in {self.seconds:.2f} s" if self.seconds is not None else ""
        tasks = (f", {self.tasks_per_worker} product task(s) per worker"
                 if self.blocks_per_task > 1 else "")
        return (f"Encoding({code.kind} ({code.n}, {code.k}), token={self.token}, "
                f"{len(self.blocks)} blocks{tasks}{took})")


class CodedMatrix(Handle):
    """A matrix A encoded by a coding scheme, its coded blocks resident on workers.

    Build it with :func:`encode`. ``CA @ x`` (x numpy or dask, 1-D or 2-D) is a dask
    Array equal to ``A @ x`` that needs only the first ``threshold`` of the products.
    ``CA.T`` is the coded ``A.T`` (encoded on first use, then kept).

    Attributes
    ----------
    scheme : Scheme
    code : MDSCode
        The scheme's code.
    shape, dtype : tuple, numpy.dtype
        Of A (the dtype of the coded blocks: floating, integers become float64).
    blocks_per_worker, tasks_per_worker : int
        Coded blocks each worker holds, and the product tasks each worker runs per call
        (each multiplies ``blocks_per_worker / tasks_per_worker`` of its blocks;
        ``blocks_per_worker="auto"`` encodes several and starts at one task per worker).
    workers : list of str or None
        ``workers[j]`` holds coded block ``j`` (``None`` on the local scheduler).
    encoding : Encoding
        What products read, swapped whole: scheme, blocks, row scales, placement, token.
    retuner : Retuner or None
        ``k="auto"``: the controller that re-chooses the code (None for a fixed code).
    """

    ndim = 2

    def __init__(self, scheme: Scheme, shape: tuple, dtype: np.dtype, source: Any,
                 transposed: bool, client: Any = None):
        self.encoding = Encoding(scheme, uuid.uuid4().hex[:16])
        self.shape: tuple[int, int] = tuple(shape)
        self.dtype: np.dtype = dtype
        #: A's own dtype: products are declared in ``result_type(A, x)``, as numpy's
        self.a_dtype: np.dtype = dtype
        self.client = client
        self.calls = 0
        #: the ``k="auto"`` controller (None for a fixed code)
        self.retuner: Retuner | None = None
        self._source = source
        self._transposed = transposed
        self._T: CodedMatrix | None = None
        self._last_products: str | None = None
        #: the coded blocks of each product task of the last call
        self._last_tasks: tuple = ()
        self._calls_lock = threading.Lock()
        if isinstance(source, da.Array):  # plain `A @ x` under coded_matmul reuses our blocks
            resident.register((source.T if transposed else source).name, self)

    def _set(self, **changes) -> None:
        self.encoding = replace(self.encoding, **changes)

    scheme = property(lambda self: self.encoding.scheme)
    token = property(lambda self: self.encoding.token,
                     lambda self, v: self._set(token=str(v)))
    #: Futures (distributed) or numpy arrays (local)
    blocks = property(lambda self: list(self.encoding.blocks),
                      lambda self, v: self._set(blocks=tuple(v)))
    #: the scheme's row scales: a Future, or an array (local)
    scales = property(lambda self: self.encoding.scales,
                      lambda self, v: self._set(scales=v))
    code = property(lambda self: self.scheme.code)
    blocks_per_worker = property(lambda self: self.scheme.blocks_per_worker)
    #: workers, and row blocks per coded block of each worker (the code is
    #: ``(n * blocks_per_worker, k * blocks_per_worker)``)
    n = property(lambda self: self.scheme.code.n // self.scheme.blocks_per_worker)
    k = property(lambda self: self.scheme.code.k // self.scheme.blocks_per_worker)
    #: product tasks per worker in a call (each multiplies ``blocks_per_worker /
    #: tasks_per_worker`` of its coded blocks)
    tasks_per_worker = property(lambda self: self.encoding.tasks_per_worker)

    @property
    def local(self) -> bool:
        """True when the coded blocks live in this process (no distributed client)."""
        return self.client is None

    @property
    def auto(self) -> bool:
        """Whether ``k`` follows the observed straggling (``k="auto"``)."""
        return self.retuner is not None

    @property
    def policy(self) -> AutoK | None:
        """``k="auto"``: the policy choosing the code (None for a fixed code)."""
        return self.retuner.policy if self.retuner is not None else None

    @policy.setter
    def policy(self, policy: AutoK | None) -> None:
        self.retuner = None if policy is None else Retuner(self, policy)

    @property
    def history(self) -> list[dict]:
        """``k="auto"``: what each re-choice of ``k`` measured and chose."""
        return self.retuner.history if self.retuner is not None else []

    @property
    def T(self) -> CodedMatrix:
        """The coded ``A.T`` with the same code, encoded on first use and kept."""
        if self._T is None:
            if not self.local and self.client.asynchronous:
                raise CodedError(
                    "CA.T encodes A.T on first use, which an asynchronous client cannot do "
                    "inside a property; use `await dask_coded.encode(A, n, k, transpose=True)`"
                )
            T = self._encode_again(self.k, transpose=not self._transposed)
            if self.retuner is not None:  # A.T adapts to its own products' straggling
                T.policy = AutoK(self.n, choose_r=self.policy.choose_r)
            T._T = self
            self._T = T
        return self._T

    @property
    def workers(self) -> list[str] | None:
        """The worker each coded block is pinned to now (``None`` on the local
        scheduler): asked of the scheduler, so a block re-pinned after a worker was lost
        shows its new worker."""
        placement = self.encoding.placement
        placement = None if placement is None else list(placement)
        if (placement is None or not self.blocks or self.client is None
                or self.client.asynchronous or self.client.status != "running"):
            return placement
        pinned = cluster.pinned_workers(self.client, [f.key for f in self.blocks])
        return [pinned.get(f.key) or w for f, w in zip(self.blocks, placement)]

    @workers.setter
    def workers(self, placement: list[str] | None) -> None:
        self._set(placement=None if placement is None else tuple(placement))

    def _encode_again(self, k: int, transpose: bool, r: int | None = None,
                      background: bool = False, tasks_per_worker: int | None = None
                      ) -> CodedMatrix:
        """Encode the same source with ``k`` (and ``r`` blocks per worker, default the
        same) on the same workers, with this code family when ``r`` is unchanged, run as
        ``tasks_per_worker`` product tasks per worker (default: as this one runs, when it
        divides ``r``; else one per block); ``background``: its tasks below the products
        in priority (``coded.auto-k.priority``)."""
        r = self.blocks_per_worker if r is None else r
        t = self.tasks_per_worker if tasks_per_worker is None else tasks_per_worker
        workers = self.workers
        shared = workers is not None and len(set(workers)) < self.n
        kind = self.code.kind if r == self.blocks_per_worker else None
        priority = int(config.get("auto-k.priority")) if background else 0
        check = getattr(self.scheme, "verify", None)
        fresh = _encode(self._source, self.n, k, kind=kind, client=self.client,
                        transpose=transpose, blocks_per_worker=r,
                        workers=workers and sorted(set(workers)),
                        allow_shared_workers=shared, priority=priority,
                        verify=None if check is None else check.mode,
                        errors=check.errors if check is not None and check.errors else None)
        fresh._set(blocks_per_task=r // t if r % t == 0 else 1)
        return fresh

    def __repr__(self) -> str:
        where = "local" if self.local else f"{len(set(self.workers or ()))} workers"
        if not self.local and not self.blocks:
            where = "released"
        per = (f", blocks_per_worker={self.blocks_per_worker}"
               if self.blocks_per_worker > 1 else "")
        if self.encoding.blocks_per_task > 1:
            per += f", tasks_per_worker={self.tasks_per_worker}"
        auto = f", {self.retuner.summary()}" if self.retuner is not None else ""
        check = getattr(self.scheme, "verify", None)
        check = ("" if check is None else f", verify={check.mode!r}" + (
            f", errors={check.errors}" if check.mode == "correct" else ""))
        parts = getattr(self.code, "parts", None)
        groups = f", groups={len(parts)}" if parts is not None else ""
        return (
            f"CodedMatrix(shape={self.shape}, dtype={self.dtype}, n={self.n}, k={self.k}"
            f"{per}{check}, kind={self.code.kind!r}{groups}, {where}{auto})"
        )

    def _repr_html_(self) -> str:
        """Jupyter: the code, its audited worst case, the recent calls as a small plot, and
        per block its worker (by name) and what its products took."""
        if not self.local and not self.blocks:
            return f"<div><b>CodedMatrix</b> {escape(repr(self))}: its coded blocks were released</div>"
        a = audit(self.code)
        seen = {} if self.local else self.straggling()
        names = {} if self.local else _worker_names(self.client)
        rows = "".join(
            f"<tr><td>{j}</td><td title='{escape(str(w))}'>{escape(str(names.get(w, w)))}"
            f"</td><td>{_describe(seen.get(w))}</td></tr>"
            for j, w in enumerate(self.workers or ["(this process)"] * self.scheme.n_blocks)
        )
        check = getattr(self.scheme, "verify", None)
        extra = "" if check is None else f"; verify <code>{escape(check.mode)}</code>"
        if self.retuner is not None:
            extra += f"; {escape(self.retuner.summary())}"
        plot = "" if self.local else _sparkline(self.observed(last=30).get("calls_span", []))
        return (
            f"<div><b>CodedMatrix</b> {self.shape[0]}&times;{self.shape[1]} {self.dtype}, "
            f"(n, k) = ({self.n}, {self.k}), code <code>{escape(self.code.kind)}</code>"
            f"{' (systematic)' if self.code.systematic else ''}; worst-case decode error "
            f"{a.worst_error:.1e} (cond {a.worst_cond:.3g}, "
            f"{'all' if a.exhaustive else 'sampled'} {a.sets_checked} survivor sets){extra}"
            f"{plot}"
            f"<table><tr><th>block</th><th>worker</th><th>product ms: median (max), "
            f"finished / released</th></tr>{rows}</table></div>"
        )

    # ---- products ----------------------------------------------------------------------

    def __matmul__(self, x: Any) -> da.Array:
        return self.dot(x)

    def __rmatmul__(self, y: Any) -> da.Array:
        """``y @ A`` as ``(A.T @ y.T).T`` (the coded ``A.T`` is encoded on first use)."""
        y = as_array(y, "y")
        if y.ndim not in (1, 2):
            raise BlockShapeError(f"y must be 1-D or 2-D, got {y.ndim}-D with shape {y.shape}")
        return (self.T @ y.T).T

    # numpy: np.matmul / np.dot / np.asarray work; elementwise ufuncs say what to do instead
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if ufunc is np.matmul and method == "__call__" and len(inputs) == 2 and not kwargs:
            a, b = inputs
            return self.dot(b) if a is self else self.__rmatmul__(a)
        raise TypeError(
            f"a CodedMatrix supports products (CA @ x, y @ CA), not np.{ufunc.__name__}; "
            f"apply it to the original matrix")

    def __array_function__(self, func, types, args, kwargs):
        if func is np.dot and len(args) == 2 and not kwargs:
            a, b = args
            return self.dot(b) if a is self else self.__rmatmul__(a)
        raise TypeError(
            f"a CodedMatrix supports products (CA @ x, y @ CA, np.dot, np.matmul), not "
            f"np.{func.__name__}; apply it to the original matrix")

    def to_dask_array(self) -> da.Array:
        """A as a dask Array, decoded from the coded blocks (``CA @ I``, in row chunks):
        what dask's own functions receive (``da.matmul(CA, x)``, ``da.asarray(CA)``).

        Inside :func:`dask_coded.coded_matmul` a product of it runs coded on this
        matrix's resident blocks (only x travels); outside, dask multiplies the decoded A
        plainly, which a warning says (``CA @ x`` is the coded product).
        """
        self._check_live()
        if not resident.rewrite_active():
            warnings.warn(
                "dask multiplies A decoded from this CodedMatrix's blocks, uncoded; use "
                "CA @ x (or run inside dask_coded.coded_matmul) for the coded product",
                stacklevel=3)
        rows = -(-self.shape[0] // max(2, self.scheme.threshold))
        A = self.dot(np.eye(self.shape[1], dtype=self.dtype)).rechunk({0: rows, 1: -1})
        resident.register(A.name, self)
        return A

    def __dask_tokenize__(self):
        raise TypeError(
            "a CodedMatrix cannot be put into a dask graph as data (da.dot and "
            "da.tensordot do that to their operands): use CA @ x, CA.dot(x), np.dot(CA, x) "
            "or da.matmul(CA, x)")

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """A itself, decoded from the coded blocks (``CA @ I``): all of A travels."""
        out = np.asarray(self.dot(np.eye(self.shape[1], dtype=self.dtype)).compute())
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, index) -> None:
        raise TypeError(
            "a CodedMatrix cannot be sliced (its blocks mix all of A's rows): slice the "
            "product instead, (CA @ x)[rows], or encode the rows you need, "
            "dask_coded.encode(A[rows], n, k)")

    def dot(self, x: Any) -> da.Array:
        """``A @ x`` as a dask Array computed from the first ``threshold`` products.

        ``x``: numpy or dask, 1-D of length ``A.shape[1]`` or 2-D with that many rows.
        """
        self._check_live()
        x = self._check_operand(x)
        with self._calls_lock:
            self.calls += 1
            calls = self.calls
        if self.retuner is not None:
            self.retuner.on_call(calls)
        encoding = self.encoding  # one encoding for the whole product, even if swapped
        out_dtype = np.result_type(self.a_dtype, x.dtype)
        if out_dtype.kind != "f":  # integer products are decoded in floating point
            out_dtype = np.dtype(np.float64)
        token = f"{encoding.token}-{uuid.uuid4().hex[:12]}"
        name = f"{DECODE_PREFIX}{token}"
        self._last_products = tasks_name(encoding.scheme, token, encoding.blocks_per_task)
        self._last_tasks = encoding.scheme.product_tasks(encoding.blocks_per_task)
        if isinstance(x, np.ndarray):  # embedded in the products: only x travels
            operands, dependencies = [x], []
            col_chunks = (x.shape[1],) if x.ndim == 2 else ()
        else:
            x = x.rechunk({0: -1})
            dependencies = [x]
            col_chunks = x.chunks[1] if x.ndim == 2 else ()
            operands = [(x.name, 0, c) for c in range(len(col_chunks))] or [(x.name, 0)]
        if x.ndim == 1:
            out_keys, chunks = [(name, 0)], ((self.shape[0],),)
        else:
            out_keys = [(name, 0, c) for c in range(len(col_chunks))]
            chunks = ((self.shape[0],), col_chunks)
        tasks: dict = {}
        for c, (operand, out_key) in enumerate(zip(operands, out_keys)):
            tasks.update(product_group(encoding.scheme, token, list(encoding.blocks),
                                       operand, out_key, index=(c,), local=self.local,
                                       scales=encoding.scales, dtype=out_dtype,
                                       block_eps=float(np.finfo(self.dtype).eps),
                                       blocks_per_task=encoding.blocks_per_task))
        graph = HighLevelGraph.from_collections(name, tasks, dependencies=dependencies)
        return da.Array(graph, name, chunks, dtype=out_dtype)

    def _check_live(self) -> None:
        if self.local:
            return
        if self.client.status in ("closing", "closed"):
            raise CodedError(
                "this CodedMatrix's client is closed and its coded blocks are gone; "
                "encode A again with a live client"
            )
        if not self.blocks:
            raise CodedError("this CodedMatrix was released (CA.release()): its coded blocks "
                             "are gone; encode A again")

    def _check_operand(self, x: Any):
        x = as_array(x, "x")
        if x.ndim not in (1, 2):
            raise BlockShapeError(f"x must be 1-D or 2-D, got {x.ndim}-D with shape {x.shape}")
        check_real_dtype(np.dtype(x.dtype), "x")
        if x.shape[0] != self.shape[1]:
            raise BlockShapeError(
                f"shapes do not align: A is {self.shape} and x is {x.shape}; x needs "
                f"{self.shape[1]} rows"
            )
        if isinstance(x, np.ndarray):
            check_finite_operand(x)  # now, where the user wrote CA @ x
        return x

    # ---- what the scheduler saw --------------------------------------------------------

    def observed(self, last: int | None = None) -> dict:
        """Durations (seconds) of this matrix's products the scheduler saw finish (of the
        ``last`` calls, when given), and the censor times of released stragglers (they
        ran at least that long)."""
        if self.local:
            raise CodedError("observed delays come from the distributed scheduler")
        prefix = f"{self.encoding.products_name}-"
        return self.client.sync(self.client.scheduler.coded_first_k_observed, prefix=prefix,
                                last=last)

    def suspects(self) -> list[dict]:
        """The workers whose products a checking decode (``verify=``) found wrong, most
        often first: ``{"worker", "name", "located", "disagreed", "first", "last",
        "quarantined"}`` (``located``: decodes that named it; ``disagreed``: decodes that
        found a disagreement including it without locating it; times in seconds since
        the epoch). The scheduler's record (every matrix on it), or on the local scheduler
        this process's, where a worker is a product index."""
        if self.local:
            return LOCAL_SUSPECTS.report()
        return self.client.sync(self.client.scheduler.coded_suspects)

    def straggling(self) -> dict:
        """Per worker, what its products of this matrix took, as the scheduler plugin saw
        them: ``{address: {"median", "max", "finished", "released"}}`` (seconds of the
        finished products; released: how often it was a straggler the decode skipped)."""
        seen = self.observed()
        out = {}
        for w in set(self.workers or ()):
            times = seen["per_worker"].get(w, [])
            out[w] = {"median": float(np.median(times)) if times else float("nan"),
                      "max": max(times) if times else float("nan"),
                      "finished": len(times), "released": seen["released"].get(w, 0)}
        return out

    def last_used(self) -> list[int]:
        """Indices of the coded blocks the last ``CA @ x`` decoded from: the first
        ``threshold`` to finish, or all of them when none was released."""
        if self.local or self._last_products is None:
            raise CodedError("last_used() reports the distributed scheduler's first-k choice")
        return self.client.sync(self._last_used)  # awaitable with an asynchronous client

    async def _last_used(self) -> list[int]:
        tasks = self._last_tasks
        used = await cluster.first_k_used(self.client, self._last_products, len(tasks))
        return sorted(j for t in used for j in tasks[t])

    def regroup(self, tasks_per_worker: int) -> None:
        """Run the same coded blocks as ``tasks_per_worker`` product tasks per worker from
        the next ``CA @ x`` on (a divisor of ``blocks_per_worker``); no re-encode. One task
        per worker straggles, and costs per call, as one block per worker does; one task
        per block lets a slow worker's finished blocks count."""
        r = self.blocks_per_worker
        t = check_divisor(tasks_per_worker, r, "tasks_per_worker")
        # with auto, not between a re-choice's adoption and its probation
        with self.retuner.lock if self.retuner is not None else contextlib.nullcontext():
            self.encoding = replace(self.encoding, blocks_per_task=r // t)

    def retune(self) -> int:
        """``k="auto"``: let the policy (:class:`~dask_coded.policy.AutoK`) re-choose
        ``k`` (and ``blocks_per_worker`` when it is ``"auto"``) from the straggling of the
        recent calls, and re-encode A when they moved, now (a call that is due does this
        in the background with ``coded.auto-k.background``). Returns the ``k`` now in use."""
        if self.retuner is None:
            raise CodedError("retune() is for matrices encoded with k='auto'")
        return self.retuner.retune()

    def _switch_to(self, fresh: CodedMatrix) -> None:
        """Use ``fresh``'s encoding from the next product on (one assignment)."""
        # the old blocks are not released here: products built before the switch still
        # hold them, and they go when the last such graph does
        self._restore(fresh.encoding)
        fresh.encoding = replace(fresh.encoding, blocks=(), scales=None)

    def _restore(self, encoding: Encoding) -> None:
        """Use ``encoding`` from the next product on; the matrix the user holds stays the
        one ``coded_matmul`` reuses and ``dask_coded.release`` finds."""
        self.encoding = encoding
        if isinstance(self._source, da.Array):
            resident.register((self._source.T if self._transposed else self._source).name,
                              self)

    # ---- lifetime ----------------------------------------------------------------------

    def release(self) -> None:
        """Drop the coded blocks (and those of ``.T``) from the cluster. A product built
        before and computed after is cancelled by distributed ("lost dependencies"):
        compute it first, or encode A again."""
        # a re-encode in flight is dropped: its blocks go with its thread (nothing else
        # holds their futures), and so is an encoding kept for probation
        for m in (self, self._T):
            if m is None:
                continue
            if m.retuner is not None:
                m.retuner.release()
            if not m.local:
                for f in m.blocks:
                    f.release()
                m.encoding = replace(m.encoding, blocks=(), scales=None)
        self._T = None


def _describe(stats: dict | None) -> str:
    if not stats or not stats["finished"]:
        return "&ndash;"
    return (f"{stats['median'] * 1e3:.1f} ({stats['max'] * 1e3:.1f}), "
            f"{stats['finished']} / {stats['released']}")


def _worker_names(client) -> dict:
    """``{address: name}`` of the client's workers (``{}`` when it cannot ask)."""
    if client is None or client.asynchronous or client.status != "running":
        return {}
    return {w: str(info.get("name", w))
            for w, info in client.scheduler_info(n_workers=-1)["workers"].items()}


def _sparkline(spans: list, width: int = 240, height: int = 40) -> str:
    """An inline SVG of the recent calls' spans (seconds until each decode could start),
    most recent right; empty without calls."""
    spans = [float(t) for t in spans if t]
    if not spans:
        return ""
    top = max(spans)
    step = width / max(len(spans) - 1, 1)
    points = " ".join(f"{i * step:.1f},{height - 2 - (t / top) * (height - 4):.1f}"
                      for i, t in enumerate(spans))
    return (f"<div>last {len(spans)} calls, seconds until the decode could start "
            f"(median {np.median(spans) * 1e3:.1f} ms, max {top * 1e3:.1f} ms)<br>"
            f"<svg width='{width}' height='{height}'><polyline points='{points}' "
            f"fill='none' stroke='#1f77b4' stroke-width='1.5'/></svg></div>")


def encode(
    A: Any,
    n: int,
    k: int | str,
    kind: str | None = None,
    *,
    client: Any = None,
    transpose: bool = False,
    allow_shared_workers: bool = False,
    workers: list[str] | None = None,
    progress: bool = False,
    blocks_per_worker: int | str = 1,
    verify: str | None = None,
    errors: int | None = None,
) -> CodedMatrix:
    """Encode ``A`` (or ``A.T``) once with an (n, k) MDS code and keep the coded blocks.

    Parameters
    ----------
    A : numpy.ndarray or dask.array.Array
        2-D, real numeric. Its rows are split into ``k`` blocks of ``ceil(rows / k)``
        rows (the last zero-padded).
    n : int
        Coded blocks, one per worker.
    k : int or "auto"
        How many products a decode needs. ``"auto"`` starts from the theory's optimal k
        for ``mu = coded.auto-k.initial-mu`` and re-chooses it from the straggling the
        scheduler observes (:class:`~dask_coded.policy.AutoK`).
    kind : str, optional
        Code family (see :func:`dask_coded.make_code`); default ``coded.code-kind``.
    client : distributed.Client, optional
        Default: the current default client; without one the coded blocks stay in this
        process and products race in threads.
    transpose : bool
        Encode ``A.T`` instead of ``A``.
    allow_shared_workers : bool
        With fewer than ``n`` workers, place blocks round-robin (with a warning) instead
        of raising :class:`~dask_coded.errors.TooFewWorkersError`.
    workers : list of str, optional
        Worker addresses to use (default: all, sorted by address).
    progress : bool
        Show dask's progress bar while the coded blocks are encoded (sync client).
    blocks_per_worker : int
        ``r``: each of the ``n`` workers holds ``r`` coded blocks of an
        ``(n r, k r)`` code (A cut into ``k r`` row blocks); a product decodes from the
        first ``k r`` block products to finish (``k r + coded.lstsq.margin`` with the
        least-squares code that large codes get), whichever workers they come from, so a
        slow worker's finished blocks still count. ``1``: the paper's scheme.
        ``"auto"`` (with ``k="auto"``): encodes up to ``coded.auto-k.encode-blocks``
        blocks per worker (:func:`~dask_coded.schemes.mds.exact_blocks`) and runs them
        as one product task per worker, which straggles as one block per worker does;
        then re-chooses the tasks per worker with ``k`` from the observed straggling,
        the per-task scheduling cost and whether a slow worker stays slow for a whole
        call (:meth:`~dask_coded.policy.AutoK.choose_blocks`). Regrouping the tasks of
        the same blocks needs no re-encode.
    verify : {None, "detect", "correct"}
        Check every decode against spare products (:mod:`dask_coded.verify`):
        ``"detect"`` waits for ``k + 1`` products and raises
        :class:`~dask_coded.errors.CorruptResultError` when they disagree beyond
        rounding; ``"correct"`` waits for ``k + 2 * errors`` and returns the right result
        with up to ``errors`` wrong products set aside. A worker found wrong
        ``coded.verify.quarantine-after`` times is quarantined (:meth:`CodedMatrix.suspects`).
    errors : int, optional
        With ``verify="correct"``: how many wrong products each decode corrects (1).

    Returns
    -------
    CodedMatrix
        Block ``j`` is ``sum_i G[j, i] A_i``, pinned to ``CodedMatrix.workers[j]``.
    """
    return _encode(A, n, k, kind, client=client, transpose=transpose,
                   allow_shared_workers=allow_shared_workers, workers=workers,
                   progress=progress, blocks_per_worker=blocks_per_worker, verify=verify,
                   errors=errors)


def _encode(A: Any, n: int, k: int | str, kind: str | None = None, *, client: Any = None,
            transpose: bool = False, allow_shared_workers: bool = False,
            workers: list[str] | None = None, progress: bool = False,
            blocks_per_worker: int | str = 1, priority: int = 0,
            verify: str | None = None, errors: int | None = None) -> CodedMatrix:
    """:func:`encode`, its tasks at ``priority``; the encoding's seconds measured."""
    began = time.perf_counter()
    A = as_matrix(A)
    auto = isinstance(k, str)
    auto_blocks = isinstance(blocks_per_worker, str)
    if auto_blocks and (blocks_per_worker != "auto" or k != "auto"):
        raise CodeParameterError(
            f"blocks_per_worker must be an integer, or 'auto' together with k='auto'; got "
            f"blocks_per_worker={blocks_per_worker!r}, k={k!r}")
    if auto:
        if k != "auto":
            raise CodeParameterError(f"k must be an integer or 'auto', got {k!r}")
        if verify is not None:
            raise CodeParameterError(f"verify={verify!r} is not supported with k='auto' "
                                     f"(auto chooses k without the spare products); give k")
        if blocks_per_worker != 1 and not auto_blocks:
            raise CodeParameterError("k='auto' with a fixed blocks_per_worker > 1 is not "
                                     "supported: give k (dc.theory.best_blocks suggests "
                                     "one), or blocks_per_worker='auto'")
        k = AutoK.initial_k(n)
        # blocks_per_worker="auto": encoded finely, run as one product task per worker
        # (as one block per worker); the policy can regroup the tasks without a re-encode
        blocks_per_worker = (exact_blocks(n, k, int(config.get("auto-k.encode-blocks")))
                             if auto_blocks else 1)
    source = A
    if transpose:
        A = A.T
    scheme = build("mds", n, k=k, rows=A.shape[0], blocks_per_worker=blocks_per_worker,
                   kind=kind, verify=verify, errors=errors)
    dtype = np.dtype(np.promote_types(A.dtype, np.float32) if A.dtype.kind == "f" else np.float64)
    client = client if client is not None else default_client()
    if client is not None and client.status in ("closing", "closed"):
        raise CodedError("the client is closed; encode with a running client (or client=None "
                         "for the local scheduler)")
    if client is None and auto:
        raise CodedError("k='auto' learns from the scheduler: it needs a distributed client")
    if auto and client.asynchronous:
        raise CodedError("k='auto' needs a synchronous client (it re-encodes in calls)")
    matrix = CodedMatrix(scheme, A.shape, dtype, source, transpose, client)
    matrix.a_dtype = np.dtype(A.dtype)
    if auto_blocks and client is not None:
        matrix._set(blocks_per_task=scheme.blocks_per_worker)
    if auto:
        matrix.policy = AutoK(n, choose_r=auto_blocks)
    if client is None:
        values = np.asarray(A.compute() if isinstance(A, da.Array) else A)
        matrix._set(blocks=tuple(matrix.scheme.encode(values)),
                    scales=matrix.scheme.scales(values),
                    seconds=time.perf_counter() - began)
        return matrix
    show = progress and not client.asynchronous
    out = client.sync(_encode_on_cluster, matrix, A, workers, allow_shared_workers, not show,
                      priority)
    if show:
        progress_bar(matrix.blocks)  # dask's own bar (a widget in Jupyter)
        for f in matrix.blocks:
            if f.status == "error":
                f.result()
    if not client.asynchronous:
        matrix._set(seconds=time.perf_counter() - began)
    return out


async def _encode_on_cluster(matrix: CodedMatrix, A, workers, allow_shared_workers: bool,
                             wait_for: bool = True, priority: int = 0) -> CodedMatrix:
    """The cluster half of :func:`encode`: one encode task per coded block, pinned to its
    worker (run on the client's loop). A numpy A is encoded here with
    ``coded.encode.where: client`` (:func:`_tasks_from_client`), else on the workers
    (:func:`_tasks_on_workers`)."""
    client, scheme = matrix.client, matrix.scheme
    await cluster.ainstall(client)
    if workers is None:
        workers = (await client.scheduler.identity(n_workers=-1))["workers"]
    placement = scheme.placement(pick_workers(workers, scheme.n_workers, allow_shared_workers))
    where = config.get("encode.where")
    if where not in ("client", "workers"):
        raise CodeParameterError(f"coded.encode.where must be 'client' or 'workers', got "
                                 f"{where!r}")
    with warnings.catch_warnings():
        # a numpy A (or its coded blocks) travels in the graph once, by design
        warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
        if where == "client" and not isinstance(A, da.Array):
            tasks = _tasks_from_client(matrix, np.asarray(A), placement)
        else:
            tasks = _tasks_on_workers(matrix, A, placement, priority)
        if wait_for:
            futures = await cluster.place_encoded(client, tasks, priority=priority)
        else:
            futures = client.get(tasks, list(tasks), sync=False, priority=priority)
    matrix._set(placement=tuple(placement), blocks=tuple(futures[:-1]), scales=futures[-1])
    return matrix


def _tasks_from_client(matrix: CodedMatrix, A: np.ndarray, placement: list) -> dict:
    """Encode tasks carrying coded blocks computed here: block ``j`` travels to worker
    ``placement[j]`` only (A itself does not travel), and stays in the graph, so a block
    lost with its worker is made again elsewhere."""
    scheme, token = matrix.scheme, matrix.token
    name = f"{BLOCK_PREFIX}{token}"
    coded = scheme.encode(A)
    tasks = {(name, j): EncodeTask((name, j), identity, block, matrix=token, index=j,
                                   worker=addr, keep=False, code=scheme.summary)
             for j, (block, addr) in enumerate(zip(coded, placement))}
    scales = (f"{SCALES_PREFIX}{token}", 0)
    tasks[scales] = EncodeTask(scales, identity, scheme.scales(A), matrix=token, keep=False)
    return tasks


def _tasks_on_workers(matrix: CodedMatrix, A, placement: list, priority: int) -> dict:
    """Encode tasks combining A's row blocks on the workers (A persisted in row blocks;
    each worker fetches the ones its coded block mixes)."""
    client, scheme, token = matrix.client, matrix.scheme, matrix.token
    A = client.persist(da.asarray(A).rechunk((scheme.block_rows, -1)), priority=priority)
    row_blocks = _futures_in_order(A)
    name = f"{BLOCK_PREFIX}{token}"
    tasks = {}
    for j, addr in enumerate(placement):
        needed = scheme.blocks_needed(j)
        tasks[(name, j)] = EncodeTask(
            (name, j), encode_block, scheme, j, *[row_blocks[i] for i in needed],
            needed=needed, matrix=token, index=j, worker=addr, keep=False,
            code=scheme.summary)
    scales = (f"{SCALES_PREFIX}{token}", 0)
    tasks[scales] = EncodeTask(scales, row_scales, scheme, *row_blocks, matrix=token,
                               keep=False)
    return tasks


def _futures_in_order(A: da.Array) -> list:
    futures = {f.key: f for f in futures_of(A)}
    return [futures[(A.name, i, 0)] for i in range(A.numblocks[0])]


def release(A: Any, client: Any = None) -> int:
    """Drop resident coded data; returns how many encodings were dropped.

    ``A``: any handle that holds resident data (a :class:`CodedMatrix` with its ``.T``,
    an :class:`~dask_coded.EncodedOperand`, :class:`~dask_coded.CodedPartitions`, a
    :class:`~dask_coded.CodedShuffle`: the same as ``A.release()``), or a dask array:
    the encodings :func:`encode` made of it on ``client`` and those ``coded_matmul``
    made of it for ``client`` on the cluster and on the local scheduler. Another
    client's encodings of an array of the same name are left alone.
    """
    if not isinstance(A, da.Array):
        if isinstance(A, Handle):
            A.release()
            return 1
        raise TypeError(f"release takes a resident handle (CodedMatrix, EncodedOperand, "
                        f"CodedPartitions, CodedShuffle) or a dask array, got "
                        f"{type(A).__name__}")
    client = client if client is not None else default_client()
    mine = [m for m in resident.encoded_from(A.name) if m.client is client]
    for m in mine:
        m.release()
    here = len(mine) + resident.LOCAL.release(source=A.name)
    if client is None or client.asynchronous or client.status != "running":
        return here
    cluster.install(client)
    return here + int(client.sync(client.scheduler.coded_release, client=client.id,
                                  source=A.name))
