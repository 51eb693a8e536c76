"""Code families over the reals, their worst-case audit and survivor sets: pure numpy.

* :mod:`.mds`: ``(n, k)`` MDS codes (``make_code``, ``MDSCode``);
* :mod:`.grouped`: a small certified code per group of workers, for large ``n``
  (``GroupedCode``, ``fewest_groups``);
* :mod:`.audit`: the worst relative decode error over survivor sets;
* :mod:`.survivors`: which ``k`` of ``n`` results a decoder may be handed.
"""

from __future__ import annotations

from .audit import CodeAudit, audit, worst_case_error
from .grouped import GroupedCode, GroupRule, fewest_groups, grouped_code
from .mds import (
    FAMILIES,
    MAX_N,
    MDSCode,
    best_kind,
    certified_condition,
    check_real_dtype,
    check_shape,
    conditions,
    gaussian_generator,
    estimated_error,
    inverses,
    make_code,
    require_accurate,
    rotation_generator,
    screened_seed,
    vandermonde_generator,
    worst_condition,
)

__all__ = [
    "FAMILIES",
    "MAX_N",
    "CodeAudit",
    "GroupRule",
    "GroupedCode",
    "MDSCode",
    "audit",
    "best_kind",
    "certified_condition",
    "check_real_dtype",
    "check_shape",
    "fewest_groups",
    "grouped_code",
    "conditions",
    "gaussian_generator",
    "estimated_error",
    "inverses",
    "make_code",
    "require_accurate",
    "rotation_generator",
    "screened_seed",
    "vandermonde_generator",
    "worst_case_error",
    "worst_condition",
]
