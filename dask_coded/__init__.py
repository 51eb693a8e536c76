"""dask_coded: straggler-proof matrix products and cheap shuffles on Dask, with codes.

Lee, Lam, Pedarsani, Papailiopoulos, Ramchandran, "Speeding Up Distributed Machine
Learning Using Codes", IEEE Trans. Inf. Theory 64(3), 2018.

At the top: the verbs and the handles they return, and :class:`CodedError`. Delay models
and their injection are under :mod:`dask_coded.stragglers`, the errors under
:mod:`dask_coded.errors`, the schemes under :mod:`dask_coded.schemes`.
"""

from __future__ import annotations

import importlib
import warnings

from . import config  # noqa: F401  (registers the coded.* dask.config defaults)
from . import errors, policy, schemes, stragglers, theory, workers  # noqa: F401
from . import dashboard  # noqa: F401  (the coded page of the scheduler's dashboard)
from ._scheduler import FirstKPlugin
from .apps import LogisticResult, RegressionResult, linear_regression, logistic_regression
from .codes import CodeAudit, MDSCode, audit, make_code, worst_case_error
from .encoding import encode
from .errors import CodedError, CorruptResultError
from .matrix import CodedMatrix, release
from .matmul2d import matmul
from .operand import EncodedOperand, encode_operand
from .parts import CodedParts
from .rewrite import CodedOptimizer, coded_matmul
from .shuffle import CodedShuffle
from .sums import CodedPartitions, coded_sum
from .theory import MatmulPlan, plan_matmul
from .wait import first_k, first_k_async

__version__ = "0.1.0"

__all__ = [
    "CodeAudit",
    "CodedError",
    "CodedMatrix",
    "CodedOptimizer",
    "CodedPartitions",
    "CodedParts",
    "CodedShuffle",
    "CorruptResultError",
    "EncodedOperand",
    "FirstKPlugin",
    "LogisticResult",
    "MDSCode",
    "MatmulPlan",
    "RegressionResult",
    "audit",
    "coded_matmul",
    "coded_sum",
    "encode",
    "encode_operand",
    "first_k",
    "first_k_async",
    "linear_regression",
    "logistic_regression",
    "make_code",
    "matmul",
    "plan_matmul",
    "release",
    "worst_case_error",
]

#: names that moved from the top level: old spelling -> the module that has them now
MOVED = {
    **{name: "stragglers" for name in ("DelayModel", "ShiftedExponential", "SlowWorkers",
                                       "Stalls", "StragglerPlugin", "Trace",
                                       "local_stragglers")},
    **{name: "errors" for name in ("BlockShapeError", "CodeParameterError", "DtypeError",
                                   "IllConditionedError", "NonFiniteError",
                                   "TooFewResultsError", "TooFewWorkersError")},
    "GradientCode": "schemes",
}


def __getattr__(name: str):
    """The old top-level spellings (``dask_coded.SlowWorkers``) still work for a release,
    with a ``DeprecationWarning`` naming the new one."""
    where = MOVED.get(name)
    if where is None:
        raise AttributeError(f"module 'dask_coded' has no attribute {name!r}")
    warnings.warn(f"dask_coded.{name} is now dask_coded.{where}.{name}; the top-level name "
                  f"will be removed", DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(f"dask_coded.{where}"), name)
