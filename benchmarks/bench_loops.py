"""Entry point: ``python benchmarks/bench_loops.py`` = ``python -m dask_coded bench loops``."""

import sys

from dask_coded.bench.loops import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
