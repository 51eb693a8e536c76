"""CodedShuffle on a cluster: assignments, residency, bit-exact data, bytes, faults."""

import time

import numpy as np
import pytest
from distributed import Client, LocalCluster, Worker

import dask_coded as dc
from dask_coded.bench.bytecount import ByteMeter


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=4, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


def data(q=24, size=500, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal(size) * 100).astype(dtype) for _ in range(q)]


def check_epoch(client, sh, assignment, parts):
    ids = sorted(p for ps in assignment.values() for p in ps)
    assert ids == list(range(len(parts)))  # a partition of all ids
    who_has = client.who_has([f for w in assignment for f in sh.futures(w)])
    for w, ps in assignment.items():
        assert all(w in who_has[k] for k in sh.keys(w))  # resident where assigned
        for got, p in zip(client.gather(sh.futures(w)), ps):
            assert got.dtype == parts[p].dtype
            assert got.tobytes() == parts[p].tobytes()  # byte-identical


@pytest.mark.parametrize("strategy,placement", [("coded", "segments"), ("coded", "partitions"),
                                                ("uncoded", "auto"), ("p2p", "auto")])
@pytest.mark.parametrize("dtype", [np.float64, np.int16])
def test_every_epoch_is_a_complete_resident_bit_exact_partition(client, strategy, placement,
                                                                dtype):
    parts = data(dtype=dtype)
    sh = dc.CodedShuffle(parts, storage=12, strategy=strategy, seed=1,
                         placement=placement, client=client)
    try:
        for _ in range(4):
            check_epoch(client, sh, sh.next_epoch(), parts)
        if strategy == "coded":
            assert sum(r.coded_packets for r in sh.report()) > 0
            assert (sh.segments is not None) == (placement == "segments")
    finally:
        sh.close()


def test_strategies_deal_the_same_assignments_for_a_seed(client):
    parts = data(q=12)
    runs = {}
    for strategy in ("coded", "uncoded"):
        sh = dc.CodedShuffle(parts, storage=6, strategy=strategy, seed=7, client=client)
        runs[strategy] = [sh.next_epoch() for _ in range(3)]
        sh.close()
    assert runs["coded"] == runs["uncoded"]


def test_unequal_partition_sizes_decode(client):
    rng = np.random.default_rng(3)
    parts = [rng.standard_normal(int(s)) for s in rng.integers(10, 400, size=16)]
    sh = dc.CodedShuffle(parts, storage=8, strategy="coded", seed=2, client=client)
    try:
        for _ in range(4):
            check_epoch(client, sh, sh.next_epoch(), parts)
    finally:
        sh.close()


@pytest.mark.parametrize("placement", ["segments", "partitions"])
def test_structured_dtypes_keep_their_fields(client, placement):
    rng = np.random.default_rng(4)
    record = np.dtype([("x", "f8"), ("n", "i4"), ("tag", "S3")])
    parts = []
    for _ in range(16):
        p = np.zeros(40, dtype=record)
        p["x"], p["n"], p["tag"] = rng.standard_normal(40), rng.integers(0, 99, 40), b"abc"
        parts.append(p)
    sh = dc.CodedShuffle(parts, storage=8, strategy="coded", seed=5,
                         placement=placement, client=client)
    try:
        for _ in range(3):
            check_epoch(client, sh, sh.next_epoch(), parts)  # dtype (with fields) equal
    finally:
        sh.close()


def test_bad_input(client):
    with pytest.raises(TypeError, match="storage must be a whole number"):
        dc.CodedShuffle(data(q=8), storage="6", client=client)
    with pytest.raises(TypeError, match="holds Python object references.*'uncoded'"):
        dc.CodedShuffle([np.array([{"a": 1}] * 3, dtype=object)] * 4, storage=2, client=client)
    with pytest.raises(ValueError, match="smaller than one epoch's share"):
        dc.CodedShuffle(data(q=24), storage=5, client=client)
    with pytest.raises(ValueError, match="share one dtype"):
        dc.CodedShuffle([np.zeros(3), np.zeros(3, dtype=np.int8)], storage=1, client=client)
    with pytest.raises(ValueError, match="strategy must be"):
        dc.CodedShuffle(data(q=8), storage=4, strategy="fountain", client=client)
    with pytest.raises(ValueError, match="placement must be"):
        dc.CodedShuffle(data(q=8), storage=4, placement="random", client=client)
    with pytest.raises(ValueError, match="placement='segments' needs storage beyond one share"):
        dc.CodedShuffle(data(q=8), storage=2, placement="segments", client=client)
    with pytest.raises(TypeError, match=r"partitions first and the client as a keyword"):
        dc.CodedShuffle(client, data(q=8), storage=4)  # the client where partitions go
    with client.as_current():
        sh = dc.CodedShuffle(data(q=8), storage=4)  # the current client is the master
    assert sh.client is client
    worker = next(iter(sh.next_epoch()))
    with pytest.raises(dc.CodedError, match="holds no share this epoch"):
        sh.futures("tcp://nowhere:1")
    assert dc.release(sh) == 1  # as sh.close()
    with pytest.raises(dc.CodedError, match="closed"):
        sh.next_epoch()
    with pytest.raises(dc.CodedError, match="closed: its partitions were released"):
        sh.futures(worker)


@pytest.mark.slow  # worker processes
def test_byte_counts_come_from_the_transport_and_match_the_plan():
    parts = data(q=16, size=32768)  # 256 KiB each
    with LocalCluster(n_workers=4, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        reports = {}
        with ByteMeter(client) as meter:
            for strategy in ("uncoded", "coded"):
                sh = dc.CodedShuffle(parts, storage=8, strategy=strategy, seed=0,
                                     meter=meter, client=client)
                for _ in range(4):
                    sh.next_epoch()
                reports[strategy] = sh.report()[1:]  # epoch 1 is the initial load
                sh.close()
    for r in reports["coded"] + reports["uncoded"]:
        # the payload the master wrote is the plan's, to 2%; dask's control messages on top
        assert r.planned_master_bytes <= r.master_data_bytes <= 1.02 * r.planned_master_bytes
        assert r.master_data_bytes < r.master_bytes <= 1.1 * r.planned_master_bytes
    coded = sum(r.master_bytes for r in reports["coded"])
    uncoded = sum(r.master_bytes for r in reports["uncoded"])
    assert coded < 0.8 * uncoded
    assert sum(r.peer_bytes for r in reports["coded"]) > 0  # the relays happened
    assert all(r.peer_bytes < 0.01 * r.master_bytes for r in reports["uncoded"])


def test_a_user_shuffle_leaves_the_transport_alone(client):
    """Byte counting is the benchmark's: a plain CodedShuffle does not wrap TCP.write,
    and its reports carry the plan's bytes only."""
    from distributed.comm.tcp import TCP

    sh = dc.CodedShuffle(data(q=8), storage=4, client=client)
    try:
        sh.next_epoch()
        (r,) = sh.report()
        assert r.master_bytes is None and r.planned_master_bytes > 0
        assert not getattr(TCP.write, "_dask_coded_bytecount", False)
    finally:
        sh.close()


def test_a_lost_worker_loses_nothing():
    parts = data(q=12)
    with LocalCluster(n_workers=3, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        sh = dc.CodedShuffle(parts, storage=8, strategy="coded", seed=0, client=client)
        sh.next_epoch()
        sh.next_epoch()
        victim = sorted(cluster.workers)[0]
        client.sync(cluster.workers[victim].close)
        with pytest.warns(UserWarning, match="lost workers"):
            assignment = sh.next_epoch()
        assert len(assignment) == 2 and sh.report()[-1].lost_workers
        check_epoch(client, sh, assignment, parts)
        check_epoch(client, sh, sh.next_epoch(), parts)
        sh.close()


async def start_worker(address):
    return await Worker(address, nthreads=1)


@pytest.mark.parametrize("placement", ["segments", "partitions"])
def test_a_worker_that_joins_is_taken_into_the_shuffle(placement):
    """A nanny's replacement (or any new worker) gets a share from the next epoch on."""
    parts = data(q=12)
    with LocalCluster(n_workers=3, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        sh = dc.CodedShuffle(parts, storage=8, strategy="coded", seed=0,
                             placement=placement, client=client)
        sh.next_epoch()
        victim = sorted(cluster.workers)[0]
        client.sync(cluster.workers[victim].close)
        with pytest.warns(UserWarning, match="lost workers"):
            assert len(sh.next_epoch()) == 2
        fresh = client.sync(start_worker, cluster.scheduler_address)
        assignment = sh.next_epoch()
        assert len(assignment) == 3 and fresh.address in assignment
        assert all(assignment.values())
        check_epoch(client, sh, assignment, parts)
        check_epoch(client, sh, sh.next_epoch(), parts)
        sh.close()
        client.sync(fresh.close)


@pytest.mark.slow  # worker processes
def test_a_worker_dying_during_an_epoch_loses_nothing():
    import os
    import threading

    from dask_coded.bench import bytecount

    parts = data(q=16, size=65536)  # 512 KiB each
    with LocalCluster(n_workers=4, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        sh = dc.CodedShuffle(parts, storage=8, strategy="coded", seed=0, client=client)
        sh.next_epoch()
        victim = sh.workers[2]

        def kill():
            try:
                client.run(os._exit, 1, workers=[victim])
            except Exception:
                pass  # the worker died before it could answer

        bytecount.throttle(8e6)  # 8 MB/s from the master: the epoch takes ~0.5 s
        timer = threading.Timer(0.15, kill)
        timer.start()
        try:
            with pytest.warns(UserWarning, match="during epoch 2"):
                assignment = sh.next_epoch()
        finally:
            timer.join()
            bytecount.throttle(None)
        assert victim not in assignment and victim in sh.report()[-1].lost_workers
        check_epoch(client, sh, assignment, parts)
        check_epoch(client, sh, sh.next_epoch(), parts)
        sh.close()


def _amm_and_sessions(dask_scheduler=None):
    coordinator = dask_scheduler.plugins.get("dask-coded-shuffle")
    return (dask_scheduler.extensions["amm"].running,
            0 if coordinator is None else len(coordinator.sessions))


def test_the_memory_manager_stays_off_while_any_shuffle_is_open(client):
    amm_was_on, before = client.run_on_scheduler(_amm_and_sessions)
    first = dc.CodedShuffle(data(q=8), storage=4, seed=0, client=client)
    second = dc.CodedShuffle(data(q=8), storage=4, seed=1, client=client)
    with pytest.raises(ValueError, match="smaller than one epoch's share"):
        dc.CodedShuffle(data(q=24), storage=5, client=client)  # refused: leaves no session
    assert client.run_on_scheduler(_amm_and_sessions) == (False, before + 2)
    first.close()
    assert client.run_on_scheduler(_amm_and_sessions) == (False, before + 1)
    second.next_epoch()
    second.close()
    assert client.run_on_scheduler(_amm_and_sessions) == (amm_was_on, before)


def test_auto_caches_segments_unless_they_are_below_the_set_size(client):
    """placement="auto" on 4 workers, storage 4 of 8: a partition splits into 3 segments.
    By default (min-segment-bytes 0) even 2,400-byte partitions (800-byte segments) are
    cached in segments; with coded.shuffle.min-segment-bytes at 1 KiB they are cached
    whole, and 40,000-byte partitions still in segments."""
    import dask

    tiny = dc.CodedShuffle(data(q=8, size=300), storage=4, client=client)
    with dask.config.set({"coded.shuffle.min-segment-bytes": "1 KiB"}):
        whole = dc.CodedShuffle(data(q=8, size=300), storage=4, client=client)
        large = dc.CodedShuffle(data(q=8, size=5000), storage=4, client=client)
    try:
        assert tiny.segments is not None and tiny.segments.placement.segment_count == 3
        assert whole.segments is None and "whole partitions" in repr(whole)
        assert large.segments.placement.segment_count == 3
        for sh, size in ((large, 5000), (tiny, 300)):
            for _ in range(3):
                check_epoch(client, sh, sh.next_epoch(), data(q=8, size=size))
            assert sh.report()[-1].coded_packets > 0
    finally:
        for sh in (tiny, whole, large):
            sh.close()


def test_two_open_shuffles_keep_their_own_plans(client):
    """Epochs of one shuffle do not evict the plans another open shuffle made ahead on
    the same workers, and a closed shuffle's plans are dropped."""
    first = dc.CodedShuffle(data(q=16), storage=8, seed=0, placement="segments", client=client)
    second = dc.CodedShuffle(data(q=16, seed=1), storage=8, seed=1,
                             placement="segments", client=client)
    try:
        check_epoch(client, first, first.next_epoch(), data(q=16))
        for _ in range(6):  # more than a worker keeps per shuffle
            second.next_epoch()
        check_epoch(client, first, first.next_epoch(), data(q=16))
    finally:
        second.close()

    def shuffles(dask_worker):
        return sorted(dask_worker.plugins["dask-coded-shuffle-relay"].plans)

    try:
        deadline = time.monotonic() + 5
        while any(f"coded-shuffle-{second.token}" in s for s in client.run(shuffles).values()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert any(f"coded-shuffle-{first.token}" in s for s in client.run(shuffles).values())
    finally:
        first.close()


def test_a_shuffle_without_a_distributed_client_says_it_needs_one(monkeypatch):
    from dask_coded.shuffle import session

    monkeypatch.setattr(session, "default_client", lambda: None)  # no client anywhere
    with pytest.raises(dc.CodedError, match="needs a distributed client"):
        dc.CodedShuffle(data(q=8), storage=4)
