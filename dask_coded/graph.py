"""The one graph builder: a scheme and its operands -> encode, product and decode tasks.

:meth:`CodedMatrix.dot <dask_coded.matrix.CodedMatrix.dot>`, :func:`dask_coded.encode`
and the rewrite (:mod:`dask_coded.rewrite`) all build their coded tasks here; the key
names follow :mod:`dask_coded.keys`, which the scheduler plugin reads.

A *product group* is the ``n_blocks`` products of one output block plus its decode. The
decode depends on every product, so the graph is correct on any scheduler; the scheduler
plugin lets the decode start once ``threshold`` products are in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from dask._task_spec import List, Task, TaskRef

from .keys import BLOCK_PREFIX, SCALES_PREFIX, product_name
from .kernels import coded_product, decode_products, encode_chunks, race_products, row_scales
from .schemes import Scheme


def _ref(value: Any) -> Any:
    """A graph argument: a key (a string or a tuple) becomes a ``TaskRef``; anything else
    (arrays, graph nodes, futures, functions) stays as it is."""
    if isinstance(value, (str, tuple)):
        return TaskRef(value)
    return value


class EncodeTask(Task):
    """A task making a coded block: never fused into its product by dask's optimizer, so
    the block keeps its own key, stays resident, and the next graph finds it in memory."""

    @property
    def block_fusion(self) -> bool:
        return True


def encode_tasks(scheme: Scheme, token: str, row_chunks: Sequence, column: int = 0) -> dict:
    """Tasks ``("coded-block-<token>", j, column)`` encoding coded block ``j`` from A's row
    chunk keys ``row_chunks`` (any row chunking: the kernel re-splits), and
    ``("coded-scales-<token>", column)``, the row scales the decode multiplies back."""
    refs = [_ref(key) for key in row_chunks]
    name = f"{BLOCK_PREFIX}{token}"
    tasks = {
        (name, j, column): EncodeTask((name, j, column), encode_chunks, scheme, j, *refs)
        for j in range(scheme.n_blocks)
    }
    scales = (f"{SCALES_PREFIX}{token}", column)
    tasks[scales] = EncodeTask(scales, row_scales, scheme, *refs)
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
) -> dict:
    """Tasks computing ``decode_key = A @ operand`` from coded ``blocks``.

    ``blocks`` are the scheme's ``n_blocks`` coded blocks: keys resident on the cluster
    (``n_blocks`` tasks ``("coded-prod-t<threshold>-<token>", *index, j)`` and a decode
    that depends on all of them), or numpy arrays (``local=True``: one task racing the
    products in threads). ``operand`` is a key, a graph node, or a numpy array embedded in
    each product (then no extra task exists that a slow worker could hold up).
    ``scales``: the row scales A was encoded with (a key, or an array when local).
    """
    x = _ref(operand)
    s = None if scales is None else _ref(scales)
    if local:
        return {decode_key: Task(decode_key, race_products, scheme, List(*blocks), x, product,
                                 s)}
    name = product_name(scheme.threshold, token)
    tasks: dict = {}
    refs = []
    for j, block in enumerate(blocks):
        key = (name, *index, j)
        tasks[key] = Task(key, product, _ref(block), x)
        refs.append(TaskRef(key))
    tasks[decode_key] = Task(decode_key, decode_products, scheme, s, *refs)
    return tasks
