"""What every straggler benchmark shares: its options, timing calls side by side, the
per-call overhead without stragglers, the choice of models and the CSV it writes."""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import time
from collections.abc import Iterator

import numpy as np
from distributed import Client, LocalCluster

from ..stragglers import SlowWorkers, StragglerPlugin
from ..workers import worker_info


def parser(name: str, doc: str, *, calls: int, scale: float) -> argparse.ArgumentParser:
    """``python -m dask_coded bench <name>``'s parser with the common options."""
    p = argparse.ArgumentParser(prog=f"python -m dask_coded bench {name}", description=doc,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=12, help="workers (default 12)")
    p.add_argument("--calls", type=int, default=calls,
                   help=f"timed calls per scheme and model (default {calls})")
    p.add_argument("--scale", type=float, default=scale,
                   help=f"seconds of the whole job without stragglers (default {scale})")
    p.add_argument("--models", default="all", help="comma-separated model names, or 'all'")
    p.add_argument("--threads", action="store_true", help="in-process workers (faster start)")
    p.add_argument("--out", default="results", help="directory for the CSV and plots")
    return p


@contextlib.contextmanager
def cluster(args: argparse.Namespace) -> Iterator[tuple]:
    """``(client, worker names, worker addresses)`` (in address order) of a LocalCluster
    of ``args.n`` single-thread workers (processes unless ``args.threads``); creates
    ``args.out``."""
    os.makedirs(args.out, exist_ok=True)
    with LocalCluster(n_workers=args.n, threads_per_worker=1, processes=not args.threads,
                      dashboard_address=None) as lc, Client(lc) as client:
        info = worker_info(client)
        yield client, [str(info[a]["name"]) for a in sorted(info)], sorted(info)


def drain(client, timeout: float = 30.0, released: bool = True) -> bool:
    """Wait until no worker is still executing (released stragglers keep running); with
    ``released=False`` only until every task still executing is a released one (the
    worker's state ``"cancelled"``). Returns whether that came within ``timeout``."""

    def executing(dask_worker) -> int:
        return sum(released or ts.state != "cancelled"
                   for ts in dask_worker.state.executing)

    deadline = time.time() + timeout
    while time.time() < deadline:
        if not any(client.run(executing).values()):
            return True
        time.sleep(0.02)
    return False


def checked(make, xs: list, truth: list):
    """A call of ``make(x)`` for the next of ``xs`` in turn, checked against its product
    in ``truth``."""
    state = {"i": 0}

    def call():
        i = state["i"] = (state["i"] + 1) % len(xs)
        np.testing.assert_allclose(make(xs[i]), truth[i], rtol=1e-7, atol=1e-7)
    return call


def measure(client, call, calls: int, back_to_back: bool = False) -> list[float]:
    """Seconds of ``calls`` calls (after 2 warm-up calls), each started once no worker
    is executing; with ``back_to_back`` only the first waits, and each call starts as the
    last returns, as in an iterative loop (what released stragglers still running leave
    behind delays the next call)."""
    times = []
    for i in range(calls + 2):
        if i == 0 or not back_to_back:
            drain(client)
        t = time.perf_counter()
        call()
        if i >= 2:
            times.append(time.perf_counter() - t)
    return times


def windows(times: list[float], width: int = 10) -> np.ndarray:
    """Mean of every ``width`` consecutive calls (all of them, when fewer)."""
    t = np.asarray(times, dtype=float)
    if len(t) < width:
        return np.array([t.mean()])
    return np.convolve(t, np.ones(width) / width, mode="valid")


def overheads(client, schemes: list) -> dict[str, float]:
    """Mean seconds per call of each scheme (``(label, ..., call)``) with no injected
    delay (scheduling, transfers, compute), printed: "net" times subtract it before
    comparing with theory."""
    client.register_plugin(StragglerPlugin(SlowWorkers(), seed=0))
    out = {s[0]: float(np.mean(measure(client, s[-1], 5))) for s in schemes}
    print("overhead per call without stragglers (s): "
          + ", ".join(f"{label} {t:.3f}" for label, t in out.items()), flush=True)
    return out


def pick(models: dict, spec: str) -> dict:
    """The models named in ``spec`` (comma-separated), or all of them for ``"all"``."""
    if spec == "all":
        return models
    unknown = [m for m in spec.split(",") if m not in models]
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; choose from {sorted(models)}")
    return {m: models[m] for m in spec.split(",")}


def write_csv(rows: list[dict], out: str, name: str) -> str:
    """Write ``rows`` to ``<out>/<name>``; returns the path."""
    path = os.path.join(out, name)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
