"""What checking every call costs: ``verify=None`` / ``"detect"`` / ``"correct"`` side by side.

    python -m dask_coded bench verify [--n 6 --k 4 --rows 12000 --cols 1000 --calls 20]

One ``LocalCluster`` of ``n`` single-thread worker processes; ``A`` (``rows x cols``)
encoded three times with the same ``(n, k)`` code on the same workers: unchecked,
``verify="detect"`` (waits for ``k + 1`` products) and ``verify="correct"``
(``k + 2``). Calls ``A @ X`` (``X``: ``cols x 16``) alternate between the three, every
result checked against numpy. Conditions (``--conditions``):

* ``none``: nothing injected;
* ``sleep``: the coded products delayed by the paper's model, ``(1 / k)(1 + Exp(1) / mu)``
  times ``--scale`` seconds (a product is ``1/k`` of the work in every mode);
* ``sleep-all``: every task (products, decodes, the rest of the call) delayed the same
  way (a task that is not a product is one whole job of work);
* ``cpu``: one worker process under a CPU quota (``--slow-share`` of a core), the others
  not: slowness from the machine, nothing injected.

Prints per condition each mode's median and 10th-90th percentile seconds per call, the
ratios to unchecked, and for ``sleep`` the ratios the theory predicts (the ``(k+1)``-th
and ``(k+2)``-th of ``n`` order statistics, :func:`dask_coded.theory.expected_time` with
``spare``). Then the check's own cost (the decode task's compute time per mode, from the
task stream, with nothing injected) and its detection limit on this ``A`` and ``X``: the
smallest corruption of one product (a relative scale, one entry offset relative to the
product's largest entry) that a decode of ``k + 1`` products flags, and how far the
largest corruption it misses moves the decoded result; the same for a polynomial code
of ``A @ X`` (``splits=(2, 2)``, real and complex points) on ``n`` workers.
``--limits-only`` prints only those (no cluster).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from distributed import Client, LocalCluster, get_task_stream

import dask_coded as dc
from dask_coded import theory
from dask_coded.kernels import encode_pairs
from dask_coded.schemes import build
from dask_coded.schemes.polynomial import coded_product
from dask_coded.stragglers import ShiftedExponential, StragglerPlugin
from dask_coded.stragglers.corrupt import corrupted
from dask_coded.verify import excess, operand_scale
from .quota import CpuQuotas

MODES = (None, "detect", "correct")


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dask_coded bench verify", description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=6, help="worker processes (default 6)")
    p.add_argument("--k", type=int, default=4, help="products a decode needs (default 4)")
    p.add_argument("--rows", type=int, default=12000, help="rows of A (default 12000)")
    p.add_argument("--cols", type=int, default=1000, help="columns of A (default 1000)")
    p.add_argument("--calls", type=int, default=20, help="calls per mode and condition")
    p.add_argument("--conditions", default="none,sleep,sleep-all,cpu",
                   help="comma-separated: none, sleep, sleep-all, cpu (default all)")
    p.add_argument("--mu", type=float, default=1.0, help="sleep: straggling rate")
    p.add_argument("--scale", type=float, default=0.2,
                   help="sleep: seconds of one whole job of work (default 0.2)")
    p.add_argument("--slow-share", type=float, default=0.05,
                   help="cpu: the slow worker's share of one core (default 0.05)")
    p.add_argument("--mechanism", default="auto", choices=["auto", "cgroup", "signals"],
                   help="cpu: how the quota is set (default: a cgroup if possible)")
    p.add_argument("--limits-only", action="store_true",
                   help="print only the detection limits (no cluster)")
    return p.parse_args(argv)


def label(mode) -> str:
    return "unchecked" if mode is None else mode


def calls(client, handles: dict, A, xs: list, n_calls: int) -> dict:
    """Seconds per call of each handle, calls alternating, every result checked."""
    times = {m: [] for m in handles}
    for i in range(n_calls):
        x = xs[i % len(xs)]
        for mode, CA in handles.items():
            t = time.perf_counter()
            y = (CA @ x).compute()
            times[mode].append(time.perf_counter() - t)
            np.testing.assert_allclose(y, A @ x, rtol=1e-8, atol=1e-8)
    return times


def decode_seconds(client, handles: dict, xs: list) -> dict:
    """Median compute seconds of each handle's decode task."""
    out = {}
    for mode, CA in handles.items():
        with get_task_stream(client) as stream:
            for x in xs:
                (CA @ x).compute()
        seconds = [sum(ss["stop"] - ss["start"] for ss in rec["startstops"]
                       if ss["action"] == "compute")
                   for rec in stream.data if "coded-dec-" in str(rec["key"])]
        out[mode] = float(np.median(seconds)) if seconds else float("nan")
    return out


def detection_limit(A: np.ndarray, x: np.ndarray, n: int, k: int) -> list[str]:
    """Lines: the smallest corruption of product 0 that a ``k + 1``-product check
    flags, per kind, and what the largest missed one does to the result; for the 1-D
    code ``(n, k)`` and for a polynomial code of ``A @ x`` with ``splits=(2, 2)`` on
    ``n`` workers, real and complex points."""
    scheme = build("mds", n, k=k, rows=len(A), verify="detect")
    blocks = scheme.encode(A)
    scale = operand_scale(x, np.finfo(blocks[0].dtype).eps)
    lines = _limits(f"mds ({n}, {k})", [b @ x for b in blocks], k + 1,
                    lambda P: excess(scheme.code, {j: p for j, p in enumerate(P)
                                                   if p is not None}, scale),
                    lambda P: scheme.decode(P, scheme.scales(A)), A @ x)
    for points in ("real", "complex"):
        pair = build("polynomial", n, splits=(2, 2), shape_a=A.shape, shape_b=x.shape,
                     points=points, verify="detect")
        pairs, scales = encode_pairs(pair, A, x)
        P = [coded_product(a, b) for a, b in pairs]
        lines += _limits(f"polynomial (2, 2), {points} points", P, pair.threshold,
                         lambda Q, pair=pair: pair.inspect(Q).excess,
                         lambda Q, pair=pair, s=scales: pair.decode(Q, s), A @ x)
    return lines


def _limits(code: str, P: list, count: int, check, decode, truth: np.ndarray) -> list[str]:
    """Lines of :func:`detection_limit` for one code: ``P`` its products, the first
    ``count`` present; ``check`` the largest syndrome over its bound of a list of
    products (``None``: absent), ``decode`` the result from such a list."""
    lines = []
    for how in ("scale", "offset"):
        seen, missed, moved = None, None, float("nan")
        for amount in 10.0 ** np.arange(-2, -17, -0.5):
            bad = [corrupted(p, how, amount) if j == 0 else p if j < count else None
                   for j, p in enumerate(P)]
            if check(bad) > 1.0:
                seen = amount
            elif missed is None:
                missed = amount
                moved = np.abs(decode(bad) - truth).max() / np.abs(truth).max()
        lines.append(f"| {code} | {how} | {seen:.0e} | {missed:.0e} | {moved:.1e} |")
    return lines


def main(argv=None) -> int:
    args = parse(argv)
    rng = np.random.default_rng(0)
    A = rng.standard_normal((args.rows, args.cols))
    xs = [rng.standard_normal((args.cols, 16)) for _ in range(4)]
    if args.limits_only:
        limits(A, xs[0], args.n, args.k)
        return 0
    conditions = [c for c in args.conditions.split(",") if c]
    n, k = args.n, args.k
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                      dashboard_address=None, memory_limit=0) as lc, Client(lc) as client:
        workers = sorted(client.scheduler_info()["workers"])
        handles = {m: dc.encode(A, n, k, verify=m, workers=workers) for m in MODES}
        calls(client, handles, A, xs, 2)  # warm up
        print(f"LocalCluster: {n} worker processes x 1 thread; A {args.rows}x{args.cols} @ "
              f"X {args.cols}x16; code (n, k) = ({n}, {k}) for every mode, the same "
              f"workers; {args.calls} calls per mode and condition, alternating")
        print("\n| condition | mode | waits for | median s | p10-p90 s | / unchecked "
              "| theory / unchecked |")
        print("|---|---|---|---|---|---|---|")
        for condition in conditions:
            quotas = None
            if condition in ("sleep", "sleep-all"):
                client.register_plugin(StragglerPlugin(
                    ShiftedExponential(mu=args.mu, scale=args.scale), seed=0,
                    match=("coded-prod",) if condition == "sleep" else None,
                    interruptible=True))
            elif condition == "cpu":
                pids = client.run(os.getpid)
                quotas = CpuQuotas(pids, args.mechanism)
                quotas.set({sorted(pids)[1]: args.slow_share})
            elif condition != "none":
                raise SystemExit(f"unknown condition {condition!r}")
            try:
                times = calls(client, handles, A, xs, args.calls)
            finally:
                if condition.startswith("sleep"):
                    client.unregister_worker_plugin(StragglerPlugin.name)
                if quotas is not None:
                    quotas.close()
            base = np.median(times[None])
            for mode in MODES:
                t = np.asarray(times[mode])
                spare = 0 if mode is None else handles[mode].scheme.verify.spare
                predicted = ""
                if condition == "sleep":
                    predicted = (f"{theory.expected_time('mds', n, k, args.mu, spare=spare) / theory.expected_time('mds', n, k, args.mu):.2f}")
                extra = f" ({quotas.mechanism})" if quotas is not None and mode is None else ""
                print(f"| {condition}{extra} | {label(mode)} | {k + spare} of {n} | "
                      f"{np.median(t):.3f} | {np.percentile(t, 10):.3f}-"
                      f"{np.percentile(t, 90):.3f} | {np.median(t) / base:.2f} | "
                      f"{predicted} |")
        dec = decode_seconds(client, handles, xs * 3)
        print("\nThe check's own cost, nothing injected: median decode task seconds")
        print("\n| mode | decode ms | / unchecked |")
        print("|---|---|---|")
        for mode in MODES:
            print(f"| {label(mode)} | {dec[mode] * 1e3:.1f} | {dec[mode] / dec[None]:.2f} |")
        for CA in handles.values():
            CA.release()
    limits(A, xs[0], n, k)
    return 0


def limits(A: np.ndarray, x: np.ndarray, n: int, k: int) -> None:
    print("\nDetection limit, one product of the threshold's plus one corrupted (this A "
          "and X[0]):")
    print("\n| code | corruption | smallest flagged | largest missed | result moved by "
          "(relative) |")
    print("|---|---|---|---|---|")
    for line in detection_limit(A, x, n, k):
        print(line, flush=True)
