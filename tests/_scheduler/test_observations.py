"""Observations: one record per call, bounded, and the window k="auto" reads."""

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
