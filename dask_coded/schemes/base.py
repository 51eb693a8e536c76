"""What a coding scheme is: the one interface the graph builder and the kernels use.

Every scheme (:class:`Scheme`) has ``n_blocks`` coded blocks, one product per block, each
pinned to the worker :meth:`Scheme.placement` names, and a decode that needs any
``threshold`` finished products. A :class:`RowScheme` codes a linear operator ``A``
(rows ``0 .. rows-1``) for products ``A @ x``:

* **encode**: ``A`` is split into ``row_blocks`` row blocks; coded block ``j``
  (``j = 0 .. n_blocks-1``) mixes the row blocks :meth:`Scheme.blocks_needed` names;
* **products**: product ``j`` is coded block ``j`` times the operand, run on the worker
  :meth:`Scheme.placement` pins block ``j`` to;
* **decode**: from any ``threshold`` finished products (the others ``None``) and the
  row scales (:meth:`Scheme.scales`, computed once from ``A``) the scheme returns
  ``A @ x``.

The scheduler plugin never sees a scheme: each product carries its group's rule
(:class:`~dask_coded.graph.GroupSpec`: ``threshold``, and :attr:`Scheme.rule` when which
products finished matters). Adding a scheme is one module here and one line in
:data:`dask_coded.schemes.SCHEMES`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import numpy as np


class Scheme(ABC):
    """A coding scheme: ``n_blocks`` products, any ``threshold`` of which decode."""

    name: ClassVar[str]

    #: coded blocks, which is also the number of products per output block
    n_blocks: int
    #: finished products a decode needs
    threshold: int
    #: ``None`` (any ``threshold`` finished products decode), or a picklable predicate
    #: over the indices of the finished products saying whether they decode
    rule = None

    @property
    def n_workers(self) -> int:
        """Workers the coded blocks are spread over (``n_blocks`` unless a worker holds
        several)."""
        return self.n_blocks

    @abstractmethod
    def decode(self, products: Sequence, scales: np.ndarray | None = None):
        """The result from the finished products (``None`` where a product did not
        finish)."""

    @abstractmethod
    def placement(self, workers: Sequence[str]) -> list[str]:
        """The worker address coded block ``j`` is pinned to, for each ``j``."""


class RowScheme(Scheme):
    """A coding scheme for products ``A @ x`` of a row-split ``A`` (see the module doc)."""

    #: rows of ``A``
    rows: int
    #: row blocks ``A`` is split into
    row_blocks: int
    #: rows of each row block (the last one zero-padded)
    block_rows: int

    @abstractmethod
    def blocks_needed(self, j: int) -> tuple[int, ...]:
        """Row blocks of ``A`` that coded block ``j`` mixes."""

    @abstractmethod
    def encode_block(self, j: int, row_blocks: Sequence[np.ndarray],
                     needed: Sequence[int]) -> np.ndarray:
        """Coded block ``j`` from the row blocks ``needed`` (others are zeros)."""

    @abstractmethod
    def encode(self, A: np.ndarray) -> list[np.ndarray]:
        """All ``n_blocks`` coded blocks of ``A``."""

    @abstractmethod
    def decode(self, products: Sequence[np.ndarray | None],
               scales: np.ndarray | None = None) -> np.ndarray:
        """``A @ x`` from the finished products (``None`` where a product did not finish)
        and the row scales ``A`` was encoded with."""

    def scales(self, A: np.ndarray) -> np.ndarray | None:
        """Per row of ``A``, the factor its row was divided by before encoding (``None``:
        rows are encoded as they are)."""
        return None

    def split(self, A: np.ndarray) -> list[np.ndarray]:
        """The ``row_blocks`` row blocks of ``A``, each zero-padded to ``block_rows``."""
        return [self.pad(A[i * self.block_rows:(i + 1) * self.block_rows])
                for i in range(self.row_blocks)]

    def pad(self, block: np.ndarray) -> np.ndarray:
        """``block`` with zero rows appended up to ``block_rows``."""
        if len(block) >= self.block_rows:
            return block
        pad = np.zeros((self.block_rows - len(block),) + block.shape[1:], dtype=block.dtype)
        return np.concatenate([block, pad])
