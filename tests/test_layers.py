"""A dask graph's product layers: which the rewrite codes, what it reads of them, and
their keys cut back from a decoded product (pure graph functions, no cluster)."""

import dask
import dask.array as da
import numpy as np
import pytest

from dask_coded.layers import (
    codable, cut_layer, cut_sum, edges, heavy_operand, operation_of, rows_of_sum, sum_after,
)

DECODED = ("decoded-C", 0)


def _product_layer(product):
    """``(graph, name, layer, match)`` of the one codable layer of ``product``'s graph."""
    hlg = product.__dask_graph__()
    found = [(name, layer, codable(hlg, layer)[0]) for name, layer in hlg.layers.items()]
    ((name, layer, match),) = [f for f in found if f[2] is not None]
    return hlg, name, layer, match


def _operands(rows=40, cols=12, right=(12, 5), chunks=(10, 6), right_chunks=(6, 5)):
    rng = np.random.default_rng(0)
    An, Bn = rng.standard_normal((rows, cols)), rng.standard_normal(right)
    return An, Bn, da.from_array(An, chunks=chunks), da.from_array(Bn, chunks=right_chunks)


def test_a_real_matrix_times_a_matrix_is_matched_with_its_row_chunks_and_dtype():
    _, _, A, B = _operands()
    hlg, name, _, m = _product_layer(A.astype(np.float32) @ B)
    assert m.a == A.astype(np.float32).name and m.b == B.name
    assert m.rows == (10, 10, 10, 10)
    assert m.dtype == np.float64 and m.a_dtype == np.float32
    assert m.encode_dtype == np.dtype(np.float64).str  # the product's precision
    assert edges(hlg, m) == ([0, 10, 20, 30, 40], [0, 5])
    assert operation_of(hlg, m) == "A @ B" and operation_of(hlg, m, flipped=True) == "B @ A"


@pytest.mark.parametrize("left, right, why", [
    (np.int64, np.int64, "stays exact"),
    (np.float64, np.complex128, "only real products are coded"),
])
def test_a_product_that_stays_plain_says_why(left, right, why):
    A = da.ones((40, 12), chunks=(10, 6), dtype=left)
    x = da.ones(12, chunks=6, dtype=right)
    hlg = (A @ x).__dask_graph__()
    reasons = [codable(hlg, layer) for layer in hlg.layers.values()]
    assert all(m is None for m, _ in reasons)
    assert any(r is not None and why in r for _, r in reasons)


def test_layers_that_are_not_products_are_not_matched_and_give_no_reason():
    hlg = (da.ones((40, 12), chunks=10) + 1).sum().__dask_graph__()
    assert all(codable(hlg, layer) == (None, None) for layer in hlg.layers.values())


def test_dask_s_sum_over_the_contracted_blocks_is_found_only_when_there_is_one():
    _, _, A, B = _operands()
    hlg, name, _, _ = _product_layer(A @ B)
    total = sum_after(hlg, name)
    assert total is not None and total.startswith("_chunk_sum-aggregate-")
    hlg, name, _, _ = _product_layer(A.rechunk((10, 12)) @ B.rechunk((12, 5)))
    assert sum_after(hlg, name) is None  # one contracted block: no sum follows


def test_the_cut_sum_gives_back_the_product_blocks_from_the_decoded_product():
    An, Bn, A, B = _operands(right=(12, 7), right_chunks=(6, 4))
    product = A @ B
    hlg, name, _, m = _product_layer(product)
    total = sum_after(hlg, name)
    assert total == product.name
    tasks = cut_sum(hlg, total, m, DECODED)
    got = dask.get({**tasks, DECODED: An @ Bn}, product.__dask_keys__())
    np.testing.assert_array_equal(np.block([list(row) for row in got]), An @ Bn)


def test_the_cut_layer_puts_the_whole_contraction_in_the_first_contracted_block():
    An, Bn, A, B = _operands()
    hlg, name, layer, m = _product_layer(A @ B)
    tasks = cut_layer(hlg, name, layer, m, DECODED)
    assert set(tasks) == set(layer.get_output_keys())  # the layer's keys, kept
    values = dask.get({**tasks, DECODED: An @ Bn}, sorted(tasks))
    blocks = dict(zip(sorted(tasks), values))
    where = layer.output_indices.index(m.a_ind[1])
    for key, block in blocks.items():
        i, c = key[1], key[1 + where]
        expected = (An @ Bn)[10 * i:10 * (i + 1)]
        np.testing.assert_array_equal(block.sum(axis=where), expected if c == 0 else 0 * expected)


def test_the_rows_of_a_vector_product_s_sum_are_read_from_each_decode():
    An, xn = np.arange(480.0).reshape(40, 12), np.linspace(0, 1, 12)
    product = da.from_array(An, chunks=(10, 6)) @ da.from_array(xn, chunks=6)
    hlg, name, layer, m = _product_layer(product)
    total = sum_after(hlg, name)
    tasks = rows_of_sum(hlg, total, layer, m, "decoded-y")
    assert set(tasks) == set(hlg.layers[total].get_output_keys())  # the sum's keys, kept
    decodes = {key: (An @ xn)[:, None] for t in tasks.values() for key in t.dependencies}
    got = dask.get({**tasks, **decodes}, sorted(tasks))
    np.testing.assert_array_equal(np.concatenate(got).ravel(), An @ xn)


def test_a_right_operand_heavier_than_a_block_and_the_budget_is_named():
    _, _, A, _ = _operands(rows=40, cols=12)
    gram = A.T @ A  # the right operand (A, 40x12) outweighs one block of A.T
    hlg, _, _, m = _product_layer(gram)
    reason = heavy_operand(hlg, m, blocks=4, budget=0)
    assert reason is not None and "Gram matrix" in reason
    assert heavy_operand(hlg, m, blocks=4, budget=10**6) is None  # within the budget
    x = da.ones(40, chunks=10)
    hlg, _, _, m = _product_layer(A.T @ x)
    assert heavy_operand(hlg, m, blocks=4, budget=0) is None  # a vector is light
