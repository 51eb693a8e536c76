"""Least squares by gradient descent on coded products: the paper's application.

Each iteration computes ``r = A x - y`` and ``g = A^T r`` with two coded products (A and
A^T encoded once, kept on the workers) and steps ``x <- x - step * g``. With ``n == k``
the code is the identity (``kind="auto"``) and this is the uncoded baseline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import numpy as np

from ..errors import NonFiniteError
from ..matrix import CodedMatrix, encode


@dataclass
class RegressionResult:
    """The solution and a per-iteration record (seconds, residual norm ``||A x - y||``,
    and which workers' products each of the two decodes used)."""

    x: np.ndarray
    seconds: list[float] = field(default_factory=list)
    residuals: list[float] = field(default_factory=list)
    used: list[tuple[list[int], list[int]]] = field(default_factory=list)
    A: CodedMatrix | None = None

    def __repr__(self) -> str:
        residual = f"{self.residuals[-1]:.4g}" if self.residuals else "-"
        return (f"RegressionResult({len(self.seconds)} iterations in "
                f"{sum(self.seconds):.3f} s; residual {residual})")


def linear_regression(
    A: Any,
    y: Any,
    n: int,
    k: int,
    iters: int = 100,
    step: float | None = None,
    *,
    client: Any = None,
    kind: str | None = None,
    x0: np.ndarray | None = None,
) -> RegressionResult:
    """Minimise ``||A x - y||^2 / 2`` by gradient descent with (n, k)-coded products.

    Parameters
    ----------
    A : numpy or dask array, (m, d)
    y : array, (m,)
    n, k : int
        The code for both A and A^T (``n == k``: uncoded).
    iters : int
        Gradient steps.
    step : float, optional
        Default ``1 / ||A||_2^2`` (the largest step that always descends).
    client : distributed.Client, optional
        Default: the current client (without one: the local scheduler).

    Returns
    -------
    RegressionResult
    """
    y = np.asarray(y, dtype=float)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D, got shape {y.shape}")
    if not isinstance(iters, (int, np.integer)) or iters < 1:
        raise ValueError(f"iters must be a positive integer, got {iters!r}")
    CA = encode(A, n, k, kind=kind, client=client)
    if CA.shape[0] != y.shape[0]:
        raise ValueError(f"A has {CA.shape[0]} rows but y has {y.shape[0]}")
    CT = CA.T
    if step is None:  # 1 / lambda_max(A^T A), the Gram matrix from a coded product too
        gram = (A.T @ A).compute() if isinstance(A, da.Array) else (CT @ np.asarray(A)).compute()
        largest = float(np.linalg.eigvalsh(gram).max())
        if not largest > 0:
            raise ValueError("A is all zeros: every x fits equally well, there is nothing "
                             "to descend")
        step = 1.0 / largest
    x = np.zeros(CA.shape[1]) if x0 is None else np.asarray(x0, dtype=float).copy()
    out = RegressionResult(x=x, A=CA)
    for i in range(iters):
        t = time.perf_counter()
        try:
            r = (CA @ x).compute() - y
            g = (CT @ r).compute()
        except NonFiniteError as err:  # x or the products overflowed
            raise ValueError(f"gradient descent diverged at iteration {i}: step={step:g} is "
                             f"too large (1 / ||A||_2^2 always descends)") from err
        x = x - step * g
        out.seconds.append(time.perf_counter() - t)
        out.residuals.append(float(np.linalg.norm(r)))
        if not CA.local:
            out.used.append((CA.last_used(), CT.last_used()))
    out.x = x
    return out
