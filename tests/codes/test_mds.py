import itertools
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import dask_coded as dc
from dask_coded.codes import FAMILIES

KINDS = sorted(k for k in FAMILIES if k != "lstsq")  # any k decode; lstsq: k + margin


def products(code, coded, x):
    return {j: c @ x for j, c in enumerate(coded)}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n,k", [(1, 1), (3, 1), (4, 2), (5, 3), (6, 4), (5, 5), (7, 4)])
def test_round_trip_every_survivor_set(kind, n, k):
    rng = np.random.default_rng(n * 10 + k)
    rows = 5  # odd: exercises the rotation code's padding row
    blocks = [rng.standard_normal((rows, 3)) for _ in range(k)]
    x = rng.standard_normal((3, 2))
    code = dc.make_code(n, k, kind)
    coded = code.encode(blocks)
    assert len(coded) == n
    assert all(c.shape == (code.coded_rows(rows), 3) for c in coded)
    res = products(code, coded, x)
    for survivors in itertools.combinations(range(n), k):
        out = code.decode({j: res[j] for j in survivors}, rows=rows)
        assert len(out) == k
        for got, b in zip(out, blocks):
            np.testing.assert_allclose(got, b @ x, rtol=1e-10, atol=1e-12)


def test_rotation_block_is_one_block_in_size():
    code = dc.make_code(6, 4, "rotation")
    assert code.symbols == 2
    coded = code.encode([np.ones((8, 3))] * 4)
    assert [c.shape for c in coded] == [(8, 3)] * 6
    assert code.coded_rows(7) == 8 and code.coded_rows(8) == 8


@given(
    n=st.integers(1, 9),
    data=st.data(),
    kind=st.sampled_from(KINDS),
    dtype=st.sampled_from([np.float64, np.float32, np.int64, np.int32, np.bool_]),
    rows=st.integers(1, 7),
    cols=st.integers(1, 4),
    width=st.integers(1, 3),
)
def test_property_round_trip(n, data, kind, dtype, rows, cols, width):
    k = data.draw(st.integers(1, n))
    survivors = data.draw(st.lists(st.integers(0, n - 1), min_size=k, max_size=n, unique=True))
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    blocks = [(rng.standard_normal((rows, cols)) * 4).astype(dtype) for _ in range(k)]
    x = rng.standard_normal((cols, width)).astype(np.float64 if dtype != np.float32 else dtype)
    code = dc.make_code(n, k, kind)
    coded = code.encode(blocks)
    expected_dtype = np.float32 if dtype == np.float32 else np.float64
    assert all(c.dtype == expected_dtype for c in coded)
    out = code.decode({j: coded[j] @ x for j in survivors}, rows=rows)
    tol = 2e-4 if dtype == np.float32 else 1e-9
    for got, b in zip(out, blocks):
        want = b.astype(np.float64) @ x.astype(np.float64)
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * (1 + np.abs(want).max()))


def test_systematic_fast_path_is_a_copy_not_a_solve(monkeypatch):
    code = dc.make_code(6, 4, "gaussian")
    assert code.systematic
    blocks = [np.full((3, 2), float(i)) for i in range(4)]
    coded = code.encode(blocks)
    for b, c in zip(blocks, coded[:4]):
        np.testing.assert_array_equal(b, c)

    def no_solve(*a, **kw):
        raise AssertionError("the systematic fast path must not solve")

    monkeypatch.setattr(dc.codes.mds, "inverses", no_solve)
    res = {j: coded[j] for j in range(4)}
    out = code.decode(res)
    assert all(o is res[j] for j, o in enumerate(out))
    # more than k results: the systematic ones are preferred, still no solve
    out = code.decode({j: coded[j] for j in range(6)})
    for b, o in zip(blocks, out):
        np.testing.assert_array_equal(b, o)


def test_factorisation_is_cached_per_survivor_set(monkeypatch):
    code = pickle.loads(pickle.dumps(dc.make_code(7, 4, "rotation")))  # a fresh, empty cache
    rng = np.random.default_rng(0)
    coded = code.encode([rng.standard_normal((4, 2)) for _ in range(4)])
    calls = []
    real = dc.codes.mds.inverses
    monkeypatch.setattr(dc.codes.mds, "inverses", lambda *a, **k: calls.append(1) or real(*a, **k))
    for _ in range(5):
        code.decode({j: coded[j] for j in (1, 3, 5, 6)})
    assert len(calls) == 1
    code.decode({j: coded[j] for j in (0, 3, 5, 6)})
    assert len(calls) == 2


def test_decode_is_accurate_in_float32():
    code = dc.make_code(12, 9)
    rng = np.random.default_rng(1)
    blocks = [rng.standard_normal((50, 8)).astype(np.float32) for _ in range(9)]
    x = rng.standard_normal(8).astype(np.float32)
    coded = code.encode(blocks)
    out = code.decode({j: coded[j] @ x for j in range(3, 12)}, rows=50)
    assert out[0].dtype == np.float32
    truth = np.concatenate([b.astype(np.float64) @ x for b in blocks])
    err = np.linalg.norm(np.concatenate(out) - truth) / np.linalg.norm(truth)
    assert err < 1e-5


def test_pickle_round_trip_drops_cache():
    code = dc.make_code(6, 4, "rotation")
    coded = code.encode([np.eye(2)] * 4)
    code.decode({j: coded[j] for j in (2, 3, 4, 5)})
    assert code._inv
    clone = pickle.loads(pickle.dumps(code))
    assert clone == code and not clone._inv
    out = clone.decode({j: coded[j] for j in (2, 3, 4, 5)})
    np.testing.assert_allclose(out[1], np.eye(2), atol=1e-12)


def test_repr_explains_the_code():
    assert repr(dc.make_code(6, 4, "rotation")) == (
        "MDSCode(n=6, k=4, kind='rotation', systematic=False)"
    )
    assert "seed=" in repr(dc.make_code(6, 4, "gaussian"))


def test_auto_picks_the_best_conditioned_family():
    from dask_coded.codes.mds import SEARCH_MARGIN, conditions
    from dask_coded.codes.survivors import survivor_sets

    n, k = 12, 8
    code = dc.make_code(n, k)
    assert code.kind == dc.codes.best_kind(n, k)
    sets, exhaustive = survivor_sets(
        n, k, systematic=True, exhaustive_limit=10**6, samples=0, rng=np.random.default_rng(0)
    )
    assert exhaustive
    worst = {kind: conditions(dc.make_code(n, k, kind).generator, sets,
                              dc.make_code(n, k, kind).symbols).max() for kind in SEARCH_MARGIN}
    chosen = worst[code.kind] * SEARCH_MARGIN[code.kind]
    assert all(chosen <= worst[kind] * SEARCH_MARGIN[kind] for kind in SEARCH_MARGIN)
    assert dc.make_code(5, 5).kind == "gaussian"  # n == k: the identity


def test_config_sets_the_default_kind():
    import dask

    with dask.config.set({"coded.code-kind": "vandermonde"}):
        assert dc.make_code(6, 4).kind == "vandermonde"


def test_screened_seed_beats_seed_zero():
    from dask_coded.codes import gaussian_generator, screened_seed, worst_condition
    from dask_coded.codes.survivors import survivor_sets

    n, k = 16, 12
    sets, _ = survivor_sets(n, k, systematic=True, exhaustive_limit=10**5, samples=0,
                            rng=np.random.default_rng(0))
    seed = screened_seed(n, k)
    assert worst_condition(gaussian_generator(n, k, seed), sets, 1) <= worst_condition(
        gaussian_generator(n, k, 0), sets, 1
    )


# ---- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n,k,kind,match",
    [
        (4, 0, None, "k must be at least 1"),
        (3, 4, None, "k must be at most n"),
        (41, 10, "vandermonde", "beyond what kind='vandermonde' supports"),
        (2000, 10, None, "beyond every family"),
        (6, 4, "reed-solomon", "kind must be"),
        (6.0, 4, None, "n must be an integer"),
        (6, True, None, "k must be an integer"),
    ],
)
def test_bad_parameters(n, k, kind, match):
    with pytest.raises(dc.errors.CodeParameterError, match=match):
        dc.make_code(n, k, kind)
    with pytest.raises(ValueError):  # the builtin type still catches it
        dc.make_code(n, k, kind)


@pytest.fixture
def code():
    return dc.make_code(5, 3, "rotation")


def test_encode_rejects_unequal_shapes(code):
    with pytest.raises(dc.errors.BlockShapeError, match=r"blocks\[2\] is \(3, 3\)"):
        code.encode([np.ones((2, 3)), np.ones((2, 3)), np.ones((3, 3))])


def test_encode_rejects_wrong_block_count(code):
    with pytest.raises(dc.errors.BlockShapeError, match="k=3 arrays, got 2"):
        code.encode([np.ones(2), np.ones(2)])
    with pytest.raises(dc.errors.BlockShapeError, match="list of 3 arrays"):
        code.encode(np.ones((3, 2)))


@pytest.mark.parametrize(
    "dtype,match", [(object, "non-numeric"), ("U3", "non-numeric"), (complex, "complex")]
)
def test_encode_rejects_bad_dtypes(code, dtype, match):
    blocks = [np.zeros((2, 2), dtype=dtype) for _ in range(3)]
    with pytest.raises(dc.errors.DtypeError, match=match):
        code.encode(blocks)
    with pytest.raises(TypeError):
        code.encode(blocks)


def test_encode_rejects_scalars(code):
    with pytest.raises(dc.errors.BlockShapeError, match="at least one axis"):
        code.encode([np.float64(1)] * 3)


def test_decode_needs_k_results(code):
    coded = code.encode([np.ones((2, 2))] * 3)
    with pytest.raises(dc.errors.TooFewResultsError, match=r"k=3 results, got 2 \(workers \[0, 4\]\)"):
        code.decode({0: coded[0], 4: coded[4]})


@pytest.mark.parametrize("bad", [5, -1, "1", 2.5, None])
def test_decode_rejects_bad_indices(code, bad):
    coded = code.encode([np.ones((2, 2))] * 3)
    res = {0: coded[0], 1: coded[1], bad: coded[2]}
    with pytest.raises(dc.errors.CodeParameterError, match="not a worker index in 0..4"):
        code.decode(res)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_decode_names_the_worker_with_nan(code, value):
    coded = code.encode([np.ones((2, 2))] * 3)
    coded[3][1, 0] = value
    with pytest.raises(dc.errors.NonFiniteError, match=r"results\[3\] \(worker 3\)"):
        code.decode({1: coded[1], 3: coded[3], 4: coded[4]})


def test_decode_rejects_mismatched_results(code):
    coded = code.encode([np.ones((2, 2))] * 3)
    with pytest.raises(dc.errors.BlockShapeError, match="one shape"):
        code.decode({0: coded[0], 1: coded[1], 2: coded[2][:, :1]})
    with pytest.raises(dc.errors.BlockShapeError, match="divisible by symbols=2"):
        code.decode({0: np.ones(3), 1: np.ones(3), 2: np.ones(3)})
    with pytest.raises(TypeError, match="mapping"):
        code.decode([coded[0], coded[1], coded[2]])


def test_encode_selected_workers_matches_full_encode():
    code = dc.make_code(7, 4, "rotation")
    rng = np.random.default_rng(2)
    blocks = [rng.standard_normal((3, 2)) for _ in range(4)]
    full = code.encode(blocks)
    some = code.encode(blocks, workers=[6, 2])
    np.testing.assert_array_equal(some[0], full[6])
    np.testing.assert_array_equal(some[1], full[2])
    with pytest.raises(dc.errors.CodeParameterError, match="worker 7 is not in 0..6"):
        code.encode(blocks, workers=[7])


# ---- accuracy: what auto picks, what encode refuses, what a decode checks ---------------


def test_auto_meets_the_bound_on_the_set_that_fooled_the_random_search():
    """At (32, 24) a random code's worst survivor sets hide from sampling; auto must pick
    a family whose worst case is certified, and decode this set accurately."""
    code = dc.make_code(32, 24)
    assert code.kind == "rotation"
    cond = dc.codes.certified_condition(code)
    assert dc.codes.estimated_error(cond, 48) <= 1e-8
    rng = np.random.default_rng(0)
    blocks = [rng.standard_normal((40, 3)) for _ in range(24)]
    coded = code.encode(blocks)
    survivors = [j for j in range(32) if j not in (1, 6, 7, 19, 22, 25, 29, 30)]
    out = code.decode({j: coded[j] for j in survivors})
    err = max(np.abs(o - b).max() for o, b in zip(out, blocks)) / max(np.abs(b).max() for b in blocks)
    assert err <= 1e-8


def test_a_decode_from_an_ill_conditioned_set_raises_instead_of_returning_garbage():
    code = dc.make_code(32, 24, "gaussian")  # accepted: too large to certify
    survivors = tuple(j for j in range(32) if j not in (1, 6, 7, 19, 22, 25, 29, 30))
    _, cond = code._inverse(survivors)
    rng = np.random.default_rng(0)
    coded = code.encode([rng.standard_normal((4, 2)) for _ in range(24)])
    assert dc.codes.estimated_error(cond, 24) > 1e-8  # this seed's bad set (cond ~ 5.9e8)
    with pytest.raises(dc.errors.IllConditionedError, match="condition number"):
        code.decode({j: coded[j] for j in survivors})
    # a well-conditioned set of the same code still decodes
    code.decode({j: coded[j] for j in range(24)})
    assert dc.codes.certified_condition(code) is None


@pytest.mark.parametrize("n, k, kind", [(64, 48, "rotation"), (40, 30, "vandermonde"),
                                        (40, 30, "rotation"), (128, 100, "rotation")])
def test_encode_refuses_codes_that_miss_the_bound(n, k, kind):
    A = np.ones((4 * k, 2))
    with pytest.raises(dc.errors.CodeParameterError, match="can lose accuracy: .* condition number"):
        dc.encode(A, n, k, kind=kind, client=None)


@pytest.mark.parametrize("n, k", [(40, 30), (128, 100)])
def test_auto_groups_the_workers_where_every_square_code_misses_the_bound(n, k):
    A = np.random.default_rng(0).standard_normal((4 * k, 2))
    CA = dc.encode(A, n, k, client=None)
    assert CA.code.kind == "grouped" and (CA.n, CA.k) == (n, k)
    assert f"kind='grouped', groups={len(CA.code.parts)}, local" in repr(CA)
    assert dc.codes.estimated_error(dc.codes.certified_condition(CA.code), 64) <= 1e-8
    np.testing.assert_allclose((CA @ np.ones(2)).compute(), A @ np.ones(2), atol=1e-9)


@pytest.mark.timeout(60)
def test_large_codes_build_quickly():
    """make_code(128, 100) and an audit of a large structured code take seconds, not the
    minutes a random-code screening would (the timeout is a wide guard)."""
    assert dc.make_code(128, 100).kind == "rotation"
    a = dc.audit(dc.make_code(64, 48, "rotation"))
    assert a.worst_cond > 1e10  # the structured worst set is found without a search
