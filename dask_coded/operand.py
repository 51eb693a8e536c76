"""``dc.encode_operand(A)``: A's encoded operands of a 2-D code, made once and kept.

A loop that multiplies one A by a new B at every step (a layer's weights by the next
activations, a fixed operator by the iterates) should not encode A at every step. Here
A's encoded operand for worker ``w`` (``sum_i c_wi A_i``, the A side of a polynomial or
MatDot code, :class:`~dask_coded.schemes.polynomial.PolynomialScheme`) is made once and
pinned to its worker, as :func:`dask_coded.encode` does for a 1-D code; each ``EA @ B``
then encodes only B and sends worker ``w`` B's encoded operand:

* numpy B is encoded on the client, and worker ``w``'s travels inside its product:
  a worker receives ``|B| / p`` (polynomial) or ``|B| / m`` (MatDot) per call, where
  ``CA @ B`` of a 1-D code sends it all of B;
* dask B is encoded on the workers, inside each product (which gathers B's chunks and
  encodes its own), so nothing passes through the client.

The products are pinned where A's encoded operands are, the decode starts at the
threshold and stragglers are released by the same scheduler plugin as ``CA @ x``; a lost
worker's encoded operand is re-encoded elsewhere (its task keeps its recipe).
"""

from __future__ import annotations

import uuid
import warnings
from typing import Any

import dask.array as da
import numpy as np

from .handles import Handle
from . import cluster
from .errors import CodedError
from .graph import (
    EncodeTask, grid, operand_products, pair_scales, product_array, product_group,
)
from .kernels import encode_here, encode_side, identity, pair_product, side_scales
from .keys import BLOCK_PREFIX, DECODE_PREFIX, SCALES_PREFIX
from .arrays import as_matrix
from .schemes import lookup
from .schemes.polynomial import PolynomialScheme, coded_product
from .workers import default_client, enough, pick_workers


class EncodedOperand(Handle):
    """A's encoded operands of a polynomial or MatDot code, one per worker, resident.

    Build it with :func:`encode_operand`. ``EA @ B`` (B numpy or dask, 2-D, with
    ``A.shape[1]`` rows) is a dask Array equal to ``A @ B`` decoded from the first
    ``threshold`` of the ``n`` products; only B is encoded in the call.

    Attributes
    ----------
    code : PolynomialScheme
        The code (its B shape is a placeholder: each call takes the code for its B).
    shape : tuple
        Of A.
    workers : list of str or None
        ``workers[w]`` holds encoded operand ``w`` (``None`` on the local scheduler).
    scales : Future, numpy array or None
        A's row norms, which A's rows were divided by before encoding (a polynomial
        code; ``None`` for MatDot): every decode multiplies them back.
    """

    ndim = 2

    def __init__(self, code: PolynomialScheme, shape: tuple, client: Any):
        self.code = code
        self.shape: tuple[int, int] = tuple(shape)
        self.client = client
        self.blocks: list = []  # Futures (distributed) or numpy arrays (local)
        self.workers: list[str] | None = None
        self.scales: Any = None
        self.token = uuid.uuid4().hex[:16]

    n = property(lambda self: self.code.n_blocks)
    threshold = property(lambda self: self.code.threshold)

    @property
    def local(self) -> bool:
        """True when the encoded operands live in this process (no distributed client)."""
        return self.client is None

    def __repr__(self) -> str:
        splits = (self.code.m, self.code.p) if self.code.kind == "polynomial" else self.code.m
        where = ("released" if not self.blocks else "local" if self.local
                 else f"on {len(set(self.workers))} workers")
        check = "" if self.code.verify is None else f", {self.code.verify!r}"
        return (f"EncodedOperand({self.code.kind!r}, n={self.n}, splits={splits}, "
                f"threshold={self.threshold}, points={self.code.points!r}{check}, "
                f"A {self.shape}, {where})")

    def __matmul__(self, B: Any) -> da.Array:
        return self.dot(B)

    def dot(self, B: Any) -> da.Array:
        """``A @ B`` from the first ``threshold`` products; B's encoded operands are made
        in the call (numpy B on the client, dask B inside the products)."""
        self._check_live()
        B = as_matrix(B, "B")
        code = self.code.with_b(B.shape)  # raises on shapes that do not align
        token = uuid.uuid4().hex[:16]
        name = f"{DECODE_PREFIX}{token}"
        decode_key = (name, 0, 0)
        if isinstance(B, da.Array):
            if self.local:
                B = B.compute()
            else:
                tasks = operand_products(code, token, self.blocks, B.__dask_keys__(),
                                         decode_key, self.scales)
                return product_array(name, tasks, (self.shape[0], B.shape[1]), [B])
        # NaN refused where EA @ B is
        b_encoded, b_scales = encode_here(code, np.asarray(B), "b")
        scales = pair_scales(self.scales, b_scales)
        if self.local:
            tasks = product_group(code, token, list(zip(self.blocks, b_encoded)), None,
                                  decode_key, local=True, product=pair_product,
                                  scales=scales)
        else:
            tasks = product_group(code, token, self.blocks, None, decode_key,
                                  product=coded_product, operands=b_encoded, scales=scales)
        return product_array(name, tasks, (self.shape[0], B.shape[1]), ())

    def _check_live(self) -> None:
        if not self.blocks:
            raise CodedError("this EncodedOperand was released (EA.release()): its encoded "
                             "operands are gone; encode A again")
        if not self.local and self.client.status in ("closing", "closed"):
            raise CodedError("this EncodedOperand's client is closed and its encoded "
                             "operands are gone; encode A again with a live client")

    def release(self) -> None:
        """Drop A's encoded operands from the cluster: a product built before and
        computed after fails (dask cancels it for lost dependencies)."""
        if not self.local:
            for f in [*self.blocks, self.scales]:
                if f is not None:
                    f.release()
        self.blocks, self.scales = [], None


def encode_operand(A: Any, n: int, scheme: str = "polynomial", splits: Any = (2, 2), *,
                   points: str = "auto", verify: str | None = None,
                   errors: int | None = None, client: Any = None) -> EncodedOperand:
    """Encode A once as the left operand of a 2-D code and keep its encoded operands.

    Parameters
    ----------
    A : numpy or dask array
        2-D, real, finite.
    n : int
        Workers (one encoded operand and one product each).
    scheme : {"polynomial", "matdot"}
        As :func:`dask_coded.matmul`: polynomial cuts A into ``m`` row blocks and every B
        into ``p`` column blocks (threshold ``m p``); MatDot cuts the inner dimension
        into ``m`` (threshold ``2 m - 1``, products the size of ``A @ B``).
    splits : (m, p) or m
    points : {"auto", "real", "complex"}
        Evaluation points (see :func:`dask_coded.matmul`).
    verify : {None, "detect", "correct"}
        Check every ``EA @ B``'s products (the polynomial kind; see
        :func:`dask_coded.matmul`).
    errors : int, optional
        With ``verify="correct"``: how many wrong products to correct (default 1).
    client : distributed.Client, optional
        Default: the current client; without one the encoded operands stay in this
        process and products race in threads. With an asynchronous client the call
        returns an awaitable: ``EA = await dc.encode_operand(A, ..., client=c)``.

    Returns
    -------
    EncodedOperand
        Worker ``w`` holds ``sum_i c_wi A_i`` (``1/m`` of A); ``EA @ B`` needs the first
        ``threshold`` products.
    """
    A = as_matrix(A, "A")
    code = lookup(scheme, "pair").from_params(n, splits=splits, shape_a=A.shape,
                                              shape_b=(A.shape[1], 1), points=points,
                                              verify=verify, errors=errors)
    client = client if client is not None else default_client()
    return encode_with(code, A, client, "encode_operand")


def encode_with(code: PolynomialScheme, A: Any, client: Any, what: str) -> EncodedOperand:
    """A's encoded operands of ``code`` (A 2-D, real), on ``client``'s workers or, with
    ``client=None``, here; ``what`` names the caller in errors."""
    operand = EncodedOperand(code, A.shape, client)
    if client is None:
        operand.blocks, operand.scales = encode_here(
            code, np.asarray(A.compute() if isinstance(A, da.Array) else A), "a")
        return operand
    if isinstance(A, da.Array):
        A = client.persist(A)  # its futures live until the operands are placed
    # awaitable with an asynchronous client
    return client.sync(_place_operand, operand, A, what)


async def _place_operand(operand: EncodedOperand, A: Any, what: str) -> EncodedOperand:
    """The cluster half of :func:`encode_with` (run on the client's loop): A's encoded
    operands made where the plugin pins them (a dask A, persisted: on the workers, from
    its chunks; a numpy A: here, each encoded operand sent to its worker)."""
    client, code = operand.client, operand.code
    await cluster.ainstall(client)
    workers = enough((await client.scheduler.identity(n_workers=-1))["workers"],
                     code.n_blocks, what)
    operand.workers = code.placement(pick_workers(workers, code.n_blocks, False))
    key = f"{BLOCK_PREFIX}{operand.token}"
    if isinstance(A, da.Array):  # encoded on the workers, from A's chunks
        chunks = grid(A.__dask_keys__())
        calls = [(encode_side, code, w, chunks, "a") for w in range(code.n_blocks)]
        scales = (side_scales, code, chunks, "a")
    else:
        encoded, a_scales = encode_here(code, np.asarray(A), "a")
        calls = [(identity, a) for a in encoded]
        scales = (identity, a_scales)
    tasks = {(key, w): EncodeTask((key, w), *call, matrix=operand.token, index=w,
                                  worker=addr, keep=False, code=code.summary)
             for w, (call, addr) in enumerate(zip(calls, operand.workers))}
    if code.equilibrated:  # A's row scales, held beside its encoded operands
        scales_key = (f"{SCALES_PREFIX}{operand.token}", 0)
        tasks[scales_key] = EncodeTask(scales_key, *scales, matrix=operand.token, keep=False)
    with warnings.catch_warnings():
        # a numpy A travels once, as its encoded operands: encoding has to ship it
        warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
        futures = await cluster.place_encoded(client, tasks)
    operand.blocks = futures[:code.n_blocks]
    operand.scales = futures[code.n_blocks] if code.equilibrated else None
    return operand
