"""Bytes each process writes to the network, from the transport itself.

Nothing built into distributed counts the bytes leaving the client or the scheduler, so
this wraps ``distributed.comm.tcp.TCP.write`` (it returns the wire bytes of each message)
in every process: :func:`install` in the client, :class:`ByteCountPlugin` on the workers
and :class:`ByteCountSchedulerPlugin` on the scheduler. Counts are per process, so the
cluster must run its workers and scheduler in processes of their own for the split by
endpoint to mean anything (``LocalCluster(processes=True)``).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time

from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin

_LOCK = threading.Lock()
COUNTS = {"bytes": 0, "messages": 0, "data_bytes": 0}
_THROTTLE = {"rate": None, "next_free": 0.0}


def install() -> None:
    """Wrap ``TCP.write`` in this process (idempotent)."""
    from distributed.comm.tcp import TCP

    with _LOCK:
        if getattr(TCP.write, "_dask_coded_bytecount", False):
            return
        original = TCP.write

        async def write(self, msg, serializers=None, on_error="message"):
            n = await original(self, msg, serializers=serializers, on_error=on_error)
            with _LOCK:
                COUNTS["bytes"] += n
                COUNTS["messages"] += 1
                if carries_data(msg):
                    COUNTS["data_bytes"] += n
                rate = _THROTTLE["rate"]
                if rate:
                    now = time.monotonic()
                    _THROTTLE["next_free"] = max(now, _THROTTLE["next_free"]) + n / rate
                    wait_for = _THROTTLE["next_free"] - now
            if rate and wait_for > 0:
                await asyncio.sleep(wait_for)
            return n

        write._dask_coded_bytecount = True
        write._original = original
        TCP.write = write


def uninstall() -> None:
    """Put this process's ``TCP.write`` back (idempotent)."""
    from distributed.comm.tcp import TCP

    with _LOCK:
        TCP.write = getattr(TCP.write, "_original", TCP.write)


def carries_data(msg) -> bool:
    """Is this message a payload (a scatter's ``update_data``, a peer's ``get_data``
    answer) rather than control (tasks, states, heartbeats)? Both carry ``"data"``."""
    return isinstance(msg, dict) and "data" in msg


def throttle(bytes_per_second: float | None) -> None:
    """Limit this process's egress to ``bytes_per_second`` (a token bucket shared by all
    its connections: each write waits until the link would have carried it); ``None``
    lifts the limit. For benchmarks where the master's link is the bottleneck."""
    install()
    with _LOCK:
        _THROTTLE["rate"] = float(bytes_per_second) if bytes_per_second else None
        _THROTTLE["next_free"] = 0.0


def snapshot() -> dict:
    """This process's totals since :func:`install` (and its pid)."""
    with _LOCK:
        return {**COUNTS, "pid": os.getpid()}


def _worker_snapshot(dask_worker=None) -> dict:
    return snapshot()


class ByteCountPlugin(WorkerPlugin):
    """Counts what each worker writes (``client.run(_worker_snapshot)`` reads it)."""

    name = "dask-coded-bytecount"
    idempotent = True

    def setup(self, worker) -> None:
        install()

    def teardown(self, worker) -> None:
        uninstall()


class ByteCountSchedulerPlugin(SchedulerPlugin):
    """Counts what the scheduler writes; handler ``coded_bytecount`` reads it."""

    name = "dask-coded-bytecount"
    idempotent = True

    async def start(self, scheduler) -> None:
        install()
        scheduler.handlers["coded_bytecount"] = lambda comm=None: snapshot()

    async def close(self) -> None:
        uninstall()


class ByteMeter:
    """Counts the bytes the client, the scheduler and every worker write, from the
    transport: pass one to :class:`~dask_coded.CodedShuffle` (``meter=``) to have each
    epoch's report carry them. Creating one wraps ``TCP.write`` in every process;
    :meth:`close` (or leaving a ``with`` block) puts it back."""

    def __init__(self, client) -> None:
        install()
        client.register_plugin(ByteCountSchedulerPlugin())
        client.register_plugin(ByteCountPlugin())
        self.client = client

    def totals(self) -> dict:
        """See :func:`totals`."""
        return totals(self.client)

    def close(self) -> None:
        self.client.unregister_worker_plugin(ByteCountPlugin.name)
        self.client.unregister_scheduler_plugin(ByteCountSchedulerPlugin.name)
        uninstall()

    def __enter__(self) -> "ByteMeter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def totals(client) -> dict:
    """``{"client": bytes, "scheduler": bytes, "workers": {address: bytes}}`` so far,
    and ``"client_data"``, ``"scheduler_data"``: the part of the first two that carried
    payload (:func:`carries_data`); the rest is dask's control traffic.

    A scheduler in the client's process (``LocalCluster`` starts it there) shares the
    client's counter: its bytes are then in ``"client"`` and ``"scheduler"`` is 0.
    """
    mine = snapshot()
    sched = client.sync(client.scheduler.coded_bytecount)
    same = sched["pid"] == mine["pid"]
    return {
        "client": mine["bytes"],
        "scheduler": 0 if same else sched["bytes"],
        "client_data": mine["data_bytes"],
        "scheduler_data": 0 if same else sched["data_bytes"],
        # a worker that died since is left out (its count is gone with it)
        "workers": {w: c["bytes"] for w, c in
                    client.run(_worker_snapshot, on_error="ignore").items()},
    }
