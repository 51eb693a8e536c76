"""Coded blocks resident on the cluster (or in this process), found by the dask array
name they encode: how the rewrite reuses what :func:`dask_coded.encode` keeps.

Entries hold the :class:`~dask_coded.matrix.CodedMatrix` weakly: a matrix the user
drops is no longer offered.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import dask
from dask.utils import parse_bytes

from . import config
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
    dtype: Any = None  # of the coded blocks
    #: coded blocks each product task multiplies (the matrix's current grouping)
    blocks_per_task: int = 1


def rewrite_active() -> bool:
    """Whether dask's array optimizer is the coded rewrite (inside ``coded_matmul``): it
    offers itself by ``codes_products``, so that this module need not import it."""
    return bool(getattr(dask.config.get("array_optimize", None), "codes_products", False))


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
                out[name] = Resident(m.scheme, m.shape, tuple(m.blocks), m.scales, m.dtype)
            else:
                out[name] = Resident(m.scheme, m.shape, tuple(f.key for f in m.blocks),
                                     None if m.scales is None else m.scales.key, m.dtype,
                                     m.encoding.blocks_per_task)
    return out


class LocalEncodings:
    """Coded blocks the rewrite encoded on the local scheduler, kept in this process by
    ``(token, column)`` so that the next graph multiplying the same dask array reuses them
    (the local counterpart of the blocks the scheduler plugin keeps resident). Bounded by
    ``coded.rewrite.max-resident`` bytes, least recently used dropped first."""

    def __init__(self) -> None:
        self._entries: OrderedDict = OrderedDict()  # (token, column) -> (source, blocks, scales)
        self._lock = threading.Lock()  # filled from the threads of the local scheduler

    def get(self, key: tuple) -> tuple | None:
        """``(blocks, scales)`` encoded under ``key``, or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[1], entry[2]

    def remember(self, key: tuple, source: str, blocks: list, scales: Any) -> None:
        """Keep ``blocks`` (encoded from dask array ``source``), dropping the least recently
        used entries beyond ``coded.rewrite.max-resident``."""
        limit = parse_bytes(config.get("rewrite.max-resident"))
        with self._lock:
            self._entries[key] = (source, list(blocks), scales)
            self._entries.move_to_end(key)
            while len(self._entries) > 1 and self._bytes() > limit:
                self._entries.popitem(last=False)

    def release(self, source: str | None = None, tokens=()) -> int:
        """Drop the entries encoded from ``source`` or under ``tokens``; returns how many
        encodings (tokens) went."""
        with self._lock:
            gone = [k for k, (src, _, _) in self._entries.items()
                    if (source is not None and src == source) or k[0] in tokens]
            for k in gone:
                del self._entries[k]
        return len({k[0] for k in gone})

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _bytes(self) -> int:
        return sum(getattr(getattr(b, "coded", b), "nbytes", 0)
                   for _, blocks, _ in self._entries.values() for b in blocks)


#: the rewrite's encodings on the local scheduler, in this process
LOCAL = LocalEncodings()
