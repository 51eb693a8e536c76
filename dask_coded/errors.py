"""Exceptions raised by dask_coded.

Every error is a ``ValueError`` (or ``TypeError``) subclass, so code that already
catches the builtin types keeps working, and every message names the argument that
was wrong and what was expected.
"""

from __future__ import annotations


class CodedError(ValueError):
    """Base class for dask_coded's input errors."""


class CodeParameterError(CodedError):
    """``n``/``k``/``kind`` do not describe a code the family can build."""


class BlockShapeError(CodedError):
    """Blocks (or operands) have shapes that do not fit together."""


class DtypeError(CodedError, TypeError):
    """A dtype the codes cannot work with (non-numeric, or complex)."""


class TooFewResultsError(CodedError):
    """Fewer than ``k`` coded results survived, so the data cannot be decoded."""


class NonFiniteError(CodedError):
    """NaN or Inf where it would spread through a decode to every block."""


class TooFewWorkersError(CodedError):
    """The cluster has fewer workers than the code needs."""


class IllConditionedError(CodedError):
    """A decode would amplify rounding errors past ``coded.decode.max-error``."""


class PlainProductWarning(UserWarning):
    """A product inside :func:`dask_coded.coded_matmul` stays plain dask; the message
    names the layer and why (an integer product, a left operand that is not a matrix,
    ...)."""


class CorruptResultError(CodedError):
    """Coded products disagree beyond rounding: a worker returned wrong numbers.

    ``suspects``: the workers (``"address (name)"``, or ``"product j"`` on the local
    scheduler) whose products were located as wrong; ``candidates``: the workers among
    which a disagreement was found that the products present could not locate."""

    def __init__(self, message: str, suspects=(), candidates=()):
        super().__init__(message)
        self.suspects, self.candidates = list(suspects), list(candidates)

    def __reduce__(self):
        return (type(self), (self.args[0], self.suspects, self.candidates))
