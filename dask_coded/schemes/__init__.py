"""Coding schemes: one module each, registered in :data:`SCHEMES`.

A scheme (:class:`~.base.Scheme`) says how to encode an operand, which product tasks exist
and where each is pinned, how many finished products a decode needs (the threshold), and
how to decode from any sufficient subset.
"""

from __future__ import annotations

import inspect
from typing import Any

from ..errors import CodeParameterError
from .base import PartScheme, RowScheme, Scheme
from .gradient import GradientCode
from .lagrange import LagrangeScheme
from .mds import MDSScheme
from .polynomial import MatDot, PolynomialScheme

#: scheme name -> class; adding a scheme is one module and one line here
SCHEMES: dict[str, type[Scheme]] = {
    cls.name: cls for cls in (MDSScheme, GradientCode, PolynomialScheme, MatDot,
                              LagrangeScheme)
}

#: what each kind of :attr:`Scheme.data` is, for messages
DATA = {"rows": "a matrix by rows (A @ x)", "parts": "a list of data parts (L.map(f))",
        "partitions": "partitions for a sum (coded_sum)", "pair": "both operands of A @ B"}


def lookup(name: str, data: str | None = None) -> type[Scheme]:
    """The registered scheme ``name`` (one that codes ``data``, when given), or a
    :class:`~dask_coded.errors.CodeParameterError` listing the ones there are."""
    cls = SCHEMES.get(name) if isinstance(name, str) else None
    names = sorted(k for k, c in SCHEMES.items() if data is None or c.data == data)
    if cls is None:
        raise CodeParameterError(f"unknown scheme {name!r}; the schemes are {names}")
    if data is not None and cls.data != data:
        raise CodeParameterError(f"scheme {name!r} does not code {DATA[data]}; the schemes "
                                 f"that do are {names}")
    return cls


def build(name: str, n: int, data: str | None = None, **params: Any) -> Scheme:
    """``SCHEMES[name].from_params(n, **params)`` (a scheme that codes ``data``, when
    given), with an unknown parameter refused by name (what the scheme takes is listed)."""
    cls = lookup(name, data)
    refuse_unknown(name, [p for p in inspect.signature(cls.from_params).parameters
                          if p != "n"], params)
    return cls.from_params(n, **params)


def refuse_unknown(name: str, accepted: list[str], params: dict) -> None:
    """A :class:`~dask_coded.errors.CodeParameterError` naming each of ``params`` that
    scheme ``name`` does not take (``accepted``), and listing those it takes."""
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise CodeParameterError(f"scheme {name!r} takes no parameter {', '.join(unknown)}; "
                                 f"it takes {', '.join(accepted)}")


__all__ = ["SCHEMES", "GradientCode", "MDSScheme", "MatDot", "PartScheme", "PolynomialScheme",
           "RowScheme", "Scheme", "build", "lookup", "refuse_unknown"]
