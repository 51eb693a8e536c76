"""Graph construction for coded products (the kernels live in :mod:`dask_coded.kernels`).

Key names are the contract with :class:`dask_coded.first_k.FirstKPlugin`:

* ``("coded-block-<token>", j)``: coded block ``j`` of an encoded matrix, pinned to one worker;
* ``("coded-enc-<token>", j, c)``: coded block ``j`` encoded inside a rewritten graph; the
  plugin spreads ``j = 0..n-1`` over distinct workers (loosely: any worker if that one goes);
* ``("coded-prod-k<k>-<token>", c, j)``: coded block ``j`` times column block ``c`` of x;
  the plugin reads ``k`` from the name and pins the task where its block lives;
* ``("coded-dec-<token>", 0[, c])``: the decode; depends on all ``n`` products, so the
  graph is correct on every scheduler, and the plugin lets it start after any ``k``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from dask._task_spec import List, Task, TaskRef

from .codes import MDSCode
from .kernels import Layout, coded_product, decode_products, first_k_threads

BLOCK_PREFIX = "coded-block-"
ENCODE_PREFIX = "coded-enc-"
PRODUCT_PREFIX = "coded-prod-"
DECODE_PREFIX = "coded-dec-"
_PRODUCT_K = re.compile(r"^coded-prod-k(\d+)-")


def key_name(key) -> str:
    """The name part of a dask key (``key[0]`` of a tuple key)."""
    return str(key[0] if isinstance(key, tuple) else key)


def product_k(key) -> int | None:
    """``k`` of a coded product key, or ``None`` when ``key`` is not a coded product."""
    m = _PRODUCT_K.match(key_name(key))
    return int(m.group(1)) if m else None


def is_block(key) -> bool:
    """A resident coded block (from :func:`dask_coded.encode`)."""
    return key_name(key).startswith(BLOCK_PREFIX)


def is_encode(key) -> bool:
    """A coded block encoded inside a rewritten graph: ``("coded-enc-<token>", j, c)``."""
    return key_name(key).startswith(ENCODE_PREFIX)


def product_name(k: int, token: str) -> str:
    return f"{PRODUCT_PREFIX}k{k}-{token}"


def coded_matmul_tasks(
    token: str,
    code: MDSCode,
    layout: Layout,
    blocks: Sequence,
    x_keys: Sequence,
    out_keys: Sequence,
    local: bool,
) -> dict:
    """Tasks computing ``out_keys[c] = A @ x[c]`` for each column block ``c`` of x
    (``x_keys[c]``: a key, or a numpy array to embed).

    ``blocks`` are the ``n`` coded blocks: references to keys resident on the cluster
    (``local=False``: ``n`` product tasks and a decode per column block), or numpy arrays
    (``local=True``: one task per column block racing the ``n`` products in threads).
    """
    tasks = {}
    prod = product_name(code.k, token)
    for c, (x_key, out_key) in enumerate(zip(x_keys, out_keys)):
        # a key of x's graph, or x's values themselves (embedded in each product: no
        # extra task that a slow worker could hold up)
        x_ref = x_key if isinstance(x_key, np.ndarray) else TaskRef(x_key)
        if local:
            tasks[out_key] = Task(out_key, first_k_threads, code, layout, List(*blocks), x_ref)
            continue
        refs = []
        for j, block in enumerate(blocks):
            key = (prod, c, j)
            block_ref = block if isinstance(block, TaskRef) else TaskRef(block)
            tasks[key] = Task(key, coded_product, block_ref, x_ref)
            refs.append(TaskRef(key))
        tasks[out_key] = Task(out_key, decode_products, code, layout, *refs)
    return tasks
