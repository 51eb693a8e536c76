"""Entry point: ``python benchmarks/bench_verify.py`` = ``python -m dask_coded bench verify``."""

import sys

from dask_coded.bench.verify import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
