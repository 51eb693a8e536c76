"""CPU quotas per process: a process under a quarter of a core runs its work about four
times slower than on its own core, whichever way the quota is enforced."""

import subprocess
import sys

import pytest

from dask_coded.bench.quota import CpuQuotas, _cgroup_root

BUSY = ("import time\n"
        "w, c = time.perf_counter(), time.process_time()\n"
        "s = 0\n"
        "for i in range(4_000_000): s += i\n"
        "print(time.perf_counter() - w, time.process_time() - c)\n")


def stretch(mechanism: str | None, share: float = 0.25) -> float:
    """Wall seconds over CPU seconds of a busy child under ``share`` of a core."""
    child = subprocess.Popen([sys.executable, "-c", BUSY], stdout=subprocess.PIPE, text=True)
    quotas = CpuQuotas({0: child.pid}, mechanism) if mechanism else None
    if quotas:
        quotas.set({0: share})
    try:
        wall, cpu = map(float, child.communicate(timeout=120)[0].split())
    finally:
        if quotas:
            quotas.close()
    return wall / cpu


@pytest.mark.parametrize("mechanism", ["signals", "cgroup"])
def test_a_quarter_of_a_core_stretches_the_work(mechanism):
    if mechanism == "cgroup" and _cgroup_root() is None:
        pytest.skip("no cpu cgroup this process may create groups in")
    # wide margins: the machine's other load adds to both
    assert stretch(mechanism) > 2.5 * min(stretch(None), 1.2)


def test_quotas_say_how_they_are_enforced_and_give_the_core_back():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with CpuQuotas({"w": child.pid}, "signals") as quotas:
            quotas.set({"w": 0.5})
            assert repr(quotas) == "CpuQuotas(signals, shares=[0.50])"
        with open(f"/proc/{child.pid}/stat") as f:
            assert f.read().split()[2] != "T"  # not left stopped
    finally:
        child.kill()
        child.wait()


def test_asking_for_cgroups_where_there_are_none_says_so(monkeypatch):
    import dask_coded.bench.quota as quota

    monkeypatch.setattr(quota, "_cgroup_root", lambda: None)
    with pytest.raises(RuntimeError, match="no cpu cgroup this process may create"):
        CpuQuotas({}, "cgroup")
    assert CpuQuotas({}, "auto").mechanism == "signals"
