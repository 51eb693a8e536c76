"""Command line: ``python -m dask_coded demo`` and ``python -m dask_coded bench NAME``."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .bench.autocpu import main as auto_cpu
from .bench.autok import main as autok
from .bench.blocks import main as blocks
from .bench.gradients import main as gradients
from .bench.lagrange import main as lagrange
from .bench.loops import main as loops
from .bench.matmul2d import main as matmul2d
from .bench.numerics import main as numerics
from .bench.overhead import main as overhead
from .bench.regression import main as regression
from .bench.rewrite import main as rewrite
from .bench.scale import main as scale
from .bench.shuffle import main as shuffle
from .bench.stragglers import main as stragglers
from .bench.verify import main as verify
from .demo import run_demo


BENCHES = {"stragglers": stragglers, "shuffle": shuffle, "regression": regression,
           "autok": autok, "auto-cpu": auto_cpu, "blocks": blocks, "gradients": gradients,
           "lagrange": lagrange, "loops": loops, "numerics": numerics,
           "overhead": overhead, "rewrite": rewrite, "scale": scale, "matmul2d": matmul2d, "verify": verify}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dask-coded", description="Straggler-proof matrix products and cheap shuffles on "
        "Dask, with codes: a demo and the benchmarks (also: python -m dask_coded).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--version", action="version", version=f"dask_coded {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="plain dask vs coded A @ x with one slow worker, on a "
                          "LocalCluster", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    demo.add_argument("--n", type=int, default=6, help="coded blocks (workers)")
    demo.add_argument("--k", type=int, default=4, help="blocks needed to decode")
    demo.add_argument("--seed", type=int, default=0, help="seeds A, x and the code's data")
    bench = sub.add_parser("bench", help="run a benchmark (python -m dask_coded bench NAME -h)")
    bench.add_argument("name", choices=sorted(BENCHES), help="which benchmark")
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="the benchmark's own options")
    args = parser.parse_args(argv)
    if args.command == "bench":
        return BENCHES[args.name](args.rest)

    if args.command == "demo":
        return run_demo(n=args.n, k=args.k, seed=args.seed)
    return 2


if __name__ == "__main__":
    sys.exit(main())
