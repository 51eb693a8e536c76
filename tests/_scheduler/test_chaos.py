"""Seeded chaos: workers lost before a call, mid-products and mid-decode, fresh ones
joining (some under a lost worker's name, as a nanny restarts one); every call
(``CA @ x``, ``A.T @ r``, two blocks per worker, the rewrite, a coded sum, ``A @ B``
with a polynomial code of dask operands and with A's encoded operands resident) is
right or fails with TooFewResultsError within its bound, and the plugin's state and the
scheduler's tasks return to their baseline."""

import asyncio
import time
from collections import Counter

import dask
import dask.array as da
import numpy as np
import pytest
from distributed import Worker
from distributed.utils_test import gen_cluster

import dask_coded as dc

from cluster_helpers import VALIDATE, until

CALLS = 300


def gram(p):
    return p.T @ p


def processing(s, part: str) -> bool:
    return any(part in str(ts.key) and ts.state == "processing" for ts in s.tasks.values())


@pytest.mark.slow
@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 6, timeout=240,
             config={**VALIDATE, "coded.first-k.repin-delay": "20ms",
                     "coded.first-k.deadline": "30s",
                     # the kills are the test's, not the tasks' fault: no KilledWorker
                     "distributed.scheduler.allowed-failures": 1000})
async def test_chaos_kills_at_every_moment_and_joins(c, s, *workers):
    rng = np.random.default_rng(2026)
    A = rng.standard_normal((240, 6))
    CA = await dc.encode(A, 6, 4, client=c)
    CT = await dc.encode(A, 6, 4, transpose=True, client=c)  # CA.T of an async client
    CB = await dc.encode(A, 6, 4, blocks_per_worker=2, client=c)
    Ad = da.from_array(A, chunks=(40, 6))
    CP = await dc.CodedPartitions(np.split(A, 12), 6, 1, client=c)
    EA = await dc.encode_operand(Ad, 6, "polynomial", (2, 2), client=c)
    await c.register_plugin(dc.stragglers.StragglerPlugin(dc.stragglers.SlowWorkers(scale=0.05), seed=1,
                                               match=("coded-prod", "coded-dec"),
                                               interruptible=True))
    plugin = s.plugins[dc.FirstKPlugin.name]
    alive, outcomes = list(workers), Counter()
    for i in range(CALLS):
        x = rng.standard_normal(6)
        moment = ("none", "before", "mid-products", "mid-decode")[int(rng.integers(4))]
        victims = int(rng.choice([1, 1, 2, 2, 3])) if moment != "none" else 0
        victims = min(victims, len(alive) - 1)
        doomed = [alive.pop(int(rng.integers(len(alive)))) for _ in range(victims)]
        if moment == "before":
            await asyncio.gather(*(w.close() for w in doomed))
        which = i % 7
        r, B = rng.standard_normal(240), rng.standard_normal((6, 4))
        want = (A @ x, A @ x, A @ x, A.T @ r, A.T @ A, A @ B, A @ B)[which]
        if which == 2:
            with dc.coded_matmul(n=6, k=4):
                fut = c.compute(Ad @ x)
        elif which == 3:
            fut = c.compute(CT @ r)
        elif which == 4:
            await CP.repair()  # assignments lost with scattered partitions: placed again
            fut = c.compute(CP.sum(gram))
        elif which == 5:
            fut = c.compute(dc.matmul(Ad, da.from_array(B, chunks=(3, 2)), 6, "polynomial",
                                      (2, 2), client=c))
        elif which == 6:
            fut = c.compute(EA @ B)
        else:
            fut = c.compute((CA, CB)[which] @ x)
        if moment in ("mid-products", "mid-decode"):
            part = "coded-prod" if moment == "mid-products" else "coded-dec"
            try:
                await until(lambda: processing(s, part) or fut.done(), timeout=5)
            except AssertionError:
                pass
            await asyncio.gather(*(w.close() for w in doomed))
        try:
            got = await asyncio.wait_for(fut, 30)
        except dc.errors.TooFewResultsError:
            outcomes["too few"] += 1
        except Exception as e:
            story = "\n".join(map(str, s.story(fut.key)[-12:]))
            raise AssertionError(f"call {i} ({moment}, {victims} lost, kind {which}); the "
                                 f"scheduler's story of {fut.key}:\n{story}") from e
        else:
            np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-8,
                                       err_msg=f"call {i} ({moment}, {victims} lost)")
            outcomes["right"] += 1
        fut.release()
        fut = None
        while len(alive) < 6:  # fresh workers join, some as a nanny restarts a lost one
            # (named as a nanny names them: a worker left unnamed is named by its address,
            # and the scheduler, which resolves names before addresses, would take a
            # later worker given that port for the named one and never answer it)
            name = (doomed.pop().name if doomed and rng.random() < 0.5
                    else f"joined-{i}-{len(alive)}")
            alive.append(await asyncio.wait_for(
                Worker(s.address, nthreads=1, name=name), 60))
    assert outcomes["right"] >= CALLS // 2, outcomes
    await until(lambda: not plugin.group_table.groups and not plugin.group_table.products,
                timeout=20)
    assert plugin.tracked()["pruned"] == 0
    # what is left: the blocks and row scales of the four matrices and of A's encoded
    # operands, A's chunks they are re-encoded from, and the sum's assignments and
    # partitions
    await until(lambda: all(ts.state in ("memory", "released") for ts in s.tasks.values()))
    assert not [k for k in s.tasks if "coded-prod" in str(k) or "coded-dec" in str(k)]
    await asyncio.gather(*(w.close() for w in alive if w not in workers))


def _restarting_calls(seed: int, calls: int) -> Counter:
    """``calls`` calls of ``CA @ x`` and of ``A @ B`` with A's encoded operands resident on
    six worker processes, restarting one or two of them through their nannies before
    some calls and while the products of others run."""
    from distributed import Client, LocalCluster

    rng = np.random.default_rng(seed)
    A = rng.standard_normal((240, 6))
    outcomes = Counter()
    # LocalCluster closes the nanny of a worker removed and not back under its name
    # within lost-worker-timeout, even when the nanny restarted it twice meanwhile and
    # the second restart is under way: not what a deployment that restarts workers does
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "10 minutes"}), \
            LocalCluster(n_workers=6, threads_per_worker=1, processes=True,
                         dashboard_address=None) as cluster, Client(cluster) as client:
        CA = dc.encode(A, 6, 4)
        EA = dc.encode_operand(A, 6, "polynomial", (2, 2))
        client.register_plugin(dc.stragglers.StragglerPlugin(
            dc.stragglers.SlowWorkers(scale=0.2), seed=1, match=("coded-prod",),
            interruptible=True))
        for i in range(calls):
            x, B = rng.standard_normal(6), rng.standard_normal((6, 3))
            moment = ("none", "before", "mid-products")[i % 3]
            holders = sorted(set(CA.workers))
            doomed = list(rng.choice(holders, size=int(rng.integers(1, 3)), replace=False))
            if moment == "before":
                client.restart_workers(doomed, timeout=60)
            fut = client.compute((CA @ x, EA @ B)[i % 2])
            if moment == "mid-products":
                time.sleep(0.1)
                client.restart_workers(doomed, timeout=60)
            try:
                got = fut.result(timeout=30)
            except dc.errors.TooFewResultsError:
                outcomes["too few"] += 1
            else:
                np.testing.assert_allclose(got, (A @ x, A @ B)[i % 2], rtol=1e-8, atol=1e-8,
                                           err_msg=f"call {i} ({moment}, {doomed})")
                outcomes["right"] += 1
            client.wait_for_workers(6, timeout=60)
        for _ in range(200):  # the restarted workers take blocks back
            if len(set(CA.workers)) == 6:
                break
            time.sleep(0.1)
        assert len(set(CA.workers)) == 6, CA.workers
    return outcomes


@pytest.mark.slow
def test_workers_restarted_through_their_nannies_mid_call():
    outcomes = _restarting_calls(seed=5, calls=6)
    assert outcomes["right"] >= 5, outcomes
