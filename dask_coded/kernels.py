"""The functions coded tasks run: encode a block, multiply, decode, race locally.

Kept apart from graph construction (:mod:`dask_coded.graph`), the way
``dask/array/blockwise.py`` keeps graphs apart from chunk functions. Each is a plain
numpy function of its arguments (the scheme does the coding), so it runs on any scheduler.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _logging, config
from .errors import (CodedError, CorruptResultError, DtypeError, NonFiniteError,
                     TooFewResultsError)
from .schemes import Scheme
from .tasks import Missing
from .verify import OperandScale, Sources, operand_scale, raise_or_pass, report_inconsistency
from .schemes.gradient import weighted_sum
from .schemes.polynomial import PolynomialScheme
from .schemes.polynomial import coded_product as polynomial_product

_logging.install()  # released stragglers are expected: not a warning

def stack_rows(row_chunks) -> np.ndarray:
    """``vstack`` of A's row chunks (no copy for a single chunk); a row chunk given as a
    list is A's chunks along that row, joined first."""
    rows = [np.concatenate(r, axis=1) if isinstance(r, (list, tuple)) else r
            for r in row_chunks]
    return np.concatenate(rows) if len(rows) > 1 else np.asarray(rows[0])


def encode_block(scheme: Scheme, j: int, *row_blocks: np.ndarray,
                 needed: tuple[int, ...]) -> np.ndarray:
    """Coded block ``j`` from A's row blocks ``needed`` (one array each, in order)."""
    return scheme.encode_block(j, row_blocks, needed)


@dataclass(frozen=True)
class WithRows:
    """A coded block (or its product) with A's rows that hold NaN or Inf set aside: they
    are zeros in the code and multiplied plainly beside it, so a rewritten product gives
    what plain dask gives (NaN where A has NaN) instead of NaN everywhere."""

    coded: np.ndarray
    index: np.ndarray  # A's rows set aside
    rows: np.ndarray  # those rows (or, after a product, their products)


def set_aside(A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A with non-finite rows zeroed, their indices, the rows)``."""
    bad = np.flatnonzero(~np.isfinite(A.reshape(len(A), -1)).all(axis=1))
    if not len(bad):
        return A, bad, A[:0]
    clean = A.copy()
    clean[bad] = 0
    return clean, bad, A[bad]


def encode_chunks(scheme: Scheme, j: int, *row_chunks: np.ndarray, dtype: str | None = None,
                  first_row: int = 0, needed: tuple | None = None):
    """Coded block ``j`` of ``A = vstack(row_chunks)`` (A's own chunks, any number), in
    ``dtype`` when given (the precision the products are declared in); rows with NaN or
    Inf are set aside (:class:`WithRows`, their indices A's). With ``needed``, the chunks
    are only A's rows from ``first_row`` on that hold the row blocks ``needed`` (those
    block ``j`` mixes)."""
    A, bad, rows = set_aside(_as(stack_rows(row_chunks), dtype))
    if needed is None:
        blocks = scheme.split(A)
        coded = scheme.encode_block(j, blocks, tuple(range(len(blocks))))
    else:
        size = scheme.block_rows
        blocks = [A[i * size - first_row:(i + 1) * size - first_row] for i in needed]
        coded = scheme.encode_block(j, blocks, tuple(needed))
        if len(bad):  # only the rows of the blocks it mixes
            inside = np.zeros(len(A), dtype=bool)
            for i in needed:
                inside[max(i * size - first_row, 0):(i + 1) * size - first_row] = True
            keep = inside[bad]
            bad, rows = bad[keep], rows[keep]
        bad = bad + first_row
    return WithRows(coded, bad, rows) if len(bad) else coded


def join_scales(*scales):
    """The row scales of A from those of its row chunks, in order (``None``: rows are
    encoded as they are)."""
    return None if scales[0] is None else np.concatenate(scales)


def check_finite_operand(x: np.ndarray, name: str = "x") -> None:
    """Refuse NaN/Inf in the operand ``x`` (called ``name`` in the error): it would reach
    every coded result."""
    if not np.isfinite(x).all():
        raise NonFiniteError(
            f"{name} contains NaN or Inf; the coded product would be NaN everywhere")


def coded_product(block: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``block @ x`` for one coded block (``x`` checked by :func:`check_finite_operand`)."""
    check_finite_operand(x)
    return block @ x


def task_product(product: Callable, x, *blocks) -> tuple:
    """One product task's products: ``product(block, x)`` for each of its coded blocks."""
    return tuple(product(block, x) for block in blocks)


def decode_tasks(scheme: Scheme, tasks: tuple, scales: np.ndarray | None,
                 *task_products, dtype: str | None = None) -> np.ndarray:
    """:func:`decode_products` from product tasks that each multiplied several coded
    blocks (``tasks[t]``: task ``t``'s block indices, :meth:`Scheme.product_tasks`); a
    task that did not finish (``None``, :class:`Missing`) leaves all its blocks out."""
    products: list = [None] * scheme.n_blocks
    for blocks, out in zip(tasks, task_products, strict=True):
        for i, j in enumerate(blocks):
            products[j] = out if out is None or isinstance(out, Missing) else out[i]
    return decode_products(scheme, scales, *products, dtype=dtype)


def join_chunks(chunks: list, axis: int) -> np.ndarray:
    """The operand's chunks along the contracted axis, joined into one array."""
    return np.concatenate(chunks, axis=axis)


def linear_product(func, kwargs: dict, block, b, b_axis: int | None = None):
    """``func(block, b, **kwargs)`` for a map linear in its first argument (dask's
    ``_matmul``/``_tensordot``); a list ``b`` is first concatenated along ``b_axis``."""
    if isinstance(b, (list, tuple)):
        b = np.concatenate(b, axis=b_axis)
    check_finite_operand(b, "the operand the coded matrix multiplies")
    if isinstance(block, WithRows):
        return WithRows(func(block.coded, b, **kwargs), block.index,
                        func(block.rows, b, **kwargs))
    return func(block, b, **kwargs)


def row_scales(scheme: Scheme, *row_chunks: np.ndarray) -> np.ndarray | None:
    """The scheme's row scales of ``A = vstack(row_chunks)`` (rows set aside count as
    zero rows: the decode puts them back unscaled)."""
    return scheme.scales(set_aside(stack_rows(row_chunks))[0])


def _as(A: np.ndarray, dtype: str | None) -> np.ndarray:
    return A if dtype is None else np.asarray(A).astype(dtype, copy=False)


def decode_products(scheme: Scheme, scales: np.ndarray | None,
                    *products, dtype: str | None = None, check: OperandScale | None = None,
                    sources: dict | None = None, report: Callable | None = None,
                    blocks: tuple = ()) -> np.ndarray:
    """``A @ x`` from the products that arrived (``None``: released, :class:`Missing`:
    lost), in ``dtype`` when given (the dtype dask declares for the product); the rows
    set aside (:class:`WithRows`) are put back from any product. Too few products raise
    :class:`~dask_coded.errors.TooFewResultsError` saying why each missing one is missing.

    A scheme with ``verify`` checks the products first (:mod:`dask_coded.verify`, with
    ``check`` the operand's scale and ``sources`` who computed each product) and decodes
    from the consistent ones; ``report(verdict, sources, mode, blocks)`` hears of every
    inconsistency (``blocks``: the products' coded block keys)."""
    checking = dict(check=check, sources=sources, report=report, blocks=blocks)
    integer = next((p.dtype for p in products if isinstance(p, IntegerSum)), None)
    if integer is not None:
        products = tuple(p.value if isinstance(p, IntegerSum) else p for p in products)
        return _exact_integers(decode_products(scheme, scales, *products, dtype=dtype,
                                               **checking),
                               integer, _estimated_error(scheme))
    missing = sorted({p.why for p in products if isinstance(p, Missing)})
    if missing:
        products = tuple(None if isinstance(p, Missing) else p for p in products)
        try:
            return decode_products(scheme, scales, *products, dtype=dtype, **checking)
        except TooFewResultsError as e:
            raise TooFewResultsError(f"{e}: {'; '.join(missing)}") from None
    if getattr(scheme, "verify", None) is not None:
        products = _verified(scheme, products, **checking)
    return _as(_decoded(scheme, scales, products), dtype)


def _verified(scheme, products: tuple, check, sources, report, blocks=()) -> tuple:
    """``products`` (``None`` where one did not arrive) with every one the check set
    aside as ``None`` (raises :class:`~dask_coded.errors.CorruptResultError` when no right
    result can be had)."""
    if check is None and scheme.checks_with_operand:
        raise CodedError(f"{scheme!r} checks its products against the operand's scale; "
                         f"this decode was built without it")
    named = Sources(dict(sources or {}))
    verdict = scheme.inspect([p.coded if isinstance(p, WithRows) else p for p in products],
                             check)
    if report is not None and not verdict.consistent:
        report(verdict, named, scheme.verify.mode, blocks)
    raise_or_pass(verdict, scheme.verify, named, scheme.code.k)
    return tuple(p if j in verdict.clean else None for j, p in enumerate(products))


def _decoded(scheme: Scheme, scales: np.ndarray | None, products) -> np.ndarray:
    asides = [p for p in products if isinstance(p, WithRows)]
    if not asides:
        return scheme.decode(products, scales)
    out = scheme.decode([p.coded if isinstance(p, WithRows) else p for p in products], scales)
    # every product set aside the rows it saw (a systematic block: its own); together the
    # products a decode uses cover all of A's rows
    index = np.concatenate([p.index for p in asides])
    rows = np.concatenate([p.rows for p in asides])
    out = np.array(out, dtype=np.result_type(out, rows))
    out[index] = rows
    return out


@dataclass(frozen=True)
class Assignment:
    """What one worker of a gradient code holds: for each part of its support, the part's
    coefficient and its partitions (with their indices, for error messages)."""

    coefficients: tuple[float, ...]
    parts: tuple[tuple, ...]
    indices: tuple[tuple[int, ...], ...]


def make_assignment(coefficients: tuple[float, ...], indices: tuple[tuple[int, ...], ...],
               *partitions) -> Assignment:
    """A :class:`Assignment` of ``partitions`` (flat, grouped by ``indices``' lengths)."""
    parts, start = [], 0
    for idx in indices:
        parts.append(tuple(partitions[start:start + len(idx)]))
        start += len(idx)
    return Assignment(tuple(coefficients), tuple(parts), tuple(indices))


def _checked_value(value, partition: int):
    """``fn``'s result on one partition: numeric arrays or numbers (or a tuple of them),
    finite."""
    if isinstance(value, tuple):
        return tuple(_checked_value(v, partition) for v in value)
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"fn must return a real numeric array or number (or a tuple of "
                        f"them); on partition {partition} it returned {type(value).__name__} "
                        f"of dtype {array.dtype}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise NonFiniteError(f"fn returned NaN or Inf on partition {partition}; the sum would "
                             f"not be finite")
    return value


@dataclass(frozen=True)
class IntegerSum:
    """A partial sum of integer values mixed with real coefficients (a cyclic gradient
    code): the decode rounds the sum back to ``dtype``, where it is exact."""

    value: Any
    dtype: Any  # the integer dtype of each leaf (a tuple for a tuple of values)


def _integer_dtype(value):
    """The integer dtype of ``value`` (a tuple of them for a tuple), or ``None``."""
    if isinstance(value, tuple):
        dtypes = tuple(_integer_dtype(v) for v in value)
        return dtypes if all(d is not None for d in dtypes) else None
    dtype = np.asarray(value).dtype
    return dtype if dtype.kind in "iub" else None


def partial_sum(assignment: Assignment, fn) -> Any:
    """``sum_i B[j, i] sum_{p in part i} fn(p)``: worker ``j``'s coded partial sum
    (an :class:`IntegerSum` when ``fn`` returns integers and a coefficient is not 0 or 1,
    so the decode can give the exact integer sum)."""
    sums, dtype = [], None
    for part, indices in zip(assignment.parts, assignment.indices):
        values = [_checked_value(fn(p), i) for p, i in zip(part, indices)]
        dtype = dtype or _integer_dtype(values[0])
        sums.append(weighted_sum([1.0] * len(values), values))
    total = weighted_sum(assignment.coefficients, sums)
    if dtype is not None and any(c not in (0.0, 1.0) for c in assignment.coefficients):
        return IntegerSum(total, dtype)
    return total


def _estimated_error(scheme: Scheme) -> float:
    """The scheme's worst-case relative decode error (0 when it does not say)."""
    estimate = getattr(scheme, "estimated_error", None)
    return float(estimate()) if callable(estimate) else 0.0


def _exact_integers(value, dtype, error: float):
    """``value`` (a float sum of integers, decoded with relative error at most
    ``error``) rounded back to ``dtype``; refused where the error could reach half a
    unit, so the rounding could be wrong."""
    if isinstance(dtype, tuple):
        return tuple(_exact_integers(v, d, error) for v, d in zip(value, dtype))
    value = np.asarray(value)
    largest = float(np.abs(value).max()) if value.size else 0.0
    if largest * max(error, np.finfo(np.float64).eps) >= 0.25:
        raise DtypeError(
            f"an integer sum of magnitude {largest:.3g} cannot be decoded exactly: this "
            f"cyclic gradient code decodes in float64 with a relative error up to "
            f"{error:.1e}, exact only below {0.25 / max(error, 1e-16):.2g}; use "
            f"kind='fractional' (exact for integers), or return floats from fn")
    out = np.rint(value).astype(dtype)
    return out if out.ndim else out[()]


def encode_part(scheme: Scheme, j: int, *parts: Any) -> Any:
    """Coded part ``j`` of a part scheme from the data parts it needs."""
    return scheme.encode_part(j, *parts)


@dataclass(frozen=True)
class Arguments:
    """The extra arguments of ``L.map(f, *args)``, embedded in each product (a tuple in
    a task would be read as a key)."""

    values: tuple


@dataclass(frozen=True)
class Applied:
    """A part scheme's product kernel: ``Applied(scheme, f)(coded, arguments)`` is
    ``scheme.apply(coded, f, arguments.values)``."""

    scheme: Any
    f: Callable

    def __call__(self, coded: Any, arguments: Arguments) -> Any:
        return self.scheme.apply(coded, self.f, arguments.values)


def take_rows(decoded: np.ndarray, start: int, stop: int, dtype: str | None = None,
              drop: int | None = None) -> np.ndarray:
    """Rows ``start:stop`` of a decoded product (one row chunk of the original output),
    in ``dtype`` when given (the dtype dask declares for the block it stands for), with
    the size-1 axis ``drop`` removed when given (the contracted axis, for a block of the
    sum over it)."""
    rows = decoded[start:stop]
    return _as(rows if drop is None else np.squeeze(rows, axis=drop), dtype)


def transposed_back(block: np.ndarray, vector: bool = False) -> np.ndarray:
    """A block of ``x @ A`` from the block ``(A.T @ x.T)`` of axes (A's columns,
    contracted, x's rows) that stands for it: its axes reversed (``x``'s row axis
    dropped when ``x`` is a vector)."""
    out = np.transpose(block, (2, 1, 0))
    return out[0] if vector else out


def zero_rows(decoded: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Zeros shaped like ``decoded[start:stop]``: the partial sums over contracted blocks
    other than the first, when the first already holds the full contraction."""
    return np.zeros_like(decoded[start:stop])


def take_block(decoded: np.ndarray, r0: int, r1: int, c0: int, c1: int, axis: int | None,
               first: bool, dtype: str | None = None) -> np.ndarray:
    """Block ``[r0:r1, c0:c1]`` of ``C = A @ B`` shaped as the product layer's output
    (the contracted axis kept, at ``axis``; ``None``: as it is, a block of the summed
    output, in ``dtype``, the sum's); zeros for a contracted block after the first (``C``
    already holds the whole contraction), as :func:`zero_rows` for rows."""
    block = decoded[r0:r1, c0:c1]
    if axis is not None:
        block = np.expand_dims(block, axis)
    if dtype is not None:
        block = block.astype(dtype, copy=False)
    return block if first else np.zeros_like(block)


def identity(value: Any) -> Any:
    """``value`` unchanged: what an inlined dask ``Alias`` becomes, and the task that
    holds a coded block made on the client (its data in the graph)."""
    return value


def _raced_product(product, index: int, block: np.ndarray, x, delay) -> np.ndarray:
    seconds = delay(index) if delay is not None else 0.0
    if seconds > 0:
        time.sleep(seconds)
    out = product(block, x)
    corrupt = config.get("local-race.corrupt")  # what local_corruption sets
    return out if corrupt is None else corrupt(index, out)


def race_products(scheme: Scheme, blocks: list[np.ndarray], x, product=coded_product,
                  scales: Any = None, dtype: str | None = None) -> np.ndarray:
    """Local-scheduler first-threshold-of-n: race ``product(block_j, x)`` in a private
    thread pool and decode from the first products to finish that decode
    (:meth:`~dask_coded.schemes.Scheme.decodable`); stragglers finish in the background."""
    delay = config.get("local-race.delay")  # seconds for product j (local_stragglers)
    verify = getattr(scheme, "verify", None)
    check = None
    if verify is not None and scheme.checks_with_operand:
        first = blocks[0].coded if isinstance(blocks[0], WithRows) else blocks[0]
        check = operand_scale(x, _eps(np.asarray(first).dtype), contracted_axis(product))
    pool = ThreadPoolExecutor(len(blocks), thread_name_prefix="dask-coded-race")
    try:
        futures = {
            pool.submit(_raced_product, product, j, b, x, delay): j
            for j, b in enumerate(blocks)
        }
        done: dict[int, np.ndarray] = {}
        pending = set(futures)

        def arrive() -> None:  # the next products to finish
            nonlocal pending
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                done[futures[f]] = f.result()  # re-raises a product's error

        while True:
            while pending and not scheme.decodable(done):
                arrive()
            heard: list = []
            try:
                return decode_products(scheme, scales,
                                       *[done.get(j) for j in range(len(blocks))],
                                       dtype=dtype, check=check,
                                       report=lambda *event: heard.append(event))
            except CorruptResultError as e:
                # one spare detects a wrong product; the next one to finish locates it
                if not (verify.spare == 1 and pending and e.candidates and not e.suspects):
                    raise
                arrive()
                heard.clear()
            finally:
                for event in heard:
                    report_inconsistency(*event)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def contracted_axis(product) -> int:
    """The axis of the operand a product kernel contracts: ``b_axis`` of a
    :func:`linear_product` partial, else 0 (``block @ x``)."""
    return getattr(product, "keywords", {}).get("b_axis") or 0


def _eps(dtype: np.dtype) -> float:
    """Machine epsilon of a floating ``dtype`` (float64's for any other)."""
    return float(np.finfo(dtype if np.dtype(dtype).kind == "f" else np.float64).eps)


def encode_and_race(scheme: Scheme, product, row_chunks: list, x,
                    remember: Callable | None = None, dtype: str | None = None,
                    out_dtype: str | None = None) -> np.ndarray:
    """Local first-k-of-n for a graph that encodes A in the call: encode (in ``dtype``),
    then race (the result in ``out_dtype``). ``remember(blocks, scales)``, when given,
    keeps the coded blocks for the next graph (the rewrite's
    :data:`dask_coded.resident.LOCAL`)."""
    A, bad, rows = set_aside(_as(stack_rows(row_chunks), dtype))
    blocks = scheme.encode(A)
    if len(bad):
        blocks = [WithRows(block, bad, rows) for block in blocks]
    scales = scheme.scales(A)
    if remember is not None:
        remember(blocks, scales)
    return race_products(scheme, blocks, x, product, scales, out_dtype)


# ---- two-operand (pair) schemes: A @ B with both operands encoded ---------------------

def pair_product(pair: tuple[np.ndarray, np.ndarray], _unused=None) -> np.ndarray:
    """One worker's product from its pair of encoded operands (see ``coded_product``)."""
    return polynomial_product(*pair)


def split_scaled(code: PolynomialScheme, X: np.ndarray, side: str
                 ) -> tuple[list[np.ndarray], np.ndarray | None]:
    """A's (``side="a"``) or B's (``"b"``) blocks, the operand divided by its
    :meth:`~PolynomialScheme.side_scales` first (a NaN or Inf refused), and those
    scales: what every worker's encoded operand combines, and what the decode multiplies
    back."""
    check_finite_operand(X, side.upper())
    scales = code.side_scales(X, side)
    return code.split_operand(X, side, scales), scales


def encode_side(code: PolynomialScheme, w: int, chunks: list, side: str) -> np.ndarray:
    """Worker ``w``'s encoded operand of A (``side="a"``) or B (``"b"``) from the
    operand's chunk grid (a list of rows of chunks): ``sum_i c_wi X_i`` over the blocks
    of :func:`split_scaled` (the same scales :func:`side_scales` gives the decode)."""
    return code.encode_operand(w, split_scaled(code, np.block(chunks), side)[0], side)


def side_scales(code: PolynomialScheme, chunks: list, side: str) -> np.ndarray | None:
    """The scales :func:`encode_side` divides the operand of chunk grid ``chunks`` by
    (A's row norms, B's column norms; ``None``: encoded as it is), for the decode."""
    return code.side_scales(np.block(chunks), side)


def encode_pair(code: PolynomialScheme, w: int, a_chunks: list, b_chunks: list
                ) -> tuple[np.ndarray, np.ndarray]:
    """Worker ``w``'s encoded operands from A's and B's chunk grids (lists of rows of
    chunks): ``(sum_i a_wi A_i, sum_j b_wj B_j)`` over the scheme's pieces."""
    return encode_side(code, w, a_chunks, "a"), encode_side(code, w, b_chunks, "b")


def encode_here(code: PolynomialScheme, X: np.ndarray, side: str
                ) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Every worker's encoded operand of A (``side="a"``) or B (``"b"``), here in this
    process: ``sum_i c_wi X_i`` for ``w = 0 .. n - 1`` over the blocks of
    :func:`split_scaled` (split once, not per worker), and the scales ``X`` was divided
    by first."""
    blocks, scales = split_scaled(code, X, side)
    return [code.encode_operand(w, blocks, side) for w in range(code.n_blocks)], scales


def encode_pairs(code: PolynomialScheme, A: np.ndarray, B: np.ndarray
                 ) -> tuple[list[tuple[np.ndarray, np.ndarray]], tuple]:
    """Every worker's pair of encoded operands, here: ``[(sum_i a_wi A_i, sum_j b_wj
    B_j)]``, and the scales ``(A's, B's)`` the decode multiplies back."""
    a, a_scales = encode_here(code, A, "a")
    b, b_scales = encode_here(code, B, "b")
    return list(zip(a, b)), (a_scales, b_scales)


def encode_pairs_and_race(code: PolynomialScheme, a_chunks: list, b_chunks: list
                          ) -> np.ndarray:
    """Local first-threshold-of-n of ``A @ B``: encode every pair, race their products."""
    pairs, scales = encode_pairs(code, np.block(a_chunks), np.block(b_chunks))
    return race_products(code, pairs, None, pair_product, scales)
