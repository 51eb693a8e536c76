"""Codes for ``A @ B`` that encode both operands: polynomial codes and MatDot.

Both evaluate matrix polynomials at one point per worker and decode by interpolation from
any ``threshold`` workers. Monomials at real points (the classic construction) are
exponentially ill-conditioned; two stable choices (``points``):

* ``"real"``: Chebyshev polynomials ``T_l`` at the Chebyshev nodes (Fahim and Cadambe,
  "Numerically stable polynomially coded computing"): real operands, real products; the
  interpolation is the ``"chebyshev"`` code of :mod:`dask_coded.codes`, accurate up to
  about ``n = 16``;
* ``"complex"``: powers of the ``n``-th roots of unity ``z_w = exp(2 pi i w / n)``: the
  interpolation is the ``"rotation"`` code (Ramamoorthy and Tang), accurate much further,
  but operands and products are complex (twice the bytes, four real products per
  product).

``"auto"`` takes ``"real"`` when its worst survivor set is within
``coded.decode.max-error``, else ``"complex"``.

* ``"polynomial"`` (Yu, Maddah-Ali, Avestimehr, NeurIPS 2017), ``splits=(m, p)``: A split
  into ``m`` row blocks, B into ``p`` column blocks; worker ``w`` gets
  ``A~ = sum_i A_i z^i`` and ``B~ = sum_j B_j z^(j m)`` and returns ``A~ B~``, whose
  coefficient of ``z^(i + j m)`` is ``A_i B_j`` (real points: ``T_i`` and ``T_(j m)``;
  ``T_i T_(j m) = (T_(i + j m) + T_|j m - i|) / 2`` is a triangular change of basis):
  threshold ``m p``; each worker receives ``1/m`` of A and ``1/p`` of B; a product is
  ``1/(m p)`` of C.
* ``"matdot"`` (Dutta et al., IEEE TIT 2020), ``splits=m``: the inner dimension split in
  ``m``; ``A~ = sum_i A_i z^i`` (column blocks), ``B~ = sum_i B_i z^(m - 1 - i)`` (row
  blocks); the coefficient of ``z^(m - 1)`` of ``A~ B~`` is ``sum_i A_i B_i = A B`` (real
  points: ``A~ = sum_i w_i A_i T_i``, ``B~ = sum_i w_i B_i T_i``, ``w_0 = 1``,
  ``w_i = sqrt 2``: by orthogonality ``A B`` is the ``T_0`` coefficient of ``A~ B~``):
  threshold ``2 m - 1``; each worker receives ``1/m`` of A and of B; a product is all of C
  (the decode holds ``threshold`` of them).

With complex points a worker returns ``[Re; Im]`` of its product stacked by rows, which
is exactly what the rotation code decodes.

**Equilibration.** A polynomial code's product mixes row ``r`` of every block ``A_i`` and
column ``c`` of every block ``B_j``, so a row of A (or a column of B) far smaller than
the rows it is mixed with would be lost to rounding in the decode. A's rows and B's
columns are divided by their 2-norms before encoding (:meth:`PolynomialScheme.side_scales`)
and the decode multiplies them back, so each entry is right up to the decode's error
times ``||A_r|| ||B_c||``. MatDot mixes the inner dimension only: entry ``(r, c)`` of every
product is a sum of products of row ``r`` of A and column ``c`` of B, so it keeps that
bound unscaled and its operands are encoded as they are.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from ..codes import MDSCode, make_code, require_accurate
from ..codes.mds import chebyshev_nodes
from ..errors import BlockShapeError, CodeParameterError, TooFewResultsError
from ..verify import BoundedCode, OperandScale, Verdict, Verify, inspect
from .base import Scheme
from .mds import row_norms

KINDS = ("polynomial", "matdot")
POINTS = ("auto", "real", "complex")


def _splits(kind: str, splits) -> tuple[int, int]:
    if splits is None:
        example = "(2, 2): A's rows and B's columns in halves" if kind == "polynomial" else (
            "2: the inner dimension in halves")
        raise CodeParameterError(f"{kind} needs splits, how the operands are split (e.g. "
                                 f"splits={example}); dc.plan_matmul suggests one")
    if kind == "polynomial":
        if not isinstance(splits, (int, np.integer)) and (
                not isinstance(splits, (tuple, list)) or len(splits) != 2):
            raise CodeParameterError(f"polynomial splits are (m, p), A's row blocks and B's "
                                     f"column blocks, or one integer m; got {splits!r}")
        m, p = (splits, 1) if isinstance(splits, (int, np.integer)) else tuple(splits)
    else:
        if not isinstance(splits, (int, np.integer)):
            raise CodeParameterError(f"matdot splits the inner dimension: splits=m, an "
                                     f"integer; got {splits!r}")
        m, p = splits, 1
    if int(m) < 1 or int(p) < 1:
        raise CodeParameterError(f"splits must be positive, got {splits!r}")
    return int(m), int(p)


def _split(X: np.ndarray, parts: int, axis: int) -> list[np.ndarray]:
    """``X`` split into ``parts`` equal blocks along ``axis`` (zero-padded at the end)."""
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
    points : {"auto", "real", "complex"}
        Evaluation points (module doc).
    """

    name = "polynomial"
    data = "pair"

    @classmethod
    def from_params(cls, n: int, *, shape_a: tuple, shape_b: tuple, splits=None,
                    points: str = "auto", verify: str | None = None,
                    errors: int | None = None) -> PolynomialScheme:
        """The ``cls.name`` code (``"polynomial"`` or ``"matdot"``) of ``A @ B`` for A of
        ``shape_a`` and B of ``shape_b`` on ``n`` workers, split by ``splits``;
        ``verify`` (``"detect"``, ``"correct"`` with ``errors``) checks each decode's
        products (the polynomial kind: :meth:`inspect`)."""
        return PolynomialScheme(n, cls.name, splits, shape_a, shape_b, points,
                                Verify.of(verify, errors))

    def __init__(self, n: int, kind: str, splits, shape_a: tuple, shape_b: tuple,
                 points: str = "auto", verify: Verify | None = None):
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
        if points not in POINTS:
            raise CodeParameterError(f"points must be one of {POINTS}, got {points!r}")
        self.code: MDSCode = self._code(n, points)
        self.real = self.code.kind == "chebyshev"
        self.points = "real" if self.real else "complex"
        self._x = chebyshev_nodes(n)
        self._z = np.exp(2j * np.pi * np.arange(n) / n)
        if self.real and kind == "polynomial":
            self._unmix = np.linalg.inv(self._mixing())
        self.verify = verify
        if verify is not None:
            self._check_verifiable(verify)
            self.threshold += verify.spare

    def _check_verifiable(self, verify: Verify) -> None:
        what = (f"verify={verify.mode!r}" if verify.mode == "detect"
                else f"verify='correct' with errors={verify.errors}")
        if self.kind != "polynomial":
            raise CodeParameterError(
                f"{what} bounds rounding on equilibrated operands; {self.kind} encodes A "
                f"and B as they are: use scheme='polynomial'")
        need = self.threshold + verify.spare
        if need > self.n_blocks:
            raise CodeParameterError(
                f"{what} waits for {need} products (the {self.threshold} polynomial with "
                f"splits {(self.m, self.p)} needs, plus {verify.spare} spare), more than "
                f"n={self.n_blocks} workers: use a larger n or smaller splits")

    @property
    def code_threshold(self) -> int:
        """The products the interpolation needs (without a check's spares)."""
        return self.code.threshold

    @property
    def checks_with_operand(self) -> bool:
        """False: both operands are equilibrated, so :meth:`inspect` bounds rounding from
        the shapes alone."""
        return False

    def inspect(self, products: Sequence, scale: OperandScale | None = None) -> Verdict:
        """Check the finished ``products`` with :attr:`verify`: they are evaluations of one
        polynomial, so the interpolation code's syndrome must be rounding
        (:func:`dask_coded.verify.inspect`). A's rows and B's columns have unit norm, so
        worker ``w``'s product rounds within its bound ``b_w = (sum_i |a_wi|)
        (sum_j |b_wj|)`` (its coefficients' 1-norms) times the inner dimension's
        rounding; ``scale`` is not needed. Too few products raise
        :class:`~dask_coded.errors.TooFewResultsError`."""
        results = {w: p for w, p in enumerate(products) if p is not None}
        if len(results) < self.threshold:
            raise self.verify.too_few(len(results), self.n_blocks, f"{self.threshold} ("
                                      f"{self.code.threshold} plus {self.verify.spare} spare)")
        first = np.asarray(next(iter(results.values())))
        errors = self.verify.errors if self.verify.mode == "correct" else len(results)
        return inspect(self._checked_code, results, self._scale(first.shape[-1]), errors)

    @functools.cached_property
    def _checked_code(self) -> BoundedCode:
        """The interpolation code with each worker's rounding bound (:meth:`inspect`),
        made once per scheme."""
        a_deg, b_deg = self._exponents()
        bounds = tuple(float(np.abs(self._coefficients(w, a_deg)).sum()
                             * np.abs(self._coefficients(w, b_deg)).sum())
                       for w in range(self.n_blocks))
        return BoundedCode(self.code, bounds)

    def _scale(self, columns: int) -> OperandScale:
        """Unit columns of B (equilibrated) over the inner dimension; a complex product
        sums twice as many real products."""
        inner = self.shape_a[1] * (1 if self.real else 2)
        return OperandScale(inner, np.ones(columns), float(np.finfo(np.float64).eps))

    def _code(self, n: int, points: str) -> MDSCode:
        """The interpolation code: ``"chebyshev"`` (real) or ``"rotation"`` (complex)."""
        if points in ("auto", "real"):
            code = make_code(n, self.threshold, "chebyshev")
            try:
                require_accurate(code)
                return code
            except CodeParameterError:
                if points == "real":
                    raise CodeParameterError(
                        f"points='real' (Chebyshev points) is not accurate enough for n={n} "
                        f"workers and a threshold of {self.threshold}: its worst survivor "
                        f"set would decode with an error above coded.decode.max-error. Use "
                        f"points='complex' or 'auto', fewer workers, or smaller splits"
                    ) from None
        code = make_code(n, self.threshold, "rotation")
        require_accurate(code)
        return code

    def _mixing(self) -> np.ndarray:
        """``K``: Chebyshev coefficients of ``A~ B~`` = ``K`` times the blocks ``A_i B_j``
        (ordered ``i + j m``), from ``T_i T_(j m) = (T_(i + j m) + T_|j m - i|) / 2``."""
        K = np.zeros((self.threshold, self.threshold))
        for j in range(self.p):
            for i in range(self.m):
                col = i + j * self.m
                if j == 0:
                    K[i, col] = 1.0
                else:
                    K[i + j * self.m, col] += 0.5
                    K[abs(j * self.m - i), col] += 0.5
        return K

    def __repr__(self) -> str:
        splits = (self.m, self.p) if self.kind == "polynomial" else self.m
        check = f", {self.verify!r}" if self.verify is not None else ""
        return (f"PolynomialScheme({self.kind!r}, n={self.n_blocks}, splits={splits}, "
                f"threshold={self.threshold}, points={self.points!r}{check})")

    @property
    def summary(self) -> str:
        return (f"{self.name}: {self.threshold} of {self.n_blocks}"
                + ("" if self.verify is None else f", verify={self.verify.mode}"))

    def __dask_tokenize__(self) -> tuple:
        return ("PolynomialScheme", self.kind, self.m, self.p, self.n_blocks, self.shape_a,
                self.shape_b, self.points, repr(self.verify))

    # ---- encode ------------------------------------------------------------------------

    def _exponents(self) -> tuple[np.ndarray, np.ndarray]:
        """Degrees (powers of ``z``, or Chebyshev indices) of A's and B's blocks."""
        if self.kind == "polynomial":
            return np.arange(self.m), np.arange(self.p) * self.m
        if self.real:
            return np.arange(self.m), np.arange(self.m)
        return np.arange(self.m), self.m - 1 - np.arange(self.m)

    def _coefficients(self, w: int, degrees: np.ndarray) -> np.ndarray:
        """What worker ``w`` multiplies the blocks of those degrees by."""
        if not self.real:
            return self._z[w] ** degrees
        T = np.polynomial.chebyshev.chebvander(self._x[w:w + 1], int(degrees.max()))[0]
        weights = np.where(degrees > 0, np.sqrt(2.0), 1.0) if self.kind == "matdot" else 1.0
        return T[degrees] * weights

    @property
    def equilibrated(self) -> bool:
        """Whether A's rows and B's columns are scaled to unit norm before encoding (the
        polynomial kind: module doc)."""
        return self.kind == "polynomial"

    def side_scales(self, X: np.ndarray, side: str) -> np.ndarray | None:
        """What ``X`` is divided by before it is split: A's row norms (``side="a"``) or
        B's column norms (``"b"``), 1 for a zero row or column; ``None`` when the code
        encodes its operands as they are (MatDot)."""
        if not self.equilibrated:
            return None
        return row_norms(X if side == "a" else np.asarray(X).T)

    def split_operand(self, X: np.ndarray, side: str,
                      scales: np.ndarray | None = None) -> list[np.ndarray]:
        """A's (``side="a"``) or B's (``"b"``) blocks, in the order of :meth:`_exponents`:
        polynomial, A by rows into ``m`` and B by columns into ``p``; MatDot, the inner
        dimension into ``m`` (zero-padded at the end). ``scales``
        (:meth:`side_scales`): A's rows or B's columns are divided by them first."""
        if scales is not None:
            X = np.asarray(X, dtype=np.float64)
            X = X / scales[:, None] if side == "a" else X / scales[None, :]
        if self.kind == "polynomial":
            return _split(X, self.m, 0) if side == "a" else _split(X, self.p, 1)
        return _split(X, self.m, 1 if side == "a" else 0)

    def blocks_of(self, A: np.ndarray, B: np.ndarray) -> tuple[list, list]:
        """A's and B's blocks, in the order of :meth:`_exponents`."""
        return self.split_operand(A, "a"), self.split_operand(B, "b")

    def with_b(self, shape_b: tuple) -> PolynomialScheme:
        """The same code (workers, splits, points) for a B of shape ``shape_b``: A's
        encoded operands do not depend on B's shape, so they serve every such B."""
        splits = (self.m, self.p) if self.kind == "polynomial" else self.m
        return PolynomialScheme(self.n_blocks, self.kind, splits, self.shape_a, shape_b,
                                self.points, self.verify)

    def encode_operand(self, w: int, blocks: Sequence[np.ndarray], side: str) -> np.ndarray:
        """Worker ``w``'s encoded operand: ``sum_i c_i X_i`` with ``c_i`` the block's
        polynomial at the worker's point (complex with complex points)."""
        degrees = self._exponents()[0 if side == "a" else 1]
        coefficients = self._coefficients(w, degrees)
        return sum(c * np.asarray(b, dtype=np.float64) for c, b in zip(coefficients, blocks))

    def placement(self, workers: Sequence[str]) -> list[str]:
        """Worker ``w``'s encoded operands on ``workers[w]`` (one per worker)."""
        return [workers[w % len(workers)] for w in range(self.n_blocks)]

    # ---- decode ------------------------------------------------------------------------

    def decode(self, products: Sequence, scales: Sequence | None = None) -> np.ndarray:
        """``A @ B`` from the products that arrived (each ``[Re; Im]`` of ``A~ B~``);
        ``scales``: ``(a, b)``, A's row and B's column scales the operands were divided
        by (:meth:`side_scales`), multiplied back: ``C = diag(a) C~ diag(b)``."""
        C = self._decoded(products)
        a, b = (None, None) if scales is None else scales
        if a is not None:
            C = C * np.asarray(a)[:, None]
        if b is not None:
            C = C * np.asarray(b)[None, :]
        return C

    def _decoded(self, products: Sequence) -> np.ndarray:
        results = {w: p for w, p in enumerate(products) if p is not None}
        need = self.code.threshold
        if len(results) < need:
            raise TooFewResultsError(
                f"only {len(results)} of n={self.n_blocks} products survived; {self.kind} "
                f"needs {need}")
        chosen = dict(sorted(results.items())[:need])
        Y = np.asarray(self.code.decode_stacked(chosen))  # coefficients of A~ B~
        if not self.real:
            Y = Y[:, : Y.shape[1] // 2]  # [Re; Im]: C is real
        r, t = self.shape_a[0], self.shape_b[1]
        if self.kind == "matdot":
            return Y[0 if self.real else self.m - 1][:r, :t]
        if self.real:  # Chebyshev coefficients -> the blocks A_i B_j
            Y = np.tensordot(self._unmix, Y, axes=1)
        rows = [np.concatenate([Y[i + j * self.m] for j in range(self.p)], axis=1)
                for i in range(self.m)]
        return np.concatenate(rows)[:r, :t]


class MatDot(PolynomialScheme):
    """The registry's name for MatDot: :meth:`from_params` builds a
    :class:`PolynomialScheme` of kind ``"matdot"``."""

    name = "matdot"


def coded_product(a_encoded: np.ndarray, b_encoded: np.ndarray) -> np.ndarray:
    """One worker's product ``A~ B~``: as it is when real, ``[Re; Im]`` stacked by rows
    when complex (what the rotation code decodes)."""
    P = a_encoded @ b_encoded
    return np.concatenate([P.real, P.imag]) if np.iscomplexobj(P) else P
