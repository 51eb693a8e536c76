"""Coded gradient descent against uncoded under stragglers: see
:mod:`dask_coded.bench.regression` (also ``python -m dask_coded bench regression``)."""

import sys

from dask_coded.bench.regression import main

if __name__ == "__main__":
    sys.exit(main())
