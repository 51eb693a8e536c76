"""The workers' RPC handlers: byte ranges of a key, and plans computed beside the tasks."""

import numpy as np
import pytest
from distributed.protocol.serialize import to_serialize
from distributed.utils_test import gen_cluster

from dask_coded.shuffle.placement import Placement, route
from dask_coded.shuffle.relay import RelayPlugin


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 2)
async def test_a_worker_serves_byte_ranges_of_what_it_holds(c, s, a, b):
    await c.register_plugin(RelayPlugin())
    data = np.arange(20, dtype=np.uint16)  # 40 bytes
    [f] = await c.scatter([data], workers=[a.address])
    got = await b.rpc(a.address).dask_coded_shuffle_ranges(key=f.key, ranges=[(2, 6), (30, 34)])
    want = np.concatenate([data.view(np.uint8)[2:6], data.view(np.uint8)[30:34]])
    assert got["bytes"].tobytes() == want.tobytes()
    with pytest.raises(KeyError, match="does not hold"):
        await b.rpc(a.address).dask_coded_shuffle_ranges(key="not-there", ranges=[(0, 1)])


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 2)
async def test_a_worker_plans_what_the_master_would(c, s, a, b):
    await c.register_plugin(RelayPlugin())
    n, q = 2, 8
    pl = Placement.for_storage(n, q, 6)
    rng = np.random.default_rng(0)
    old = {p: int(rng.integers(n)) for p in range(q)}
    new = {p: int(rng.integers(n)) for p in range(q)}
    sizes = [100] * q
    await b.rpc(a.address).dask_coded_shuffle_plan(key="e1",
                                                   args=to_serialize((pl, sizes, old, new)))
    got = (await b.rpc(a.address).dask_coded_shuffle_get_plan(key="e1"))["plan"]
    _, want = route(pl, sizes, old, new)
    for field in ("nbytes", "relay", "offset", "packet", "member", "part", "start", "end"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
    with pytest.raises(KeyError, match="has no plan"):
        await b.rpc(a.address).dask_coded_shuffle_get_plan(key="e2")
