"""Applications built on coded products."""

from __future__ import annotations

from .regression import RegressionResult, linear_regression

__all__ = ["RegressionResult", "linear_regression"]
