"""CodedShuffle.from_dask: a dask DataFrame's or Array's partitions reshuffled every epoch
and handed back as a collection of the same kind, every row exactly once, resident where
the shuffle put it."""

import dask.array as da
import numpy as np
import pytest
import dask
from distributed import Client, LocalCluster, get_worker

import dask_coded as dc

pd = pytest.importorskip("pandas")
dd = pytest.importorskip("dask.dataframe")


@pytest.fixture(scope="module")
def client():
    # no work stealing: a partition's task runs beside its data, as the test checks
    with dask.config.set({"distributed.scheduler.work-stealing": False}), LocalCluster(n_workers=3, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


def frame(rows=240, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.standard_normal(rows), "n": rng.integers(0, 9, rows),
                         "flag": rng.random(rows) > 0.5,
                         "when": pd.date_range("2026-01-01", periods=rows, freq="min"),
                         "f32": rng.standard_normal(rows).astype(np.float32)},
                        index=pd.Index(rng.permutation(rows) * 3, name="row"))


@pytest.mark.parametrize("strategy", ["coded", "uncoded", "p2p"])
def test_dataframe_epochs_hold_every_row_once_with_its_index_and_dtypes(client, strategy):
    pdf = frame()
    ddf = dd.from_pandas(pdf, npartitions=12)
    rows_of = {i: p for p in range(12) for i in ddf.partitions[p].index.compute()}
    sh = dc.CodedShuffle.from_dask(ddf, storage=8, strategy=strategy, seed=3)
    try:
        orders = []
        for part in sh.epochs(3):
            assert part.npartitions == 12
            got = part.compute()
            assert got.index.name == "row"
            assert got.dtypes.to_dict() == pdf.dtypes.to_dict()
            assert got.index.is_unique and len(got) == len(pdf)  # every row once
            pd.testing.assert_frame_equal(got.sort_index(), pdf.sort_index())
            orders.append(list(got.index))
            # each partition is computed on the worker the epoch dealt it to
            ran = part.map_partitions(where, meta={"worker": object, "first": int}).compute()
            for worker, first in zip(ran["worker"], ran["first"]):
                assert rows_of[first] in sh.assignment[worker]
        assert orders[0] != orders[1]  # reshuffled
        if strategy == "coded":
            assert sum(r.coded_packets for r in sh.report()) > 0
    finally:
        sh.close()


def where(df):
    """The worker a partition is computed on, and its first row."""
    return pd.DataFrame({"worker": [get_worker().address], "first": [df.index[0]]})


def test_map_partitions_runs_on_the_reshuffled_partitions(client):
    pdf = frame(seed=1)
    sh = dc.CodedShuffle.from_dask(dd.from_pandas(pdf, npartitions=6), storage=4, seed=0)
    try:
        sh.next_epoch()
        sums = sh.collection().map_partitions(lambda df: pd.Series([df["x"].sum()])).compute()
        assert len(sums) == 6 and np.isclose(sums.sum(), pdf["x"].sum())
    finally:
        sh.close()


def test_array_epochs_hold_every_row_once(client):
    rng = np.random.default_rng(2)
    xn = rng.standard_normal((90, 4))
    x = da.from_array(xn, chunks=(10, 2))  # blocks across the columns are joined
    sh = dc.CodedShuffle.from_dask(x, storage=6, seed=1, client=client)
    try:
        for part in sh.epochs(2):
            got = part.compute()
            assert got.shape == xn.shape and part.chunks[0] == (10,) * 9
            assert sorted(map(tuple, got)) == sorted(map(tuple, xn))
    finally:
        sh.close()


def test_what_cannot_be_shuffled_is_named(client):
    pdf = frame(rows=30).assign(name=[f"r{i}" for i in range(30)])
    ddf = dd.from_pandas(pdf, npartitions=3)
    with pytest.raises(TypeError, match="name"):
        dc.CodedShuffle.from_dask(ddf, storage=2, strategy="coded")
    sh = dc.CodedShuffle.from_dask(ddf, storage=2, strategy="uncoded")  # objects travel
    try:
        sh.next_epoch()
        pd.testing.assert_frame_equal(sh.collection().compute().sort_index(),
                                      ddf.compute().sort_index())  # dask's string dtype
    finally:
        sh.close()
    with pytest.raises(TypeError, match="dask Array or DataFrame"):
        dc.CodedShuffle.from_dask([np.ones(3)], storage=2, client=client)
    plain = dc.CodedShuffle([np.ones(3)] * 3, storage=1, client=client)
    try:
        with pytest.raises(dc.CodedError, match="from_dask"):
            plain.collection()
    finally:
        plain.close()
    sh = dc.CodedShuffle.from_dask(da.ones((6, 2), chunks=2), storage=1, client=client)
    try:
        with pytest.raises(dc.CodedError, match="next_epoch"):
            sh.collection()
    finally:
        sh.close()
