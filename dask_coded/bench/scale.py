"""Many workers: how codes are built, what a call costs, and a simulation of 1,000 workers.

    python -m dask_coded bench scale [--workers 12,48,96 --calls 8 --scale 4.0
                                     --simulate 96,192,500,1000]

1. **Construction**: ``code_for(n, k, r)`` (what ``dc.encode`` builds, ``k = 3n/4``) from
   cold caches, for ``n r`` from 12 to 2,000 coded blocks: the code chosen, seconds, and
   its certified worst estimated relative decode error.
2. **Calls on in-process workers**: per ``n`` in ``--workers``, one ``LocalCluster`` of
   ``n`` single-thread in-process workers; A persisted once for every peer (plain dask on
   ``n`` and on ``4n`` row chunks, work stealing on; coded ``dc.encode(A, n, 3n/4)``,
   pinned where it was encoded). Prints the encode's seconds, the per-call overhead with
   no delay (median of ``--calls`` calls each), then the mean per call with the paper's
   shifted exponential (mu = 1) injected into every product and chunk in proportion to
   its work (``--scale`` seconds for the whole job), drawn per task and per worker per
   call, beside the theory (``theory.monte_carlo``/``chunks_time``, plus the measured
   overhead); the same with ``blocks_per_worker=4`` run as 4 and as 1 product task per
   worker (``CA.regroup``), with what one more product task costs besides its compute
   (the median gap the scheduler plugin measures, as ``k="auto"``'s policy reads it); and
   the time the package's own code takes in the scheduler's event loop per coded call
   (``cProfile``).
3. **Simulation of 1,000 workers**: the per-call overhead of each peer fitted as
   ``a * tasks^p`` on part 2's measurements (an extrapolation: the scheduler's cost per
   task grows with the workers it tracks), plus ``--scale`` times the theory's
   expected time at ``n`` in 96, 192, 500, 1,000 (the best ``k`` of the grouped code,
   from ``theory.expected_time("grouped", ...)``, against plain ``n`` and ``4n`` chunks
   by ``theory.chunks_time``).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time

import numpy as np
from distributed import Client, LocalCluster

import dask_coded as dc
from dask_coded import theory
from dask_coded.bench.peers import PlainMatrix
from dask_coded.bench.timing import checked, measure
from dask_coded.codes import mds as mds_codes
from dask_coded.schemes.mds import code_for

BLOCKS = 4  # coded blocks per worker of the several-blocks peers
CONSTRUCTION = [(12, 1), (48, 1), (96, 1), (96, 4), (192, 1), (500, 1), (1000, 1),
                (250, 8), (500, 4)]


def cold() -> None:
    """Forget every cached code, certificate and screened seed."""
    for f in (mds_codes._build_cached, mds_codes.certified_condition, mds_codes.best_kind,
              mds_codes.screened_seed, mds_codes.searched_condition):
        f.cache_clear()


def construction() -> None:
    print("## code construction (cold caches), k = 3n/4\n")
    print("| workers n | blocks/worker r | coded blocks | code | seconds | "
          "certified worst error |\n|---|---|---|---|---|---|")
    for n, r in CONSTRUCTION:
        k = round(3 * n / 4)
        cold()
        t = time.perf_counter()
        code = code_for(n, k, r)
        seconds = time.perf_counter() - t
        cond = mds_codes.certified_condition(code)
        parts = getattr(code, "parts", (code,))
        dim = max(p.threshold for p in parts) * code.symbols
        err = "-" if cond is None else f"{mds_codes.estimated_error(cond, dim):.1e}"
        what = repr(code).split("(", 1)[1].rstrip(")")
        print(f"| {n} | {r} | {n * r} | {what} | {seconds:.3f} | {err} |", flush=True)


_PROFILE = cProfile.Profile()


def _profile(on: bool) -> None:
    """Start or stop profiling the thread this runs in (the scheduler's event loop, when
    run by ``client.run_on_scheduler`` on in-process workers)."""
    _PROFILE.enable() if on else _PROFILE.disable()


def package_seconds(client, call, calls: int) -> tuple[float, float]:
    """``(seconds per call in the package's code on the scheduler, seconds per call)``:
    ``calls`` calls with the scheduler's event loop under ``cProfile`` (in-process
    workers only: the profile is read in this process)."""
    global _PROFILE
    _PROFILE = cProfile.Profile()
    client.run_on_scheduler(_profile, True)
    t = time.perf_counter()
    for _ in range(calls):
        call()
    seconds = time.perf_counter() - t
    client.run_on_scheduler(_profile, False)
    stats = pstats.Stats(_PROFILE).stats
    own = sum(tottime for (path, _, _), (_, _, tottime, _, _) in stats.items()
              if "dask_coded" in path)
    return own / calls, seconds / calls


def on_cluster(n: int, calls: int, scale: float) -> dict:
    """Part 2 at ``n`` workers: returns the overheads and task counts for the fit."""
    k = round(3 * n / 4)
    rng = np.random.default_rng(0)
    A = rng.standard_normal((48 * n, 20))
    xs = [rng.standard_normal(20) for _ in range(4)]
    truth = [A @ x for x in xs]
    out = {}
    # in-process workers share one process's memory: no per-worker limit to pause at
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=False, memory_limit=0,
                      dashboard_address=None) as lc, Client(lc) as client:
        names = sorted(str(w.name) for w in lc.workers.values())
        t = time.perf_counter()
        CA = dc.encode(A, n, k, client=client)
        encode_s = time.perf_counter() - t
        peers, gaps = {}, {}
        for c in (1, 4):
            plain = PlainMatrix(A, c * n, client)
            peers[f"plain {c}n chunks"] = (c * n, {"matmul": 1 / (c * n)},
                                           checked(lambda x, p=plain: (p @ x).compute(),
                                                   xs, truth))
        t_ = CA.scheme.threshold
        peers[f"coded {CA.code.kind} k={k}"] = (
            n, {f"coded-prod-t{t_}-": 1 / k}, checked(lambda x: (CA @ x).compute(), xs, truth))
        t = time.perf_counter()
        C4 = dc.encode(A, n, k, blocks_per_worker=BLOCKS, client=client)
        encode4_s = time.perf_counter() - t
        for tasks in (BLOCKS, 1):
            peers[f"blocks r={BLOCKS} as {tasks} task(s) per worker"] = (
                n * tasks, {f"coded-prod-t{k * tasks}-": 1 / (k * tasks)},
                checked(lambda x, t=tasks: (regrouped(C4, t) @ x).compute(), xs, truth))
        print(f"\n## {n} in-process workers: dc.encode(A {A.shape[0]}x{A.shape[1]}, n={n}, "
              f"k={k}) {encode_s:.2f} s: {CA.code!r}; with blocks_per_worker={BLOCKS} "
              f"{encode4_s:.2f} s: {C4.code!r}\n")
        print("| peer | tasks | overhead median s (no delay) | per-task mu=1 mean s "
              "| theory + overhead | per-worker mu=1 mean s | theory + overhead |\n"
              "|---|---|---|---|---|---|---|")
        for label, (tasks, work, call) in peers.items():
            client.register_plugin(dc.stragglers.StragglerPlugin(
                dc.stragglers.SlowWorkers(), seed=0))
            base = float(np.median(measure(client, call, calls)))
            row = [label, str(tasks), f"{base:.3f}"]
            if label.startswith("blocks") and np.isfinite(_median_gap(C4)):
                gaps[label] = _median_gap(C4)
            for per in ("task", "call"):
                model = dc.stragglers.ShiftedExponential(mu=1.0, scale=scale, per=per)
                client.register_plugin(dc.stragglers.StragglerPlugin(
                    model, seed=7, match=("matmul", "coded-prod"), work=work,
                    interruptible=True))
                mean = float(np.mean(measure(client, call, calls)))
                theory_s = (expected(label, model, n, k, names, groups_of(CA.code))
                            if not label.startswith("blocks") else None)
                row += [f"{mean:.3f}",
                        "-" if theory_s is None else f"{base + theory_s:.3f}"]
            if not label.startswith("blocks"):
                out[label] = (tasks, base)
            print("| " + " | ".join(row) + " |", flush=True)
        for label, gap in gaps.items():
            print(f"\n{label}: one more product task on a worker cost {gap * 1e3:.1f} ms "
                  f"besides its compute (median gap the scheduler plugin measured, "
                  f"no delay)", flush=True)
        client.register_plugin(dc.stragglers.StragglerPlugin(
            dc.stragglers.SlowWorkers(), seed=0))
        own, each = package_seconds(client, peers[f"coded {CA.code.kind} k={k}"][2], calls)
        print(f"\nthe package's code in the scheduler's event loop (cProfile): "
              f"{own * 1e3:.1f} ms per coded call of {each * 1e3:.0f} ms (profiled)",
              flush=True)
        CA.release()
        C4.release()
    return out


def regrouped(CA, tasks: int):
    """``CA`` run as ``tasks`` product tasks per worker (no re-encode)."""
    CA.regroup(tasks)
    return CA


def _median_gap(CA) -> float:
    """The median of the gaps (a worker's consecutive product tasks of one call: the
    seconds between their results less the second's compute) over ``CA``'s recent calls;
    nan with one task per worker (no gaps)."""
    gaps = [g for call in CA.observed(last=8)["calls_gaps"] for g in call]
    return float(np.median(gaps)) if gaps else float("nan")


def groups_of(code) -> int:
    """The groups of a grouped code (1 for any other)."""
    return len(getattr(code, "parts", (None,)))


def expected(label: str, model, n: int, k: int, names, groups: int) -> float:
    """The theory's seconds for a peer under ``model`` (``groups``: the coded peer's)."""
    if label.startswith("plain"):
        chunks = int(label.split()[1][:-1] or 1) * n
        return theory.chunks_time(model, n, chunks, trials=500, seed=1, workers=names)[0]
    return theory.monte_carlo("grouped", model, n, k=k, groups=groups, trials=2000, seed=1,
                              workers=names)[0]


def simulate(fits: dict, scale: float, sizes=(96, 192, 500, 1000)) -> None:
    """Part 3: per-call overhead ``a * tasks^p`` fitted per peer, plus the theory."""
    print("\n## simulated calls at scale (overhead fitted on the runs above + "
          f"{scale} s x theory; per-task shifted exponential mu = 1)\n")
    coef = {}
    for peer in ("plain 1n", "plain 4n", "coded"):
        pts = [(tasks, base) for runs in fits.values() for label, (tasks, base) in
               runs.items() if label.startswith(peer)]
        tasks, base = map(np.asarray, zip(*pts))
        # a power law: the cost per task grows with the workers the scheduler tracks
        p, log_a = np.polyfit(np.log(tasks), np.log(base), 1) if len(pts) > 1 else (
            1.0, np.log(base[0] / tasks[0]))
        coef[peer] = (float(np.exp(log_a)), float(p))
        print(f"- {peer}: overhead {np.exp(log_a) * 1e3:.2f} ms x tasks^{p:.2f} "
              f"(fitted on n = {sorted(fits)})")
    print("\n| workers n | plain n chunks s | plain 4n chunks s | coded: best k, groups | "
          "coded s | plain 4n / coded |\n|---|---|---|---|---|---|")
    model = dc.stragglers.ShiftedExponential(mu=1.0, scale=1.0)
    for n in sizes:
        over = {peer: coef[peer][0] * tasks ** coef[peer][1]
                for peer, tasks in (("plain 1n", n), ("plain 4n", 4 * n), ("coded", n))}
        p1 = over["plain 1n"] + scale * theory.expected_time("uncoded", n)
        # the simulation holds trials x n x 4n task times: as many trials as 50 MB allow
        # (with 4n chunks per call its spread is small)
        trials = max(5, min(200, 6_000_000 // (4 * n * n)))
        p4 = over["plain 4n"] + scale * theory.chunks_time(model, n, 4 * n, trials=trials,
                                                           seed=1)[0]
        best = None
        for k in range(n // 2, n - n // 16, max(1, n // 48)):
            try:
                code = code_for(n, k)
            except dc.errors.CodeParameterError:
                continue  # too little redundancy to group
            g = groups_of(code)
            t = over["coded"] + scale * theory.expected_time("grouped", n, k, groups=g)
            if best is None or t < best[0]:
                best = (t, k, g)
        t, k, g = best
        print(f"| {n} | {p1:.3f} | {p4:.3f} | k={k}, {g} group(s) | {t:.3f} | "
              f"{p4 / t:.2f} |", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dask_coded bench scale", description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workers", default="12,48,96",
                   help="comma-separated numbers of in-process workers (default 12,48,96)")
    p.add_argument("--calls", type=int, default=8, help="timed calls per peer and model")
    p.add_argument("--scale", type=float, default=4.0,
                   help="seconds of the whole job without stragglers (default 4.0)")
    p.add_argument("--skip-construction", action="store_true")
    p.add_argument("--simulate", default="96,192,500,1000",
                   help="comma-separated numbers of workers simulated (default "
                        "96,192,500,1000)")
    args = p.parse_args(argv)
    if not args.skip_construction:
        construction()
    fits = {n: on_cluster(n, args.calls, args.scale)
            for n in (int(w) for w in args.workers.split(","))}
    simulate(fits, args.scale, [int(n) for n in args.simulate.split(",")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
