"""Polynomial and MatDot codes: A @ B from every survivor set, and refusals."""

import itertools

import numpy as np
import pytest

import dask_coded as dc
from dask_coded.schemes.polynomial import PolynomialScheme, coded_product


def operands(r=37, s=20, t=29, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((r, s)), rng.standard_normal((s, t))


def products(code, A, B):
    a, b = code.blocks_of(A, B)
    return [coded_product(code.encode_operand(w, a, "a"), code.encode_operand(w, b, "b"))
            for w in range(code.n_blocks)]


@pytest.mark.parametrize("points", ["real", "complex"])
@pytest.mark.parametrize("n,kind,splits,threshold", [
    (8, "polynomial", (2, 3), 6), (12, "polynomial", (3, 3), 9), (6, "polynomial", 2, 2),
    (8, "matdot", 3, 5), (12, "matdot", 4, 7)])
def test_every_survivor_set_decodes_a_times_b(n, kind, splits, threshold, points):
    A, B = operands()  # odd sizes: blocks are zero-padded
    code = PolynomialScheme(n, kind, splits, A.shape, B.shape, points)
    assert code.threshold == threshold and code.points == points
    got_all = products(code, A, B)
    want = A @ B
    for lost in itertools.combinations(range(n), n - threshold):
        got = code.decode([None if w in lost else p for w, p in enumerate(got_all)])
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-10 * np.abs(want).max(), lost


def test_auto_points_are_real_where_accurate_else_complex():
    shape = (12, 12)
    assert PolynomialScheme(12, "polynomial", (3, 3), shape, shape).points == "real"
    assert PolynomialScheme(24, "polynomial", (3, 3), shape, shape).points == "complex"
    with pytest.raises(dc.errors.CodeParameterError,
                       match=r"points='real' .* not accurate enough for n=24 .* points='complex'"):
        PolynomialScheme(24, "polynomial", (3, 3), shape, shape, points="real")
    with pytest.raises(dc.errors.CodeParameterError, match="points must be"):
        PolynomialScheme(12, "matdot", 3, shape, shape, points="imaginary")


def test_encoded_operands_are_a_fraction_of_each_operand():
    A, B = operands(40, 30, 60)
    poly = PolynomialScheme(12, "polynomial", (2, 3), A.shape, B.shape)
    assert poly.real and poly.encode_operand(0, *poly.blocks_of(A, B)[:1], "a").dtype == float
    a, b = poly.blocks_of(A, B)
    assert poly.encode_operand(0, a, "a").shape == (20, 30)  # 1/m of A's rows
    assert poly.encode_operand(0, b, "b").shape == (30, 20)  # 1/p of B's columns
    mat = PolynomialScheme(12, "matdot", 3, A.shape, B.shape)
    a, b = mat.blocks_of(A, B)
    assert mat.encode_operand(0, a, "a").shape == (40, 10)  # 1/m of the inner dimension
    assert mat.encode_operand(0, b, "b").shape == (10, 60)


def test_too_few_products_and_bad_parameters():
    A, B = operands()
    code = PolynomialScheme(6, "matdot", 2, A.shape, B.shape)
    with pytest.raises(dc.errors.TooFewResultsError, match="needs 3"):
        code.decode([None] * 4 + products(code, A, B)[4:])
    with pytest.raises(dc.errors.CodeParameterError, match="more than n=4"):
        PolynomialScheme(4, "polynomial", (2, 3), A.shape, B.shape)
    with pytest.raises(dc.errors.CodeParameterError, match="integer"):
        PolynomialScheme(6, "matdot", (2, 2), A.shape, B.shape)
    with pytest.raises(dc.errors.CodeParameterError, match="kind must be"):
        PolynomialScheme(6, "entangled", 2, A.shape, B.shape)
    with pytest.raises(dc.errors.BlockShapeError, match="A @ B needs"):
        PolynomialScheme(6, "matdot", 2, (3, 4), (5, 6))
    with pytest.raises(dc.errors.CodeParameterError, match="can lose accuracy"):
        PolynomialScheme(48, "polynomial", (6, 6), (12, 12), (12, 12))  # (48, 36)
    with pytest.raises(dc.errors.CodeParameterError, match="can lose accuracy"):
        PolynomialScheme(48, "polynomial", (6, 6), (12, 12), (12, 12), "complex")
