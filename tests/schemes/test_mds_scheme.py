"""The MDS scheme with one or several coded blocks per worker."""

import numpy as np
import pytest

import dask_coded as dc
from dask_coded.schemes import MDSScheme
from dask_coded.schemes.mds import code_for


def test_code_for_picks_a_certified_square_code_or_least_squares():
    assert code_for(6, 4, 2).kind == "rotation" and code_for(6, 4, 2).threshold == 8
    big = code_for(12, 9, 4)
    assert (big.n, big.k, big.kind, big.threshold) == (48, 36, "lstsq", 38)
    with pytest.raises(dc.errors.CodeParameterError, match="can lose accuracy"):
        code_for(12, 9, 4, kind="rotation")


@pytest.mark.parametrize("r", [0, -1, 1.5, True])
def test_bad_blocks_per_worker(r):
    with pytest.raises(dc.errors.CodeParameterError, match="blocks_per_worker"):
        code_for(6, 4, r)


def test_placement_gives_each_worker_r_blocks_and_decode_uses_any_threshold():
    scheme = MDSScheme(code_for(4, 2, 4), rows=120, blocks_per_worker=4)
    assert scheme.n_workers == 4 and scheme.n_blocks == 16 and scheme.threshold == 8
    where = scheme.placement(["a", "b", "c", "d"])
    assert [where.count(w) for w in "abcd"] == [4, 4, 4, 4]
    A = np.random.default_rng(0).standard_normal((120, 5))
    x = np.ones(5)
    products = [b @ x for b in scheme.encode(A)]
    # worker "b" straggles with all four blocks; worker "c" finished two of its four
    lost = [j for j, w in enumerate(where) if w == "b"] + [j for j, w in enumerate(where)
                                                           if w == "c"][2:]
    got = scheme.decode([None if j in lost else p for j, p in enumerate(products)],
                        scheme.scales(A))
    np.testing.assert_allclose(got, A @ x, atol=1e-10)
