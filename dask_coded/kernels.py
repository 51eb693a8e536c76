"""The functions coded tasks run: encode one coded block, multiply, decode, race locally.

Kept apart from graph construction (:mod:`dask_coded.graph`), the way
``dask/array/blockwise.py`` keeps graphs apart from chunk functions. Everything here is a
plain numpy function of its arguments, so it runs on any scheduler.
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass

import numpy as np

from .codes import MDSCode
from .errors import NonFiniteError, TooFewResultsError


@dataclass(frozen=True)
class Layout:
    """How a matrix of ``rows`` rows is split for an ``(n, k)`` code.

    Invariant: row block ``i`` is rows ``i*block_rows .. min((i+1)*block_rows, rows)``;
    every block is zero-padded to ``block_rows`` and encoded to ``coded_rows`` rows.
    """

    rows: int
    block_rows: int
    coded_rows: int

    @classmethod
    def for_code(cls, code: MDSCode, rows: int) -> "Layout":
        block_rows = max(1, -(-rows // code.k))
        return cls(rows, block_rows, code.coded_rows(block_rows))

    def pad(self, block: np.ndarray) -> np.ndarray:
        """``block`` with zero rows appended up to ``block_rows``."""
        if len(block) >= self.block_rows:
            return block
        pad = np.zeros((self.block_rows - len(block),) + block.shape[1:], dtype=block.dtype)
        return np.concatenate([block, pad])

    def split(self, A: np.ndarray, k: int) -> list[np.ndarray]:
        """The ``k`` zero-padded row blocks of ``A``."""
        return [self.pad(A[i * self.block_rows : (i + 1) * self.block_rows]) for i in range(k)]


def check_finite_rows(A: np.ndarray, name: str = "A", offset: int = 0) -> None:
    """Raise :class:`NonFiniteError` naming the first row of ``A`` holding NaN or Inf."""
    finite = np.isfinite(A)
    if not finite.all():
        bad = int(np.flatnonzero(~finite.reshape(len(A), -1).all(axis=1))[0]) + offset
        raise NonFiniteError(
            f"{name} contains NaN or Inf (first in row {bad}); a coded block mixes k row "
            f"blocks, so it would corrupt every decode"
        )


def encode_block(
    code: MDSCode,
    j: int,
    layout: Layout,
    *row_blocks: np.ndarray,
    needed: tuple[int, ...] | None = None,
) -> np.ndarray:
    """Coded block ``j``: ``sum_i G[j, i] A_i``.

    ``row_blocks`` are A's row blocks ``needed`` (default: all ``k``, in order); the
    blocks coded block ``j`` does not mix are taken as zeros.
    """
    needed = tuple(range(code.k)) if needed is None else tuple(needed)
    blocks = [None] * code.k
    for i, block in zip(needed, row_blocks):
        block = np.asarray(block)
        check_finite_rows(block, offset=i * layout.block_rows)
        blocks[i] = layout.pad(block)
    zero = np.zeros_like(blocks[needed[0]])
    return code.encode([zero if b is None else b for b in blocks], workers=[j])[0]


def check_finite_operand(x: np.ndarray) -> None:
    """Refuse NaN/Inf in the operand ``x``: it would reach every coded result."""
    if not np.isfinite(x).all():
        raise NonFiniteError("x contains NaN or Inf; the coded product would be NaN everywhere")


def coded_product(block: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``block @ x`` for one coded block (``x`` checked by :func:`check_finite_operand`)."""
    check_finite_operand(x)
    return block @ x


def decode_products(code: MDSCode, layout: Layout, *products: np.ndarray | None) -> np.ndarray:
    """``A @ x`` (all ``layout.rows`` rows) from the products that arrived.

    ``products[j]`` is coded block ``j`` times ``x``, or ``None`` for a straggler the
    scheduler released (or a worker that died). Any ``k`` suffice.
    """
    results = {j: p for j, p in enumerate(products) if p is not None}
    if len(results) < code.k:
        raise TooFewResultsError(
            f"only {len(results)} of n={code.n} coded products survived (the others' workers "
            f"were lost); k={code.k} are needed to decode"
        )
    Y = code.decode_stacked(results)
    if isinstance(Y, np.ndarray) and layout.coded_rows == layout.block_rows:
        return Y.reshape((-1,) + Y.shape[2:])[: layout.rows]  # no padding rows: a view
    return np.concatenate([b[: layout.block_rows] for b in Y])[: layout.rows]


def stack_rows(row_chunks) -> np.ndarray:
    """``vstack`` of A's row chunks (no copy for a single chunk)."""
    return np.concatenate(row_chunks) if len(row_chunks) > 1 else np.asarray(row_chunks[0])


def encode_all(code: MDSCode, layout: Layout, A: np.ndarray) -> list[np.ndarray]:
    """All ``n`` coded blocks of ``A`` (rows checked for NaN/Inf first)."""
    check_finite_rows(A)
    return code.encode(layout.split(A, code.k))


def encode_chunks(code: MDSCode, j: int, layout: Layout, *row_chunks: np.ndarray) -> np.ndarray:
    """Coded block ``j`` of ``A = vstack(row_chunks)`` (A's own chunks, any number)."""
    return encode_block(code, j, layout, *layout.split(stack_rows(row_chunks), code.k))


def linear_product(func, kwargs: dict, block: np.ndarray, b, b_axis: int | None = None):
    """``func(block, b, **kwargs)`` for a map linear in its first argument (dask's
    ``_matmul``/``_tensordot``); a list ``b`` is first concatenated along ``b_axis``."""
    if isinstance(b, (list, tuple)):
        b = np.concatenate(b, axis=b_axis)
    check_finite_operand(b)
    return func(block, b, **kwargs)


def take_rows(decoded: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of a decoded product (one row chunk of the original output)."""
    return decoded[start:stop]


def zero_rows(decoded: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Zeros shaped like ``decoded[start:stop]``: the partial sums over contracted blocks
    other than the first, when the first already holds the full contraction."""
    return np.zeros_like(decoded[start:stop])


def _raced_product(product, index: int, block: np.ndarray, x) -> np.ndarray:
    from .stragglers import local_delay

    seconds = local_delay(index)
    if seconds > 0:
        time.sleep(seconds)
    return product(block, x)


def encode_and_race(code: MDSCode, layout: Layout, product, row_chunks: list, x) -> np.ndarray:
    """Local first-k-of-n for a graph that encodes A in the call: encode, then race."""
    blocks = encode_all(code, layout, stack_rows(row_chunks))
    return first_k_threads(code, layout, blocks, x, product)


def first_k_threads(
    code: MDSCode, layout: Layout, blocks: list[np.ndarray], x, product=coded_product
) -> np.ndarray:
    """Local-scheduler first-k-of-n: race the ``n`` products ``product(block_j, x)`` in a
    private thread pool and decode from the first ``k`` to finish; stragglers finish in
    the background."""
    pool = ThreadPoolExecutor(len(blocks), thread_name_prefix="dask-coded-race")
    try:
        futures = {
            pool.submit(_raced_product, product, j, b, x): j for j, b in enumerate(blocks)
        }
        done: dict[int, np.ndarray] = {}
        pending = set(futures)
        while len(done) < code.k:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                done[futures[f]] = f.result()  # re-raises a product's error
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    products = [done.get(j) for j in range(len(blocks))]
    return decode_products(code, layout, *products)
