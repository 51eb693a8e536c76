import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dask_coded import theory
from dask_coded.shuffle import next_caches, plan_delivery


@st.composite
def caches_and_demands(draw):
    n = draw(st.integers(1, 6))
    q = draw(st.integers(n, 14))
    parts = st.sets(st.integers(0, q - 1), max_size=q)
    caches = {w: draw(parts) for w in range(n)}
    demands = {w: draw(parts) for w in range(n)}
    sizes = [draw(st.integers(1, 50)) for _ in range(q)]
    return caches, demands, sizes


@given(caches_and_demands())
def test_every_plan_serves_every_request_once_and_decodes(case):
    caches, demands, sizes = case
    plan = plan_delivery(caches, demands, sizes)
    plan.verify(caches, demands)
    assert plan.master_bytes <= plan.unicast_bytes
    uncoded = plan_delivery(caches, demands, sizes, coded=False)
    uncoded.verify(caches, demands)
    assert uncoded.master_bytes == uncoded.unicast_bytes == plan.unicast_bytes


@given(caches_and_demands(), st.integers(0, 2**32 - 1))
def test_packets_xor_decode_bit_exact(case, seed):
    caches, demands, sizes = case
    rng = np.random.default_rng(seed)
    data = {p: rng.integers(0, 256, size=s, dtype=np.uint8) for p, s in enumerate(sizes)}
    for packet in plan_delivery(caches, demands, sizes).packets:
        payload = np.zeros(packet.nbytes, dtype=np.uint8)
        for p in packet.parts:
            payload[: len(data[p])] ^= data[p]
        for w, want in packet.serves:
            out = payload.copy()
            for p in packet.parts:
                if p != want:
                    out[: len(data[p])] ^= data[p]  # from the worker's cache
            np.testing.assert_array_equal(out[: len(data[want])], data[want])


def test_a_swap_halves_the_master_load():
    caches = {0: {0}, 1: {1}}
    demands = {0: {1}, 1: {0}}
    plan = plan_delivery(caches, demands, [100, 100])
    assert len(plan.packets) == 1 and plan.packets[0].parts == (0, 1)
    assert plan.master_bytes == 100 and plan.unicast_bytes == 200 and plan.relay_bytes == 100


def test_same_partition_to_several_workers_is_one_multicast():
    plan = plan_delivery({0: set(), 1: set(), 2: set()}, {0: {5}, 1: {5}, 2: {5}},
                         {5: 10})
    assert [p.parts for p in plan.packets] == [(5,)] and plan.master_bytes == 10


def test_plans_hundreds_of_partitions_in_milliseconds():
    rng = np.random.default_rng(0)
    n, q, s = 12, 480, 80
    caches = {w: set(rng.choice(q, s, replace=False).tolist()) for w in range(n)}
    demands = {w: set(a.tolist()) for w, a in enumerate(np.array_split(rng.permutation(q), n))}
    t = time.perf_counter()
    plan = plan_delivery(caches, demands, [1] * q)
    assert time.perf_counter() - t < 2.0  # seconds, generous for CI; typically ~0.1
    plan.verify(caches, demands)
    assert plan.master_bytes < plan.unicast_bytes


def simulate(n, q, storage, policy, epochs=20, seed=0):
    """Master load per epoch (partitions), uncoded and coded, over random reshuffles."""
    rng = np.random.default_rng(seed)
    shares = {w: set(a.tolist()) for w, a in enumerate(np.array_split(rng.permutation(q), n))}
    held = {w: sorted(shares[w]) for w in range(n)}
    loads = []
    for _ in range(epochs):
        new = {w: set(a.tolist()) for w, a in enumerate(np.array_split(rng.permutation(q), n))}
        caches = {w: set(held[w]) for w in range(n)}
        plan = plan_delivery(caches, new, [1] * q)
        loads.append((plan.unicast_bytes, plan.master_bytes))
        after = {w: sorted(new[w]) + [p for p in held[w] if p not in new[w]] for w in range(n)}
        held = next_caches(after, new, storage, policy)
    return np.array(loads, dtype=float).mean(axis=0)


@pytest.mark.parametrize("n,q,storage", [(4, 40, 20), (8, 80, 20), (12, 120, 30)])
def test_simulated_loads_track_the_theory(n, q, storage):
    uncoded, coded = simulate(n, q, storage, "recent")
    assert uncoded == pytest.approx(theory.shuffle_load("uncoded", q, n, storage), rel=0.1)
    assert coded < uncoded  # the coding gain is real
    assert coded >= theory.shuffle_load("coded-caching", q, n, storage) * 0.99  # never beats MN


@pytest.mark.parametrize("policy", ["recent", "diverse"])
def test_both_cache_policies_give_a_coding_gain(policy):
    uncoded, coded = simulate(8, 80, 20, policy)
    assert coded < 0.75 * uncoded


def test_cache_policy_keeps_the_share_and_respects_storage():
    held = {0: [1, 2, 3, 4], 1: [5, 6, 1]}
    out = next_caches(held, {0: {1}, 1: {6}}, storage=3, policy="recent")
    assert out == {0: [1, 2, 3], 1: [6, 5, 1]}
    with pytest.raises(ValueError, match="storage=1 partitions is smaller than worker 0"):
        next_caches(held, {0: {1, 2}, 1: {6}}, storage=1)
    with pytest.raises(ValueError, match="policy must be"):
        next_caches(held, {0: {1}}, storage=2, policy="lfu")
