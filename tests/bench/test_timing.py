"""Benchmark timing: independent calls wait for idle workers, back-to-back calls do not."""

import time

import pytest
from distributed import Event
from distributed.utils_test import (  # noqa: F401  (fixtures)
    cleanup,
    client,
    cluster_fixture,
    loop,
    loop_in_thread,
)

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


def held(name: str) -> int:
    Event(name).wait(30)
    return 1


def executing_states(dask_worker) -> list[str]:
    return [ts.state for ts in dask_worker.state.executing]


def test_drain_can_leave_released_tasks_running(client):  # noqa: F811
    """A task released while it runs keeps its thread (the worker's state "cancelled"):
    ``drain()`` waits for it, ``drain(released=False)`` does not; a task still wanted is
    waited for either way."""
    gate = Event("gate", client=client)
    future = client.submit(held, "gate", pure=False)
    while not any(client.run(executing_states).values()):
        time.sleep(0.01)
    assert not timing.drain(client, timeout=0.3, released=False)  # still wanted
    future.release()
    while ["cancelled"] not in client.run(executing_states).values():
        time.sleep(0.01)
    assert timing.drain(client, timeout=5, released=False)  # only a released task runs
    assert not timing.drain(client, timeout=0.3)
    gate.set()
    assert timing.drain(client, timeout=30)
