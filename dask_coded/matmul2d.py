"""``dc.matmul(A, B)``: a coded ``A @ B`` that encodes both operands (polynomial, MatDot).

Each worker receives only its encoded operands (its pieces of A and of B, encoded here and
sent in the task that pins them there like a coded block: ``("coded-block-<token>", w)``
holds the pair), runs one product, and the decode interpolates ``A @ B`` from the first
``threshold`` products (:class:`~dask_coded.schemes.polynomial.PolynomialScheme`; the same
scheduler plugin as ``CA @ x``: stragglers released, up to ``n - threshold`` lost workers
tolerated, a lost worker's pair rebuilt elsewhere).
"""

from __future__ import annotations

import logging
import uuid
import warnings
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
from dask.highlevelgraph import HighLevelGraph
from distributed import wait

from ._scheduler import FirstKPlugin
from .errors import CodedError, NonFiniteError, TooFewWorkersError
from .graph import product_group
from .keys import BLOCK_PREFIX, DECODE_PREFIX
from .matrix import as_matrix, encode, pick_workers
from .schemes.polynomial import PolynomialScheme, coded_product
from .workers import default_client

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MatmulPlan:
    """The code ``dc.matmul(..., scheme="auto")`` chose, and why: the bytes each scheme
    would move per call (operands to the ``n`` workers, plus the products the decode
    gathers), for a threshold of about ``3 n / 4``."""

    scheme: str
    splits: Any
    threshold: int
    bytes: dict

    def __repr__(self) -> str:
        costs = ", ".join(f"{name} {b / 1e6:.1f} MB" for name, b in self.bytes.items())
        return (f"MatmulPlan({self.scheme!r}, splits={self.splits}, threshold="
                f"{self.threshold}: fewest bytes moved per call of {costs})")


def plan_matmul(shape_a: tuple, shape_b: tuple, n: int, itemsize: int = 8) -> MatmulPlan:
    """Choose among 1-D MDS of A (``"mds"``: every worker gets all of B), polynomial and
    MatDot codes by the bytes a call moves: ``n`` times what one worker receives, plus the
    ``threshold`` products the decode gathers (MatDot's are the size of ``C``).

    The threshold is ``round(3 n / 4)`` (the theory's best ``k`` at ``mu = 1``); the
    polynomial code takes the ``(m, p)`` with ``m p`` at most that which sends the least.
    """
    (r, s), (_, t) = shape_a, shape_b
    a, b, c = r * s * itemsize, s * t * itemsize, r * t * itemsize
    T = max(1, round(3 * n / 4))
    options = {"mds": (T, n * (a / T + b) + c)}
    m, p = min(((m, p) for m in range(1, T + 1) for p in range(1, T // m + 1)),
               key=lambda mp: (a / mp[0] + b / mp[1], -mp[0] * mp[1]))
    options["polynomial"] = ((m, p), n * (a / m + b / p) + c)
    md = (T + 1) // 2
    options["matdot"] = (md, n * (a + b) / md + (2 * md - 1) * c)
    best = min(options, key=lambda k: options[k][1])
    splits = options[best][0]
    threshold = {"mds": T, "polynomial": m * p, "matdot": 2 * md - 1}[best]
    return MatmulPlan(best, splits, threshold, {k: v[1] for k, v in options.items()})


def _pair(a_encoded: np.ndarray, b_encoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return a_encoded, b_encoded


def pair_product(pair: tuple[np.ndarray, np.ndarray], _unused=None) -> np.ndarray:
    """One worker's product from its pair of encoded operands (see ``coded_product``)."""
    return coded_product(*pair)


def _operand(X: Any, name: str) -> np.ndarray:
    """``X`` as a finite real 2-D numpy array (a dask array is computed)."""
    X = as_matrix(X, name)
    X = np.asarray(X.compute() if isinstance(X, da.Array) else X)
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
    client : distributed.Client, optional
        Default: the current client; without one the products race in threads here.

    Returns
    -------
    dask.array.Array
        Equal to ``A @ B`` (one chunk), from the first ``threshold`` products.
    """
    A, B = _operand(A, "A"), _operand(B, "B")
    if scheme == "auto":
        plan = plan_matmul(A.shape, B.shape, n)
        logger.info("dask_coded.matmul: %r", plan)
        if plan.scheme == "mds":
            return encode(A, n, plan.threshold, client=client) @ B
        scheme, splits = plan.scheme, plan.splits
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
    """Send each worker its two encoded operands and pin the pair there; returns the
    futures. The operands travel inside the pair's task (not scattered): a lost worker's
    pair can then be rebuilt elsewhere, where scattered data would be gone with it."""
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
            pairs.append(client.submit(
                _pair, code.encode_operand(w, a_blocks, "a"),
                code.encode_operand(w, b_blocks, "b"), key=(f"{BLOCK_PREFIX}{token}", w),
                workers=[addr], allow_other_workers=False, pure=False))
    wait(pairs)
    return pairs
