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

A :class:`PartScheme` codes a list of ``parts`` data parts for a function applied to
each part (``f(part_i, *args)``, ``i = 0 .. parts-1``):

* **encode**: coded part ``j`` is made from the parts :meth:`PartScheme.parts_needed`
  names by :meth:`PartScheme.encode_part`, on the worker it is pinned to;
* **products**: product ``j`` is :meth:`PartScheme.apply` of the function to coded part
  ``j``;
* **decode**: from any ``threshold`` finished products the scheme returns what the
  function gives on the parts.

What a scheme codes is its :attr:`Scheme.data` (``"rows"``, ``"parts"`` or ``"pair"``,
both operands of ``A @ B``); :func:`dask_coded.encode` returns the handle for it. A scheme
is built from a user's parameters by :meth:`Scheme.from_params`, looked up by name in
:data:`dask_coded.schemes.SCHEMES`.

The scheduler plugin never sees a scheme: each product carries its group's rule
(:class:`~dask_coded.graph.GroupSpec`: ``threshold``, and :attr:`Scheme.rule` when which
products finished matters). Adding a scheme is one module here and one line in
:data:`dask_coded.schemes.SCHEMES`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from ..codes.survivors import decodable
from ..errors import CodeParameterError


class Scheme(ABC):
    """A coding scheme: ``n_blocks`` products, any ``threshold`` of which decode."""

    name: ClassVar[str]
    #: what the scheme codes: ``"rows"`` (a matrix by rows, for ``A @ x``), ``"parts"``
    #: (a list of data parts, for a function of each), ``"pair"`` (both operands of
    #: ``A @ B``)
    data: ClassVar[str]

    #: coded blocks, which is also the number of products per output block
    n_blocks: int
    #: finished products a decode needs
    threshold: int
    #: ``None`` (any ``threshold`` finished products decode), or a picklable predicate
    #: over the indices of the finished products saying whether they decode
    rule = None
    #: how each decode checks its products (:class:`~dask_coded.verify.Verify`), or
    #: ``None``: it does not
    verify = None
    #: whether a checked decode's rounding bound needs the operand's scale (the norms of
    #: ``x``'s columns, :class:`~dask_coded.verify.OperandScale`, from a task beside
    #: ``x``); a scheme that equilibrates both operands bounds it from its shapes alone
    checks_with_operand = True

    def decodable(self, finished) -> bool:
        """Whether the finished product indices ``finished`` decode: at least
        ``threshold`` of them, and :attr:`rule` holds (the same test the scheduler
        plugin makes, :meth:`~dask_coded.tasks.GroupSpec.decodable`)."""
        return decodable(finished, self.threshold, self.rule)

    @property
    def n_workers(self) -> int:
        """Workers the coded blocks are spread over (``n_blocks`` unless a worker holds
        several)."""
        return self.n_blocks

    @property
    def summary(self) -> str:
        """The scheme in a few words: its name, the products a decode needs of how many."""
        return f"{self.name}: {self.threshold} of {self.n_blocks}"

    @property
    def code_threshold(self) -> int:
        """The threshold without the spare products a verified decode waits for: what the
        products' key names carry (``coded-prod-t<code_threshold>-..``), each product
        being about ``1 / code_threshold`` of the work."""
        return self.threshold

    def product_tasks(self, blocks_per_task: int = 1) -> tuple[tuple[int, ...], ...]:
        """The coded blocks each product task multiplies, task by task: one block per
        task here (a scheme with several blocks per worker can bundle a worker's blocks
        into fewer tasks)."""
        if blocks_per_task != 1:
            raise CodeParameterError(f"{self!r} multiplies one coded block per product "
                                     f"task; got blocks_per_task={blocks_per_task!r}")
        return tuple((j,) for j in range(self.n_blocks))

    @classmethod
    @abstractmethod
    def from_params(cls, n: int, **params: Any) -> Scheme:
        """The scheme for ``n`` workers from a user's parameters (the keywords
        :func:`dask_coded.encode` passes on, plus what the data fixes: ``rows`` for a
        row scheme, ``parts`` for a part scheme, ``shape_a``/``shape_b`` for a pair),
        refused with :class:`~dask_coded.errors.CodeParameterError` naming a wrong one."""

    @abstractmethod
    def decode(self, products: Sequence, scales: np.ndarray | None = None):
        """The result from the finished products (``None`` where a product did not
        finish)."""

    @abstractmethod
    def placement(self, workers: Sequence[str]) -> list[str]:
        """The worker address coded block ``j`` is pinned to, for each ``j``."""


class RowScheme(Scheme):
    """A coding scheme for products ``A @ x`` of a row-split ``A`` (see the module doc)."""

    data = "rows"

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


class PartScheme(Scheme):
    """A coding scheme for a function applied to each of ``parts`` data parts (see the
    module doc). A part is an array or a tuple of arrays."""

    data = "parts"

    #: data parts coded
    parts: int

    def placement(self, workers: Sequence[str]) -> list[str]:
        """Coded part ``j`` on ``workers[j]`` (round-robin over fewer workers)."""
        return [workers[j % len(workers)] for j in range(self.n_blocks)]

    @abstractmethod
    def parts_needed(self, j: int) -> tuple[int, ...]:
        """The data parts coded part ``j`` is made from."""

    @abstractmethod
    def encode_part(self, j: int, *parts: Any) -> Any:
        """Coded part ``j`` from the data parts :meth:`parts_needed` names, in that
        order."""

    def apply(self, coded: Any, f, args: tuple) -> Any:
        """Product ``j``: ``f(coded part j, *args)``."""
        return f(coded, *args)

    @abstractmethod
    def decode(self, products: Sequence, scales: np.ndarray | None = None) -> list:
        """``[f(part_0, *args), .., f(part_(parts-1), *args)]`` from the finished
        products (``None`` where a product did not finish)."""
