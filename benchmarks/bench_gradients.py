"""Entry point: ``python benchmarks/bench_gradients.py`` = ``python -m dask_coded bench gradients``."""

import sys

from dask_coded.bench.gradients import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
