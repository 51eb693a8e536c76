"""Entry point: ``python benchmarks/bench_matmul2d.py`` = ``python -m dask_coded bench matmul2d``."""

import sys

from dask_coded.bench.matmul2d import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
