"""Products with the matrix on the right, ``x @ A``, written as ``(A.T @ x.T).T`` block by
block, so that the rewrite (:mod:`dask_coded.rewrite`) codes them as products of
``A.T``, whose coded blocks ``A.T @ r`` shares."""

from __future__ import annotations

import dask.array as da
import numpy as np
from dask.array.routines import _matmul, _tensordot
from dask.blockwise import Blockwise
from dask.highlevelgraph import HighLevelGraph

from .kernels import transposed_back

#: dask's kernels of a product linear in its right operand's blocks
LINEAR_IN_A = (_matmul, _tensordot)


def flip_left_products(hlg: HighLevelGraph) -> tuple[HighLevelGraph, dict]:
    """``hlg`` with each product ``x @ A`` (``matmul``, ``x.dot(A)``, ``tensordot`` over
    x's last axis and A's rows) whose left operand has fewer rows than ``A`` has columns
    (a vector, or a few rows, times a matrix) written as ``(A.T @ x.T).T``, block by
    block: the layer keeps its name and keys, each block now the transpose of a block of
    a new product layer whose left operand is ``A.T`` (dask's own transpose of A, so it
    shares A.T's coded blocks), which the rewrite then codes. Also ``{new product layer:
    the layer it stands for}``."""
    layers, dependencies, flipped = dict(hlg.layers), dict(hlg.dependencies), {}
    for name, layer in hlg.layers.items():
        func = getattr(getattr(layer, "task", None), "func", None)
        if not (isinstance(layer, Blockwise) and func in LINEAR_IN_A
                and len(layer.indices) == 2 and not layer.new_axes):
            continue
        (x, x_ind), (a, a_ind) = layer.indices
        if (x_ind is None or a_ind is None or len(x_ind) not in (1, 2) or len(a_ind) != 2
                or x_ind[-1] != a_ind[0] or tuple(layer.output_indices) != (*x_ind, a_ind[1])
                or x not in hlg.layers or a not in hlg.layers):
            continue
        if func is _tensordot and (layer.task.kwargs.get("is_sparse") or tuple(
                map(tuple, layer.task.kwargs.get("axes", ()))) != ((len(x_ind) - 1,), (0,))):
            continue
        x_ann = hlg.layers[x].collection_annotations or {}
        a_ann = hlg.layers[a].collection_annotations or {}
        if any(ann.get(f) is None for ann in (x_ann, a_ann) for f in ("chunks", "dtype")):
            continue
        rows = sum(x_ann["chunks"][0]) if len(x_ind) == 2 else 1
        if (rows >= sum(a_ann["chunks"][1]) or np.dtype(a_ann["dtype"]).kind not in "biuf"
                or "numpy" not in str(a_ann.get("chunk_type", "numpy"))):
            continue
        xs = da.Array(hlg, x, chunks=x_ann["chunks"], dtype=x_ann["dtype"])
        A = da.Array(hlg, a, chunks=a_ann["chunks"], dtype=a_ann["dtype"])
        vector = xs.ndim == 1
        if vector:
            xs = xs[None, :]
        c, j = a_ind
        i = x_ind[0] if not vector else f"{name}-row"  # x's rows (one, for a vector)
        dtype = np.result_type(xs.dtype, A.dtype)
        product = da.blockwise(_matmul, (j, c, i), A.T, (j, c), xs.T, (c, i),
                               adjust_chunks={c: 1}, dtype=dtype, concatenate=False)
        back = da.blockwise(transposed_back, tuple(layer.output_indices), product, (j, c, i),
                            vector=vector, name=name, dtype=dtype, concatenate=True)
        graph = back.__dask_graph__()
        for n, new in graph.layers.items():
            if n not in hlg.layers or n == name:
                layers[n], dependencies[n] = new, set(graph.dependencies[n])
        flipped[product.name] = name
    if not flipped:
        return hlg, flipped
    return HighLevelGraph(layers, dependencies), flipped
