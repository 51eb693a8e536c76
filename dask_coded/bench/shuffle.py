"""Master egress, peer traffic and wall time of a reshuffle: uncoded, p2p and coded.

    python benchmarks/bench_shuffle.py [--workers 4,8,12 --alphas 0.1,0.25,0.5 --epochs 20]
    python -m dask_coded bench shuffle [same options]

For each cluster size n (a ``SubprocessCluster``: the scheduler and n workers in processes
of their own; this client is the master, holding the data) and cached fraction alpha, ``q = 12 n`` partitions
(``--per-worker``) of ``--kib`` KiB (256) are dealt afresh every epoch; each worker
stores its share plus ``alpha q`` more (``storage = q/n + alpha q``). Every strategy runs
the same assignments (same seed) for ``--epochs`` epochs, first with the master's link
unthrottled (bytes) and then throttled to ``--mbps`` MB/s (5; wall time, a token bucket
on the master's sends).
The rate is low because the partitions are small: the per-segment bookkeeping of coding
does not grow with the partition, so 5 MB/s with 256 KiB partitions stands for a faster
link with larger partitions (100 MB/s with 5 MB ones, but for the XOR work, which grows).

Prints per setting, measured from the transport: the master's egress per epoch (all bytes
this client wrote), its payload against the planner's prediction, its control messages,
what the scheduler wrote (task and state messages, counted apart), peer bytes; coded /
uncoded master egress, also with the scheduler's bytes added, next to the paper's
prediction ``1 / ((alpha + 1/n) n)`` (the target is 1.15 times it) and
Maddah-Ali–Niesen's; wall time per epoch, unthrottled and throttled. The coded strategy uses the
segment placement where it applies (``--placement auto``; the column says which;
``--placement both`` measures it with segments and with whole partitions). The
first epochs are left out of the averages: the initial load (nothing cached) and the
epochs in which whole-partition caches still fill (``ceil(storage / (q/n))`` epochs in
all, for every strategy: the same assignments are measured).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from dask_coded import theory
from dask_coded.bench import bytecount
from dask_coded.shuffle import CodedShuffle


def warmup_epochs(q: int, n: int, storage: int) -> int:
    """Epochs until whole-partition caches are full: a worker gains at most one share
    (``q / n`` partitions) of cache per epoch. Segment caches are full after the first."""
    return -(-storage // (q // n))


def runs(placement: str) -> list[tuple[str, str]]:
    """``[(strategy, placement)]`` measured: every strategy, the coded one with
    ``placement`` (``"both"``: with segments, then with whole partitions)."""
    coded = ["segments", "partitions"] if placement == "both" else [placement]
    return [("uncoded", "auto"), ("p2p", "auto"), *(("coded", pl) for pl in coded)]


def run(client, parts, storage, strategy, epochs, warmup, mbps=None, seed=0,
        deal="balanced", placement="auto"):
    """Reports of ``epochs`` epochs after ``warmup`` (the initial load included); the
    master's link throttled to ``mbps`` MB/s during the measured epochs."""
    with bytecount.ByteMeter(client) as meter:
        sh = CodedShuffle(parts, storage=storage, strategy=strategy, seed=seed,
                          meter=meter, deal=deal, placement=placement, client=client)
        try:
            for _ in range(warmup):
                sh.next_epoch()
            bytecount.throttle(mbps * 1e6 if mbps else None)
            for _ in range(epochs):
                sh.next_epoch()
            caches = (f"segments t={sh.segments.placement.mean_level:.2f}" if sh.segments
                      else "partitions")
            return sh.report()[warmup:], caches
        finally:
            bytecount.throttle(None)
            sh.close()


def planner_table(workers, alphas, per_worker: int, epochs: int = 5) -> None:
    """``--planner``: the segment planner's load on the two deals (partitions per epoch,
    and against uncoded's ``q - storage``) beside :func:`theory.shuffle_load`
    ``("segments")`` (perfectly even demands), Maddah-Ali and Niesen's load and the
    worst-case floor :func:`theory.shuffle_lower_bound`, with the segments per partition
    and the planner's time per epoch (balanced deals, partitions of 6000 bytes); no
    cluster, seconds."""
    from dask_coded.shuffle import Placement, plan_segments
    from dask_coded.shuffle.deal import deal
    from dask_coded.shuffle.placement import initial_slots, moved_slots

    print("| n | alpha | segments per partition | random deal | /uncoded | balanced deal "
          "| /uncoded | even demands | MN /uncoded | balanced / MN | floor (worst case) "
          "| plan ms |")
    print("|" + "---|" * 12)
    for n in workers:
        for alpha in alphas:
            q = per_worker * n
            storage = q // n + int(round(alpha * q))
            pl = Placement.for_storage(n, q, storage)
            uncoded = theory.shuffle_load("uncoded", q, n, storage)
            mn = theory.shuffle_load("coded-caching", q, n, storage) / uncoded
            names = list(range(n))
            load = {}
            for kind in ("random", "balanced"):
                rng = np.random.default_rng(n)
                deals = [deal("random", rng, names, q)]
                for _ in range(epochs):
                    deals.append(deal(kind, rng, names, q, deals[-1]))
                owners = [{p: w for w, ps in d.items() for p in ps} for d in deals]
                slots = initial_slots([owners[0][p] for p in range(q)], n)
                sent = []
                t = time.perf_counter()
                for a, b in zip(owners, owners[1:]):  # the slices stay in place
                    sent.append(plan_segments(pl, [6000] * q, a, b, slots=slots).master_bytes)
                    slots = moved_slots(slots, a, b)
                plan_ms = (time.perf_counter() - t) * 1e3 / epochs
                load[kind] = np.mean(sent) / 6000
            r, b = load["random"], load["balanced"]
            segments = pl.segment_count
            print(f"| {n} | {alpha} | {segments} | {r:.2f} | {r / uncoded:.3f} | {b:.2f} | "
                  f"{b / uncoded:.3f} | {theory.shuffle_load('segments', q, n, storage):.2f} | "
                  f"{mn:.3f} | {b / uncoded / mn:.2f} | "
                  f"{theory.shuffle_lower_bound(q, n, storage):.2f} | {plan_ms:.2f} |",
                  flush=True)


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m dask_coded bench shuffle", description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workers", default="4,8,12")
    p.add_argument("--alphas", default="0.1,0.25,0.5")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--throttled-epochs", type=int, default=5)
    p.add_argument("--per-worker", type=int, default=12, help="partitions per worker (q / n)")
    p.add_argument("--kib", type=int, default=256, help="partition size")
    p.add_argument("--mbps", type=float, default=5.0, help="master link when throttled")
    p.add_argument("--lp-variables", type=int, default=None,
                   help="coded.shuffle.lp-variables: plan with the linear program too, up "
                        "to this many variables (0: the greedy walk alone)")
    p.add_argument("--deal", default="balanced", choices=("balanced", "random"),
                   help="how each epoch deals the partitions (the same for every strategy)")
    p.add_argument("--placement", default="auto",
                   choices=("auto", "segments", "partitions", "both"),
                   help="the coded strategy's caches (both: a row for each)")
    p.add_argument("--planner", action="store_true",
                   help="only the planner against the theory (no cluster)")
    return p.parse_args(argv)


def _mean(reports, f) -> float:
    return float(np.mean([f(r) for r in reports]))


def _client_bytes(r) -> int:
    return r.master_bytes - r.scheduler_bytes


def rows_for(n: int, q: int, storage: int, alpha: float, res: dict, how: dict,
             slow: dict) -> None:
    """Print one table row per strategy for ``n`` workers at cache fraction ``alpha``."""
    unc = _mean(res["uncoded", "auto"], _client_bytes)
    unc_all = _mean(res["uncoded", "auto"], lambda r: r.master_bytes)
    paper = q / (n * storage)  # 1 / ((alpha + 1/n) n), alpha = storage/q - 1/n
    mn = (theory.shuffle_load("coded-caching", q, n, storage)
          / theory.shuffle_load("uncoded", q, n, storage))
    for s, pl in res:
        rs = res[s, pl]
        master = _mean(rs, _client_bytes)
        payload = _mean(rs, lambda r: r.master_data_bytes)
        # p2p's master sends only what no peer holds: the plan does not model it
        ratio = (payload / _mean(rs, lambda r: r.planned_master_bytes)
                 if s != "p2p" else float("nan"))
        print(f"| {n} | {alpha} | {s} | {how[s, pl]} | {master / 1e6:.2f} | "
              f"{ratio:.4f} | {(master - payload) / 1e3:.0f} | "
              f"{_mean(rs, lambda r: r.scheduler_bytes) / 1e3:.0f} | "
              f"{_mean(rs, lambda r: r.peer_bytes) / 1e6:.2f} | "
              f"{master / unc:.3f} | "
              f"{_mean(rs, lambda r: r.master_bytes) / unc_all:.3f} | "
              f"{paper:.3f} | {mn:.3f} | {_mean(rs, lambda r: r.seconds):.3f} | "
              f"{_mean(slow[s, pl], lambda r: r.seconds):.3f} |", flush=True)


def main(argv=None) -> int:
    import dask

    args = parse(argv)
    overrides = ({} if args.lp_variables is None
                 else {"coded.shuffle.lp-variables": args.lp_variables})
    with dask.config.set(overrides):
        return _main(args)


def _main(args) -> int:
    if args.planner:
        planner_table([int(v) for v in args.workers.split(",")],
                      [float(a) for a in args.alphas.split(",")], args.per_worker)
        return 0
    from distributed import Client
    from distributed.deploy.subprocess import SubprocessCluster

    print("| n | alpha | strategy | caches | master MB/epoch | payload/planned | master control KB "
          "| scheduler KB | peer MB/epoch | /uncoded | with scheduler | paper | MN | s/epoch "
          "| s/epoch throttled |")
    print("|" + "---|" * 15, flush=True)
    for n in [int(v) for v in args.workers.split(",")]:
        q = args.per_worker * n
        rng = np.random.default_rng(n)
        parts = [rng.standard_normal(args.kib * 128) for _ in range(q)]
        # the scheduler in a process of its own: the master (this client) and the
        # scheduler are counted apart, and the throttle is on the master's sends only
        with SubprocessCluster(n_workers=n, threads_per_worker=1, dashboard_address=":0",
                               worker_class="distributed.Worker"  # no nanny processes
                               ) as cluster, Client(cluster) as client:
            client.wait_for_workers(n)
            for alpha in [float(a) for a in args.alphas.split(",")]:
                storage = q // n + int(round(alpha * q))
                warm = warmup_epochs(q, n, storage)
                res, how = {}, {}
                for s, pl in runs(args.placement):
                    res[s, pl], how[s, pl] = run(client, parts, storage, s, args.epochs,
                                                 warm, deal=args.deal, placement=pl)
                slow = {(s, pl): run(client, parts, storage, s, args.throttled_epochs, warm,
                                     mbps=args.mbps, deal=args.deal, placement=pl)[0]
                        for s, pl in runs(args.placement)}
                rows_for(n, q, storage, alpha, res, how, slow)
    return 0


if __name__ == "__main__":
    sys.exit(main())
