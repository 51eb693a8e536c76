"""dask_coded: straggler-proof matrix products and cheap shuffles on Dask, with codes.

Lee, Lam, Pedarsani, Papailiopoulos, Ramchandran, "Speeding Up Distributed Machine
Learning Using Codes", IEEE Trans. Inf. Theory 64(3), 2018.
"""

from __future__ import annotations

from . import config  # noqa: F401  (registers the coded.* dask.config defaults)
from . import policy, theory, workers  # noqa: F401  (dc.policy, dc.theory, dc.workers)
from ._scheduler import FirstKPlugin
from .apps import LogisticResult, RegressionResult, linear_regression, logistic_regression
from .codes import CodeAudit, MDSCode, audit, make_code, worst_case_error
from .encoding import encode
from .matrix import CodedMatrix, release
from .matmul2d import matmul
from .theory import MatmulPlan, plan_matmul
from .operand import EncodedOperand, encode_operand
from .parts import CodedParts
from .rewrite import CodedOptimizer, coded_matmul
from .schemes import GradientCode
from .shuffle import CodedShuffle
from .sums import CodedPartitions, coded_sum
from .wait import first_k, first_k_async
from .stragglers import (
    DelayModel,
    ShiftedExponential,
    SlowWorkers,
    Stalls,
    StragglerPlugin,
    Trace,
    local_stragglers,
)
from .errors import (
    BlockShapeError,
    CodedError,
    CodeParameterError,
    DtypeError,
    IllConditionedError,
    NonFiniteError,
    TooFewResultsError,
    TooFewWorkersError,
)

__version__ = "0.1.0"

__all__ = [
    "BlockShapeError",
    "CodeAudit",
    "CodedMatrix",
    "CodedOptimizer",
    "CodedParts",
    "CodedPartitions",
    "CodedShuffle",
    "FirstKPlugin",
    "GradientCode",
    "LogisticResult",
    "CodeParameterError",
    "CodedError",
    "DelayModel",
    "DtypeError",
    "EncodedOperand",
    "IllConditionedError",
    "MDSCode",
    "NonFiniteError",
    "RegressionResult",
    "ShiftedExponential",
    "SlowWorkers",
    "Stalls",
    "StragglerPlugin",
    "Trace",
    "TooFewResultsError",
    "TooFewWorkersError",
    "audit",
    "theory",
    "coded_matmul",
    "coded_sum",
    "encode",
    "encode_operand",
    "first_k",
    "first_k_async",
    "linear_regression",
    "logistic_regression",
    "local_stragglers",
    "release",
    "make_code",
    "matmul",
    "plan_matmul",
    "MatmulPlan",
    "worst_case_error",
]
