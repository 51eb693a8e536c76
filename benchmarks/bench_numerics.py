"""Entry point: ``python benchmarks/bench_numerics.py`` = ``python -m dask_coded bench numerics``."""

import sys

from dask_coded.bench.numerics import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
