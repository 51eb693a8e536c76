"""Lagrange coded computing: any polynomial of the data parts, from any ``(k-1) d + 1`` of
``n`` workers.

Yu, Li, Raviv, Kalan, Soltanolkotabi, Avestimehr, "Lagrange Coded Computing: Optimal
Design for Resiliency, Security, and Privacy", AISTATS 2019.

The ``k`` data parts ``X_0 .. X_(k-1)`` (arrays, or tuples of arrays of one structure)
are the values at points ``a_0 .. a_(k-1)`` of the polynomial
``u(z) = sum_i X_i l_i(z)`` (``l_i``: the Lagrange basis on the ``a``'s); worker ``j``
holds the coded part ``u(b_j)``. For any ``f`` that is a polynomial of degree ``d`` in
the part (``f(X, *args)``; the args enter freely), ``h(z) = f(u(z), *args)`` has degree
at most ``(k-1) d``, so the products ``h(b_j)`` of any ``threshold = (k-1) d + 1``
workers ``S`` interpolate it, and ``f(X_i, *args) = h(a_i) = sum_(j in S) D_S[i, j] h(b_j)``
with ``D_S[i, j] = prod_(l in S, l != j) (a_i - b_l) / (b_j - b_l)``.

Points (``points``):

* ``"real"``: Chebyshev nodes, ``a`` of ``k`` and ``b`` of ``n`` (coded parts and
  products real);
* ``"complex"``: roots of unity, ``a_i = exp(2 pi i (i + 1/2) / k)`` and
  ``b_j = exp(2 pi i j / n)`` (coded parts and products complex: twice the bytes; the
  decoded values are real, their imaginary parts rounding error);
* ``"auto"``: real where its worst survivor set is within ``coded.decode.max-error``,
  else complex.

Accuracy: a product is computed with a relative error of about ``eps`` of its size, at
most ``g^d`` times the size of ``f``'s values on the parts (``g = max_j sum_i |l_i(b_j)|``,
the encode's growth), and the decode adds up ``threshold`` of them weighted by the row
of ``D_S``; the estimated relative error is ``eps * g^d * max_i sum_j |D_S[i, j]|``.
The code is refused when the worst survivor set (all sets up to
``coded.audit.exhaustive-limit``, else a sample plus the clustered runs) exceeds
``coded.decode.max-error``, and a decode from a worse set raises
:class:`~dask_coded.errors.IllConditionedError`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import config
from ..codes.mds import chebyshev_nodes
from ..codes.survivors import survivor_sets
from ..errors import (
    BlockShapeError, CodeParameterError, DtypeError, IllConditionedError, NonFiniteError,
    TooFewResultsError,
)
from .base import PartScheme

POINTS = ("auto", "real", "complex")
EPS = float(np.finfo(np.float64).eps)


def points_of(k: int, n: int, points: str) -> tuple[np.ndarray, np.ndarray]:
    """The data points ``a`` (``k``) and the workers' points ``b`` (``n``)."""
    if points == "real":
        return chebyshev_nodes(k), chebyshev_nodes(n)
    return (np.exp(2j * np.pi * (np.arange(k) + 0.5) / k),
            np.exp(2j * np.pi * np.arange(n) / n))


def lagrange_weights(at: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """``W[i, j] = prod_(l != j) (at_i - nodes_l) / (nodes_j - nodes_l)``: the Lagrange
    basis on ``nodes`` evaluated at ``at`` (the values at ``at`` of the polynomial of
    degree ``len(nodes) - 1`` through ``(nodes_j, y_j)`` are ``W @ y``)."""
    diff = nodes[:, None] - nodes[None, :]
    np.fill_diagonal(diff, 1.0)
    denominators = diff.prod(axis=1)
    to = at[:, None] - nodes[None, :]  # (len(at), len(nodes))
    W = np.empty(to.shape, dtype=np.result_type(at, nodes))
    for j in range(len(nodes)):
        W[:, j] = np.delete(to, j, axis=1).prod(axis=1) / denominators[j]
    return W


@functools.lru_cache(maxsize=64)
def audit(n: int, k: int, degree: int, points: str) -> tuple[float, bool]:
    """The worst estimated relative decode error over survivor sets (module doc), and
    whether every set was checked."""
    a, b = points_of(k, n, points)
    growth = float(np.abs(lagrange_weights(b, a)).sum(axis=1).max())
    t = (k - 1) * degree + 1
    sets, exhaustive = survivor_sets(
        n, t, systematic=False, exhaustive_limit=int(config.get("audit.exhaustive-limit")),
        samples=int(config.get("audit.samples")), rng=np.random.default_rng(0))
    worst = max(float(np.abs(lagrange_weights(a, b[s])).sum(axis=1).max()) for s in sets)
    return EPS * growth ** degree * worst, exhaustive


def _map(fn, value):
    """``fn`` on an array, or on each array of a tuple."""
    return tuple(fn(v) for v in value) if isinstance(value, tuple) else fn(value)


def _leaves(value) -> list:
    return list(value) if isinstance(value, tuple) else [value]


class LagrangeScheme(PartScheme):
    """Lagrange coded computing of ``parts`` data parts on ``n`` workers for a function of
    degree ``degree`` (module doc); threshold ``(parts - 1) degree + 1``.

    Parameters
    ----------
    n : int
        Workers, one coded part each.
    parts : int
        ``k``, the data parts.
    degree : int
        ``d``, the degree of the functions mapped over the parts (in the part's data).
    points : {"auto", "real", "complex"}
    """

    name = "lagrange"

    @classmethod
    def from_params(cls, n: int, *, parts: int, degree: int,
                    points: str = "auto") -> LagrangeScheme:
        """The code for ``parts`` data parts and functions of degree ``degree``, refused
        when its worst survivor set misses ``coded.decode.max-error``."""
        return cls(n, parts, degree, points)

    def __init__(self, n: int, parts: int, degree: int, points: str = "auto"):
        for what, value in (("n", n), ("parts", parts), ("degree", degree)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise CodeParameterError(f"{what} must be a positive integer, got {value!r}")
        if points not in POINTS:
            raise CodeParameterError(f"points must be one of {POINTS}, got {points!r}")
        self.n_blocks, self.parts, self.degree = int(n), int(parts), int(degree)
        self.threshold = (self.parts - 1) * self.degree + 1
        if self.threshold > self.n_blocks:
            raise CodeParameterError(
                f"Lagrange coding of {parts} parts for degree {degree} needs "
                f"(k-1)d+1 = {self.threshold} products to decode, more than n={n} workers; "
                f"use at most {self.n_blocks // self.degree + (self.n_blocks % self.degree > 0)}"
                f" parts or more workers")
        self.points = self._points(points)
        self.max_error = float(config.get("decode.max-error"))
        self.estimated_error = audit(self.n_blocks, self.parts, self.degree, self.points)[0]
        self._a, self._b = points_of(self.parts, self.n_blocks, self.points)
        self._encoder = lagrange_weights(self._b, self._a)  # (n, k): l_i(b_j)
        self._growth = float(np.abs(self._encoder).sum(axis=1).max())

    def _points(self, points: str) -> str:
        """``points``, or for ``"auto"`` the first of real and complex that is accurate
        enough; refused when the one asked for (or both) is not."""
        limit = float(config.get("decode.max-error"))
        for kind in (("real", "complex") if points == "auto" else (points,)):
            error = audit(self.n_blocks, self.parts, self.degree, kind)[0]
            if error <= limit:
                return kind
        raise CodeParameterError(
            f"Lagrange coding of {self.parts} parts for degree {self.degree} on "
            f"n={self.n_blocks} workers with {points!r} points: its worst survivor set would "
            f"decode with an estimated error {error:.1e}, above coded.decode.max-error "
            f"({limit:.0e}); use fewer parts, a lower degree, fewer workers"
            + (", or points='complex'" if points == "real" else ""))

    def __repr__(self) -> str:
        return (f"LagrangeScheme(n={self.n_blocks}, parts={self.parts}, degree={self.degree}, "
                f"threshold={self.threshold}, points={self.points!r})")

    def __dask_tokenize__(self) -> tuple:
        return ("LagrangeScheme", self.n_blocks, self.parts, self.degree, self.points)

    # ---- encode ------------------------------------------------------------------------

    def parts_needed(self, j: int) -> tuple[int, ...]:
        """Every coded part mixes all ``k`` data parts."""
        return tuple(range(self.parts))

    def encode_part(self, j: int, *parts: Any) -> Any:
        """``u(b_j) = sum_i l_i(b_j) X_i``, per array of a tuple part."""
        first = parts[0]
        for i, part in enumerate(parts):
            if isinstance(part, tuple) != isinstance(first, tuple) or (
                    isinstance(first, tuple) and len(part) != len(first)):
                raise BlockShapeError(f"Lagrange coding mixes parts of one structure: part "
                                      f"{i} is not shaped as part 0")
            for c, (leaf, ref) in enumerate(zip(_leaves(part), _leaves(first))):
                leaf, ref = np.asarray(leaf), np.asarray(ref)
                if leaf.shape != ref.shape:
                    raise BlockShapeError(
                        f"Lagrange coding mixes parts of one shape: part {i}"
                        f"{f' array {c}' if isinstance(first, tuple) else ''} has shape "
                        f"{leaf.shape}, part 0's {ref.shape}")
                if leaf.dtype.kind not in "biuf":
                    raise DtypeError(f"Lagrange coding needs real numeric parts; part {i} has "
                                     f"dtype {leaf.dtype}")
                if not np.isfinite(leaf).all():
                    raise NonFiniteError(f"part {i} contains NaN or Inf; a coded part mixes "
                                         f"every part, so it would corrupt every result")
        weights = self._encoder[j]
        n_leaves = len(_leaves(first))
        mixed = [sum(w * np.asarray(_leaves(p)[c], dtype=np.float64)
                     for w, p in zip(weights, parts)) for c in range(n_leaves)]
        return tuple(mixed) if isinstance(first, tuple) else mixed[0]

    # ---- decode ------------------------------------------------------------------------

    def decode(self, products: Sequence, scales=None) -> list:
        """``[f(X_0, *args), .., f(X_(k-1), *args)]`` from the first ``threshold``
        finished products (by index)."""
        got = [j for j, p in enumerate(products) if p is not None]
        if len(got) < self.threshold:
            raise TooFewResultsError(
                f"only {len(got)} of n={self.n_blocks} products survived; Lagrange coding of "
                f"{self.parts} parts for degree {self.degree} needs {self.threshold}")
        chosen = got[: self.threshold]
        for j in chosen:
            if not all(np.isfinite(leaf).all() for leaf in _leaves(products[j])):
                raise NonFiniteError(f"product {j} (f on coded part {j}) contains NaN or Inf; "
                                     f"it would spread into every decoded result")
        D = lagrange_weights(self._a, self._b[chosen])  # (k, threshold)
        error = EPS * self._growth ** self.degree * float(np.abs(D).sum(axis=1).max())
        if error > self.max_error:
            raise IllConditionedError(
                f"the products of workers {chosen} decode with an estimated error "
                f"{error:.1e}, above coded.decode.max-error ({self.max_error:.0e})")
        first = products[chosen[0]]
        out = []
        for i in range(self.parts):
            leaves = [sum(D[i, t] * np.asarray(_leaves(products[j])[c])
                          for t, j in enumerate(chosen))
                      for c in range(len(_leaves(first)))]
            if self.points == "complex":
                leaves = [np.real(v) for v in leaves]
            leaves = [v if np.ndim(v) else v[()] for v in map(np.asarray, leaves)]
            out.append(tuple(leaves) if isinstance(first, tuple) else leaves[0])
        return out
