"""Real slowness for benchmarks: a CPU quota per worker process.

A machine that is slow makes everything on it slow: the products, the encodes, the
decodes, the leftovers of released stragglers. :class:`CpuQuotas` gives each worker
process of a cluster a share of one core that can be changed between calls:

* through the kernel's CFS bandwidth control (a cgroup per process, ``cpu.max`` on
  cgroup v2, ``cpu.cfs_quota_us`` on v1) where this process may create cgroups (root in
  a container, or a delegated subtree);
* otherwise by duty-cycling the process with ``SIGSTOP``/``SIGCONT`` from a thread here
  (what ``cpulimit`` does): the process runs ``share`` of every ``period`` seconds.

Either way a worker at share ``s`` runs its work ``1 / s`` times slower than with a core
of its own, whatever the work is.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

PERIOD = 0.1  # seconds: the duty cycle's period
#: seconds: the CFS period. Short, so that a call of a few hundred milliseconds spans
#: many periods and its time does not depend on where in a period its tasks start
CGROUP_PERIOD = 0.02


def _cgroup_root() -> tuple[str, int] | None:
    """``(directory, version)`` of a cpu cgroup hierarchy this process can create
    groups in, or None."""
    for path, version in (("/sys/fs/cgroup/cpu", 1), ("/sys/fs/cgroup", 2)):
        control = "cpu.cfs_quota_us" if version == 1 else "cgroup.controllers"
        if not os.path.exists(os.path.join(path, control)):
            continue
        if version == 2:
            with open(os.path.join(path, "cgroup.controllers")) as f:
                if "cpu" not in f.read().split():
                    continue
        probe = os.path.join(path, f"dask-coded-probe-{uuid.uuid4().hex[:8]}")
        try:
            os.mkdir(probe)
            os.rmdir(probe)
            return path, version
        except OSError:
            continue
    return None


class _Cgroup:
    """One process in its own cpu cgroup."""

    def __init__(self, root: str, version: int, pid: int):
        self.root, self.version, self.pid = root, version, pid
        self.path = os.path.join(root, f"dask-coded-{pid}-{uuid.uuid4().hex[:6]}")
        os.mkdir(self.path)
        self._write("cgroup.procs", str(pid))

    def _write(self, name: str, value: str) -> None:
        with open(os.path.join(self.path, name), "w") as f:
            f.write(value)

    def set(self, share: float) -> None:
        period = int(CGROUP_PERIOD * 1e6)
        quota = max(1000, int(share * period))  # (the kernel's least: 1 ms)
        if self.version == 2:
            self._write("cpu.max", f"{quota} {period}")
        else:
            self._write("cpu.cfs_period_us", str(period))
            self._write("cpu.cfs_quota_us", str(quota))

    def close(self) -> None:
        try:
            with open(os.path.join(self.root, "cgroup.procs"), "w") as f:
                f.write(str(self.pid))
        except OSError:
            pass  # the process is gone
        try:
            os.rmdir(self.path)
        except OSError:
            pass


class _DutyCycle:
    """One process stopped for ``1 - share`` of every period by signals from a thread."""

    def __init__(self, pid: int):
        self.pid, self.share = pid, 1.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"dask-coded-quota-{pid}")
        self._thread.start()

    def set(self, share: float) -> None:
        self.share = min(1.0, max(0.01, float(share)))

    def _run(self) -> None:
        while not self._stop.is_set():
            share = self.share
            if share >= 1.0:
                time.sleep(PERIOD)
                continue
            try:
                time.sleep(share * PERIOD)
                os.kill(self.pid, signal.SIGSTOP)
                time.sleep((1 - share) * PERIOD)
                os.kill(self.pid, signal.SIGCONT)
            except ProcessLookupError:
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        try:
            os.kill(self.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


class CpuQuotas:
    """A CPU share per process (``{key: pid}``), changed with :meth:`set`.

    ``mechanism`` is ``"cgroup"`` or ``"signals"`` (see the module's docstring); use it
    as a context manager, or call :meth:`close`, to give the processes their cores back.
    """

    def __init__(self, pids: dict, mechanism: str = "auto"):
        root = _cgroup_root() if mechanism in ("auto", "cgroup") else None
        if mechanism == "cgroup" and root is None:
            raise RuntimeError("no cpu cgroup this process may create groups in; use "
                               "mechanism='signals'")
        self.mechanism = "cgroup" if root else "signals"
        self._limits = {key: (_Cgroup(*root, pid) if root else _DutyCycle(pid))
                        for key, pid in pids.items()}
        self.shares = {key: 1.0 for key in pids}

    def set(self, shares: dict) -> None:
        """Give each process in ``shares`` (``{key: share of one core}``) its share."""
        for key, share in shares.items():
            self._limits[key].set(share)
            self.shares[key] = float(share)

    def close(self) -> None:
        for limit in self._limits.values():
            limit.close()
        self._limits = {}

    def __enter__(self) -> CpuQuotas:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        shares = ", ".join(f"{s:.2f}" for s in self.shares.values())
        return f"CpuQuotas({self.mechanism}, shares=[{shares}])"
