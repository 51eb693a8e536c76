"""Coded A @ x against every peer under every straggler model: see
:mod:`dask_coded.bench.stragglers` (also ``python -m dask_coded bench stragglers``)."""

import sys

from dask_coded.bench.stragglers import main

if __name__ == "__main__":
    sys.exit(main())
