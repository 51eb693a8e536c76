"""A dask graph's product layers, read for the rewrite: which can be coded, what they
read, and their keys cut back from a decoded product.

:func:`codable` matches a matmul/dot/tensordot ``Blockwise`` layer (a :class:`Match`,
or why it stays plain); the other readers say what the rewrite needs of a matched
layer (its operands inlined, the sum dask builds after it, a persisted source, whether
its right operand is too heavy to send). The cuts (:func:`cut_layer`,
:func:`cut_sum`, :func:`rows_of_sum`) keep the layer's output keys, each a slice of the
decoded ``C``, so the rest of the graph is untouched. Pure functions of the graph: no
client, no scheduler.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from dask.array.routines import _tensordot
from dask.blockwise import Blockwise
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer
from dask.task_spec import Alias, DataNode, GraphNode, Task, TaskRef
from dask.tokenize import tokenize

from .flip import LINEAR_IN_A
from .keys import key_name
from .kernels import identity, take_block, take_rows


@dataclass(frozen=True)
class Match:
    """A codable layer: left operand ``a`` (its row chunks ``rows``), right operand ``b``."""

    a: str
    a_ind: tuple
    b: str
    b_ind: tuple
    rows: tuple  # A's row chunks
    dtype: np.dtype  # the product's, as dask declares it: result_type(A, B)
    a_dtype: np.dtype

    @property
    def encode_dtype(self) -> str:
        """The dtype A's coded blocks are encoded in: the product's precision (float32 at
        least), so a float32 A times a float64 x keeps float64's accuracy; float64 for an
        integer or boolean A (as :func:`dask_coded.encode`)."""
        if self.a_dtype.kind != "f":
            return np.dtype(np.float64).str
        return np.promote_types(self.dtype, np.float32).str


def content_token(hlg: HighLevelGraph, name: str) -> str | None:
    """A token of the data in dask array ``name``'s own layer when it holds its chunks
    (``da.from_array`` of a numpy array): two arrays given the same ``name=`` with other
    data then get other encodings in this process, as plain dask computes each afresh."""
    layer = hlg.layers.get(name)
    if not isinstance(layer, MaterializedLayer):
        return None
    return tokenize(*[layer[k] for k in sorted(layer, key=str)])


def inlined(hlg: HighLevelGraph, key, budget: int, coded=frozenset()) -> GraphNode | None:
    """``key``'s task with every task it depends on nested in it, when they bottom out in
    data held in the graph of at most ``budget`` bytes (a numpy operand, sliced, reshaped
    or rechunked by dask) and none is a product the rewrite codes (layers ``coded``: the
    operand ``r`` of ``A.T @ r`` with ``r = A @ w - b`` waits for the coded ``A @ w``,
    it does not redo it plainly in every product); else None (the operand is computed,
    or persisted, or too large)."""
    used = 0

    def node(k, near):
        nonlocal used
        if key_name(k) in coded:
            return None
        layer = near if near is not None and k in near else hlg.layers.get(key_name(k))
        if layer is None or k not in layer:
            return None
        value = layer[k]
        if isinstance(value, np.ndarray):
            value = DataNode(k, value)
        if isinstance(value, DataNode):
            used += getattr(value.value, "nbytes", budget + 1)
            return value if used <= budget else None
        if isinstance(value, Alias):
            target = node(value.target, layer)
            return None if target is None else Task(k, identity, target)
        if not isinstance(value, Task):
            return None
        subs = {}
        for dep in value.dependencies:
            sub = node(dep, layer)
            if sub is None:
                return None
            subs[dep] = sub
        return value.substitute(subs)

    return node(key, None)


def sum_after(hlg: HighLevelGraph, name: str) -> str | None:
    """The last layer of dask's sum over the contracted blocks that follows matmul layer
    ``name`` (``A @ B`` is a ``chunk_sum`` Blockwise, ``_chunk_sum-partial`` layers for a
    deep tree, then ``_chunk_sum-aggregate``, each read only by the next), or None when
    the graph has another shape."""
    readers: dict = {}
    for layer, deps in hlg.dependencies.items():
        for d in deps:
            readers.setdefault(d, []).append(layer)
    current, prefix = name, "chunk_sum-"
    while True:
        following = readers.get(current, [])
        if len(following) != 1 or not following[0].startswith(prefix):
            return None
        (current,), prefix = following, "_chunk_sum-"
        if current.startswith("_chunk_sum-aggregate-"):
            return current


def edges(hlg: HighLevelGraph, m: Match) -> tuple[list[int], list[int]]:
    """Where the row chunks of A and the column chunks of B start and end in ``C``."""
    cols = hlg.layers[m.b].collection_annotations["chunks"][1]
    return (list(itertools.accumulate(m.rows, initial=0)),
            list(itertools.accumulate(cols, initial=0)))


def cut_layer(hlg: HighLevelGraph, name: str, layer: Blockwise, m: Match,
               dec_key) -> dict:
    """The matmul layer's output blocks cut from the decoded ``C``: blocks along the
    contracted axis other than the first are zeros (``C`` already holds the whole
    contraction)."""
    out = layer.output_indices
    rows, cols = edges(hlg, m)
    where = out.index(m.a_ind[1])
    tasks = {}
    for g in itertools.product(*(range(layer.dims[i]) for i in out)):
        coord = dict(zip(out, g))
        i, c, j = coord[m.a_ind[0]], coord[m.a_ind[1]], coord[m.b_ind[1]]
        key = (name, *g)
        tasks[key] = Task(key, take_block, TaskRef(dec_key), rows[i], rows[i + 1],
                          cols[j], cols[j + 1], where, c == 0)
    return tasks


def rows_of_sum(hlg: HighLevelGraph, total: str, layer: Blockwise, m: Match,
                 dec: str) -> dict:
    """Layer ``total`` (dask's sum over the contracted blocks of a 1-D coded layer) as the
    rows of the decodes themselves: each decode already holds the whole contraction, so
    key ``(total, i, *rest)`` is rows ``i`` of the decode of ``rest`` (the sum of the cut
    blocks, all zeros but the first), in the sum's declared dtype."""
    out, contracted = layer.output_indices, m.a_ind[1]
    rest = [ix for ix in out[1:] if ix != contracted]
    offsets = list(itertools.accumulate(m.rows, initial=0))
    dtype = (hlg.layers[total].collection_annotations or {}).get("dtype")
    dtype = None if dtype is None else np.dtype(dtype).str
    tasks = {}
    for g in itertools.product(*(range(layer.dims[i]) for i in rest)):
        coord = {**dict(zip(rest, g)), contracted: 0}
        dec_key = (dec, *[coord[ix] for ix in out[1:]])
        for i in range(len(m.rows)):
            key = (total, i, *g)
            tasks[key] = Task(key, take_rows, TaskRef(dec_key), offsets[i], offsets[i + 1],
                              dtype, out.index(contracted))
    return tasks


def cut_sum(hlg: HighLevelGraph, total: str, m: Match, dec_key) -> dict:
    """Layer ``total`` (the sum over the contracted blocks) as the blocks of the decoded
    ``C`` itself: key ``(total, i, j)`` is ``C[rows i, columns j]``, what the sum of the
    cut blocks along the contracted axis adds up to (all but the first are zeros)."""
    rows, cols = edges(hlg, m)
    dtype = (hlg.layers[total].collection_annotations or {}).get("dtype")
    dtype = None if dtype is None else np.dtype(dtype).str  # the sum's, as dask declares it
    return {(total, i, j): Task((total, i, j), take_block, TaskRef(dec_key), rows[i],
                                rows[i + 1], cols[j], cols[j + 1], None, True, dtype)
            for i in range(len(rows) - 1) for j in range(len(cols) - 1)}


def codable(hlg: HighLevelGraph, layer) -> tuple[Match | None, str | None]:
    """``(match, None)`` for a matmul/tensordot layer whose left operand is a 2-D, real,
    numpy-backed array whose row axis becomes the output's first axis (any chunking: a
    transpose ``A.T`` with one row chunk too), with a real operand and a floating result;
    ``(None, reason)`` for a product layer that stays plain dask (integer products stay
    exact, complex ones are not coded), saying why; ``(None, None)`` for any other
    layer."""
    if not isinstance(layer, Blockwise) or getattr(layer.task, "func", None) not in LINEAR_IN_A:
        return None, None
    if len(layer.indices) != 2 or layer.new_axes:
        return None, "a product of more than two operands"
    (a, a_ind), (b, b_ind) = layer.indices
    if a_ind is None or b_ind is None or len(a_ind) != 2 or a_ind[0] != layer.output_indices[0]:
        return None, "its left operand is not a matrix whose rows are the result's rows"
    if a_ind[0] in b_ind or a_ind[1] not in b_ind or a_ind[1] not in layer.output_indices:
        return None, "it contracts other axes than the left operand's columns"
    if layer.task.func is _tensordot and (
        layer.task.kwargs.get("is_sparse") or tuple(layer.task.kwargs["axes"][0]) != (1,)
    ):
        return None, "a tensordot over other axes than the left operand's columns, or sparse"
    if a not in hlg.layers:
        return None, f"its left operand {a!r} is not in the graph"
    ann = hlg.layers[a].collection_annotations or {}
    chunks, dtype = ann.get("chunks"), ann.get("dtype")
    if chunks is None or dtype is None:
        return None, f"the graph does not say the chunks and dtype of {a!r}"
    if "numpy" not in str(ann.get("chunk_type", "numpy")):
        return None, f"the left operand's chunks are {ann.get('chunk_type')}, not numpy arrays"
    b_ann = (hlg.layers[b].collection_annotations or {}) if b in hlg.layers else {}
    if b_ann.get("dtype") is None:
        return None, f"the graph does not say the dtype of {b!r}"
    dtype, b_dtype = np.dtype(dtype), np.dtype(b_ann["dtype"])
    if dtype.kind not in "biuf" or b_dtype.kind not in "biuf":
        return None, f"a {dtype} @ {b_dtype} product: only real products are coded"
    if np.result_type(dtype, b_dtype).kind != "f":
        return None, (f"an integer product ({dtype} @ {b_dtype}) stays exact in plain dask; "
                      f"cast an operand to float to code it")
    return Match(a, tuple(a_ind), b, tuple(b_ind), tuple(chunks[0]),
                  np.result_type(dtype, b_dtype), dtype), None


def _nbytes(hlg: HighLevelGraph, name: str) -> int:
    """Bytes of the whole dask array ``name``, from its declared chunks and dtype."""
    ann = hlg.layers[name].collection_annotations or {}
    return int(np.prod([sum(c) for c in ann["chunks"]])) * np.dtype(ann["dtype"]).itemsize


def heavy_operand(hlg: HighLevelGraph, m: Match, blocks: int, budget: int) -> str | None:
    """Why coding layer ``m`` would move more data than it saves, or None: every coded
    product needs the whole right operand (the contraction spans all of A's columns), so
    a right operand larger than one coded block and than ``budget`` bytes (``X.T @ X``,
    the Gram matrix) would travel to every worker, where plain dask multiplies each chunk
    beside its data."""
    b, a = _nbytes(hlg, m.b), _nbytes(hlg, m.a)
    if b <= max(budget, a // blocks):
        return None
    return (f"its right operand ({b / 2**20:.1f} MiB) would travel whole to every worker of "
            f"the code, where plain dask multiplies each chunk beside its data (X.T @ X: "
            f"compute the Gram matrix plainly, or dc.encode X and multiply by vectors)")



def persisted_source(hlg: HighLevelGraph, name: str):
    """How the encodings of layer ``name`` read a persisted array, so that no task of the
    graph gets another reader (which would change how dask's optimizer fuses it, and so
    the graph's keys): ``(name, None)`` when ``name`` is persisted (its chunks are
    futures), ``(source, "T")`` when it is the transpose of a persisted ``source`` (read
    its chunks and transpose them), else ``None``."""
    def persisted(n):
        layer = hlg.layers.get(n)
        return (isinstance(layer, MaterializedLayer) and len(layer) > 0
                and all(isinstance(v, TaskRef) for v in layer.values()))

    if persisted(name):
        return name, None
    layer = hlg.layers.get(name)
    if (isinstance(layer, Blockwise) and len(layer.indices) == 1
            and getattr(layer.task, "func", None) is np.transpose):
        (source, ind), = layer.indices
        if (ind is not None and len(ind) == 2 and tuple(layer.output_indices) == ind[::-1]
                and persisted(source)):
            return source, "T"
    return None


def operation_of(hlg: HighLevelGraph, m: Match, flipped: bool = False) -> str:
    """What a matched layer computes, for its record: ``A`` or ``A.T`` (a transpose on
    the left) times ``x`` (a vector, or one column) or ``B`` (a matrix); ``flipped``
    (:func:`flip_left_products`): ``x @ A`` or ``B @ A``."""
    left = "A.T" if m.a.startswith("transpose-") else "A"
    chunks = (hlg.layers[m.b].collection_annotations or {}).get("chunks") or ()
    vector = len(m.b_ind) == 1 or len(chunks) < 2 or sum(chunks[1]) <= 1
    if flipped:
        return f"{'x' if vector else 'B'} @ A"
    return f"{left} @ {'x' if vector else 'B'}"
