"""Coded blocks resident on the cluster (or in this process), found by the dask array
name they encode: how the rewrite reuses what :func:`dask_coded.encode` keeps.

Entries hold the :class:`~dask_coded.matrix.CodedMatrix` weakly: a matrix the user
drops is no longer offered.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from .schemes import Scheme

# dask array name of an encoded matrix (A, or A.T for transpose=True) -> CodedMatrix
_RESIDENT: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


@dataclass(frozen=True)
class Resident:
    """What a rewrite needs of an encoded matrix: its scheme, shape, blocks and row scales
    (keys on the cluster, numpy arrays in this process)."""

    scheme: Scheme
    shape: tuple
    blocks: tuple
    scales: Any


def register(name: str, matrix) -> None:
    """Offer ``matrix``'s coded blocks for dask array ``name``."""
    _RESIDENT[name] = matrix


def encoded_from(name: str) -> list:
    """The matrices :func:`dask_coded.encode` made from dask array ``name``."""
    return [m for n, m in list(_RESIDENT.items()) if n == name]


def snapshot(local: bool) -> dict[str, Resident]:
    """The resident encodings of one kind (``local``: numpy blocks in this process), as
    plain data that can travel to the scheduler with the optimizer."""
    out = {}
    for name, m in list(_RESIDENT.items()):
        if m.local == local and m.blocks:
            if local:
                out[name] = Resident(m.scheme, m.shape, tuple(m.blocks), m.scales)
            else:
                out[name] = Resident(m.scheme, m.shape, tuple(f.key for f in m.blocks),
                                     None if m.scales is None else m.scales.key)
    return out
