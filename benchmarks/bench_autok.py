"""Entry point: ``python benchmarks/bench_autok.py`` = ``python -m dask_coded bench autok``."""

import sys

from dask_coded.bench.autok import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
