"""Benchmarks runnable as ``python -m dask_coded bench NAME`` (and from ``benchmarks/``)."""
