"""Entry point: ``python benchmarks/bench_auto_cpu.py`` = ``python -m dask_coded bench auto-cpu``."""

import sys

from dask_coded.bench.autocpu import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
