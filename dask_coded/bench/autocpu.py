"""``k="auto"`` under real compute: slowness from the machine, not from sleeps.

    python -m dask_coded bench auto-cpu [--n 6 --rows 12000 --cols 2000 --calls 30]

``n`` worker processes (one thread each), each under its own CPU quota
(:class:`~dask_coded.bench.quota.CpuQuotas`: a cgroup where this process may make one,
else ``SIGSTOP``/``SIGCONT`` duty cycling), so that everything a slow worker runs is
slow: its products, its share of an encode or a re-encode, a decode placed there, the
leftovers of its released stragglers. Nothing is injected. Compute-bound ``A @ X``
(``rows x cols`` by ``cols x 64``), calls back to back as in an iterative loop, every
result checked.

Models (``--models``), the quotas set before each call, the same for every peer:

* ``slow``: one worker at 1/5 of the others' share, for good;
* ``per-call``: each worker's share redrawn before every call, ``share / (1 + E / mu)``
  with ``E`` exponential (``--mu``);
* ``none``: every worker at the same share.

Peers, interleaved on one cluster (``--turn``, default 5): every peer is placed, then in
turns of ``--turn`` calls each peer runs the turn's calls back to back under the same
quotas, the peers' order rotated by one every turn. After a peer's turn the next waits
until no worker is executing; the wait for the peer's background work (auto's
re-choice, a re-encode's tasks) counts in its last call, the wait for products it
released while they ran does not (in a loop they overlap its next call, as each
earlier call's leftovers delay the next within a turn). The peers meet the same
moments of the machine. With ``--turn 0`` each
peer runs all its calls on a fresh cluster of the same shape instead (no peer inherits
another's memory or leftovers). The peers: plain dask with A in ``n``, ``4n`` and ``8n``
row chunks spread over the workers (work stealing on); the fixed codes of ``--codes``
(``k x r``: k blocks needed of n workers, r blocks per worker); auto's starting code as
auto runs it (its blocks per worker in one product task per worker, ``CA.regroup(1)``);
``k="auto"`` with ``blocks_per_worker="auto"``. Every peer's A is placed (and encoded)
before the quotas of the model are set; auto's re-encodes run under them, as they
would for a user.

Prints per model (and with ``--runs`` per run, then for the mean of the runs, call by
call): each peer's mean seconds per call over every call from the first,
the spread (10th and 90th percentile), and the ratios the controller is judged by:
auto against the best fixed code in hindsight, auto's worst 10-call window against its
starting code's same window (and against the mean of the two runs of its start, the
second run showing how far the same code moves between two runs), and auto against the
best plain dask peer.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

import numpy as np
from distributed import Client, LocalCluster

import dask_coded as dc
from dask_coded import config
from dask_coded.policy import AutoK
from dask_coded.schemes.mds import exact_blocks
from .peers import PlainMatrix
from .quota import CpuQuotas
from .timing import drain, windows, write_csv


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dask_coded bench auto-cpu",
                                description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=6, help="worker processes (default 6)")
    p.add_argument("--rows", type=int, default=12000, help="rows of A (default 12000)")
    p.add_argument("--cols", type=int, default=2000, help="columns of A (default 2000)")
    p.add_argument("--calls", type=int, default=30, help="calls per peer (default 30)")
    p.add_argument("--runs", type=int, default=1,
                   help="runs of every model, each on a fresh cluster; the report is also "
                        "made of their mean, call by call (default 1)")
    p.add_argument("--turn", type=int, default=5,
                   help="calls per peer's turn, peers interleaved on one cluster; 0: each "
                        "peer alone on a fresh cluster (default 5)")
    p.add_argument("--share", type=float, default=0.3,
                   help="a healthy worker's share of one core (default 0.3)")
    p.add_argument("--mu", type=float, default=1.0,
                   help="per-call model: straggling rate (default 1)")
    p.add_argument("--codes", default="",
                   help="fixed codes, comma-separated k x r (default: auto's start, "
                        "k = n-2 and n-1 with r = 1 and 4)")
    p.add_argument("--plain", default="1,4,8", help="plain dask chunks per worker")
    p.add_argument("--models", default="slow,per-call,none")
    p.add_argument("--mechanism", default="auto", choices=("auto", "cgroup", "signals"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results", help="directory for the CSV")
    return p.parse_args(argv)


def shares_of(model: str, workers: list[str], calls: int, share: float, mu: float,
              seed: int) -> list[dict]:
    """Per call, ``{worker: share}`` under ``model`` (seeded: every peer sees the same)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(calls):
        if model == "slow":
            out.append({w: share / 5 if i == 0 else share for i, w in enumerate(workers)})
        elif model == "per-call":
            slow = 1 + rng.exponential(1.0, len(workers)) / mu
            out.append({w: share / s for w, s in zip(workers, slow)})
        elif model == "none":
            out.append({w: share for w in workers})
        else:
            raise SystemExit(f"unknown model {model!r}; choose slow, per-call, none")
    return out


def default_codes(n: int) -> list[tuple[int, int]]:
    start = (AutoK.initial_k(n), 1)
    return sorted({start, (n - 2, 1), (n - 1, 1), (n - 2, 4), (n - 1, 4)})


def start_code(n: int) -> tuple[int, int]:
    """Auto's starting code ``(k, blocks per worker)``: ``k`` of :meth:`AutoK.initial_k`
    with ``coded.auto-k.encode-blocks`` coded blocks per worker (the most whose code
    decodes from any ``k`` workers' blocks), run as one product task per worker."""
    k0 = AutoK.initial_k(n)
    return k0, exact_blocks(n, k0, int(config.get("auto-k.encode-blocks")))


def start_label(n: int) -> str:
    """The label of the peer that runs :func:`start_code` as auto runs it."""
    k0, r0 = start_code(n)
    return f"k={k0} r={r0} as 1 task" if r0 > 1 else f"k={k0} r=1"


def main(argv=None) -> int:
    args = parse(argv)
    n = args.n
    codes = ([tuple(int(v) for v in c.split("x")) for c in args.codes.split(",")]
             if args.codes else default_codes(n))
    start = start_label(n)  # auto's starting code, as auto runs it: its windows are the bar
    rng = np.random.default_rng(args.seed)
    A = rng.standard_normal((args.rows, args.cols))
    xs = [rng.standard_normal((args.cols, 64)) for _ in range(4)]
    truth = [A @ x for x in xs]
    rows = []
    os.makedirs(args.out, exist_ok=True)
    how = (f"peers interleaved on one cluster in turns of {args.turn} calls" if args.turn
           else "each peer on a fresh cluster")
    print(f"n={n}, A {args.rows}x{args.cols} @ X {args.cols}x64, {args.calls} calls back to "
          f"back per peer, {how}, healthy share {args.share} of a core", flush=True)
    for model in args.models.split(","):
        # per call, each worker's share by its index in address order (seeded)
        plan = shares_of(model, list(range(n)), args.calls, args.share, args.mu, args.seed)
        runs = []
        for run in range(args.runs):
            peers = list(_peers(args, codes, A))
            if args.turn:
                results, extras = run_interleaved(args, peers, plan, xs, truth)
            else:
                results, extras = {}, {}
                for label, make in peers:
                    results[label], extras[label] = run_peer(args, make, plan, xs, truth)
            for label, times in results.items():
                print(f"  {model}, run {run}: {label}: mean {np.mean(times):.3f} "
                      f"s{extras[label]}", flush=True)
                rows += [{"model": model, "run": run, "peer": label, "call": i, "seconds": t}
                         for i, t in enumerate(times)]
            if args.runs > 1:
                _report(f"{model}, run {run}", results, start)
            runs.append(results)
        _report(model if args.runs == 1 else f"{model}, the mean of {args.runs} runs",
                mean_of_runs(runs), start)
    print("wrote", write_csv(rows, args.out, "auto_cpu.csv"))
    return 0


def mean_of_runs(runs: list[dict]) -> dict:
    """``{peer: seconds per call}`` averaged call by call over ``runs`` (every run makes
    the same calls under the same quotas)."""
    return {label: np.mean([r[label] for r in runs], axis=0).tolist() for label in runs[0]}


def run_peer(args, make, plan: list[dict], xs: list, truth: list) -> tuple[list, str]:
    """One peer on a fresh cluster of ``args.n`` worker processes (so no peer inherits
    another's memory or leftovers): placed and encoded at full speed, then one call per
    entry of ``plan`` (``{worker index: share}``) back to back under those quotas, each
    result checked. Returns the seconds per call and what to print after them."""
    with _quota_cluster(args) as (client, call, quotas):
        M = _placed(make, client, xs, truth)
        return [call(M, plan, i, xs, truth) for i in range(len(plan))], _summary(M, quotas)


def run_interleaved(args, peers: list, plan: list[dict], xs: list,
                    truth: list) -> tuple[dict, dict]:
    """Every peer of ``peers`` on one cluster of ``args.n`` worker processes, placed and
    encoded at full speed; then in turns of ``args.turn`` calls of ``plan``, each peer
    runs the turn's calls back to back under their quotas (the order of the peers
    rotated by one every turn), and the wait after its turn until its work is done
    (:func:`settle`) is added to its last call. Returns ``({label: seconds per call},
    {label: what to print})``."""
    with _quota_cluster(args) as (client, call, quotas):
        made = {label: _placed(make, client, xs, truth) for label, make in peers}
        times: dict = {label: [] for label in made}
        for label, calls in turns(list(made), len(plan), args.turn):
            times[label] += [call(made[label], plan, i, xs, truth) for i in calls]
            times[label][-1] += settle(client, made[label])
        return times, {label: _summary(M, quotas) for label, M in made.items()}


@contextlib.contextmanager
def _quota_cluster(args):
    """``(client, call, quotas)`` of a cluster of ``args.n`` single-thread worker
    processes under :class:`CpuQuotas`: ``call(M, plan, i, xs, truth)`` sets the quotas
    of ``plan[i]``, times ``M @ xs[i % 4]``, checks it against ``truth[i % 4]`` and
    returns the seconds."""
    with LocalCluster(n_workers=args.n, threads_per_worker=1, processes=True,
                      dashboard_address=None, memory_limit=0) as lc, Client(lc) as client:
        pids = client.run(os.getpid)
        workers = sorted(pids)
        with CpuQuotas(pids, args.mechanism) as quotas:

            def call(M, plan: list[dict], i: int, xs: list, truth: list) -> float:
                quotas.set({workers[w]: share for w, share in plan[i].items()})
                t = time.perf_counter()
                got = np.asarray((M @ xs[i % 4]).compute())
                seconds = time.perf_counter() - t
                np.testing.assert_allclose(got, truth[i % 4], rtol=1e-6, atol=1e-6)
                return seconds

            yield client, call, quotas


def _placed(make, client, xs: list, truth: list):
    """``make(client)``, placed and encoded at full speed, its first product checked."""
    M = make(client)
    np.testing.assert_allclose(np.asarray((M @ xs[0]).compute()), truth[0],
                               rtol=1e-6, atol=1e-6)
    return M


def settle(client, M) -> float:
    """Wait until what ``M``'s calls started is done; return the seconds to charge to
    ``M``: the wait for auto's re-choice (a thread in this process, which would take the
    next peer's share of the client's core) and for every task still executing that was
    not released (a re-encode's), not the wait for products released while they ran
    (in a loop they overlap its next call, as every earlier call's did within the
    turn)."""
    t = time.perf_counter()
    retuner = getattr(M, "retuner", None)
    if retuner is not None and retuner.running is not None:
        retuner.running.join(timeout=300)
    drain(client, timeout=300, released=False)
    charged = time.perf_counter() - t
    drain(client, timeout=300)
    return charged


def turns(labels: list[str], calls: int, turn: int) -> list[tuple[str, range]]:
    """The order of an interleaved run: ``[(peer, its calls in this turn)]``. Turn ``t``
    is calls ``t * turn`` to ``(t + 1) * turn - 1`` (fewer in the last), run by every
    peer in ``labels`` rotated left by ``t``: each peer runs every call once and opens a
    turn as often as any other (each follows the same peer whenever it does not open
    one: what a peer leaves behind is waited for, :func:`settle`)."""
    out = []
    for t, first in enumerate(range(0, calls, turn)):
        shift = t % len(labels)
        for label in labels[shift:] + labels[:shift]:
            out.append((label, range(first, min(first + turn, calls))))
    return out


def _summary(M, quotas: CpuQuotas) -> str:
    """What to print after a peer's mean: how quotas were set, a code's encode time and
    auto's choices; gives every worker its whole core back, then releases a coded
    matrix."""
    quotas.set(dict.fromkeys(quotas.shares, 1.0))
    extra = f", quotas by {quotas.mechanism}"
    if isinstance(M, dc.CodedMatrix):
        extra += f", encoded in {M.encoding.seconds:.1f} s"
        if M.auto:
            extra += (f"; ends at (k, r) = ({M.k}, {M.tasks_per_worker}) (tasks "
                      f"per worker, of {M.blocks_per_worker} blocks); ") + \
                "; ".join(_describe(h) for h in M.history if "chosen" in h)
        dc.release(M)
    return extra


def _peers(args, codes, A):
    """``(label, make(client))`` of every peer."""
    n = args.n
    for per in (int(p) for p in args.plain.split(",") if p):
        yield f"plain {per * n} chunks", lambda c, per=per: PlainMatrix(A, per * n, c)
    for k, r in codes:
        yield f"k={k} r={r}", lambda c, k=k, r=r: dc.encode(A, n, k, client=c,
                                                            blocks_per_worker=r)
    k0, r0 = start_code(n)

    def start(c):  # auto's start as auto runs it: its blocks in one task per worker
        return _regrouped(dc.encode(A, n, k0, client=c, blocks_per_worker=r0), 1)

    if start_label(n) not in [f"k={k} r={r}" for k, r in codes]:
        yield start_label(n), start
    yield "auto", lambda c: dc.encode(A, n, "auto", blocks_per_worker="auto", client=c)
    yield f"{start_label(n)} again", start  # after auto: the noise between two runs


def _regrouped(M, tasks_per_worker: int):
    M.regroup(tasks_per_worker)
    return M


def _describe(h: dict) -> str:
    chosen = h["chosen"]
    return f"call {h['calls']}: {chosen}" + (f" ({h['why']})" if h.get("why") else "")


def _report(model: str, results: dict, begin: str) -> None:
    print(f"\n### {model}\n\n| peer | mean s/call | p10 | p90 |\n|---|---|---|---|")
    for label, t in results.items():
        print(f"| {label} | {np.mean(t):.3f} | {np.percentile(t, 10):.3f} | "
              f"{np.percentile(t, 90):.3f} |")
    fixed = {k: np.mean(v) for k, v in results.items()
             if k.startswith("k=") and not k.endswith("again")}
    plain = {k: np.mean(v) for k, v in results.items() if k.startswith("plain")}
    auto = results.get("auto")
    if auto is None:
        return
    best = min(fixed, key=fixed.get)
    start = np.asarray(results[begin])
    worst = float(np.max(windows(auto) / windows(start)))
    bp = min(plain, key=plain.get)
    again = results.get(f"{begin} again")
    noise = ""
    if again:
        both = (start + np.asarray(again)) / 2  # the start's two runs, call by call
        noise = (f"; against both runs of its start (their mean): "
                 f"{float(np.max(windows(auto) / windows(both))):.2f}; the noise, {begin} "
                 f"run again: worst window {float(np.max(windows(again) / windows(start))):.2f}"
                 f" (and the other way {float(np.max(windows(start) / windows(again))):.2f})"
                 f", mean {np.mean(again) / np.mean(start):.2f}")
    print(f"\nauto / best fixed ({best}): {np.mean(auto) / fixed[best]:.2f}; auto's worst "
          f"10-call window / its start ({begin}): {worst:.2f}; best plain ({bp}) / auto: "
          f"{plain[bp] / np.mean(auto):.2f}{noise}\n", flush=True)
