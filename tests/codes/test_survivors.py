import math

import numpy as np

from dask_coded.codes.survivors import climb, random_sets, structured_sets, survivor_sets


def test_exhaustive_enumerates_every_set_once():
    sets, exhaustive = survivor_sets(7, 3, systematic=False, exhaustive_limit=100, samples=5,
                                     rng=np.random.default_rng(0))
    assert exhaustive and len(sets) == math.comb(7, 3)
    assert len({tuple(s) for s in sets}) == len(sets)


def test_structured_sets_cover_runs_and_all_parities():
    sets = {tuple(s) for s in structured_sets(8, 5, systematic=True)}
    assert (0, 1, 2, 3, 4) in sets and (0, 1, 5, 6, 7) in sets
    assert (1, 2, 5, 6, 7) in sets  # all 3 parities + 2 systematic rows
    assert all(len(set(s)) == 5 and s == tuple(sorted(s)) for s in sets)


def test_random_sets_are_valid():
    sets = random_sets(10, 4, 50, np.random.default_rng(1))
    assert sets.shape == (50, 4)
    assert (np.diff(sets, axis=1) > 0).all() and sets.min() >= 0 and sets.max() < 10


def test_climb_reaches_the_maximum_of_a_separable_score():
    weights = np.array([5.0, 1.0, 7.0, 0.5, 3.0, 9.0])

    def score(batch):
        return weights[batch].sum(axis=1)

    start = np.array([[0, 1, 3]])
    ends = climb(score, start, score(start), 6, 3)
    assert {tuple(e) for e in ends} == {(0, 2, 5)}
