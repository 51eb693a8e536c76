"""Logistic regression on coded computations, two ways.

Minimises ``f(w) = (1/m) sum_i [log(1 + exp(x_i . w)) - y_i x_i . w] + (l2 / 2) ||w||^2``
(scikit-learn's ``LogisticRegression(C=1 / (l2 m), fit_intercept=False)``) with
scipy's L-BFGS; every evaluation of ``(f, grad f)`` is one coded computation:

* ``method="gradient-coding"``: the rows of ``(X, y)`` are cut into partitions placed
  once by :class:`~dask_coded.sums.CodedPartitions`; each evaluation is one coded sum of
  ``(X_p^T (sigmoid(X_p w) - y_p), loss_p)`` over partitions, from any ``n - s``
  workers;
* ``method="coded-matvec"``: ``X`` and ``X.T`` encoded once with an ``(n, k)`` MDS code;
  each evaluation is ``z = X w`` (coded), the sigmoid and the loss on the client, then
  ``X^T (sigmoid(z) - y)`` (coded).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from html import escape
from typing import Any

import dask
import dask.array as da
import numpy as np
import scipy.optimize
from scipy.special import expit

from ..errors import BlockShapeError, CodedError
from ..arrays import as_matrix
from ..matrix import encode
from ..sums import CodedPartitions

METHODS = ("gradient-coding", "coded-matvec")


@dataclass
class LogisticResult:
    """The fitted weights and a record per evaluation of the loss and gradient
    (seconds, loss, and the workers whose results the decode used)."""

    w: np.ndarray
    method: str
    losses: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    used: list[list[int]] = field(default_factory=list)
    converged: bool = False
    message: str = ""

    @property
    def loss(self) -> float:
        """The loss at ``w``."""
        return self.losses[-1] if self.losses else float("nan")

    def time_to(self, loss: float, rtol: float = 1e-6) -> float:
        """Seconds of evaluations until the loss first came within ``rtol`` (relative)
        of ``loss``; ``inf`` if it never did."""
        total = 0.0
        for seconds, value in zip(self.seconds, self.losses):
            total += seconds
            if value <= loss + rtol * abs(loss):
                return total
        return float("inf")

    def __repr__(self) -> str:
        return (f"LogisticResult({self.method}, {len(self.losses)} evaluations in "
                f"{sum(self.seconds):.3f} s; loss {self.loss:.6g}; "
                f"{'converged' if self.converged else 'not converged'})")

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{i}</td><td>{loss:.8g}</td><td>{s * 1e3:.1f}</td>"
            f"<td>{escape(str(u)) if u else '-'}</td></tr>"
            for i, (loss, s, u) in enumerate(
                zip(self.losses, self.seconds, self.used or [[]] * len(self.losses)))
            if i < 5 or i >= len(self.losses) - 3)
        return (f"<b>{escape(repr(self))}</b>{_sparkline(self.losses)}"
                f"<table><tr><th>evaluation</th><th>loss</th><th>ms</th>"
                f"<th>workers used</th></tr>{rows}</table>")


def _sparkline(values: list[float], width: int = 320, height: int = 80) -> str:
    """The loss curve (log of the gap to the last value) as an inline SVG."""
    if len(values) < 2:
        return ""
    gap = np.log10(np.maximum(np.asarray(values) - min(values), 1e-16))
    x = np.linspace(0, width, len(values))
    span = gap.max() - gap.min() or 1.0
    y = height - (gap - gap.min()) / span * height
    points = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, y))
    return (f'<div>loss - final loss (log scale) per evaluation</div><svg width="{width}" '
            f'height="{height}"><polyline fill="none" stroke="steelblue" '
            f'points="{points}"/></svg>')


def _loss_terms(z: np.ndarray, y: np.ndarray) -> float:
    """``sum_i log(1 + exp(z_i)) - y_i z_i``, stable for large ``|z|``."""
    return float(np.sum(np.logaddexp(0.0, z) - y * z))


def _partition_gradient(part, w: np.ndarray):
    """``(X_p^T (sigmoid(X_p w) - y_p), loss_p)`` of one partition ``(X_p, y_p)``."""
    Xp, yp = part
    z = Xp @ w
    return Xp.T @ (expit(z) - yp), np.float64(_loss_terms(z, yp))


class _Gradient:
    """``fn`` for a coded sum: the partition gradient at ``w`` (picklable)."""

    def __init__(self, w: np.ndarray):
        self.w = w

    def __call__(self, part):
        return _partition_gradient(part, self.w)


def _partitions(X: Any, y: np.ndarray, count: int) -> list:
    """``(X_p, y_p)`` row partitions: X's own chunks for a dask X, else ``count``."""
    if isinstance(X, da.Array):
        bounds = np.cumsum((0,) + X.chunks[0])
        blocks = X.rechunk({1: -1}).to_delayed().ravel()
        return [dask.delayed(tuple)([b, y[lo:hi]]) for b, lo, hi in
                zip(blocks, bounds[:-1], bounds[1:])]
    return list(zip(np.array_split(X, count), np.array_split(y, count)))


def logistic_regression(
    X: Any,
    y: Any,
    n: int,
    method: str = "gradient-coding",
    *,
    stragglers: int = 1,
    k: int | None = None,
    l2: float = 0.0,
    max_iter: int = 500,
    tol: float = 1e-10,
    client: Any = None,
    w0: np.ndarray | None = None,
) -> LogisticResult:
    """Fit binary logistic regression with coded computations (module doc).

    Parameters
    ----------
    X : numpy or dask array, (m, d)
        Features, real (add a column of ones for an intercept).
    y : array, (m,)
        Labels 0 or 1.
    n : int
        Workers.
    method : {"gradient-coding", "coded-matvec"}
    stragglers : int
        ``"gradient-coding"``: workers an evaluation does not wait for.
    k : int, optional
        ``"coded-matvec"``: products a decode needs (default ``n - stragglers``).
    l2 : float
        Ridge penalty ``l2 / 2 ||w||^2``; ``l2 = 1 / (C m)`` matches scikit-learn's ``C``.
    max_iter : int
        L-BFGS iterations at most.
    tol : float
        L-BFGS stops when the largest gradient entry is below ``tol``.
    client : distributed.Client, optional
        Default: the current client (without one: the local scheduler).

    Returns
    -------
    LogisticResult
    """
    if method not in METHODS:
        raise CodedError(f"method must be one of {METHODS}, got {method!r}")
    X = as_matrix(X, "X")
    y = np.asarray(y, dtype=np.float64)
    m, d = X.shape
    if y.shape != (m,):
        raise BlockShapeError(f"y must be 1-D with one label per row of X ({m}), got shape "
                              f"{y.shape}")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("y must hold labels 0 and 1 only")
    if not l2 >= 0:
        raise ValueError(f"l2 must be >= 0, got {l2!r}")
    out = LogisticResult(w=np.zeros(d), method=method)
    if method == "gradient-coding":
        placed = CodedPartitions(_partitions(X, y, n), n, stragglers, client=client)

        def evaluate(w):
            grad, loss = placed.sum(_Gradient(w)).compute()
            return float(loss), grad, placed.last_used()
    else:
        CX = encode(X, n, n - stragglers if k is None else k, client=client)
        CT = CX.T

        def evaluate(w):
            z = (CX @ w).compute()
            grad = (CT @ (expit(z) - y)).compute()
            used = [] if CX.local else sorted(set(CX.last_used()) | set(CT.last_used()))
            return _loss_terms(z, y), grad, used

    def fun(w):
        t = time.perf_counter()
        loss, grad, used = evaluate(w)
        value = loss / m + 0.5 * l2 * float(w @ w)
        out.seconds.append(time.perf_counter() - t)
        out.losses.append(value)
        out.used.append(used)
        return value, np.asarray(grad) / m + l2 * w

    w0 = np.zeros(d) if w0 is None else np.asarray(w0, dtype=np.float64)
    res = scipy.optimize.minimize(fun, w0, jac=True, method="L-BFGS-B",
                                  options={"maxiter": max_iter, "gtol": tol, "ftol": 0.0})
    out.w, out.converged, out.message = res.x, bool(res.success), str(res.message)
    return out
