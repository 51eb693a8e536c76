"""The package's own task types: what the scheduler plugin recognises them by.

A product is a :class:`ProductTask` carrying its group's :class:`GroupSpec` (as
``distributed.shuffle``'s barrier task carries its spec); encoded data is an
:class:`EncodeTask`; a product its decode will not get is replaced by :class:`Missing`;
a plain task that names encodings to be made beside it, without waiting for them, is a
:class:`BesideTask`.
Plain data and dask's task classes only: the scheduler side imports this module and
nothing of the kernels or the schemes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dask.task_spec import List, Task, TaskRef

from .codes.survivors import decodable


def spec_of(ts, kind: type) -> Any:
    """The run spec of scheduler task ``ts`` when it is a ``kind`` task, else ``None``."""
    spec = ts.run_spec
    return spec if isinstance(spec, kind) else None


class EncodeTask(Task):
    """A task making a coded block (or the row scales beside it): never fused into its
    product by dask's optimizer, so the block keeps its own key and the next graph finds
    it in memory.

    ``matrix`` names the encoding the task belongs to (kept or released together);
    ``index``: the coded block's index ``j``, ``None`` for the row scales; ``worker``: the
    worker the block is pinned to (``None``: the scheduler plugin spreads the blocks of
    one matrix and column over distinct workers by ``j``); ``keep``: the plugin keeps it
    resident for later graphs (``False``: its holder keeps it, a handle's futures or one
    call); ``code``: what encodes it, in a few words (``Scheme.summary``), for the
    dashboard.
    """

    matrix: str
    index: Any
    worker: Any
    keep: bool
    code: str
    __slots__ = ("matrix", "index", "worker", "keep", "code")

    def __init__(self, key: Any, func, /, *args: Any, matrix: str, index: int | None = None,
                 worker: str | None = None, keep: bool = True, code: str = "",
                 **kwargs: Any):
        self.matrix, self.keep, self.worker = str(matrix), bool(keep), worker
        self.index = None if index is None else int(index)
        self.code = str(code)
        super().__init__(key, func, *args, **kwargs)

    def copy(self):
        return type(self)(self.key, self.func, *self.args, matrix=self.matrix,
                          index=self.index, worker=self.worker, keep=self.keep,
                          code=self.code, **self.kwargs)

    @property
    def block_fusion(self) -> bool:
        return True


@dataclass(frozen=True)
class GroupSpec:
    """What the scheduler plugin knows of a product group: ``size`` products named
    ``name``, whose decode may start once the indices ``F`` of the finished products
    satisfy :meth:`decodable`: ``|F| >= threshold`` and ``rule(F)`` (``rule=None``: any
    ``threshold`` of them, an MDS-like code; a predicate says which sets decode, for
    codes whose decodability depends on *which* products finished)."""

    name: str
    size: int
    threshold: int
    rule: Any = None  # Callable[[frozenset[int]], bool] | None; picklable
    #: the decode checks its products and names who computed them: the plugin gives it
    #: ``sources={index: (address, name)}`` as the products finish
    named: bool = False
    #: products the decode waits for beyond the code's threshold (1 detects a wrong
    #: product; ``2e`` locate and correct ``e``)
    spare: int = 0

    def __post_init__(self):
        if not 1 <= self.threshold <= self.size:
            raise ValueError(f"a product group needs 1 <= threshold <= size; got "
                             f"threshold={self.threshold}, size={self.size}")

    def decodable(self, finished) -> bool:
        """Whether a decode can start from the finished product indices ``finished``."""
        return decodable(finished, self.threshold, self.rule)


class ProductTask(Task):
    """Product ``index`` of the group ``spec``, multiplying the coded ``block`` (a key,
    or ``None`` when the product has no resident block): never fused, so the plugin
    finds it on the scheduler with its spec."""

    spec: GroupSpec
    index: int
    block: Any
    __slots__ = ("spec", "index", "block")

    def __init__(self, key: Any, func, /, *args: Any, spec: GroupSpec, index: int,
                 block: Any = None, **kwargs: Any):
        self.spec, self.index, self.block = spec, int(index), block
        super().__init__(key, func, *args, **kwargs)

    def copy(self):
        return type(self)(self.key, self.func, *self.args, spec=self.spec, index=self.index,
                          block=self.block, **self.kwargs)

    @property
    def block_fusion(self) -> bool:
        return True


def _first(value: Any, _beside: Any = None) -> Any:
    return value


class BesideTask(Task):
    """The plain task ``plain``, naming the keys ``beside`` (coded blocks and their row
    scales) so that they reach the scheduler in its graph: the scheduler plugin drops
    those dependencies as the graph arrives (the task runs as ``plain``, without waiting)
    and has the encodings made in the background. Without the plugin it simply waits for
    them. Never fused, so the plugin finds it."""

    plain: Task
    beside: tuple
    __slots__ = ("plain", "beside")

    def __init__(self, plain: Task, beside):
        self.plain, self.beside = plain, tuple(beside)
        inner = Task(None, plain.func, *plain.args, **plain.kwargs)
        super().__init__(plain.key, _first, inner, List(*[TaskRef(k) for k in self.beside]))

    def copy(self):
        return type(self)(self.plain, self.beside)

    @property
    def block_fusion(self) -> bool:
        return True


@dataclass(frozen=True)
class Missing:
    """A product its decode will not get, put in the decode's arguments by the scheduler
    plugin in the product's place: ``why`` says what happened (its worker was lost, the
    deadline passed). The decode treats it as a product that did not finish."""

    why: str
