import math

import numpy as np
import pytest

import dask_coded as dc


@pytest.mark.parametrize("n,k", [(6, 4), (12, 8), (12, 9), (16, 12), (20, 16), (24, 16), (24, 20)])
def test_default_code_meets_error_target_up_to_n24(n, k):
    assert dc.worst_case_error(dc.make_code(n, k)) <= 1e-10


def test_default_code_meets_error_target_at_32_24():
    assert dc.worst_case_error(dc.make_code(32, 24)) <= 1e-8


def test_exhaustive_when_small_and_sampled_when_large():
    small = dc.audit(dc.make_code(8, 5, "rotation"))
    assert small.exhaustive and small.sets_checked == small.total_sets == math.comb(8, 5)
    big = dc.audit(dc.make_code(32, 24, "rotation"), trials=100)
    assert not big.exhaustive and big.total_sets == math.comb(32, 24)
    assert 100 <= big.sets_checked < big.total_sets


def test_audit_finds_the_known_worst_set_of_the_rotation_code():
    # clustered roots of unity: a contiguous run is the worst case
    a = dc.audit(dc.make_code(24, 16, "rotation"), trials=50)
    runs = np.diff(np.array(a.worst_set)) == 1
    assert runs.sum() >= 14  # one contiguous run, possibly wrapping around
    assert 1e4 < a.worst_cond < 1e5


def test_audit_ranks_families_as_measured():
    errs = {kind: dc.worst_case_error(dc.make_code(16, 12, kind)) for kind in dc.codes.FAMILIES}
    assert errs["rotation"] < errs["vandermonde"]
    assert errs["vandermonde"] > 1e-12  # the reference really is worse


def test_audit_is_reproducible_for_a_seed():
    code = dc.make_code(30, 22, "gaussian")
    assert dc.audit(code, trials=200, rng=3) == dc.audit(code, trials=200, rng=3)


def test_audit_repr_and_type_check():
    a = dc.audit(dc.make_code(6, 4, "rotation"))
    assert "all 15/15 survivor sets" in repr(a)
    with pytest.raises(TypeError, match="MDSCode"):
        dc.audit("not a code")
