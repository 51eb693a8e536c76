"""Entry point: ``python benchmarks/bench_scale.py`` = ``python -m dask_coded bench scale``."""

import sys

from dask_coded.bench.scale import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
