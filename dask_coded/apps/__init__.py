"""Applications built on coded products."""

from __future__ import annotations

from .logistic import LogisticResult, logistic_regression
from .regression import RegressionResult, linear_regression

__all__ = ["LogisticResult", "RegressionResult", "linear_regression", "logistic_regression"]
