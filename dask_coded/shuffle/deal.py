"""How an epoch deals the partitions to the workers: a fresh seeded assignment.

Two deals, both giving every worker ``floor(q / n)`` or ``ceil(q / n)`` partitions and
every partition exactly one worker:

* ``"random"``: a uniformly random assignment (a permutation cut into ``n`` runs).
* ``"balanced"``: every old owner's batch is spread as evenly as possible over the new
  owners (a *stratified* reshuffle): the old owners' batches, each shuffled and the owners
  in a random order, are dealt round-robin from a random offset to the workers in a random
  order. Worker ``k`` then receives ``floor(m / n)`` or ``ceil(m / n)`` partitions of
  every old batch of ``m``. Each partition still goes to each worker with probability
  ``1 / n``; what changes is that a new batch draws evenly from every old one instead of
  by chance. For coded delivery this is what evens the groups' demands: a segment packet
  serves its members equally only if each of them receives as much from the others
  (see :mod:`.placement`), and under a random deal a pair of workers exchanges 0, 1 or 2
  partitions by chance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

DEALS = ("balanced", "random")


def random_deal(rng: np.random.Generator, workers: Sequence[str], q: int
                ) -> dict[str, set[int]]:
    """``{worker: partitions}``: a uniformly random assignment of ``0 .. q-1``."""
    perm = rng.permutation(q)
    return {w: set(a.tolist()) for w, a in zip(workers, np.array_split(perm, len(workers)))}


def balanced_deal(rng: np.random.Generator, workers: Sequence[str], q: int,
                  old: Mapping[str, set[int]] | None) -> dict[str, set[int]]:
    """``{worker: partitions}``: every old batch in ``old`` (``{worker: partitions}``; a
    partition in none, or an old owner no longer in ``workers``, counts as the master's)
    spread evenly over ``workers`` (see the module doc)."""
    n, live = len(workers), set(workers)
    batches = [sorted(ps) for w, ps in sorted((old or {}).items()) if w in live]
    held = {p for b in batches for p in b}
    batches.append(sorted(set(range(q)) - held))  # the master's: nobody holds them
    order = [rng.permutation(np.asarray(b, dtype=np.int64)) for b in batches]
    stream = np.concatenate([order[i] for i in rng.permutation(len(order))])
    targets = rng.permutation(n)[(int(rng.integers(n)) + np.arange(q)) % n]
    return {w: set(stream[targets == i].tolist()) for i, w in enumerate(workers)}


def deal(kind: str, rng: np.random.Generator, workers: Sequence[str], q: int,
         old: Mapping[str, set[int]] | None = None) -> dict[str, set[int]]:
    """The assignment of one epoch by deal ``kind`` (one of :data:`DEALS`)."""
    if kind == "random":
        return random_deal(rng, workers, q)
    if kind == "balanced":
        return balanced_deal(rng, workers, q, old)
    raise ValueError(f"deal must be one of {DEALS}, got {kind!r}")
