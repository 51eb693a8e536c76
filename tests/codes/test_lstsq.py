"""The least-squares code family: any k + margin of n results decode, large n included."""

import dask
import numpy as np
import pytest

import dask_coded as dc
from dask_coded.codes.mds import require_accurate, searched_condition


@pytest.mark.parametrize("n,k", [(24, 18), (48, 36), (96, 72)])
def test_any_threshold_results_decode(n, k):
    code = dc.make_code(n, k, "lstsq")
    assert code.threshold == k + 2 and code.margin == 2
    blocks = np.array_split(np.random.default_rng(0).standard_normal((k * 5, 3)), k)
    coded = code.encode(blocks)
    rng = np.random.default_rng(1)
    for _ in range(20):
        S = sorted(rng.choice(n, code.threshold, replace=False))
        got = np.concatenate(code.decode({int(j): coded[j] for j in S}))
        np.testing.assert_allclose(got, np.concatenate(blocks), atol=1e-10)
    with pytest.raises(dc.errors.TooFewResultsError, match=rf"k \+ margin = {k} \+ 2"):
        code.decode({j: coded[j] for j in range(k + 1)})


def test_its_searched_worst_case_is_accepted_where_square_codes_fail():
    with pytest.raises(dc.errors.CodeParameterError, match="can lose accuracy"):
        require_accurate(dc.make_code(48, 36, "rotation"))
    code = dc.make_code(96, 72, "lstsq")
    require_accurate(code)
    assert 1 < searched_condition(code) < 1e5
    audit = dc.audit(code, trials=200)
    assert audit.worst_error < 1e-11 and len(audit.worst_set) == 74


def test_the_margin_is_a_setting_and_auto_never_picks_lstsq():
    with dask.config.set({"coded.lstsq.margin": 4}):
        assert dc.make_code(24, 12, "lstsq").threshold == 16
    assert dc.make_code(24, 12, "lstsq").threshold == 14
    assert dc.make_code(24, 12).kind != "lstsq"
