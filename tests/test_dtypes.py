"""Products come back in the dtype numpy (and dask) declare for ``A @ x``, with that
dtype's precision; rows of very different scales decode accurately everywhere."""

import dask.array as da
import numpy as np
import pytest
from distributed.utils_test import gen_cluster

import dask_coded as dc

PAIRS = [("float32", "float32"), ("bool", "float32"), ("uint8", "float32"),
         ("float16", "float16"), ("float32", "float64"), ("int64", "float64")]


def operands(a_dtype, x_dtype, seed=0):
    rng = np.random.default_rng(seed)
    A = (rng.standard_normal((60, 5)) * 3).astype(a_dtype)
    return A, rng.standard_normal(5).astype(x_dtype)


def relative_error(got, A, x):
    exact = A.astype(np.float64) @ x.astype(np.float64)
    return np.linalg.norm(got.astype(np.float64) - exact) / np.linalg.norm(exact)


def bound(dtype):
    """What a decode may add in this dtype: the code's condition number (tens here) times
    its rounding."""
    return 100 * np.finfo(np.promote_types(dtype, np.float16)).eps


@pytest.mark.parametrize("a_dtype,x_dtype", PAIRS)
def test_local_products_keep_numpys_dtype_and_precision(a_dtype, x_dtype):
    A, x = operands(a_dtype, x_dtype)
    want = (A @ x).dtype
    y = dc.encode(A, 6, 4, client=None) @ x
    assert y.dtype == want and y.compute().dtype == want
    assert relative_error(y.compute(), A, x) < max(bound(want), bound(A.dtype))
    with dc.coded_matmul(n=6, k=4) as opt:
        z = da.from_array(A, chunks=(10, 5)) @ x
        got = z.compute(scheduler="threads")
    assert len(opt.rewrites) == 1
    assert z.dtype == want and got.dtype == want
    assert relative_error(got, A, x) < bound(want)  # encoded in the product's precision


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 6)
async def test_distributed_products_keep_numpys_dtype(c, s, *workers):
    await c.register_plugin(dc.FirstKPlugin())
    for a_dtype, x_dtype in PAIRS:
        A, x = operands(a_dtype, x_dtype)
        want = (A @ x).dtype
        CA = await dc.encode(A, 6, 4, client=c)
        got = await c.compute(CA @ x)
        assert got.dtype == want, (a_dtype, x_dtype)
        with dc.coded_matmul(n=6, k=4):
            z = da.from_array(A, chunks=(10, 5)) @ x
            got = await c.compute(z)
        assert z.dtype == want and got.dtype == want, (a_dtype, x_dtype)
        assert relative_error(got, A, x) < bound(want)
        CA.release()


@pytest.mark.parametrize("n,k", [(6, 4), (24, 18)])
def test_local_rewrite_equilibrates_rows_of_very_different_scales(n, k):
    rng = np.random.default_rng(1)
    A = rng.standard_normal((240, 6))
    A[::2] *= 1e8
    A[1::2] *= 1e-6
    x = rng.standard_normal(6)
    with dc.coded_matmul(n=n, k=k):
        got = (da.from_array(A, chunks=(240 // k, 6)) @ x).compute(scheduler="threads")
    per_row = np.abs(got - A @ x) / (np.linalg.norm(A, axis=1) * np.linalg.norm(x))
    assert per_row.max() < 1e-10
