"""The one graph builder: a scheme and its operands -> encode, product and decode tasks.

:meth:`CodedMatrix.dot <dask_coded.matrix.CodedMatrix.dot>`, :func:`dask_coded.encode`
and the rewrite (:mod:`dask_coded.rewrite`) all build their coded tasks here; the key
names follow :mod:`dask_coded.keys`, which the scheduler plugin reads.

A *product group* is the ``n_blocks`` products of one output block plus its decode. The
decode depends on every product, so the graph is correct on any scheduler; the scheduler
plugin lets the decode start once its rule holds for the products in memory.

The scheduler plugin recognises the package's tasks by their type, never by their key
names: every product is a :class:`~dask_coded.tasks.ProductTask` carrying its group's
:class:`~dask_coded.tasks.GroupSpec`, and encoded data is an
:class:`~dask_coded.tasks.EncodeTask` (:mod:`dask_coded.tasks`).
"""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
from dask._task_spec import _execute_subgraph  # no public name: to spot fused cuts
from dask.task_spec import Alias, GraphNode, List, Task, TaskRef
from dask.array.chunk import getitem
from dask.core import flatten
from dask.highlevelgraph import HighLevelGraph

from .codes.survivors import TaskRule
from .errors import CodeParameterError
from .keys import (
    BLOCK_PREFIX, CALL_BLOCK_PREFIX, DECODE_PREFIX, NORMS_PREFIX, ROWS_PREFIX, SCALES_PREFIX,
    key_name, product_name,
)
from .kernels import (
    coded_product, contracted_axis, decode_products, decode_tasks, encode_chunks,
    encode_pair, encode_pairs_and_race, encode_side, identity, join_scales, pair_product,
    race_products, row_scales, side_scales, take_block, take_rows, task_product, zero_rows,
)
from .schemes import Scheme
from .schemes.polynomial import PolynomialScheme
from .schemes.polynomial import coded_product as polynomial_product
from .tasks import EncodeTask, GroupSpec, ProductTask  # noqa: F401  (re-exported)
from .verify import operand_scale, report_inconsistency


def _ref(value: Any) -> Any:
    """A graph argument: a key (a string or a tuple) becomes a ``TaskRef``; anything else
    (arrays, graph nodes, futures, functions) stays as it is."""
    if isinstance(value, (str, tuple)):
        return TaskRef(value)
    return value


def _key_of(value: Any) -> Any:
    """The key of a block given as a key or a future (``None`` for data)."""
    if isinstance(value, (str, tuple)):
        return value
    return getattr(value, "key", None)


def grid(keys) -> List:
    """Chunk keys (a nested list, rows of chunks) as a graph list ``np.block`` takes."""
    return List(*[List(*[TaskRef(key) for key in row]) for row in keys])


def encode_tasks(scheme: Scheme, token: str, row_chunks: Sequence, column: int = 0,
                 dtype: str | None = None, row_starts: Sequence[int] | None = None) -> dict:
    """Tasks ``("coded-block-<token>", j, column)`` encoding coded block ``j`` from A's row
    chunk keys ``row_chunks`` (any row chunking: the kernel re-splits; a row chunk given
    as a list of keys is A's chunks along that row, all of A's columns) in ``dtype`` (when
    given), and ``("coded-scales-<token>", column)``, the row scales the decode multiplies
    back.

    With ``row_starts`` (the first row of each row chunk, and A's row count last), block
    ``j`` depends only on the row chunks holding the row blocks it mixes (a systematic
    block: its own rows), and the row scales are computed chunk by chunk, where the
    chunks are: no task needs all of A unless its block mixes all of A."""
    refs = [List(*map(_ref, key)) if isinstance(key, list) else _ref(key)
            for key in row_chunks]
    name = f"{BLOCK_PREFIX}{token}"
    tasks = {}
    for j in range(scheme.n_blocks):
        key = (name, j, column)
        if row_starts is None:
            tasks[key] = EncodeTask(key, encode_chunks, scheme, j, *refs, dtype=dtype,
                                    matrix=token, index=j, code=scheme.summary)
            continue
        needed = scheme.blocks_needed(j)
        rows = [(i * scheme.block_rows, min((i + 1) * scheme.block_rows, scheme.rows))
                for i in needed]
        lo, hi = rows[0][0], rows[-1][1]  # the rows it mixes lie in lo:hi
        pieces = []
        for c, ref in enumerate(refs):
            start, stop = max(lo, row_starts[c]), min(hi, row_starts[c + 1])
            if start >= stop:
                continue
            if (start, stop) == (row_starts[c], row_starts[c + 1]):
                pieces.append(ref)
                continue
            # only those rows of the chunk travel: cut where the chunk is
            cut = []
            for q, part in enumerate(ref.args if isinstance(ref, List) else [ref]):
                piece = (f"{ROWS_PREFIX}{token}", j, c, q, column)
                tasks[piece] = Task(piece, take_rows, part, start - row_starts[c],
                                    stop - row_starts[c])
                cut.append(TaskRef(piece))
            pieces.append(List(*cut) if isinstance(ref, List) else cut[0])
        tasks[key] = EncodeTask(key, encode_chunks, scheme, j, *pieces, dtype=dtype,
                                first_row=lo, needed=needed, matrix=token, index=j,
                                code=scheme.summary)
    scales = (f"{SCALES_PREFIX}{token}", column)
    if row_starts is None:
        tasks[scales] = EncodeTask(scales, row_scales, scheme, *refs, matrix=token)
        return tasks
    norms = f"{NORMS_PREFIX}{token}"
    for c, ref in enumerate(refs):
        tasks[(norms, c, column)] = Task((norms, c, column), row_scales, scheme, ref)
    tasks[scales] = EncodeTask(scales, join_scales, *[TaskRef((norms, c, column))
                                                      for c in range(len(refs))],
                               matrix=token)
    return tasks


def product_group(
    scheme: Scheme,
    token: str,
    blocks: Sequence,
    operand: Any,
    decode_key: Any,
    *,
    index: tuple = (),
    local: bool = False,
    product=coded_product,
    scales: Any = None,
    operands: Sequence | None = None,
    dtype: Any = None,
    block_eps: float | None = None,
    blocks_per_task: int = 1,
) -> dict:
    """Tasks computing ``decode_key = A @ operand`` from coded ``blocks``.

    ``blocks`` are the scheme's ``n_blocks`` coded blocks: keys resident on the cluster
    (``n_blocks`` tasks ``("coded-prod-t<threshold>-<token>", *index, j)`` and a decode
    that depends on all of them), or numpy arrays (``local=True``: one task racing the
    products in threads). ``operand`` is a key, a graph node, or a numpy array embedded in
    each product (then no extra task exists that a slow worker could hold up).
    ``scales``: the row scales A was encoded with (a key, or an array when local).
    ``operands``: one operand per block instead of ``operand`` (B's encoded operand for
    the block's worker, :mod:`dask_coded.operand`), on a cluster. ``dtype``: the dtype
    the result is declared in (the decode casts to it). ``block_eps``: the machine
    epsilon of the coded blocks, for a scheme that verifies its products
    (:mod:`dask_coded.verify`: the decode also gets the operand's scale and, from the
    scheduler plugin, who computed each product). ``blocks_per_task``: each product
    task multiplies that many coded blocks of one worker
    (:meth:`~dask_coded.schemes.Scheme.product_tasks`), and the decode waits for
    ``ceil(threshold / blocks_per_task)`` tasks (its rule over their blocks).
    """
    dtype = None if dtype is None else np.dtype(dtype).str
    x = _ref(operand)
    s = None if scales is None else _ref(scales)
    if local:
        return {decode_key: Task(decode_key, race_products, scheme, List(*blocks), x, product,
                                 s, dtype)}
    if blocks_per_task != 1:
        return _task_group(scheme, token, blocks, x, s, decode_key, index, product,
                           dtype, blocks_per_task)
    name = product_name(scheme.code_threshold, token)
    checked = getattr(scheme, "verify", None) is not None
    spec = GroupSpec(name, len(blocks), scheme.threshold, getattr(scheme, "rule", None),
                     named=checked, spare=scheme.verify.spare if checked else 0)
    tasks: dict = {}
    extra: dict = {}
    if checked and scheme.checks_with_operand:
        eps = float(np.finfo(np.float64).eps) if block_eps is None else float(block_eps)
        axis = contracted_axis(product)
        if isinstance(operand, np.ndarray):
            extra["check"] = operand_scale(operand, eps, axis)
        elif isinstance(x, TaskRef):  # a small task beside x, so x does not travel
            scale_key = (f"coded-scale-{token}", *index)
            tasks[scale_key] = Task(scale_key, operand_scale, x, eps, axis)
            extra["check"] = TaskRef(scale_key)
        else:
            extra["check"] = Task(None, operand_scale, x, eps, axis)
    if checked:
        extra.update(sources={}, report=report_inconsistency,
                     blocks=tuple(_key_of(b) for b in blocks))
    refs = []
    xs = [x] * len(blocks) if operands is None else [_ref(o) for o in operands]
    for j, (block, x_j) in enumerate(zip(blocks, xs, strict=True)):
        key = (name, *index, j)
        tasks[key] = ProductTask(key, product, _ref(block), x_j, spec=spec, index=j,
                                 block=_key_of(block))
        refs.append(TaskRef(key))
    tasks[decode_key] = Task(decode_key, decode_products, scheme, s, *refs, dtype=dtype,
                             **extra)
    return tasks


def tasks_name(scheme: Scheme, token: str, blocks_per_task: int = 1) -> str:
    """The name of a product group's tasks when each multiplies ``blocks_per_task``
    coded blocks: its threshold counted in tasks, so each task is about
    ``1 / threshold`` of the work and each grouping of one encoding has its own name."""
    return product_name(scheme.code_threshold // blocks_per_task, token)


def _task_group(scheme: Scheme, token: str, blocks: Sequence, x, s, decode_key,
                index: tuple, product, dtype, blocks_per_task: int) -> dict:
    """:func:`product_group` with ``blocks_per_task`` coded blocks per product task."""
    if getattr(scheme, "verify", None) is not None:
        raise CodeParameterError("a verified decode checks one coded block per product "
                                 "task; blocks_per_task must be 1")
    layout = scheme.product_tasks(blocks_per_task)
    name = tasks_name(scheme, token, blocks_per_task)
    spec = GroupSpec(name, len(layout), -(-scheme.threshold // blocks_per_task),
                     TaskRule(layout, scheme.threshold, getattr(scheme, "rule", None)))
    tasks: dict = {}
    refs = []
    for t, members in enumerate(layout):
        key = (name, *index, t)
        tasks[key] = ProductTask(key, task_product, product, x,
                                 *[_ref(blocks[j]) for j in members], spec=spec, index=t,
                                 block=_key_of(blocks[members[0]]))
        refs.append(TaskRef(key))
    tasks[decode_key] = Task(decode_key, decode_tasks, scheme, layout, s, *refs,
                             dtype=dtype)
    return tasks


# what may stand between a decode and the task that consumes its output blocks: the cut of
# the decoded product into the user's blocks, and dask's getitem/alias steps after it
CUT_FUNCS = (take_rows, zero_rows, take_block, identity, getitem, operator.getitem)


def _is_cut(node: GraphNode) -> bool:
    """A graph node that only cuts or relabels one input: an alias, a cut kernel, or
    dask's fusion of those."""
    if isinstance(node, Alias):
        return True
    if not isinstance(node, Task) or len(node.dependencies) != 1:
        return False
    if node.func is _execute_subgraph:
        return all(isinstance(v, Alias) or getattr(v, "func", None) in CUT_FUNCS
                   for v in node.args[0].values())
    return node.func in CUT_FUNCS


def fold_cuts(dsk: dict, keys) -> dict:
    """``dsk`` with the cut of each decode folded into the one task that consumes it.

    A decoded product is cut into the user's output blocks (and dask adds a getitem and an
    alias per block after it); when all those blocks go to a single task (the compute's
    ``finalize``, a concatenation), that task takes the decode directly and cuts it
    itself: the same values, two scheduler round trips fewer. The invariant: every task
    folded depends on one input and is a cut kernel, a getitem or an alias (no work moves
    between workers), and no requested key disappears."""
    wanted = set(flatten(keys if isinstance(keys, (list, set)) else [keys]))  # as dask's
    dependents: dict = defaultdict(set)
    for k, node in dsk.items():
        for d in node.dependencies:
            dependents[d].add(k)
    out = dict(dsk)
    for dec in [k for k in dsk if key_name(k).startswith(DECODE_PREFIX)]:
        cut, consumers, stack = set(), set(), list(dependents[dec])
        while stack:
            k = stack.pop()
            if k in cut or k in consumers:
                continue
            if k not in wanted and _is_cut(dsk[k]):
                cut.add(k)
                stack.extend(dependents[k])
            else:
                consumers.add(k)
        if not cut or len(consumers) != 1:
            continue
        (consumer,) = consumers

        def folded(k):
            node = dsk[k]
            return node.substitute({d: folded(d) for d in node.dependencies if d in cut})

        out[consumer] = out[consumer].substitute(  # it may take several decodes' cuts
            {d: folded(d) for d in out[consumer].dependencies if d in cut})
        for k in cut:
            del out[k]
    return out


# ---- two-operand (pair) schemes --------------------------------------------------------

def product_array(name: str, tasks: dict, shape: tuple, dependencies) -> da.Array:
    """The dask Array (one chunk) of decode ``(name, 0, 0)``."""
    graph = HighLevelGraph.from_collections(name, tasks, dependencies=dependencies)
    return da.Array(graph, name, ((shape[0],), (shape[1],)), dtype=np.float64)


def pair_scales(a: Any, b: Any) -> List | None:
    """The decode's ``scales`` argument of a pair scheme: A's row scales ``a`` and B's
    column scales ``b`` (each a key, a future, an array or ``None``), or ``None`` when
    neither operand was scaled."""
    if a is None and b is None:
        return None
    return List(_ref(a), _ref(b))


def scales_task(code: PolynomialScheme, key: Any, chunks: List, side: str) -> Task:
    """Task ``key``: the scales the operand of chunk grid ``chunks`` is divided by
    before it is encoded (:meth:`PolynomialScheme.side_scales`), for the decode."""
    return Task(key, side_scales, code, chunks, side)


def encoded_operand_tasks(code: PolynomialScheme, token: str, a_keys) -> dict:
    """Tasks ``("coded-block-<token>", w)`` encoding A's operand for worker ``w`` from
    A's chunk keys (rows of chunks); the scheduler plugin spreads them over distinct
    workers and keeps them resident (encoded in a graph, as the 1-D code's blocks).
    With an equilibrating code, also ``("coded-scales-<token>", 0)``, A's row scales,
    resident beside them (:func:`operand_keys` tells them apart)."""
    name, chunks = f"{BLOCK_PREFIX}{token}", grid(a_keys)
    tasks = {(name, w): EncodeTask((name, w), encode_side, code, w, chunks, "a",
                                   matrix=token, index=w, code=code.summary)
             for w in range(code.n_blocks)}
    if code.equilibrated:
        key = (f"{SCALES_PREFIX}{token}", 0)
        tasks[key] = EncodeTask(key, side_scales, code, chunks, "a", matrix=token)
    return tasks


def operand_keys(tasks: dict) -> tuple[list, Any]:
    """The encoded operands' keys of :func:`encoded_operand_tasks`, in worker order, and
    the key of A's row scales (``None`` when the code does not scale)."""
    blocks = [k for k in tasks if not key_name(k).startswith(SCALES_PREFIX)]
    scales = next((k for k in tasks if key_name(k).startswith(SCALES_PREFIX)), None)
    return blocks, scales


def operand_products(code: PolynomialScheme, token: str, blocks: list, b_keys,
                     decode_key, a_scales: Any = None) -> dict:
    """The product group of ``decode_key = A @ B`` on A's encoded operands ``blocks``
    (keys or futures; ``a_scales``: A's row scales, a key or a future): product ``w``
    gathers B's chunks (keys ``b_keys``, rows of chunks) and encodes B's operand for
    worker ``w`` itself, where A's is pinned."""
    chunks = grid(b_keys)
    b_encoded = [Task(None, encode_side, code, w, chunks, "b") for w in range(code.n_blocks)]
    tasks: dict = {}
    b_scales = None
    if code.equilibrated:
        b_scales = (f"{SCALES_PREFIX}{token}", "b")
        tasks[b_scales] = scales_task(code, b_scales, chunks, "b")
    tasks.update(product_group(code, token, blocks, None, decode_key,
                               product=polynomial_product, operands=b_encoded,
                               scales=pair_scales(a_scales, b_scales)))
    return tasks


def coded_pair_tasks(code: PolynomialScheme, a_keys, b_keys, token: str, decode_key,
                     local: bool = False) -> dict:
    """``decode_key = A @ B`` from A's and B's chunk keys (nested lists, rows of chunks):
    on a cluster, tasks ``("coded-block-call-<token>", w)`` encode worker ``w``'s pair where
    the plugin pins it, then the product group (with an equilibrating code, tasks
    ``("coded-scales-<token>", "a" | "b")`` give the decode the operands' scales);
    locally, one task that races the products in threads."""
    a, b = grid(a_keys), grid(b_keys)
    if local:
        return {decode_key: Task(decode_key, encode_pairs_and_race, code, a, b)}
    name = f"{CALL_BLOCK_PREFIX}{token}"
    tasks = {(name, w): EncodeTask((name, w), encode_pair, code, w, a, b,
                                   matrix=token, index=w, keep=False, code=code.summary)
             for w in range(code.n_blocks)}
    blocks = list(tasks)
    scales = None
    if code.equilibrated:
        keys = [(f"{SCALES_PREFIX}{token}", side) for side in "ab"]
        for key, chunks, side in zip(keys, (a, b), "ab"):
            tasks[key] = scales_task(code, key, chunks, side)
        scales = pair_scales(*keys)
    tasks.update(product_group(code, token, blocks, None, decode_key,
                               product=pair_product, scales=scales))
    return tasks
