"""Dask collections in and out of a :class:`~dask_coded.shuffle.CodedShuffle`.

A shuffle moves partitions as numpy arrays (the coded strategy XORs their bytes). A
collection's partitions become such arrays and come back as partitions of the same kind:

* a dask **Array**: its blocks along axis 0 (one block across the other axes), as they
  are;
* a dask **DataFrame**: each pandas partition as one record array of its index and its
  columns (:class:`FrameFormat`), rebuilt on its worker with the same index, column
  names and dtypes. The coded strategy needs columns of fixed-size numpy dtypes (numbers,
  booleans, naive datetimes); ``"uncoded"`` and ``"p2p"`` also move other columns
  (strings, categoricals), as Python objects.

Each epoch, :meth:`~FrameFormat.collection` hands back a collection whose partitions are
the ones the shuffle put on each worker, worker by worker (its divisions are unknown: the
rows are reshuffled).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np


def is_dataframe(collection: Any) -> bool:
    """Is ``collection`` a dask DataFrame (without importing pandas when it is not)?"""
    return type(collection).__module__.startswith("dask.dataframe") and hasattr(
        collection, "map_partitions") and hasattr(collection, "columns")


def _fixed(dtype) -> bool:
    return isinstance(dtype, np.dtype) and not dtype.hasobject and dtype.kind != "O"


@dataclass(frozen=True)
class ArrayFormat:
    """A dask Array's blocks along axis 0, of ``dtype``; they travel as they are."""

    dtype: np.dtype

    def parts(self, client, x: da.Array) -> list[np.ndarray]:
        """The blocks of ``x`` along axis 0, gathered to the master."""
        if x.ndim == 0:
            raise ValueError("a 0-d dask array has no rows to shuffle")
        if any(np.isnan(c).any() for c in x.chunks):
            raise ValueError("the dask array has unknown chunk sizes; call "
                             "compute_chunk_sizes() first")
        x = x.rechunk({i: -1 for i in range(1, x.ndim)})
        return [np.asarray(b) for b in client.gather(client.compute(list(x.to_delayed().ravel())))]

    def collection(self, futures: list, shapes: list[tuple]) -> da.Array:
        """One dask Array of the partitions ``futures`` (of ``shapes``), stacked along
        axis 0 in that order."""
        blocks = [da.from_delayed(f, shape=s, dtype=self.dtype) for f, s in zip(futures, shapes)]
        return da.concatenate(blocks, axis=0)


@dataclass(frozen=True)
class FrameFormat:
    """A pandas partition as one record array: field ``i`` its index, ``c<j>`` column
    ``j``; ``meta`` (an empty frame) keeps the names and dtypes to rebuild it."""

    meta: Any  # pandas.DataFrame, empty

    @classmethod
    def of(cls, ddf, strategy: str) -> FrameFormat:
        meta = ddf._meta
        if getattr(meta.index, "nlevels", 1) > 1:
            raise ValueError("a DataFrame with a MultiIndex cannot be shuffled; "
                             "reset_index() first")
        if strategy == "coded":
            loose = [str(c) for c, t in meta.dtypes.items() if not _fixed(t)]
            if not _fixed(meta.index.dtype):
                loose.append(f"the index ({meta.index.dtype})")
            if loose:
                raise TypeError(
                    f"the coded strategy XORs the partitions' bytes and needs columns of "
                    f"fixed-size numpy dtypes; {', '.join(loose)} are not (strings, "
                    f"categoricals or extension types): use strategy='uncoded' or 'p2p', "
                    f"or convert them (e.g. to category codes)")
        return cls(meta)

    def _record_dtype(self) -> np.dtype:
        def field(t):
            return t if _fixed(t) else np.dtype(object)

        return np.dtype([("i", field(self.meta.index.dtype))]
                        + [(f"c{j}", field(t)) for j, t in enumerate(self.meta.dtypes)])

    def parts(self, client, ddf) -> list[np.ndarray]:
        """The partitions of ``ddf``, gathered to the master, as record arrays."""
        frames = client.gather(client.compute(list(ddf.to_delayed())))
        return [self.to_array(f) for f in frames]

    def to_array(self, df) -> np.ndarray:
        """``df`` as a record array (see the class doc)."""
        out = np.empty(len(df), dtype=self._record_dtype())
        out["i"] = df.index.to_numpy()
        for j in range(df.shape[1]):
            out[f"c{j}"] = df.iloc[:, j].to_numpy()
        return out

    def to_partition(self, arr: np.ndarray):
        """The pandas partition ``arr`` holds: its index, columns and dtypes as in
        ``meta``."""
        import pandas as pd

        meta = self.meta
        index = pd.Index(arr["i"], name=meta.index.name).astype(meta.index.dtype)
        df = pd.DataFrame({j: arr[f"c{j}"] for j in range(len(meta.columns))}, index=index)
        df.columns = meta.columns
        return df.astype(meta.dtypes.to_dict())

    def collection(self, futures: list, shapes: list[tuple]):
        """One dask DataFrame of the partitions ``futures`` (pandas frames), in order."""
        import dask.dataframe as dd

        return dd.from_delayed(futures, meta=self.meta, verify_meta=False)


def format_of(collection, strategy: str) -> ArrayFormat | FrameFormat:
    """The format of a dask Array or DataFrame, or a ``TypeError`` naming what it got."""
    if isinstance(collection, da.Array):
        return ArrayFormat(np.dtype(collection.dtype))
    if is_dataframe(collection):
        return FrameFormat.of(collection, strategy)
    raise TypeError(f"from_dask takes a dask Array or DataFrame, got "
                    f"{type(collection).__name__}")
