"""``dc.matmul(A, B)``: a coded ``A @ B`` that encodes both operands (polynomial, MatDot).

Each worker receives only its encoded operands (its pieces of A and of B, encoded) (computed here, sent straight to
it, pinned there like a coded block: ``("coded-block-<token>", w)`` holds the pair), runs
one product, and the decode interpolates ``A @ B`` from the first ``threshold`` products
(:class:`~dask_coded.schemes.polynomial.PolynomialScheme`; the same scheduler plugin as
``CA @ x``: stragglers released, a lost worker's pair rebuilt from the data kept where it
was scattered).
"""

from __future__ import annotations

import uuid
import warnings
from typing import Any

import dask.array as da
import numpy as np
from dask.highlevelgraph import HighLevelGraph
from distributed import wait

from ._scheduler import FirstKPlugin
from .codes import check_real_dtype
from .errors import BlockShapeError, CodedError, NonFiniteError, TooFewWorkersError
from .graph import product_group
from .keys import BLOCK_PREFIX, DECODE_PREFIX
from .matrix import pick_workers
from .schemes.polynomial import PolynomialScheme, coded_product
from .workers import default_client


def _pair(a_encoded: np.ndarray, b_encoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return a_encoded, b_encoded


def pair_product(pair: tuple[np.ndarray, np.ndarray], _unused=None) -> np.ndarray:
    """One worker's product from its pair of encoded operands (see ``coded_product``)."""
    return coded_product(*pair)


def _operand(X: Any, name: str) -> np.ndarray:
    """``X`` as a finite real 2-D numpy array (a dask array is computed)."""
    if isinstance(X, da.Array):
        X = X.compute()
    X = np.asarray(X)
    check_real_dtype(X.dtype, name)
    if X.ndim != 2:
        raise BlockShapeError(f"{name} must be 2-D, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise NonFiniteError(f"{name} contains NaN or Inf; every coded product would carry it")
    return X


def matmul(A: Any, B: Any, n: int, scheme: str = "polynomial", splits: Any = (2, 2), *,
           points: str = "auto", client: Any = None) -> da.Array:
    """``A @ B`` coded on ``n`` workers, both operands encoded.

    Parameters
    ----------
    A, B : numpy or dask arrays
        2-D, real, ``A.shape[1] == B.shape[0]``.
    n : int
        Workers (one product each).
    scheme : {"polynomial", "matdot"}
        ``"polynomial"``: A cut into ``m`` row blocks and B into ``p`` column blocks,
        threshold ``m p``; ``"matdot"``: the inner dimension cut into ``m``, threshold
        ``2 m - 1`` (see :mod:`dask_coded.schemes.polynomial`).
    splits : (m, p) or m
    points : {"auto", "real", "complex"}
        Evaluation points: Chebyshev (real operands and products) where accurate enough,
        else roots of unity (complex: twice the bytes, four real products per product).
    client : distributed.Client, optional
        Default: the current client; without one the products race in threads here.

    Returns
    -------
    dask.array.Array
        Equal to ``A @ B`` (one chunk), from the first ``threshold`` products.
    """
    A, B = _operand(A, "A"), _operand(B, "B")
    code = PolynomialScheme(n, scheme, splits, A.shape, B.shape, points)
    a_blocks, b_blocks = code.blocks_of(A, B)
    client = client if client is not None else default_client()
    token = uuid.uuid4().hex[:16]
    name = f"{DECODE_PREFIX}{token}"
    if client is None:
        pairs = [(code.encode_operand(w, a_blocks, "a"), code.encode_operand(w, b_blocks, "b"))
                 for w in range(n)]
        tasks = product_group(code, token, pairs, None, (name, 0, 0), local=True,
                              product=pair_product)
    else:
        if client.asynchronous:
            raise CodedError("dc.matmul sends the encoded operands in the call; use a synchronous "
                             "client")
        pairs = _place(client, code, a_blocks, b_blocks, token)
        tasks = product_group(code, token, pairs, None, (name, 0, 0), product=pair_product)
    graph = HighLevelGraph.from_collections(name, tasks, dependencies=())
    shape = (A.shape[0], B.shape[1])
    return da.Array(graph, name, ((shape[0],), (shape[1],)), dtype=np.float64)


def _place(client, code: PolynomialScheme, a_blocks, b_blocks, token: str) -> list:
    """Send each worker its two encoded operands and pin the pair there; returns the futures."""
    client.register_plugin(FirstKPlugin())
    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    if len(workers) < code.n_blocks:
        raise TooFewWorkersError(f"dc.matmul on n={code.n_blocks} workers needs n workers; "
                                 f"the cluster has {len(workers)}")
    placement = code.placement(pick_workers(workers, code.n_blocks, False))
    pairs = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
        for w, addr in enumerate(placement):
            a, b = client.scatter([code.encode_operand(w, a_blocks, "a"),
                                   code.encode_operand(w, b_blocks, "b")],
                                  workers=[addr], direct=True, hash=False)
            pairs.append(client.submit(_pair, a, b, key=(f"{BLOCK_PREFIX}{token}", w),
                                       workers=[addr], allow_other_workers=False, pure=False))
    wait(pairs)
    return pairs
