"""Entry point: ``python benchmarks/bench_rewrite.py`` = ``python -m dask_coded bench rewrite``."""

import sys

from dask_coded.bench.rewrite import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
