"""Verified decodes (:mod:`dask_coded.verify`): spare products check each other; rounding
never looks like corruption, a wrong product never gives a wrong result, and up to
``errors`` wrong products are corrected, on every survivor set of small codes."""

import itertools
import time

import dask
import numpy as np
import pytest

import dask_coded as dc
from dask_coded.errors import CodeParameterError, CorruptResultError, TooFewResultsError
from dask_coded.schemes import build
from dask_coded.stragglers import local_corruption, local_stragglers
from dask_coded.stragglers.corrupt import KINDS, corrupted
from dask_coded.stragglers.models import ShiftedExponential
from dask_coded.verify import LOCAL, Verify, excess, inspect, operand_scale


def products(scheme, A, x):
    blocks = scheme.encode(A)
    scale = operand_scale(x, np.finfo(blocks[0].dtype).eps)
    return [b @ x for b in blocks], scale


def decoded(scheme, P, scales, chosen):
    """The scheme's decode from the products ``chosen`` (others absent)."""
    return scheme.decode([P[j] if j in chosen else None for j in range(len(P))], scales)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((240, 30)), rng.standard_normal((30, 3))


def test_parameters_are_checked():
    assert Verify.of(None) is None
    assert Verify.of("detect").spare == 1
    assert Verify.of("correct").spare == 2 and Verify.of("correct", 2).spare == 4
    with pytest.raises(CodeParameterError, match="verify must be"):
        Verify.of("fix")
    with pytest.raises(CodeParameterError, match="errors must be a positive integer"):
        Verify.of("correct", 0)
    with pytest.raises(CodeParameterError, match="errors= applies to verify='correct'"):
        Verify.of("detect", 1)
    with pytest.raises(CodeParameterError, match=r"waits for 7 products .* more than n=6"):
        build("mds", 6, k=5, rows=10, verify="correct")
    with pytest.raises(CodeParameterError, match="blocks_per_worker=2 is not supported"):
        build("mds", 6, k=4, rows=10, verify="detect", blocks_per_worker=2)
    with pytest.raises(CodeParameterError, match="not supported with k='auto'"):
        dc.encode(np.ones((4, 4)), 4, "auto", verify="detect", client=None)
    scheme = build("mds", 6, k=4, rows=10, verify="correct")
    assert scheme.threshold == 6 and "Verify('correct', errors=1)" in repr(scheme)


@pytest.mark.parametrize("kind", ["rotation", "gaussian", "chebyshev"])
def test_rounding_never_looks_like_corruption(kind):
    """Clean products of every survivor set pass, also where A @ x cancels to rounding
    (x orthogonal to A's rows) and in float32: the bound is a worst case."""
    rng = np.random.default_rng(1)
    scheme = build("mds", 6, k=4, rows=40, kind=kind, verify="detect")
    for A, x in [
        (rng.standard_normal((40, 60)), rng.standard_normal((60, 2))),
        (rng.standard_normal((40, 30)).astype(np.float32),
         rng.standard_normal(30).astype(np.float32)),
        (np.diag(10.0 ** np.arange(-8, 8, 0.4)), rng.standard_normal(40)),  # wild row scales
    ]:
        if A.shape[1] == 60:  # the cancelling operand: A @ x is rounding only
            Q, _ = np.linalg.qr(A.T)
            x = x - Q @ (Q.T @ x)
            assert np.abs(A @ x).max() < 1e-12 * np.abs(x).max()
        P, scale = products(scheme, A, x)
        for F in itertools.combinations(range(6), 5):
            assert excess(scheme.code, {j: P[j] for j in F}, scale) <= 1.0
        assert inspect(scheme.code, dict(enumerate(P)), scale, errors=1).consistent


@pytest.mark.parametrize("how", KINDS)
def test_detect_flags_every_corrupt_product_of_every_survivor_set(data, how):
    A, x = data
    scheme = build("mds", 6, k=4, rows=len(A), verify="detect")
    P, scale = products(scheme, A, x)
    for F in itertools.combinations(range(6), 5):
        for j in F:
            bad = {i: corrupted(P[i], how, 1e-3, seed=i) if i == j else P[i] for i in F}
            verdict = inspect(scheme.code, bad, scale, errors=len(F))
            assert not verdict.consistent and not verdict.clean, (F, j)
            assert j in verdict.suspects + verdict.candidates


@pytest.mark.parametrize("how", KINDS)
def test_correct_returns_the_right_result_on_every_survivor_set(data, how):
    A, x = data
    scheme = build("mds", 6, k=4, rows=len(A), verify="correct")
    P, scale = products(scheme, A, x)
    scales = scheme.scales(A)
    for F in itertools.combinations(range(6), 6):
        for j in F:
            bad = {i: corrupted(P[i], how, 1e-3, seed=i) if i == j else P[i] for i in F}
            verdict = inspect(scheme.code, bad, scale, errors=1)
            assert verdict.suspects == (j,) and j not in verdict.clean
            y = decoded(scheme, bad, scales, verdict.clean)
            np.testing.assert_allclose(y, A @ x, rtol=0, atol=1e-8)


def test_two_errors_are_corrected_from_k_plus_four_products(data):
    A, x = data
    scheme = build("mds", 8, k=4, rows=len(A), verify="correct", errors=2)
    assert scheme.threshold == 8
    P, scale = products(scheme, A, x)
    for pair in itertools.combinations(range(8), 2):
        bad = {i: corrupted(P[i], "scale" if i == pair[0] else "offset", 1e-2, seed=i)
               if i in pair else P[i] for i in range(8)}
        verdict = inspect(scheme.code, bad, scale, errors=2)
        assert verdict.suspects == pair
        y = decoded(scheme, bad, scheme.scales(A), verdict.clean)
        np.testing.assert_allclose(y, A @ x, rtol=0, atol=1e-8)
    # three wrong products are more than errors=2 can correct: never a wrong result
    bad = {i: corrupted(P[i], "scale", 1e-2) if i < 3 else P[i] for i in range(8)}
    verdict = inspect(scheme.code, bad, scale, errors=2)
    assert not verdict.clean and not verdict.consistent


def test_a_corruption_under_the_rounding_bound_is_invisible_and_harmless(data):
    """What the check cannot see moves the result by less than the decode's own error
    bound: a tiny relative scale passes, and the result stays within 1e-10."""
    A, x = data
    scheme = build("mds", 6, k=4, rows=len(A), verify="detect")
    P, scale = products(scheme, A, x)
    tiny = {j: corrupted(P[j], "scale", 1e-15) if j == 1 else P[j] for j in range(5)}
    verdict = inspect(scheme.code, tiny, scale, errors=0)
    assert verdict.consistent
    y = decoded(scheme, tiny, scheme.scales(A), verdict.clean)
    np.testing.assert_allclose(y, A @ x, rtol=0, atol=1e-10)


@pytest.mark.parametrize("how", KINDS)
def test_local_scheduler_detect_never_returns_a_wrong_answer(data, how):
    A, x = data
    CA = dc.encode(A, 6, 4, verify="detect", client=None)
    truth = A @ x
    for seed in range(6):  # different products straggle: different survivor sets
        with local_stragglers(ShiftedExponential(mu=1.0, scale=0.002), seed=seed), \
                local_corruption([seed % 6], how=how, seed=seed):
            try:
                y = (CA @ x).compute()
            except CorruptResultError as e:
                assert f"product {seed % 6}" in e.suspects + e.candidates
                assert "the result was not returned" in str(e)
            else:  # the corrupt product was not among those used
                np.testing.assert_allclose(y, truth, rtol=0, atol=1e-10)


def test_local_scheduler_detect_waits_for_one_more_product_to_locate(data):
    """On the local scheduler a disagreement the first ``k + 1`` products cannot locate
    waits for the next product (here the slow one): the error names the wrong product
    alone, and only that located disagreement is recorded."""
    from dask_coded.stragglers import SlowWorkers

    A, x = data
    LOCAL.clear()
    CA = dc.encode(A, 6, 4, verify="detect", client=None)
    with local_stragglers(SlowWorkers({"5": 0.3})), local_corruption([2], how="scale"):
        with pytest.raises(CorruptResultError) as info:
            (CA @ x).compute()
    assert info.value.suspects == ["product 2"] and not info.value.candidates
    (suspect,) = CA.suspects()
    assert suspect["worker"] == "product 2" and suspect["located"] == 1
    assert suspect["disagreed"] == 0
    LOCAL.clear()


def test_local_scheduler_correct_returns_the_right_answer_and_records_the_suspect(data):
    A, x = data
    LOCAL.clear()
    CA = dc.encode(A, 6, 4, verify="correct", client=None)
    assert "verify='correct', errors=1" in repr(CA)
    for how in KINDS:
        with local_corruption([3], how=how):
            np.testing.assert_allclose((CA @ x).compute(), A @ x, rtol=0, atol=1e-8)
    (suspect,) = CA.suspects()
    assert suspect["worker"] == "product 3" and suspect["located"] == len(KINDS)
    assert suspect["disagreed"] == 0 and suspect["first"] <= suspect["last"]
    # the transposed matrix is checked the same way
    r = np.arange(len(A), dtype=float)
    with local_corruption([0], how="sign"):
        np.testing.assert_allclose((CA.T @ r).compute(), A.T @ r, rtol=1e-10)
    LOCAL.clear()


def test_too_few_products_to_check_is_an_error_not_an_unchecked_result(data):
    A, x = data
    scheme = build("mds", 6, k=4, rows=len(A), verify="detect")
    P, scale = products(scheme, A, x)
    with pytest.raises(TooFewResultsError, match=r"verify='detect' checks with 5 \(k=4"):
        scheme.inspect([P[0], P[1], P[2], P[3], None, None], scale)
    # a NaN product leaves k others: they cannot be checked, so nothing is returned
    verdict = scheme.inspect([P[0], P[1], P[2], corrupted(P[3], "nan"), P[4], None], scale)
    assert verdict.suspects == (3,) and not verdict.clean
    from dask_coded.verify import Sources, raise_or_pass
    with pytest.raises(CorruptResultError, match="hold NaN or Inf, and the 4 others are too"):
        raise_or_pass(verdict, scheme.verify, Sources(), 4)


def test_coded_matmul_checks_the_products_it_codes(data):
    """verify= through the rewrite: arrays encoded in the graph, and an array encoded
    with encode(verify=...), on the local scheduler."""
    import dask.array as da

    A, x = data
    Ad = da.from_array(A, chunks=(60, 30))
    with local_corruption([1], how="sign"), dc.coded_matmul(n=6, k=4, verify="correct") as opt:
        np.testing.assert_allclose((Ad @ x).compute(), A @ x, rtol=0, atol=1e-8)
    assert [r.threshold for r in opt.rewrites] == [4]
    with pytest.raises(CodeParameterError, match="does not take it"):
        with dc.coded_matmul(n=6, scheme="matdot", splits=2, verify="detect"):
            pass
    Bd = da.from_array(A * 2, chunks=(60, 30))
    CB = dc.encode(Bd, 6, 4, verify="detect", client=None)  # kept: the rewrite uses it
    LOCAL.clear()
    raised = 0
    for seed in range(3):
        with local_stragglers(ShiftedExponential(mu=1.0, scale=0.002), seed=seed), \
                local_corruption([2], how="offset"), dc.coded_matmul(n=6, k=4):
            try:
                y = (Bd @ x).compute()
            except CorruptResultError as e:
                raised += 1
                assert "product 2" in e.suspects + e.candidates
            else:
                np.testing.assert_allclose(y, 2 * A @ x, rtol=0, atol=1e-8)
    # the rewrite's decodes checked the products and reported each disagreement
    assert LOCAL.events == raised
    assert all(s["located"] == 0 for s in CB.suspects() if s["worker"] != "product 2")
    LOCAL.clear()


def test_correct_returns_when_the_products_kept_were_checked(data):
    """Two NaN products with errors=1 on (8, 4): the six others are checked consistent,
    so the result is right and both workers are named."""
    A, x = data
    scheme = build("mds", 8, k=4, rows=len(A), verify="correct")
    P, scale = products(scheme, A, x)
    bad = [corrupted(p, "nan", seed=j) if j in (2, 5) else p for j, p in enumerate(P)]
    verdict = scheme.inspect(bad, scale)
    assert verdict.suspects == (2, 5) and len(verdict.clean) == 6
    from dask_coded.verify import Sources, raise_or_pass
    raise_or_pass(verdict, scheme.verify, Sources(), 4)  # does not raise
    y = decoded(scheme, bad, scheme.scales(A), verdict.clean)
    np.testing.assert_allclose(y, A @ x, rtol=0, atol=1e-8)


def test_a_grouped_code_is_checked_group_by_group(data):
    """Each group of a grouped code keeps its own spares: one wrong product per group is
    corrected wherever it is (one in each group at once too), a group with too few
    products is refused by name, and a group whose spare is missing is refused."""
    A, x = data
    scheme = build("mds", 12, k=8, rows=len(A), kind="grouped", verify="correct")
    assert scheme.rule.needs == (6, 6) and scheme.threshold == 12 and scheme.tolerance == 0
    P, scale = products(scheme, A, x)
    scales = scheme.scales(A)
    groups = scheme.code.members
    for bad_set in [(j,) for j in range(12)] + [(groups[0][1], groups[1][4])]:
        bad = [corrupted(p, "offset", 1e-3, seed=j) if j in bad_set else p
               for j, p in enumerate(P)]
        verdict = scheme.inspect(bad, scale)
        assert verdict.suspects == tuple(sorted(bad_set)), bad_set
        np.testing.assert_allclose(decoded(scheme, bad, scales, verdict.clean), A @ x,
                                   rtol=0, atol=1e-8)
    # two wrong in one group are more than errors=1 corrects there: no result
    two = [corrupted(p, "scale", 1e-2) if j in groups[1][:2] else p for j, p in enumerate(P)]
    verdict = scheme.inspect(two, scale)
    assert not verdict.clean and set(groups[1][:2]) <= set(verdict.candidates)
    missing = [None if j == groups[0][0] else p for j, p in enumerate(P)]
    with pytest.raises(TooFewResultsError, match="each group's k plus 2 spare"):
        scheme.inspect(missing, scale)
    with pytest.raises(CodeParameterError, match=r"waits for 7 products of group 0's 6"):
        build("mds", 12, k=9, rows=len(A), kind="grouped", verify="correct")


def test_detect_on_a_grouped_code_flags_a_wrong_product_in_any_group(data):
    A, x = data
    scheme = build("mds", 12, k=8, rows=len(A), kind="grouped", verify="detect")
    assert scheme.rule.needs == (5, 5)
    P, scale = products(scheme, A, x)
    first, second = scheme.code.members
    for F in itertools.product(itertools.combinations(first, 5),
                               itertools.combinations(second, 5)):
        chosen = F[0] + F[1]
        assert inspect(scheme.code, {j: P[j] for j in chosen}, scale, 0).consistent
        for j in chosen[::3]:
            bad = {i: corrupted(P[i], "sign") if i == j else P[i] for i in chosen}
            verdict = inspect(scheme.code, bad, scale, errors=0)
            assert not verdict.clean and j in verdict.candidates, (chosen, j)


def pair_products(scheme, A, B):
    """Every worker's product of a 2-D code, and the scales the decode multiplies back."""
    from dask_coded.kernels import encode_pairs
    from dask_coded.schemes.polynomial import coded_product

    pairs, scales = encode_pairs(scheme, A, B)
    return [coded_product(a, b) for a, b in pairs], scales


def pair_scheme(points, verify, n=6, splits=(2, 2), errors=None):
    return build("polynomial", n, splits=splits, shape_a=(24, 10), shape_b=(10, 12),
                 points=points, verify=verify, errors=errors)


@pytest.mark.parametrize("points", ["real", "complex"])
def test_a_polynomial_code_checks_its_evaluations(points):
    """A 2-D polynomial code's products are evaluations of one polynomial: rounding never
    flags (operands scaled 26 orders of magnitude apart), every wrong product of every
    survivor set is flagged, and "correct" decodes around any one, each entry within
    1e-10 of its row's and column's norms."""
    from test_matmul2d import badly_scaled, entry_errors

    A, B = badly_scaled()
    detect, correct = pair_scheme(points, "detect"), pair_scheme(points, "correct")
    assert detect.threshold == 5 and correct.threshold == 6 and detect.code_threshold == 4
    P, scales = pair_products(detect, A, B)
    for F in itertools.combinations(range(6), 5):
        assert detect.inspect([P[j] if j in F else None for j in range(6)]).consistent
        for j in F:
            bad = [corrupted(P[i], "scale", 1e-6, seed=i) if i == j else
                   P[i] if i in F else None for i in range(6)]
            verdict = detect.inspect(bad)
            assert not verdict.clean and j in verdict.suspects + verdict.candidates, (F, j)
    for j in range(6):
        bad = [corrupted(p, "offset", 1e-3, seed=i) if i == j else p for i, p in enumerate(P)]
        verdict = correct.inspect(bad)
        assert verdict.suspects == (j,)
        kept = [p if i in verdict.clean else None for i, p in enumerate(bad)]
        assert entry_errors(correct.decode(kept, scales), A, B).max() < 1e-10


def test_a_2d_check_is_refused_where_it_cannot_hold():
    with pytest.raises(CodeParameterError, match="matdot encodes A and B as they are"):
        build("matdot", 6, splits=2, shape_a=(4, 4), shape_b=(4, 4), verify="detect")
    with pytest.raises(CodeParameterError, match=r"waits for 8 products .* more than n=6"):
        pair_scheme("complex", "correct", splits=(2, 3))
    with pytest.raises(TooFewResultsError, match=r"checks with 5 \(4 plus 1 spare\)"):
        pair_scheme("real", "detect").inspect([np.ones((12, 6))] * 4 + [None, None])


def test_dc_matmul_with_a_check_on_the_local_scheduler():
    """dc.matmul(verify=...) and encode_operand(verify=...): "correct" returns the right
    product with a wrong worker, "detect" never returns a wrong one."""
    from test_matmul2d import badly_scaled, entry_errors

    A, B = badly_scaled()
    LOCAL.clear()
    EA = dc.encode_operand(A, 7, splits=(2, 2), verify="detect", client=None)
    assert "Verify('detect')" in repr(EA)
    for j in range(7):
        with local_corruption([j], how="sign"):
            C = dc.matmul(A, B, 7, splits=(2, 2), verify="correct", client=None).compute()
            assert entry_errors(C, A, B).max() < 1e-10
            try:
                C = (EA @ B).compute()
            except CorruptResultError as e:
                assert e.suspects == [f"product {j}"]  # the next product located it
            else:  # its product was not among those used
                assert entry_errors(C, A, B).max() < 1e-10
    assert LOCAL.events >= 7
    LOCAL.clear()


def test_coded_matmul_checks_a_polynomial_code_of_a_b():
    """A @ B under coded_matmul(scheme="polynomial", verify="correct"), local scheduler:
    a wrong product is decoded around on every call."""
    import dask.array as da
    from test_matmul2d import badly_scaled, entry_errors

    A, B = badly_scaled()
    Ad, Bd = da.from_array(A, chunks=(8, 5)), da.from_array(B, chunks=(5, 4))
    LOCAL.clear()
    for j in (0, 3, 5):
        with local_corruption([j], how="offset"), dc.coded_matmul(
                6, scheme="polynomial", splits=(2, 2), verify="correct") as opt:
            C = (Ad @ Bd).compute(scheduler="threads")
        assert entry_errors(C, A, B).max() < 1e-10
        assert [r.scheme for r in opt.rewrites] == ["polynomial"]
    assert LOCAL.events == 3
    LOCAL.clear()


def test_coded_matmul_checks_a_polynomial_code_on_a_cluster():
    """The same on distributed: A's encoded operands resident after the first call, a
    worker returning wrong products decoded around and named in the suspects table."""
    import dask.array as da
    from distributed import Client, LocalCluster
    from test_matmul2d import badly_scaled, entry_errors

    A, B = badly_scaled()
    Ad, Bd = da.from_array(A, chunks=(8, 5)), da.from_array(B, chunks=(5, 4))
    with dask.config.set({"coded.verify.quarantine-after": None}), \
            LocalCluster(n_workers=6, threads_per_worker=1, processes=False,
                         dashboard_address=None) as cluster, Client(cluster) as client:
        bad = sorted(cluster.workers.values(), key=lambda w: w.address)[1]
        client.register_plugin(dc.stragglers.CorruptProducts([str(bad.name)], how="sign"))
        for _ in range(2):
            with dc.coded_matmul(6, scheme="polynomial", splits=(2, 2), verify="correct"):
                C = (Ad @ Bd).compute()
            assert entry_errors(C, A, B).max() < 1e-10
        for _ in range(100):  # the decodes' events reach the scheduler on their own
            table = client.sync(client.scheduler.coded_suspects)
            if table and table[0]["located"] == 2:
                break
            time.sleep(0.05)
        assert [(row["worker"], row["located"]) for row in table] == [(bad.address, 2)]
