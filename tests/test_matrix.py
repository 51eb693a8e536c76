"""Coded matrix multiplication: local scheduler and distributed (gen_cluster)."""

import asyncio
import logging
import time
import warnings

import dask.array as da
import numpy as np
import pytest
from distributed import Client, LocalCluster
from distributed.utils_test import gen_cluster

import dask_coded as dc

VALIDATE = {"distributed.scheduler.validate": True, "distributed.worker.validate": True}
SIX = [("127.0.0.1", 1)] * 6


def rand(*shape, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def close(got, want, dtype=np.float64):
    tol = 1e-4 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


# ---- local scheduler ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["rotation", "gaussian"])
def test_local_matches_numpy(dtype, kind):
    A = rand(1001, 17, dtype=dtype)  # 1001 rows / k=4: uneven, odd blocks (rotation pads)
    CA = dc.encode(A, 6, 4, kind=kind, client=None)
    assert CA.local and CA.shape == (1001, 17) and CA.dtype == dtype
    x, X = rand(17, seed=1, dtype=dtype), rand(17, 5, seed=2, dtype=dtype)
    y = CA @ x
    assert isinstance(y, da.Array) and y.shape == (1001,) and y.dtype == dtype
    close(y.compute(), A @ x, dtype)
    close((CA @ X).compute(), A @ X, dtype)
    close((CA @ da.from_array(X, chunks=(5, 2))).sum().compute(), (A @ X).sum(), dtype)
    close((CA.T @ (A @ x)).compute(), A.T @ (A @ x), dtype)


@pytest.mark.parametrize("scheduler", ["threads", "sync"])
def test_local_graph_runs_on_threads_and_sync(scheduler):
    A = rand(200, 9)
    CA = dc.encode(da.from_array(A, chunks=(50, 9)), 5, 3, client=None)
    x = rand(9, seed=3)
    close((CA @ x).compute(scheduler=scheduler), A @ x)


def test_local_race_ignores_a_straggler():
    A, x = rand(400, 10), rand(10, seed=1)
    CA = dc.encode(A, 5, 3, client=None)
    slow = 3.0
    with dc.stragglers.local_stragglers(dc.stragglers.SlowWorkers({"4": slow}), seed=0):
        t = time.perf_counter()
        y = (CA @ x).compute(scheduler="threads")
        elapsed = time.perf_counter() - t
    close(y, A @ x)
    assert elapsed < 0.8 * slow  # well below the straggler's


# ---- distributed ----------------------------------------------------------------------------


@gen_cluster(client=True, nthreads=SIX, config=VALIDATE)
async def test_distributed_matches_numpy_and_pins_blocks(c, s, *workers):
    A = rand(1001, 17)
    CA = await dc.encode(A, 6, 4, client=c)
    assert sorted(CA.workers) == sorted(w.address for w in workers)  # one block per worker
    for f, addr in zip(CA.blocks, CA.workers):
        ts = s.tasks[f.key]
        assert {ws.address for ws in ts.who_has} == {addr}
        assert ts.worker_restrictions == {addr} and not ts.loose_restrictions

    x, X = rand(17, seed=1), rand(17, 4, seed=2)
    close(await c.compute(CA @ x), A @ x)
    close(await c.compute(CA @ X), A @ X)
    Xd = da.from_array(X, chunks=(6, 3))
    close(await c.compute(CA @ Xd), A @ X)
    close(await c.compute((CA @ Xd).sum()), (A @ X).sum())
    CT = await dc.encode(A, 6, 4, client=c, transpose=True)
    close(await c.compute(CT @ (A @ x)), A.T @ (A @ x))

    # every coded product ran where its block lives; the blocks never moved
    plugin = s.plugins[dc.FirstKPlugin.name]
    assert plugin.stats["pinned"] >= 6 * 4
    for f, addr in zip(CA.blocks, CA.workers):
        assert {ws.address for ws in s.tasks[f.key].who_has} == {addr}


@gen_cluster(client=True, nthreads=SIX, config=VALIDATE)
async def test_float32_and_integer_inputs(c, s, *workers):
    A32 = rand(300, 8, dtype=np.float32)
    CA = await dc.encode(A32, 6, 4, client=c)
    y = CA @ rand(8, dtype=np.float32)
    assert y.dtype == np.float32
    close(await c.compute(y), A32 @ rand(8, dtype=np.float32), np.float32)
    Ai = np.arange(60).reshape(20, 3)
    CAi = await dc.encode(Ai, 6, 4, client=c)
    assert CAi.dtype == np.float64
    close(await c.compute(CAi @ np.ones(3)), Ai @ np.ones(3))


async def _slow(c, s, worker_names, seconds):
    await c.register_plugin(
        dc.stragglers.StragglerPlugin(dc.stragglers.SlowWorkers({str(n): seconds for n in worker_names}), seed=0,
                           match=("coded-prod",))
    )


@gen_cluster(client=True, nthreads=SIX, config=VALIDATE)
async def test_straggler_does_not_delay_the_result(c, s, *workers):
    A, x = rand(600, 20), rand(20, seed=1)
    CA = await dc.encode(A, 6, 4, client=c)
    slow_addr = CA.workers[2]
    slow = next(w for w in workers if w.address == slow_addr)
    await _slow(c, s, [slow.name], 3.0)

    t = time.perf_counter()
    close(await c.compute(CA @ x), A @ x)
    first = time.perf_counter() - t
    # a second call right after: not stuck behind the released (still sleeping) product
    t = time.perf_counter()
    close(await c.compute(CA @ (2 * x)), A @ (2 * x))
    second = time.perf_counter() - t
    assert max(first, second) < 0.8 * 3.0  # well below the straggler's 3 s each

    plugin = s.plugins[dc.FirstKPlugin.name]
    assert plugin.stats["pruned"] >= 2 and plugin.stats["released"] >= 2


@gen_cluster(client=True, nthreads=SIX, config=VALIDATE)
async def test_without_the_plugin_the_graph_still_waits_for_all(c, s, *workers):
    A, x = rand(120, 6), rand(6, seed=1)
    CA = await dc.encode(A, 6, 4, client=c)
    s.remove_plugin(name=dc.FirstKPlugin.name)
    slow = next(w for w in workers if w.address == CA.workers[0])
    await _slow(c, s, [slow.name], 1.0)
    t = time.perf_counter()
    close(await c.compute(CA @ x), A @ x)
    assert time.perf_counter() - t >= 1.0  # correct, but waits for the straggler


@gen_cluster(client=True, nthreads=SIX, config={**VALIDATE, "coded.first-k.repin-delay": "50ms"})
async def test_losing_n_minus_k_workers_mid_compute(c, s, *workers):
    A, x = rand(600, 20), rand(20, seed=1)
    CA = await dc.encode(A, 6, 4, client=c)
    doomed = [w for w in workers if w.address in CA.workers[:2]]  # n - k = 2
    await _slow(c, s, [w.name for w in doomed], 2.0)
    fut = c.compute(CA @ x)
    await asyncio.sleep(0.3)  # the doomed products are running
    await asyncio.gather(*(w.close(executor_wait=False) for w in doomed))
    close(await fut, A @ x)

    # the lost blocks are re-encoded onto live workers in the background
    lost = [f.key for f in CA.blocks[:2]]
    for _ in range(100):
        if all(s.tasks[k].who_has and s.tasks[k].state == "memory" for k in lost):
            break
        await asyncio.sleep(0.05)
    live = set(s.workers)
    for k in lost:
        holders = {ws.address for ws in s.tasks[k].who_has}
        assert holders and holders <= live
    assert s.plugins[dc.FirstKPlugin.name].stats["repinned"] == 2
    close(await c.compute(CA @ (3 * x)), A @ (3 * x))


@gen_cluster(client=True, nthreads=SIX, config=VALIDATE)
async def test_losing_more_than_n_minus_k_says_how_many_survived(c, s, *workers):
    A, x = rand(600, 20), rand(20, seed=1)
    CA = await dc.encode(A, 6, 4, client=c)
    doomed = [w for w in workers if w.address in CA.workers[:3]]
    await _slow(c, s, [w.name for w in doomed], 2.0)
    fut = c.compute(CA @ x)
    await asyncio.sleep(0.3)
    await asyncio.gather(*(w.close(executor_wait=False) for w in doomed))
    with pytest.raises(dc.errors.TooFewResultsError, match=r"only 3 of n=6 .* k=4 are needed"):
        await fut


# ---- placement and bad input -----------------------------------------------------------------


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 3, config=VALIDATE)
async def test_too_few_workers(c, s, *workers):
    A = rand(40, 4)
    with pytest.raises(dc.errors.TooFewWorkersError, match="n=5 coded blocks need n distinct workers"):
        await dc.encode(A, 5, 3, client=c)
    with pytest.warns(UserWarning, match="round-robin"):
        CA = await dc.encode(A, 5, 3, client=c, allow_shared_workers=True)
    assert len(set(CA.workers)) == 3
    close(await c.compute(CA @ np.ones(4)), A @ np.ones(4))


@gen_cluster(client=True, nthreads=SIX, config=VALIDATE)
async def test_bad_inputs(c, s, *workers):
    A = rand(40, 4)
    with pytest.raises(dc.errors.CodeParameterError, match="k must be at most n"):
        await dc.encode(A, 4, 5, client=c)
    with pytest.raises(dc.errors.BlockShapeError, match="A must be 2-D"):
        dc.encode(np.ones(4), 6, 4, client=c)
    with pytest.raises(dc.errors.DtypeError, match="A has non-numeric dtype"):
        dc.encode(np.array([["a", "b"]] * 4), 6, 4, client=c)
    Abad = A.copy()
    Abad[37, 1] = np.nan
    with pytest.raises(dc.errors.NonFiniteError, match="row 37"):
        await dc.encode(Abad, 6, 4, client=c)

    CA = await dc.encode(A, 6, 4, client=c)
    with pytest.raises(dc.errors.BlockShapeError, match=r"A is \(40, 4\) and x is \(5,\)"):
        CA @ np.ones(5)
    with pytest.raises(dc.errors.BlockShapeError, match="1-D or 2-D"):
        CA @ np.ones((4, 1, 1))
    with pytest.raises(dc.errors.DtypeError, match="x has complex dtype"):
        CA @ np.ones(4, dtype=complex)
    with pytest.raises(dc.errors.NonFiniteError, match="x contains NaN"):
        CA @ np.array([1.0, np.nan, 0.0, 0.0])
    with pytest.raises(dc.errors.NonFiniteError, match="x contains NaN"):  # found in the graph
        await c.compute(CA @ da.from_array(np.array([1.0, np.inf, 0.0, 0.0])))


def test_matrix_after_its_client_closed():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        client = Client(cluster)
        CA = dc.encode(rand(20, 3), 2, 1, client=client)
        close(CA.dot(np.ones(3)).compute(), rand(20, 3) @ np.ones(3))
        client.close()
    with pytest.raises(dc.CodedError, match="client is closed"):
        CA @ np.ones(3)


@gen_cluster(client=True, nthreads=SIX, config=VALIDATE)
async def test_fewer_rows_than_k_blocks(c, s, *workers):
    A = rand(3, 7)  # k=5 row blocks of 1 row: blocks 3 and 4 are all padding
    for kind in ("gaussian", "rotation"):
        CA = await dc.encode(A, 6, 5, kind=kind, client=c)
        close(await c.compute(CA @ np.ones(7)), A @ np.ones(7))


def test_repr_explains_the_matrix():
    CA = dc.encode(rand(30, 4), 5, 3, kind="rotation", client=None)
    assert "n=5, k=3, kind='rotation', local" in repr(CA)
    html = CA._repr_html_()
    assert "(n, k) = (5, 3)" in html and "worst-case decode error" in html
    assert html.count("<tr>") == 1 + 5  # header and one row per block


def test_html_view_names_workers_and_plots_the_recent_calls():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=4, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        CA = dc.encode(rand(200, 4), 4, 3, client=client, verify="detect")
        for _ in range(3):
            CA.dot(np.ones(4)).compute()
        html = CA._repr_html_()
        names = {w: str(i["name"]) for w, i in client.scheduler_info()["workers"].items()}
        for address in CA.workers:  # the name shown, the address in its title
            assert f"title='{address}'>{names[address]}</td>" in html
        assert "last 3 calls" in html and "<polyline" in html
        assert "verify <code>detect</code>" in html and "product ms" in html


def test_encode_with_progress_bar(capsys):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=3, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        A = rand(90, 4)
        CA = dc.encode(A, 3, 2, client=client, progress=True)
        close(CA.dot(np.ones(4)).compute(), A @ np.ones(4))
        bad = A.copy()
        bad[5, 0] = np.inf
        with pytest.raises(dc.errors.NonFiniteError, match="row 5"):
            dc.encode(bad, 3, 2, client=client, progress=True)
    assert "100%" in capsys.readouterr().out  # dask's text progress bar


# ---- errors that name the problem ----------------------------------------------------------


def _unknown_chunks():
    A = da.from_array(rand(40, 4), chunks=10)
    return A[A[:, 0] > 0]


@pytest.mark.parametrize("make, error, match", [
    (lambda: dc.encode(__import__("scipy.sparse").sparse.csr_matrix(rand(40, 4)), 6, 4,
                       client=None), TypeError, "scipy.sparse csr_matrix.*toarray"),
    (lambda: dc.encode(np.ones((10, 0)), 6, 4, kind="rotation", client=None),
     dc.errors.BlockShapeError, r"shape \(10, 0\): it needs at least one row and column"),
    (lambda: dc.encode(_unknown_chunks(), 6, 4, client=None), dc.errors.BlockShapeError,
     "unknown chunk sizes.*compute_chunk_sizes"),
    (lambda: dc.make_code(6, 4, kind=["rotation"]), dc.errors.CodeParameterError,
     "kind must be a string"),
])
def test_bad_operands_get_errors_that_name_them(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_operands_that_are_not_arrays():
    CA = dc.encode(rand(40, 4), 6, 4, client=None)
    with pytest.raises(TypeError, match="x is a CodedMatrix"):
        CA @ CA
    sparse = __import__("scipy.sparse").sparse
    with pytest.raises(TypeError, match="x is a scipy.sparse"):
        CA @ sparse.csr_matrix(np.ones((4, 1)))


def test_released_and_retuned_matrices():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=3, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        client = Client(cluster)
        A, x = rand(60, 4), rand(4, seed=1)
        CA = dc.encode(A, 3, 2, client=client)
        y = CA @ x
        # k="auto" re-encodes with another k: a product built before still computes (it
        # holds the old blocks)
        CA.policy = dc.policy.AutoK(3)
        CA.policy.choose = lambda k, seen, calls: 3
        assert CA.retune() == 3 and CA.k == 3
        close(y.compute(), A @ x)
        close((CA @ x).compute(), A @ x)
        CA.release()
        assert "released" in repr(CA) and "released" in CA._repr_html_()
        with pytest.raises(dc.CodedError, match="was released"):
            CA @ x
        client.close()
        with pytest.raises(dc.CodedError, match="client is closed"):
            dc.encode(A, 3, 2, client=client)


def rowwise_error(got, B, x):
    """``max_r |y_r - (B x)_r| / (||B_r|| ||x||)``: the row-by-row bound equilibration
    gives (relative to ``|(B x)_r|`` itself no bound holds where a row cancels)."""
    scale = np.linalg.norm(B, axis=1) * np.linalg.norm(x)
    return float(np.max(np.abs(got - B @ x) / scale))


@pytest.mark.parametrize("n, k", [(6, 4), (32, 24)])
def test_rows_of_very_different_scales_keep_their_accuracy(n, k):
    """Rows are equilibrated before encoding: the bound holds row by row, not only for
    the norm of the whole result."""
    B = rand(960, 5)
    B[:100] *= 1e8
    B[100:] *= 1e-4
    x = rand(5, seed=1)
    CA = dc.encode(B, n, k, client=None)
    slow = {str(j): 0.3 for j in range(k - 2, n - 2)}  # force parity rows into the decode
    with dc.stragglers.local_stragglers(dc.stragglers.SlowWorkers(slow)):
        got = (CA @ x).compute(scheduler="threads")
    assert rowwise_error(got, B, x) < 1e-8  # without equilibration: 7e-4 and 5e2


@gen_cluster(client=True, nthreads=SIX, config=VALIDATE)
async def test_rows_of_very_different_scales_on_a_cluster(c, s, *workers):
    B = rand(400, 5)
    B[:100] *= 1e8
    B[100:] *= 1e-4
    CA = await dc.encode(B, 6, 4, client=c)
    await _slow(c, s, [w.name for w in workers if w.address in CA.workers[:2]], 1.0)
    x = rand(5, seed=1)
    assert rowwise_error(await c.compute(CA @ x), B, x) < 1e-12


# ---- fitting numpy --------------------------------------------------------------------------


def test_a_coded_matrix_fits_numpy():
    A = rand(60, 5)
    CA = dc.encode(A, 5, 3, client=None)
    x, y, Y = rand(5, seed=1), rand(60, seed=2), rand(4, 60, seed=3)
    close(np.matmul(CA, x).compute(), A @ x)
    close(np.dot(CA, x).compute(), A @ x)
    close((y @ CA).compute(), y @ A)          # through the coded A.T
    close((Y @ CA).compute(), Y @ A)
    close(np.matmul(y, CA).compute(), y @ A)
    close(np.asarray(CA), A)                  # decoded from the coded blocks
    with pytest.raises(TypeError, match="cannot be sliced.*encode the rows"):
        CA[0:10]
    with pytest.raises(TypeError, match="supports products .* not np.add"):
        np.add(CA, 1)
    with pytest.raises(TypeError, match="not np.concatenate"):
        np.concatenate([CA, CA])


class _Errors(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_a_coded_matrix_fits_dask():
    """da.matmul receives A decoded from the blocks: coded inside coded_matmul (on the
    resident blocks), plain with a warning outside; da.dot/da.tensordot, which would put
    CA into the graph as data, refuse at once and name what works, nothing logged."""
    A = rand(60, 5)
    CA = dc.encode(A, 5, 3, client=None)
    x = rand(5, seed=1)
    with pytest.warns(UserWarning, match="uncoded; use CA @ x"):
        close(da.matmul(CA, x).compute(), A @ x)
    with dc.coded_matmul(5, 3) as opt:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            close(da.matmul(CA, x).compute(scheduler="threads"), A @ x)
    assert [r[3] for r in opt.rewrites] == [True]  # CA's own blocks
    errors = _Errors()
    logging.getLogger().addHandler(errors)
    try:
        for product in (da.dot, da.tensordot):
            with pytest.raises(TypeError, match="cannot be put into a dask graph.*CA @ x"):
                product(CA, x) if product is da.dot else product(CA, x, 1)
    finally:
        logging.getLogger().removeHandler(errors)
    assert errors.records == []


# ---- several coded blocks per worker --------------------------------------------------------


def test_local_several_blocks_per_worker_match_numpy():
    A = rand(1001, 7)
    CA = dc.encode(A, 6, 4, blocks_per_worker=8, client=None)
    assert (CA.n, CA.k, CA.blocks_per_worker, len(CA.blocks)) == (6, 4, 8, 48)
    assert "blocks_per_worker=8" in repr(CA) and CA.code.kind == "lstsq"
    x = rand(7, seed=1)
    close((CA @ x).compute(), A @ x)
    close((CA.T @ (A @ x)).compute(), A.T @ (A @ x))
    with pytest.raises(dc.errors.CodeParameterError, match="k='auto'"):
        dc.encode(A, 6, "auto", blocks_per_worker=2, client=None)


@gen_cluster(client=True, nthreads=SIX, config=VALIDATE)
async def test_several_blocks_per_worker_use_a_slow_workers_finished_blocks(c, s, *workers):
    A, x = rand(600, 9), rand(9, seed=1)
    CA = await dc.encode(A, 6, 4, blocks_per_worker=3, client=c)  # (18, 12) code
    assert len(CA.blocks) == 18 and sorted(set(CA.workers)) == sorted(
        w.address for w in workers)
    assert all(CA.workers.count(w.address) == 3 for w in workers)
    # every product of the worker holding block 0 takes a minute; the decode needs 12
    # of the 15 others
    slow = next(w for w in workers if w.address == CA.workers[0])
    await c.register_plugin(dc.stragglers.StragglerPlugin(dc.stragglers.SlowWorkers({str(slow.name): 60.0}),
                                               match=("coded-prod",), interruptible=True))
    close(await asyncio.wait_for(c.compute(CA @ x), 30), A @ x)
    used = await CA.last_used()
    assert len(used) >= 12 and not {j for j, w in enumerate(CA.workers)
                                    if w == slow.address} & set(used)
    # losing a worker loses its three blocks: 15 remain, still enough
    other = next(w for w in workers if w.address == CA.workers[1])
    await other.close()
    close(await asyncio.wait_for(c.compute(CA @ x), 30), A @ x)


def test_released_straggler_records_are_filtered_and_others_kept():
    import logging

    from dask_coded._logging import ReleasedStragglerFilter

    def record(msg):
        return logging.LogRecord("distributed.worker.state_machine", logging.WARNING, "", 0,
                                 msg, (), None)

    f = ReleasedStragglerFilter()
    assert not f.filter(record("Async instruction for <Task cancelled name=\"execute(("
                               "'coded-prod-t4-abc', 0, 1))\"> ended with CancelledError"))
    assert f.filter(record("Async instruction for <Task cancelled name=\"execute(("
                           "'sum-abc', 0))\"> ended with CancelledError"))
    assert any(isinstance(x, ReleasedStragglerFilter)
               for x in logging.getLogger("distributed.worker.state_machine").filters)


def test_workers_follow_a_block_re_pinned_after_a_loss():
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({"coded.first-k.repin-delay": "20ms"}), \
            LocalCluster(n_workers=4, threads_per_worker=1, processes=False,
                         dashboard_address=None) as cluster, Client(cluster) as client:
        A = np.random.default_rng(0).standard_normal((40, 3))
        CA = dc.encode(A, 3, 2, client=client)
        first = CA.workers
        doomed = next(name for name, w in cluster.workers.items() if w.address == first[0])
        client.sync(cluster.workers[doomed].close)
        for _ in range(250):
            if CA.workers[0] != first[0]:
                break
            time.sleep(0.02)
        now = CA.workers
        assert now[0] != first[0] and now[0] in client.scheduler_info()["workers"]
        assert now[1:] == first[1:]
        np.testing.assert_allclose((CA @ np.ones(3)).compute(), A @ np.ones(3))


def test_a_numpy_A_is_encoded_on_the_client_or_on_the_workers_alike():
    """``coded.encode.where``: the coded blocks and row scales computed in this process
    (and sent to their workers) equal those the workers combine from A's row blocks (a
    client-made block lost with its worker is made again from the graph:
    test_losing_n_minus_k_workers_mid_compute, on the default client path)."""
    import dask
    from distributed import Client, LocalCluster

    A, x = rand(90, 5, seed=3), rand(5, seed=4)
    with LocalCluster(n_workers=4, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        made = {}
        for where in ("client", "workers"):
            with dask.config.set({"coded.encode.where": where}):
                CA = dc.encode(A, 4, 3, client=client)
            made[where] = CA
            blocks = client.gather(CA.blocks)
            made[where + " blocks"] = blocks + [client.gather(CA.scales)]
            close((CA @ x).compute(), A @ x)
        for mine, theirs in zip(made["client blocks"], made["workers blocks"]):
            np.testing.assert_allclose(mine, theirs, rtol=1e-12)
        with dask.config.set({"coded.encode.where": "gpu"}), \
                pytest.raises(dc.errors.CodeParameterError, match="'client' or 'workers'"):
            dc.encode(A, 3, 2, client=client)


# ---- grouped codes --------------------------------------------------------------------------


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 8, config=VALIDATE)
async def test_a_grouped_code_waits_until_every_group_decodes(c, s, *workers):
    A, x = rand(640, 9), rand(9, seed=1)
    CA = await dc.encode(A, 8, 6, kind="grouped", client=c)  # 2 x (4, 3) rotation codes
    assert CA.code.kind == "grouped" and CA.scheme.tolerance == 1
    group = CA.code.members[0]
    # two workers of group 0 straggle: six products finish first (k = 6), but group 0
    # has only two of the three it needs, so the decode waits for a straggler
    slow = [w for w in workers if w.address in {CA.workers[j] for j in group[:2]}]
    await _slow(c, s, [w.name for w in slow], 1.0)
    close(await asyncio.wait_for(c.compute(CA @ x), 30), A @ x)
    used = set(await CA.last_used())
    assert len(used & set(group)) >= 3 and used & set(group[:2])
    # one straggler per group: the first six decode at once, without either straggler
    await c.unregister_worker_plugin(dc.stragglers.StragglerPlugin.name)
    other = CA.code.members[1][0]
    late = [w for w in workers if w.address in {CA.workers[group[0]], CA.workers[other]}]
    await _slow(c, s, [w.name for w in late], 3.0)
    close(await asyncio.wait_for(c.compute(CA @ (2 * x)), 2.5), A @ (2 * x))
    assert not set(await CA.last_used()) & {group[0], other}


def test_regroup_runs_the_same_blocks_in_fewer_tasks_and_refuses_a_non_divisor():
    A, x = np.random.default_rng(11).standard_normal((96, 4)), np.arange(4.0)
    with LocalCluster(n_workers=4, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        CA = dc.encode(A, 4, 3, blocks_per_worker=4, client=client)
        assert CA.tasks_per_worker == 4
        blocks, token = CA.blocks, CA.token
        CA.regroup(2)
        assert CA.tasks_per_worker == 2 and CA.blocks == blocks and CA.token == token
        assert "tasks_per_worker=2" in repr(CA)
        np.testing.assert_allclose((CA @ x).compute(), A @ x)
        assert len(CA._last_tasks) == 8 and all(len(t) == 2 for t in CA._last_tasks)
        for bad in (3, 0, 8, 1.5):
            with pytest.raises(dc.errors.CodeParameterError,
                               match="divisor of blocks_per_worker=4"):
                CA.regroup(bad)
        CA.release()
