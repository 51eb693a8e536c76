"""Entry point: ``python benchmarks/bench_overhead.py`` = ``python -m dask_coded bench overhead``."""

import sys

from dask_coded.bench.overhead import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
