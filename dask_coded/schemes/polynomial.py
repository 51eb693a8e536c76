"""Codes for ``A @ B`` that encode both operands: polynomial codes and MatDot.

Both evaluate matrix polynomials at the ``n``-th roots of unity ``z_w = exp(2 pi i w / n)``,
one point per worker, and decode by interpolation from any ``threshold`` workers. On the
unit circle the interpolation is the rotation code of :mod:`dask_coded.codes` (a complex
Vandermonde realised over the reals: Ramamoorthy and Tang), whose worst survivor set is
certified; real evaluation points (the classic construction) are exponentially
ill-conditioned.

* ``"polynomial"`` (Yu, Maddah-Ali, Avestimehr, NeurIPS 2017), ``splits=(m, p)``: A cut
  into ``m`` row blocks, B into ``p`` column blocks; worker ``w`` gets
  ``A~ = sum_i A_i z^i`` and ``B~ = sum_j B_j z^(j m)`` and returns ``A~ B~``, whose
  coefficient of ``z^(i + j m)`` is ``A_i B_j``: threshold ``m p``; each worker receives
  ``1/m`` of A and ``1/p`` of B; a product is ``1/(m p)`` of C.
* ``"matdot"`` (Dutta et al., IEEE TIT 2020), ``splits=m``: the inner dimension cut in
  ``m``; ``A~ = sum_i A_i z^i`` (column blocks), ``B~ = sum_i B_i z^(m - 1 - i)`` (row
  blocks); the coefficient of ``z^(m - 1)`` of ``A~ B~`` is ``sum_i A_i B_i = A B``:
  threshold ``2 m - 1``; each worker receives ``1/m`` of A and of B; a product is all of C
  (the decode holds ``threshold`` of them).

The encoded operands are complex, so a product costs four real products of its size (one
complex ``zgemm``); a worker returns ``[Re; Im]`` of its product stacked by rows, which is
exactly what the rotation code decodes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..codes import MDSCode, make_code, require_accurate
from ..errors import BlockShapeError, CodeParameterError, TooFewResultsError
from .base import Scheme

KINDS = ("polynomial", "matdot")


def _splits(kind: str, splits) -> tuple[int, int]:
    if kind == "polynomial":
        m, p = (splits, 1) if isinstance(splits, (int, np.integer)) else tuple(splits)
    else:
        if not isinstance(splits, (int, np.integer)):
            raise CodeParameterError(f"matdot splits the inner dimension: splits=m, an "
                                     f"integer; got {splits!r}")
        m, p = splits, 1
    if int(m) < 1 or int(p) < 1:
        raise CodeParameterError(f"splits must be positive, got {splits!r}")
    return int(m), int(p)


def _cut(X: np.ndarray, parts: int, axis: int) -> list[np.ndarray]:
    """``X`` cut into ``parts`` equal blocks along ``axis`` (zero-padded at the end)."""
    size = -(-X.shape[axis] // parts)
    pad = [(0, 0)] * X.ndim
    pad[axis] = (0, size * parts - X.shape[axis])
    return np.split(np.pad(X, pad), parts, axis=axis)


class PolynomialScheme(Scheme):
    """A two-operand code for ``A @ B`` on ``n`` workers (see the module doc).

    Parameters
    ----------
    n : int
        Workers (evaluation points).
    kind : {"polynomial", "matdot"}
    splits : (m, p) for ``"polynomial"``, m for ``"matdot"``
    shape_a, shape_b : tuple
        Shapes of A and B.
    """

    def __init__(self, n: int, kind: str, splits, shape_a: tuple, shape_b: tuple):
        if kind not in KINDS:
            raise CodeParameterError(f"kind must be one of {KINDS}, got {kind!r}")
        if len(shape_a) != 2 or len(shape_b) != 2 or shape_a[1] != shape_b[0]:
            raise BlockShapeError(f"A @ B needs 2-D A (r, s) and B (s, t); got A {shape_a} "
                                  f"and B {shape_b}")
        self.kind, self.m, self.p = kind, *_splits(kind, splits)
        self.shape_a, self.shape_b = tuple(shape_a), tuple(shape_b)
        self.name = kind
        self.threshold = self.m * self.p if kind == "polynomial" else 2 * self.m - 1
        if self.threshold > n:
            raise CodeParameterError(
                f"{kind} with splits {splits!r} needs {self.threshold} products to decode, "
                f"more than n={n} workers")
        self.n_blocks = n
        self.code: MDSCode = make_code(n, self.threshold, "rotation")
        require_accurate(self.code)
        angles = 2 * np.pi * np.arange(n) / n
        self._z = np.exp(1j * angles)

    def __repr__(self) -> str:
        splits = (self.m, self.p) if self.kind == "polynomial" else self.m
        return (f"PolynomialScheme({self.kind!r}, n={self.n_blocks}, splits={splits}, "
                f"threshold={self.threshold})")

    def __dask_tokenize__(self) -> tuple:
        return ("PolynomialScheme", self.kind, self.m, self.p, self.n_blocks, self.shape_a,
                self.shape_b)

    # ---- encode ------------------------------------------------------------------------

    def _exponents(self) -> tuple[np.ndarray, np.ndarray]:
        """Powers of ``z`` multiplying A's and B's blocks."""
        if self.kind == "polynomial":
            return np.arange(self.m), np.arange(self.p) * self.m
        return np.arange(self.m), self.m - 1 - np.arange(self.m)

    def blocks_of(self, A: np.ndarray, B: np.ndarray) -> tuple[list, list]:
        """A's and B's blocks, in the order of :meth:`_exponents`."""
        if self.kind == "polynomial":
            return _cut(A, self.m, 0), _cut(B, self.p, 1)
        return _cut(A, self.m, 1), _cut(B, self.m, 0)

    def encode_operand(self, w: int, blocks: Sequence[np.ndarray], side: str) -> np.ndarray:
        """Worker ``w``'s encoded operand ``sum_i X_i z_w^(e_i)`` of one operand (complex)."""
        powers = self._exponents()[0 if side == "a" else 1]
        coefficients = self._z[w] ** powers
        return sum(c * np.asarray(b, dtype=np.float64) for c, b in zip(coefficients, blocks))

    def placement(self, workers: Sequence[str]) -> list[str]:
        """Worker ``w``'s encoded operands on ``workers[w]`` (one per worker)."""
        return [workers[w % len(workers)] for w in range(self.n_blocks)]

    # ---- decode ------------------------------------------------------------------------

    def decode(self, products: Sequence, scales=None) -> np.ndarray:
        """``A @ B`` from the products that arrived (each ``[Re; Im]`` of ``A~ B~``)."""
        results = {w: p for w, p in enumerate(products) if p is not None}
        if len(results) < self.threshold:
            raise TooFewResultsError(
                f"only {len(results)} of n={self.n_blocks} products survived; {self.kind} "
                f"needs {self.threshold}")
        chosen = dict(sorted(results.items())[: self.threshold])
        Y = self.code.decode_stacked(chosen)  # (threshold, 2 * rows, cols): [Re; Im]
        half = Y[0].shape[0] // 2
        r, t = self.shape_a[0], self.shape_b[1]
        if self.kind == "matdot":
            return np.asarray(Y[self.m - 1][:half])[:r, :t]
        rows = [np.concatenate([Y[i + j * self.m][:half] for j in range(self.p)], axis=1)
                for i in range(self.m)]
        return np.concatenate(rows)[:r, :t]


def coded_product(a_encoded: np.ndarray, b_encoded: np.ndarray) -> np.ndarray:
    """``[Re; Im]`` of one worker's complex product ``A~ B~``, stacked by rows (what the
    rotation code decodes)."""
    P = a_encoded @ b_encoded
    return np.concatenate([P.real, P.imag])
