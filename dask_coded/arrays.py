"""Operands as the package takes them: numpy or dask arrays, real, with known shapes; a
clear error for anything else."""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np

from .codes import check_real_dtype
from .errors import BlockShapeError
from .handles import Handle


def as_array(A: Any, name: str):
    """``A`` as a numpy or dask array, or a clear error for what cannot be coded."""
    if isinstance(A, Handle):
        raise TypeError(
            f"{name} is a {type(A).__name__}; a coded product takes a numpy or dask operand "
            f"(multiply by the original matrix, or compute one product first)")
    if hasattr(A, "tocsr") and hasattr(A, "nnz"):  # scipy.sparse, without importing it
        raise TypeError(
            f"{name} is a scipy.sparse {type(A).__name__}; coded blocks and products are "
            f"dense: pass {name}.toarray() (or a dask array of dense chunks)")
    if not isinstance(A, da.Array):
        A = np.asarray(A)
        if A.dtype == object and A.ndim == 0:
            raise TypeError(f"{name} must be a numpy or dask array, got {type(A.item()).__name__}")
    elif any(np.isnan(s) for s in A.shape):
        raise BlockShapeError(
            f"{name} has unknown chunk sizes {A.chunks}; call {name}.compute_chunk_sizes() first")
    return A


def as_matrix(A: Any, name: str = "A"):
    """``A`` as a 2-D real numpy or dask array with rows and columns, or a clear error."""
    A = as_array(A, name)
    if A.ndim != 2:
        raise BlockShapeError(f"{name} must be 2-D, got {A.ndim}-D with shape {A.shape}")
    check_real_dtype(np.dtype(A.dtype), name)
    if 0 in A.shape:
        raise BlockShapeError(f"{name} has shape {A.shape}: it needs at least one row and column")
    return A
