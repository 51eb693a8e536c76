"""Lagrange coded computing: exact from every survivor set, refused where it would not be."""

import asyncio
import itertools

import numpy as np
import pytest
from distributed.utils_test import (  # noqa: F401  (fixtures)
    cleanup,
    gen_cluster,
)

import dask_coded as dc
from dask_coded.schemes import SCHEMES
from dask_coded.schemes.lagrange import LagrangeScheme, audit, lagrange_weights


def least_squares_parts(k, rows=7, cols=3, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((rows, cols)), rng.standard_normal(rows)) for _ in range(k)]


def gradient(part, w):
    """Degree 2 in the part: X.T @ (X @ w - y)."""
    X, y = part
    return X.T @ (X @ w - y)


def gradient_and_loss(part, w):
    X, y = part
    r = X @ w - y
    return X.T @ r, r @ r


def test_lagrange_weights_interpolate_a_polynomial():
    nodes = np.array([-1.0, -0.3, 0.2, 0.9])
    at = np.array([0.5, -0.7])
    coefficients = [0.3, -1.0, 2.0, 0.5]  # degree 3 through 4 nodes: exact
    W = lagrange_weights(at, nodes)
    np.testing.assert_allclose(W @ np.polyval(coefficients, nodes),
                               np.polyval(coefficients, at), rtol=1e-13)


@pytest.mark.parametrize("n, k, degree, points", [
    (6, 3, 2, "real"), (6, 3, 2, "complex"), (7, 3, 2, "auto"), (8, 4, 2, "real"),
    (8, 3, 3, "complex"), (5, 5, 1, "real"),
])
def test_exact_from_every_survivor_set(n, k, degree, points):
    scheme = SCHEMES["lagrange"].from_params(n, parts=k, degree=degree, points=points)
    assert scheme.threshold == (k - 1) * degree + 1
    parts = least_squares_parts(k, seed=n + k)
    w = np.random.default_rng(1).standard_normal(3)
    if degree == 1:
        f = lambda part, w: part[0] @ w  # noqa: E731  (linear in the part)
    elif degree == 2:
        f = gradient
    else:
        f = lambda part, w: part[0].T @ (part[0] @ w) * part[1].sum()  # noqa: E731
    want = [f(p, w) for p in parts]
    scale = max(np.abs(v).max() for v in want)
    coded = [scheme.encode_part(j, *parts) for j in range(n)]
    products = [f(c, w) for c in coded]
    for survivors in itertools.combinations(range(n), scheme.threshold):
        got = scheme.decode([products[j] if j in survivors else None for j in range(n)])
        for g, v in zip(got, want):
            assert np.isrealobj(g)
            np.testing.assert_allclose(g, v, rtol=0, atol=1e-8 * scale)


def test_tuple_results_and_scalars_decode_per_component():
    scheme = LagrangeScheme(6, 3, 2)
    parts = least_squares_parts(3)
    w = np.ones(3)
    products = [gradient_and_loss(scheme.encode_part(j, *parts), w) for j in range(6)]
    got = scheme.decode(products[:5] + [None])
    for (g, loss), p in zip(got, parts):
        want_g, want_loss = gradient_and_loss(p, w)
        np.testing.assert_allclose(g, want_g, atol=1e-10)
        assert np.ndim(loss) == 0 and abs(loss - want_loss) < 1e-9 * abs(want_loss)


def test_auto_points_take_complex_where_real_is_not_accurate():
    assert LagrangeScheme(8, 4, 2).points == "real"
    assert audit(30, 10, 2, "real")[0] > 1e-8 >= audit(30, 10, 2, "complex")[0]
    scheme = LagrangeScheme(30, 10, 2)
    assert scheme.points == "complex"
    with pytest.raises(dc.errors.CodeParameterError, match="points='complex'"):
        LagrangeScheme(30, 10, 2, points="real")


def test_bad_parameters_and_parts_name_the_problem():
    with pytest.raises(dc.errors.CodeParameterError, match=r"\(k-1\)d\+1 = 7 .* more than n=6"):
        LagrangeScheme(6, 4, 2)
    with pytest.raises(dc.errors.CodeParameterError, match="degree must be a positive integer"):
        LagrangeScheme(6, 3, 0)
    with pytest.raises(dc.errors.CodeParameterError, match="points must be one of"):
        LagrangeScheme(6, 3, 2, points="gaussian")
    scheme = LagrangeScheme(6, 3, 2)
    X = np.ones((4, 2))
    with pytest.raises(dc.errors.BlockShapeError, match="part 2 has shape"):
        scheme.encode_part(0, X, X, np.ones((5, 2)))
    with pytest.raises(dc.errors.NonFiniteError, match="part 1 contains NaN"):
        scheme.encode_part(0, X, X * np.nan, X)
    with pytest.raises(dc.errors.DtypeError, match="real numeric parts"):
        scheme.encode_part(0, X, X.astype(complex), X)
    products = [np.ones(2)] * 6
    products[1] = np.array([np.nan, 1.0])
    with pytest.raises(dc.errors.NonFiniteError, match="product 1"):
        scheme.decode(products)
    with pytest.raises(dc.errors.TooFewResultsError, match="only 4 of n=6 .* needs 5"):
        scheme.decode(products[:4] + [None, None])


def test_local_encode_and_map_forgo_stragglers():
    parts = least_squares_parts(3)
    w = np.arange(3.0)
    L = dc.encode(parts, 6, scheme="lagrange", degree=2, client=None)
    assert isinstance(L.scheme, LagrangeScheme) and "threshold=5" in repr(L)
    with dc.stragglers.local_stragglers(dc.stragglers.SlowWorkers(seconds={"2": 60.0})):
        got = L.map(gradient, w).compute()
    for g, p in zip(got, parts):
        np.testing.assert_allclose(g, gradient(p, w), atol=1e-10)


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 6)
async def test_distributed_least_squares_gradient_from_the_first_five_of_six(c, s, *workers):
    parts = least_squares_parts(3, rows=40, seed=3)
    L = await dc.encode(parts, 6, scheme="lagrange", degree=2, client=c)
    slow = next(w.name for w in workers if w.address == L.workers[4])
    await c.register_plugin(dc.stragglers.StragglerPlugin(
        dc.stragglers.SlowWorkers(seconds={str(slow): 60.0}), match=("coded-prod",),
        interruptible=True))
    w = np.array([0.5, -1.0, 2.0])
    got = await asyncio.wait_for(c.compute(L.map(gradient, w)), 30)
    want = sum(gradient(p, w) for p in parts)
    np.testing.assert_allclose(sum(got), want, atol=1e-9 * np.abs(want).max())
    assert 4 not in await L._last_used()
    await c.unregister_worker_plugin(dc.stragglers.StragglerPlugin.name)
    dc.release(L)
    assert not L.blocks
