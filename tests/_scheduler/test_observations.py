"""Observations: one record per call, bounded, and the window k="auto" reads."""

import numpy as np

from dask_coded._scheduler import Observations


def test_observations_report_the_last_calls_only():
    obs = Observations(limit=3)
    for call in range(5):
        name = f"coded-prod-t4-abc-{call}"
        obs.record_finished(name, "w0", 1.0 + call)
        obs.record_decode(name, {0, 1}, censor=2.0 + call, released_workers=["w9"])
    assert list(obs.calls) == [f"coded-prod-t4-abc-{c}" for c in (2, 3, 4)]  # bounded
    assert obs.used("coded-prod-t4-abc-4") == [0, 1] and obs.used("coded-prod-t4-abc-0") is None
    last = obs.report("coded-prod-t4-abc-", last=2)
    assert last["observed"] == [4.0, 5.0] and last["censored"] == [5.0, 6.0]
    assert last["per_worker"] == {"w0": [4.0, 5.0]} and last["released"] == {"w9": 2}
    assert obs.report("coded-prod-t4-other")["observed"] == []


def test_a_product_after_another_on_its_worker_adds_the_gap_between_their_results():
    """gap = when it reached memory - when the worker's previous product of the call did -
    its own compute; a worker's first product, and one of another call, add none."""
    obs = Observations()
    obs.record_finished("coded-prod-a-0", "w0", 0.5, at=1.0)
    obs.record_finished("coded-prod-a-0", "w1", 0.7, at=1.1)
    obs.record_finished("coded-prod-a-0", "w0", 0.6, at=1.8)
    obs.record_finished("coded-prod-a-0", "w0", 0.4, at=2.5)
    obs.record_finished("coded-prod-a-1", "w0", 0.4, at=0.5)
    obs.record_finished("coded-prod-a-1", "w2", 0.4)  # no time: no gap
    gaps = obs.report("coded-prod-a-")["calls_gaps"]
    assert len(gaps) == 2 and gaps[1] == []
    np.testing.assert_allclose(gaps[0], [0.2, 0.3])
