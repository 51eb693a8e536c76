"""Grouped codes: a certified code per group of workers, for large n."""

import pickle

import numpy as np
import pytest
from dask.base import tokenize

import dask_coded as dc
from dask_coded.codes import fewest_groups, grouped_code
from dask_coded.codes.grouped import group_shapes, worker_members
from dask_coded.schemes.mds import code_for


def blocks_of(code, rows=6, cols=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((rows, cols)) for _ in range(code.k)]


def test_groups_are_as_few_as_accuracy_allows_and_explain_themselves():
    code = fewest_groups(48, 36)
    assert repr(code) == ("GroupedCode(n=48, k=36, groups=2: 2 x (24, 18) 'rotation', "
                          "tolerance=6)")
    assert dc.codes.estimated_error(dc.codes.certified_condition(code), 36) <= 1e-8
    # one group fewer (the square code) is not accurate: that is why it is grouped
    with pytest.raises(dc.errors.CodeParameterError, match="can lose accuracy"):
        dc.codes.require_accurate(dc.make_code(48, 36, "rotation"))


def test_group_shapes_split_n_and_k_evenly():
    assert group_shapes(10, 7, 3) == [(4, 3), (3, 2), (3, 2)]
    assert sum(n for n, _ in group_shapes(1000, 750, 32)) == 1000
    assert sum(k for _, k in group_shapes(1000, 750, 32)) == 750


def test_every_block_of_a_worker_is_in_its_workers_group():
    members = worker_members(6, 3, [3, 3])  # block j on worker j mod 6
    assert members == [[0, 1, 2, 6, 7, 8, 12, 13, 14], [3, 4, 5, 9, 10, 11, 15, 16, 17]]
    code = grouped_code(6, 4, 2, blocks_per_worker=3)
    assert [p.n for p in code.parts] == [9, 9] and [p.k for p in code.parts] == [6, 6]
    assert code.tolerance == 3  # one whole worker per group


def test_decode_from_any_sets_the_rule_accepts():
    code = grouped_code(12, 8, 2)  # 2 x (6, 4): each group may lose 2
    blocks = blocks_of(code)
    coded = code.encode(blocks)
    for lost in ([0, 1, 6, 7], [4, 5, 10, 11], [2, 9]):
        finished = frozenset(range(12)) - set(lost)
        assert code.rule(finished)
        out = code.decode({j: coded[j] for j in finished})
        np.testing.assert_allclose(np.stack(out), np.stack(blocks), atol=1e-12)
    # 4 lost (n - k) but 3 of them in group 0: the rule refuses, the decode names the group
    finished = frozenset(range(12)) - {0, 1, 2, 6}
    assert len(finished) == code.threshold and not code.rule(finished)
    with pytest.raises(dc.errors.TooFewResultsError, match="group 0 .* has 3 of its 6"):
        code.decode({j: coded[j] for j in finished})


def test_a_coded_block_reads_only_its_groups_row_blocks():
    code = grouped_code(12, 8, 2)
    assert set(code.blocks_needed(0)) <= {0, 1, 2, 3}
    assert set(code.blocks_needed(11)) <= {4, 5, 6, 7} and code.blocks_needed(11)
    some = code.encode(blocks_of(code), workers=[11, 0])
    full = code.encode(blocks_of(code))
    np.testing.assert_array_equal(some[0], full[11])
    np.testing.assert_array_equal(some[1], full[0])


def test_the_generator_is_block_diagonal_and_matches_encode():
    code = grouped_code(12, 8, 2)
    blocks = blocks_of(code)
    X = np.concatenate([b.reshape(2, 3, 3) for b in blocks])  # 2 symbols per block
    C = (code.generator @ X.reshape(16, -1)).reshape(12, 6, 3)
    np.testing.assert_allclose(C, np.stack(code.encode(blocks)), atol=1e-12)
    assert not code.generator[:12, 8:].any() and not code.generator[12:, :8].any()


def test_pickles_tokenizes_and_compares_by_value():
    code = fewest_groups(48, 36)
    again = pickle.loads(pickle.dumps(code))
    assert again == code and hash(again) == hash(code) and tokenize(again) == tokenize(code)
    assert again.rule == code.rule and grouped_code(48, 36, 3) != code


@pytest.mark.parametrize("n, k, r, lost", [(96, 72, 1, 1), (96, 72, 4, 4), (1000, 750, 1, 1),
                                           (250, 187, 8, 1)])
def test_large_codes_are_grouped_and_certified(n, k, r, lost):
    code = code_for(n, k, r)
    assert code.kind == "grouped" and (code.n, code.k) == (n * r, k * r)
    cond = dc.codes.certified_condition(code)
    assert cond is not None
    assert dc.codes.estimated_error(cond, 2 * max(p.k for p in code.parts)) <= 1e-8
    # every group can lose a whole worker, or where the groups of at most 32 blocks
    # cannot afford it (250 workers, 8 blocks each, 63 redundant), one block
    assert code.tolerance >= lost


def test_the_audit_of_a_grouped_code_is_its_worst_groups():
    code = grouped_code(12, 8, 2)
    a = dc.audit(code)
    assert a.worst_error < 1e-12 and a.exhaustive
    assert a.total_sets == 15  # C(6, 4), once: both groups share one code
    group = next(m for m in code.members if a.worst_set[0] in m)
    assert set(a.worst_set) <= set(group) and len(a.worst_set) == 4


def test_too_few_redundant_workers_for_any_grouping_are_refused_naming_a_k():
    with pytest.raises(dc.errors.CodeParameterError,
                       match=r"n - k = 1 redundant workers .* use k <= \d+"):
        fewest_groups(200, 199)
    with pytest.raises(dc.errors.CodeParameterError, match="k must be at most n"):
        code_for(10, 11, kind="grouped")


def test_verify_checks_a_grouped_code_group_by_group():
    """Each group waits for its own spare products (2 groups of (24, 18): 19 of each to
    detect); a group too small for its spares is refused by name."""
    A, x = np.random.default_rng(3).standard_normal((80, 2)), np.ones(2)
    CA = dc.encode(A, 48, 36, verify="detect", client=None)
    assert CA.code.kind == "grouped" and CA.scheme.rule.needs == (19, 19)
    np.testing.assert_allclose((CA @ x).compute(), A @ x)
    with pytest.raises(dc.errors.CodeParameterError, match="waits for 26 products of group 0.s 24"):
        dc.encode(A, 48, 36, verify="correct", errors=4, client=None)
