"""``x @ A`` written as ``(A.T @ x.T).T`` block by block, before the rewrite codes it."""

import dask
import dask.array as da
import numpy as np
import pytest

from dask_coded.flip import flip_left_products


def _flipped(product):
    hlg = product.__dask_graph__()
    new, flipped = flip_left_products(hlg)
    return hlg, new, flipped


@pytest.mark.parametrize("rows", [None, 3])
def test_a_vector_or_a_few_rows_times_a_matrix_is_flipped_and_keeps_its_keys(rows):
    rng = np.random.default_rng(0)
    An = rng.standard_normal((40, 12))
    xn = rng.standard_normal(40) if rows is None else rng.standard_normal((rows, 40))
    A = da.from_array(An, chunks=(10, 6))
    x = da.from_array(xn, chunks=10 if rows is None else (rows, 10))
    product = x @ A
    hlg, new, flipped = _flipped(product)
    ((layer, matmul),) = flipped.items()  # one new layer stands for the matmul layer
    assert matmul.startswith("matmul-") and matmul in hlg.layers
    assert any(d.startswith("transpose-") for d in new.dependencies[layer])  # on A.T
    assert set(new.layers[matmul].get_output_keys()) == set(
        hlg.layers[matmul].get_output_keys())  # the rest of the graph is untouched
    got = dask.get(new, product.__dask_keys__())
    out = np.block([list(r) for r in got]) if rows is not None else np.concatenate(got)
    np.testing.assert_allclose(out, xn @ An, rtol=1e-12)


def test_a_matrix_on_the_left_or_more_rows_than_columns_is_left_alone():
    A = da.ones((40, 12), chunks=(10, 6))
    for product in (A @ da.ones(12, chunks=6), da.ones((20, 40), chunks=10) @ A):
        hlg, new, flipped = _flipped(product)
        assert flipped == {} and new is hlg
