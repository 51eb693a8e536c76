"""The generic handle of part schemes (CodedParts), with a toy scheme defined here: any
part scheme plugs in through the protocol alone."""

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest
from distributed.utils_test import (  # noqa: F401  (fixtures)
    cleanup,
    gen_cluster,
)

import dask_coded as dc
from dask_coded.errors import TooFewResultsError
from dask_coded.parts import encode_parts
from dask_coded.schemes import SCHEMES, PartScheme

FOUR = [("127.0.0.1", 1)] * 4


class Parity(PartScheme):
    """k parts and their sum, for a linear f: any k of the k + 1 products decode."""

    name = "test-parity"

    @classmethod
    def from_params(cls, n: int, *, parts: int) -> "Parity":
        return cls(n, parts)

    def __init__(self, n: int, parts: int):
        assert n == parts + 1
        self.parts, self.n_blocks, self.threshold = parts, n, parts

    def __repr__(self) -> str:
        return f"Parity(parts={self.parts})"

    def parts_needed(self, j: int) -> tuple[int, ...]:
        return (j,) if j < self.parts else tuple(range(self.parts))

    def encode_part(self, j: int, *parts):
        return parts[0] if j < self.parts else sum(parts)

    def decode(self, products: Sequence, scales=None) -> list:
        got = {j: p for j, p in enumerate(products) if p is not None}
        if len(got) < self.threshold:
            raise TooFewResultsError(f"{len(got)} of {self.n_blocks} products")
        out = [got.get(j) for j in range(self.parts)]
        lost = [j for j, p in enumerate(out) if p is None]
        if lost:
            out[lost[0]] = got[self.parts] - sum(p for p in out if p is not None)
        return out


@pytest.fixture(autouse=True)
def registered():
    SCHEMES[Parity.name] = Parity
    yield
    del SCHEMES[Parity.name]


def data(k=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((5, 2)) for _ in range(k)]


def scaled(part, w):
    return part * w


def test_local_map_decodes_any_registered_part_scheme():
    parts = data()
    L = dc.encode(parts, 4, scheme="test-parity", client=None)
    assert isinstance(L, dc.CodedParts) and L.threshold == 3 and "local" in repr(L)
    got = L.map(scaled, 2.0).compute()
    for g, p in zip(got, parts):
        np.testing.assert_allclose(g, 2.0 * p)


def test_local_map_forgoes_a_straggler():
    parts = data()
    L = dc.encode(parts, 4, scheme="test-parity", client=None)
    with dc.stragglers.local_stragglers(dc.stragglers.SlowWorkers(seconds={"1": 60.0})):
        got = L.map(scaled, 3.0).compute()
    for g, p in zip(got, parts):
        np.testing.assert_allclose(g, 3.0 * p)


def test_bad_input_names_the_problem():
    with pytest.raises(TypeError, match="codes a list of data parts"):
        dc.encode(np.ones((4, 4)), 4, scheme="test-parity", client=None)
    with pytest.raises(dc.errors.CodeParameterError, match="takes no parameter degree"):
        dc.encode(data(), 4, scheme="test-parity", degree=2, client=None)
    with pytest.raises(dc.errors.CodeParameterError, match="does not code a list of data parts"):
        encode_parts(data(), 4, "mds", client=None)
    L = dc.encode(data(), 4, scheme="test-parity", client=None)
    with pytest.raises(TypeError, match="argument 0 is a dask collection"):
        import dask.array as da
        L.map(scaled, da.ones(3))


@gen_cluster(client=True, nthreads=FOUR)
async def test_distributed_map_from_the_first_threshold_products(c, s, *workers):
    parts = data(seed=1)
    L = await dc.encode(parts, 4, scheme="test-parity", client=c)
    assert sorted(L.workers) == sorted(w.address for w in workers)
    slow = next(w.name for w in workers if w.address == L.workers[0])
    await c.register_plugin(dc.stragglers.StragglerPlugin(
        dc.stragglers.SlowWorkers(seconds={str(slow): 60.0}), match=("coded-prod",),
        interruptible=True))
    got = await asyncio.wait_for(c.compute(L.map(scaled, 5.0)), 30)
    for g, p in zip(got, parts):
        np.testing.assert_allclose(g, 5.0 * p)
    assert 0 not in await L._last_used()
    await c.unregister_worker_plugin(dc.stragglers.StragglerPlugin.name)
    L.release()
    assert "released" in repr(L)
    while s.tasks:  # the coded parts and the scattered data parts are gone
        await asyncio.sleep(0.01)
    with pytest.raises(dc.CodedError, match="released"):
        L.map(scaled, 1.0)
