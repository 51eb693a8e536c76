"""The deals: every partition once per epoch, batches within one of each other, and the
balanced deal spreading every old batch evenly (what evens the coded packets' demands)."""

from collections import Counter

import numpy as np
import pytest

from dask_coded import theory
from dask_coded.shuffle import Placement, plan_segments
from dask_coded.shuffle.deal import balanced_deal, deal, random_deal


def owners(assignment):
    return {p: w for w, ps in assignment.items() for p in ps}


def planned_load(pl, q, deals):
    """Partitions the segment planner sends per epoch, the mean over consecutive deals."""
    return np.mean([plan_segments(pl, [1200] * q, owners(a), owners(b)).master_bytes
                    for a, b in zip(deals, deals[1:])]) / 1200


@pytest.mark.parametrize("kind", ["random", "balanced"])
@pytest.mark.parametrize("n,q", [(3, 10), (4, 48), (8, 96), (5, 5)])
def test_every_partition_once_and_batches_within_one(kind, n, q):
    rng = np.random.default_rng(0)
    workers = [f"w{i}" for i in range(n)]
    old = None
    for _ in range(4):
        new = deal(kind, rng, workers, q, old)
        got = sorted(p for ps in new.values() for p in ps)
        assert got == list(range(q))
        sizes = [len(new[w]) for w in workers]
        assert max(sizes) - min(sizes) <= 1
        old = new


def test_the_balanced_deal_spreads_every_old_batch_evenly():
    rng = np.random.default_rng(1)
    workers = list(range(8))
    old = random_deal(rng, workers, 100)  # batches of 12 and 13
    new = balanced_deal(rng, workers, 100, old)
    new_owner = owners(new)
    for o, batch in old.items():
        counts = Counter(new_owner[p] for p in batch)
        per = [counts.get(k, 0) for k in workers]
        assert max(per) - min(per) <= 1, (o, per)
    # a random deal does not: some pair exchanges nothing, another three or more
    spread = [max(c) - min(c) for c in (
        [Counter(owners(random_deal(rng, workers, 100))[p] for p in b).get(k, 0)
         for k in workers] for b in old.values())]
    assert max(spread) >= 2


def test_the_balanced_deal_still_sends_each_partition_anywhere():
    """Each partition lands on each worker about 1 / n of the epochs."""
    rng = np.random.default_rng(2)
    workers, q, epochs = list(range(4)), 16, 2000
    seen = np.zeros((q, 4))
    old = None
    for _ in range(epochs):
        old = balanced_deal(rng, workers, q, old)
        for w, ps in old.items():
            seen[list(ps), w] += 1
    assert np.abs(seen / epochs - 0.25).max() < 0.05


def test_partitions_of_lost_owners_and_the_first_epoch_are_dealt_too():
    rng = np.random.default_rng(3)
    new = balanced_deal(rng, ["a", "b"], 7, {"a": {0, 1}, "gone": {2, 3, 4}})
    assert sorted(p for ps in new.values() for p in ps) == list(range(7))
    assert sorted(map(len, new.values())) == [3, 4]


def test_a_seed_gives_the_same_deals_and_a_bad_kind_is_named():
    a = deal("balanced", np.random.default_rng(5), [0, 1, 2], 12, None)
    b = deal("balanced", np.random.default_rng(5), [0, 1, 2], 12, None)
    assert a == b
    with pytest.raises(ValueError, match="deal must be one of"):
        deal("fair", np.random.default_rng(0), [0, 1], 4)


@pytest.mark.parametrize("n,alpha,balanced,random", [
    (8, 0.25, 1.10, 1.12), (8, 0.5, 1.10, 1.12), (12, 0.25, 1.05, 1.25)])
def test_balanced_deals_bring_the_segment_planner_to_the_coded_caching_load(
        n, alpha, balanced, random):
    """q = 12 n: within ``balanced`` of Maddah-Ali and Niesen's load on balanced deals
    (n = 8: the linear program, within its default size, packs a share of 12 reaching a
    worker as 1 or 2); a random deal's uneven demands cost more than ``random`` times
    it."""
    q = 12 * n
    storage = q // n + int(round(alpha * q))
    pl = Placement.for_storage(n, q, storage)
    target = theory.shuffle_load("coded-caching", q, n, storage)
    workers = list(range(n))
    load = {}
    for kind in ("random", "balanced"):
        rng = np.random.default_rng(0)
        deals = [random_deal(rng, workers, q)]
        for _ in range(3):
            deals.append(deal(kind, rng, workers, q, deals[-1]))
        load[kind] = planned_load(pl, q, deals)
    assert load["balanced"] <= balanced * target, load
    assert load["random"] > random * target, load


@pytest.mark.parametrize("alpha", [0.1, 0.25, 0.5])
@pytest.mark.parametrize("n,share", [(4, 12), (8, 16), (12, 12)])
def test_where_n_divides_the_share_every_cached_fraction_is_near_the_coded_caching_load(
        n, share, alpha):
    """Where ``n`` divides the share ``q / n``, a balanced deal sends every worker the same
    number of partitions from every other, and the segment planner comes within 1.10 of
    Maddah-Ali and Niesen's load at every cached fraction (at a fractional level, alpha =
    0.1, their formula lies below what sharing storage between two levels reaches)."""
    q = share * n
    storage = q // n + int(round(alpha * q))
    pl = Placement.for_storage(n, q, storage)
    target = theory.shuffle_load("coded-caching", q, n, storage)
    workers = list(range(n))
    rng = np.random.default_rng(1)
    deals = [random_deal(rng, workers, q)]
    for _ in range(2):
        deals.append(balanced_deal(rng, workers, q, deals[-1]))
    load = planned_load(pl, q, deals[1:])  # from the first balanced deal on
    assert load <= 1.10 * target, (load, target)
    assert load < theory.shuffle_load("uncoded", q, n, storage)
