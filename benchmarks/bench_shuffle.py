"""Master egress, peer traffic and wall time of a reshuffle: see
:mod:`dask_coded.bench.shuffle` (also ``python -m dask_coded bench shuffle``)."""

import sys

from dask_coded.bench.shuffle import main

if __name__ == "__main__":
    sys.exit(main())
