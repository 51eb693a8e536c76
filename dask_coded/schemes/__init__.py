"""Coding schemes: one module each, registered in :data:`SCHEMES`.

A scheme (:class:`~.base.Scheme`) says how to encode an operand, which product tasks exist
and where each is pinned, how many finished products a decode needs (the threshold), and
how to decode from any sufficient subset.
"""

from __future__ import annotations

from .base import RowScheme, Scheme
from .gradient import GradientCode
from .mds import MDSScheme
from .polynomial import PolynomialScheme

#: scheme name -> class; adding a scheme is one module and one line here
SCHEMES: dict[str, type[Scheme]] = {
    MDSScheme.name: MDSScheme,
    GradientCode.name: GradientCode,
    "polynomial": PolynomialScheme,
    "matdot": PolynomialScheme,
}

__all__ = ["SCHEMES", "GradientCode", "MDSScheme", "PolynomialScheme", "RowScheme", "Scheme"]
