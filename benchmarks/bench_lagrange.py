"""Entry point: ``python benchmarks/bench_lagrange.py`` = ``python -m dask_coded bench lagrange``."""

import sys

from dask_coded.bench.lagrange import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
