"""Gradient codes: the exact sum from every survivor set, conditioning, refusals."""

import itertools

import numpy as np
import pytest

import dask_coded as dc
from dask_coded.schemes.gradient import (
    GradientCode,
    amplification,
    decode_vector,
    require_accurate,
    weighted_sum,
)


def partials(n, seed=0, shape=(7, 3)):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape) for _ in range(n)]


def coded(code, f):
    """What each worker sends: ``g_j = sum_i B[j, i] f_i`` over its support only."""
    return [weighted_sum(code.coefficients(j), [f[i] for i in code.support(j)])
            for j in range(code.n)]


CASES = [(6, 1, "fractional"), (6, 2, "fractional"), (12, 3, "fractional"),
         (12, 2, "cyclic"), (12, 3, "cyclic"), (8, 3, "cyclic"), (7, 2, "cyclic"),
         (5, 0, "auto")]


@pytest.mark.parametrize("n,s,kind", CASES)
def test_every_survivor_set_decodes_the_exact_sum(n, s, kind):
    code = GradientCode(n, s, kind)
    f = partials(n)
    truth = sum(f)
    g = coded(code, f)
    scale = sum(np.abs(x) for x in f)
    for stragglers in itertools.combinations(range(n), s):
        products = [None if j in stragglers else g[j] for j in range(n)]
        got = code.decode(products)
        assert np.abs(got - truth).max() <= 1e-10 * scale.max(), stragglers
        # the measured error stays within the estimate the code is accepted on
        assert (np.abs(got - truth) <= code.estimated_error() * scale + 1e-300).all()


@pytest.mark.parametrize("n,s,kind", [(6, 2, "fractional"), (12, 2, "cyclic")])
def test_more_survivors_than_the_threshold_decode_too(n, s, kind):
    code = GradientCode(n, s, kind)
    f = partials(n, seed=1)
    g = coded(code, f)
    got = code.decode(g[:-1] + [None])
    np.testing.assert_allclose(got, sum(f), rtol=1e-12, atol=1e-12)


def test_each_worker_holds_s_plus_one_parts_and_each_part_s_plus_one_workers():
    for kind in ("fractional", "cyclic"):
        code = GradientCode(12, 2, kind)
        assert code.threshold == 10
        support = np.array([len(code.support(j)) for j in range(12)])
        assert (support == 3).all()
        assert ((code.B != 0).sum(axis=0) == 3).all()


def test_fractional_repetition_adds_without_multiplying():
    code = GradientCode(6, 2)
    assert code.kind == "fractional"
    a = code.decode_weights([0, 2, 3, 5])
    assert set(a) <= {0.0, 1.0} and a.sum() == 2
    ints = [np.arange(4) + i for i in range(6)]  # exact integer sums survive the code
    assert code.decode(coded(code, ints)).dtype.kind == "i"


def test_tuples_are_summed_elementwise():
    code = GradientCode(4, 1)
    f = [(np.full(2, i, dtype=float), float(i)) for i in range(4)]
    g = coded(code, f)
    grad, total = code.decode([g[0], None, g[2], g[3]])
    np.testing.assert_array_equal(grad, [6.0, 6.0])
    assert total == 6.0


def test_too_few_survivors_raise():
    code = GradientCode(6, 2)
    with pytest.raises(dc.errors.TooFewResultsError, match="needs 4"):
        code.decode([np.ones(2)] * 3 + [None] * 3)


def test_decode_vector_reports_when_the_sum_is_out_of_reach():
    code = GradientCode(6, 2, "cyclic")
    with pytest.raises(dc.errors.IllConditionedError, match="cannot recover"):
        decode_vector(code.B, [0, 1])
    a, cond = decode_vector(code.B, [0, 1, 2, 3])
    np.testing.assert_allclose(a @ code.B, np.ones(6), atol=1e-12)
    assert 1 <= cond < 1e6 and amplification(code.B, a) >= 1


@pytest.mark.parametrize("args,match", [
    ((6, 6), "0 <= stragglers < n"),
    ((6, -1), "0 <= stragglers < n"),
    ((6, 1.5), "integer"),
    ((7, 1, "fractional"), "to divide n"),
    ((6, 1, "mds"), "kind must be"),
])
def test_bad_parameters_name_the_problem(args, match):
    with pytest.raises(dc.errors.CodeParameterError, match=match):
        GradientCode(*args)


def test_poorly_conditioned_cyclic_codes_are_refused():
    require_accurate(GradientCode(12, 3, "cyclic"))  # accepted: worst case below 1e-8
    with pytest.raises(dc.errors.CodeParameterError, match="can lose accuracy"):
        require_accurate(GradientCode(24, 4, "cyclic"))


def test_the_cyclic_code_is_the_same_in_every_process():
    a, b = GradientCode(12, 2, "cyclic"), GradientCode(12, 2, "cyclic")
    np.testing.assert_array_equal(a.B, b.B)
    assert "cyclic" in repr(a) and "threshold=10" in repr(a)
