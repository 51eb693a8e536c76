"""Entry point: ``python benchmarks/bench_blocks.py`` = ``python -m dask_coded bench blocks``."""

import sys

from dask_coded.bench.blocks import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
