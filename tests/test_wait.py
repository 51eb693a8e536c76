"""dc.first_k: return once any k of n futures are done."""

import asyncio
import time

import pytest
from distributed.utils_test import gen_cluster

import dask_coded as dc


def pause(seconds, value):
    time.sleep(seconds)
    return value


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 4)
async def test_the_first_k_in_the_order_they_finished(c, s, *workers):
    delays = [0.6, 0.05, 3.0, 0.3]  # one per worker: the fastest three are 1, 3, 0
    futures = [c.submit(pause, d, i, workers=[w.address], pure=False)
               for i, (d, w) in enumerate(zip(delays, workers))]
    done = await dc.first_k_async(futures, 3, cancel=True)
    assert [await f for f in done] == [1, 3, 0]
    assert futures[2].status == "cancelled"  # the straggler, not awaited
    with pytest.raises(dc.CodedError, match=r"k must be an integer in 1..4"):
        await dc.first_k_async(futures, 5)
    with pytest.raises(dc.CodedError, match=r"k must be an integer .* got True"):
        await dc.first_k_async(futures, True)


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 2)
async def test_numpy_integers_and_repeated_futures(c, s, a, b):
    import numpy as np

    f, g = c.submit(pause, 0.0, 1, pure=False), c.submit(pause, 0.0, 2, pure=False)
    assert len(await dc.first_k_async([f, g], np.int64(2))) == 2
    with pytest.raises(dc.CodedError, match="same future more than once"):
        await dc.first_k_async([f, f, g], 2)


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 2)
async def test_an_error_before_k_is_raised(c, s, a, b):
    def boom():
        raise ZeroDivisionError("in a task")

    futures = [c.submit(boom, pure=False), c.submit(pause, 2.0, 1, pure=False)]
    with pytest.raises(ZeroDivisionError, match="in a task"):
        await dc.first_k_async(futures, 2)
    with pytest.raises(TypeError, match="distributed Futures"):
        await dc.first_k_async([1, 2], 1)


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 2)
async def test_a_timeout(c, s, a, b):
    futures = [c.submit(pause, 2.0, i, pure=False) for i in range(2)]
    with pytest.raises(asyncio.TimeoutError):
        await dc.first_k_async(futures, 1, timeout=0.2)


def test_the_synchronous_form():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=3, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        workers = sorted(cluster.scheduler.workers)
        futures = [client.submit(pause, d, i, workers=[w], pure=False)
                   for i, (d, w) in enumerate(zip([1.5, 0.05, 0.1], workers))]
        done = dc.first_k(futures, 2, cancel=True)
        assert [f.result() for f in done] == [1, 2]
        assert futures[0].status == "cancelled"
