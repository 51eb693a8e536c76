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


def test_product_tasks_bundle_one_workers_blocks_and_decode_from_any_k_workers():
    """Each product task multiplies blocks of one worker, every block in exactly one
    task; run as one task per worker, any k workers' tasks decode, and fewer do not."""
    from itertools import combinations

    from dask_coded.codes.survivors import TaskRule
    from dask_coded.kernels import decode_tasks, task_product

    scheme = MDSScheme(code_for(6, 4, 4), rows=96, blocks_per_worker=4)
    where = scheme.placement([f"w{i}" for i in range(6)])
    for g, tasks in ((1, 24), (2, 12), (4, 6)):
        layout = scheme.product_tasks(g)
        assert len(layout) == tasks and all(len(t) == g for t in layout)
        assert sorted(j for t in layout for j in t) == list(range(24))
        assert all(len({where[j] for j in t}) == 1 for t in layout)
    layout = scheme.product_tasks(4)
    assert [where[t[0]] for t in layout] == [f"w{i}" for i in range(6)]  # task w: worker w
    rule = TaskRule(layout, scheme.threshold)
    A = np.random.default_rng(1).standard_normal((96, 3))
    x = np.arange(3.0)
    outs = [task_product(lambda b, v: b @ v, x, *[scheme.encode(A)[j] for j in t])
            for t in layout]
    for finished in combinations(range(6), 4):
        assert rule(frozenset(finished)) and not rule(frozenset(finished[:3]))
        got = decode_tasks(scheme, layout, scheme.scales(A),
                           *[outs[t] if t in finished else None for t in range(6)])
        np.testing.assert_allclose(got, A @ x, atol=1e-9)
    for bad in (3, 0, 8):
        with pytest.raises(dc.errors.CodeParameterError,
                           match="divisor of blocks_per_worker=4"):
            scheme.product_tasks(bad)


def test_exact_blocks_takes_the_most_blocks_whose_code_any_k_workers_decode():
    from dask_coded.schemes.mds import exact_blocks

    assert exact_blocks(6, 4, 4) == 4  # a square rotation code: threshold 16
    assert code_for(12, 9, 4).threshold == 38  # least squares, a margin of 2 blocks
    assert exact_blocks(12, 9, 4) == 2 and code_for(12, 9, 2).threshold == 18
    assert exact_blocks(6, 4, 1) == 1
