"""Benchmark timing: independent calls wait for idle workers, back-to-back calls do not."""

import pytest

from dask_coded.bench import timing


@pytest.mark.parametrize("back_to_back, drains", [(False, 5), (True, 1)])
def test_back_to_back_calls_wait_for_idle_workers_only_once(monkeypatch, back_to_back,
                                                           drains):
    """With leftovers of released stragglers the next call must meet them: only the first
    of the calls (2 warm-up + 3 timed) waits for the workers to go idle."""
    events = []
    monkeypatch.setattr(timing, "drain", lambda client: events.append("drain"))
    times = timing.measure(None, lambda: events.append("call"), 3, back_to_back=back_to_back)
    assert len(times) == 3
    assert events.count("call") == 5 and events.count("drain") == drains
    assert events[0] == "drain"
