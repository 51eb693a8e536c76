"""``dc.matmul(A, B)``: a coded ``A @ B`` that encodes both operands (polynomial, MatDot).

Each worker holds only its *encoded operands* (a combination of A's pieces and one of
B's), runs one product, and the decode interpolates ``A @ B`` from the first
``threshold`` products (:class:`~dask_coded.schemes.polynomial.PolynomialScheme`; the same
scheduler plugin as ``CA @ x``: stragglers released, up to ``n - threshold`` lost workers
tolerated, a lost worker's encoded operands made again elsewhere). Where the operands are
decides where they are encoded:

* numpy operands (on the client) are encoded here: A's encoded operands are pinned to
  their workers (:func:`~dask_coded.operand.encode_operand`; the returned array holds
  them) and B's encoded operand for each worker travels inside its product: a worker
  receives ``|A| / m + |B| / p``; an :class:`~dask_coded.operand.EncodedOperand` A
  (encoded once, kept) sends only B's encoded operands;
* dask operands (on the workers) are encoded on the workers, in the graph: task
  ``("coded-block-call-<token>", w)`` gathers A's and B's chunks and encodes worker
  ``w``'s pair where it is pinned, so nothing passes through the client; each encoding
  worker receives all of A and B (every encoded piece mixes all of them).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import dask.array as da
import numpy as np

from . import cluster
from .errors import CodedError, CodeParameterError
from .arrays import as_matrix
from .graph import coded_pair_tasks, product_array
from .kernels import check_finite_operand
from .keys import DECODE_PREFIX
from .matrix import encode
from .operand import EncodedOperand, encode_with
from .schemes import lookup
from .theory import plan_matmul
from .workers import default_client, require_workers

logger = logging.getLogger(__name__)


def _operand(X: Any, name: str) -> np.ndarray:
    """``X`` as a finite real 2-D numpy array (a dask array is computed)."""
    X = as_matrix(X, name)
    X = np.asarray(X.compute() if isinstance(X, da.Array) else X)
    check_finite_operand(X, name)
    return X


def matmul(A: Any, B: Any, n: int | None = None, scheme: str = "polynomial",
           splits: Any = (2, 2), *, points: str = "auto", verify: str | None = None,
           errors: int | None = None, client: Any = None) -> da.Array:
    """``A @ B`` coded on ``n`` workers, both operands encoded.

    Parameters
    ----------
    A, B : numpy or dask arrays
        2-D, real, ``A.shape[1] == B.shape[0]``. ``A`` may be an
        :class:`~dask_coded.operand.EncodedOperand` (:func:`~dask_coded.encode_operand`,
        encoded once): then only B is encoded, with A's code (``n``, ``scheme``,
        ``splits``, ``points`` and ``client`` are A's).
    n : int
        Workers (one product each).
    scheme : {"polynomial", "matdot", "auto"}
        ``"polynomial"``: A cut into ``m`` row blocks and B into ``p`` column blocks,
        threshold ``m p``; ``"matdot"``: the inner dimension cut into ``m``, threshold
        ``2 m - 1`` (see :mod:`dask_coded.schemes.polynomial`); ``"auto"``: the scheme
        :func:`plan_matmul` picks (possibly ``CA @ B`` with A encoded by a 1-D MDS code),
        logged with its reason at INFO level; ``splits`` is then ignored.
    splits : (m, p) or m
    points : {"auto", "real", "complex"}
        Evaluation points: Chebyshev (real operands and products) where accurate enough,
        else roots of unity (complex: twice the bytes, four real products per product).
    verify : {None, "detect", "correct"}
        Check every decode's products against each other (the polynomial kind, and a
        1-D code that ``"auto"`` picks; :mod:`dask_coded.verify`): ``"detect"`` waits
        for one spare product and raises :class:`~dask_coded.errors.CorruptResultError`
        on a wrong one, ``"correct"`` waits for ``2 * errors`` spares and decodes around
        up to ``errors`` wrong ones.
    errors : int, optional
        With ``verify="correct"``: how many wrong products to correct (default 1).
    client : distributed.Client, optional
        Default: the current client; without one the products race in threads here.
        Numpy operands are encoded here and sent to the workers (a synchronous client);
        dask operands are encoded on the workers, in the graph (with an asynchronous
        client, register :class:`~dask_coded.FirstKPlugin` first).

    Returns
    -------
    dask.array.Array
        Equal to ``A @ B`` (one chunk), from the first ``threshold`` products.
    """
    if isinstance(A, EncodedOperand):
        if n is not None and n != A.n:
            raise CodeParameterError(f"A is encoded for n={A.n} workers; got n={n}")
        if verify is not None or errors is not None:
            raise CodeParameterError("A is an EncodedOperand: its check is the one it was "
                                     "encoded with (encode_operand(..., verify=...))")
        return A.dot(B)
    if n is None:
        raise CodeParameterError("dc.matmul needs n, the number of workers (one product "
                                 "each), unless A is an EncodedOperand")
    client = client if client is not None else default_client()
    check = dict(verify=verify, errors=errors)
    if client is not None and (isinstance(A, da.Array) or isinstance(B, da.Array)):
        return _matmul_on_workers(A, B, n, scheme, splits, points, client, check)
    A, B = _operand(A, "A"), _operand(B, "B")
    code = _code_or_product(A, B, n, scheme, splits, points, client, check)
    if isinstance(code, da.Array):
        return code
    if client is not None and client.asynchronous:
        raise CodedError("dc.matmul of numpy operands encodes A here and waits for it to be "
                         "placed; with an asynchronous client, pass dask arrays, or "
                         "EA = await dc.encode_operand(A, ...) and compute EA @ B")
    return encode_with(code, A, client, "dc.matmul of numpy operands").dot(B)


def _code_or_product(A, B, n: int, scheme: str, splits: Any, points: str, client,
                     check: dict):
    """The 2-D code for ``A @ B`` (``check``: its ``verify=`` and ``errors=``); with
    ``scheme="auto"`` choosing 1-D MDS, the coded product ``encode(A) @ B`` itself."""
    if scheme == "auto":
        plan = plan_matmul(A.shape, B.shape, n)
        logger.info("dask_coded.matmul: %r", plan)
        if plan.scheme == "mds":
            return encode(A, n, plan.threshold, client=client, **check) @ B
        scheme, splits = plan.scheme, plan.splits
    return lookup(scheme, "pair").from_params(n, splits=splits, shape_a=A.shape,
                                              shape_b=B.shape, points=points, **check)


def _matmul_on_workers(A: Any, B: Any, n: int, scheme: str, splits: Any, points: str,
                       client, check: dict) -> da.Array:
    """``dc.matmul`` of dask operands: encoded on the workers, in the graph."""
    A, B = as_matrix(A, "A"), as_matrix(B, "B")
    A, B = (X if isinstance(X, da.Array) else da.from_array(X) for X in (A, B))
    code = _code_or_product(A, B, n, scheme, splits, points, client, check)
    if isinstance(code, da.Array):
        return code
    if not client.asynchronous:  # an asynchronous caller registers FirstKPlugin itself
        require_workers(client, n, "dc.matmul")
        cluster.install(client)
    token = uuid.uuid4().hex[:16]
    name = f"{DECODE_PREFIX}{token}"
    tasks = coded_pair_tasks(code, A.__dask_keys__(), B.__dask_keys__(), token, (name, 0, 0))
    return product_array(name, tasks, (A.shape[0], B.shape[1]), [A, B])
