"""What the scheduler-side tests share: validation on, six workers, seeded data, the
plugin of a scheduler, and a bounded wait for the scheduler to act."""

import asyncio

import numpy as np

import dask_coded as dc

VALIDATE = {"distributed.scheduler.validate": True, "distributed.worker.validate": True}
SIX = [("127.0.0.1", 1)] * 6


def rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def plugin(s):
    return s.plugins[dc.FirstKPlugin.name]


async def until(condition, timeout=10.0):
    """Poll ``condition()`` until it holds (the scheduler acts on its own loop turns)."""
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition never held")
