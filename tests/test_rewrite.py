"""coded_matmul: plain dask products rewritten into coded tasks."""

import asyncio
import time
import warnings

import dask
import dask.array as da
import numpy as np
import pytest
from dask.array.optimization import optimize as default_optimize
from dask.blockwise import Blockwise
from dask.array.routines import _matmul, _tensordot
from distributed.diagnostics.plugin import SchedulerPlugin
from distributed.utils_test import async_poll_for, gen_cluster

import dask_coded as dc
from dask_coded.keys import is_block, key_name, threshold_of
from dask_coded._scheduler.observations import REWRITES
from dask_coded._scheduler.records import RewriteRecord
from dask_coded.rewrite import CodedOptimizer

VALIDATE = {"distributed.scheduler.validate": True, "distributed.worker.validate": True}
SIX = [("127.0.0.1", 1)] * 6


def operands(dtype=np.float64):
    rng = np.random.default_rng(0)
    An = rng.standard_normal((10, 6)).astype(dtype)
    xn = rng.standard_normal(6).astype(dtype)
    Bn = rng.standard_normal((6, 5)).astype(dtype)
    A = da.from_array(An, chunks=(4, 3))  # rows 4, 4, 2: uneven
    return An, xn, Bn, A, da.from_array(xn, chunks=3), da.from_array(Bn, chunks=(3, 5))


def cases(dtype=np.float64):
    An, xn, Bn, A, x, B = operands(dtype)
    rng = np.random.default_rng(1)
    yn, Yn = rng.standard_normal(10).astype(dtype), rng.standard_normal((2, 10)).astype(dtype)
    y, Y = da.from_array(yn, chunks=4), da.from_array(Yn, chunks=(2, 4))
    return [
        ("A @ x", A @ x, An @ xn),
        ("(A @ x).sum()", (A @ x).sum(), (An @ xn).sum()),
        ("matmul(A, B)", da.matmul(A, B), An @ Bn),
        ("dot(A, x)", da.dot(A, x), An.dot(xn)),
        ("tensordot(A, B, 1)", da.tensordot(A, B, 1), np.tensordot(An, Bn, 1)),
        ("A.T @ (A @ x)", A.T @ (A @ x), An.T @ (An @ xn)),
        # a vector, or a few rows, on the left: coded as (A.T @ y.T).T
        ("y @ A", y @ A, yn @ An),
        ("dot(y, A)", da.dot(y, A), yn @ An),
        ("Y @ A", Y @ A, Yn @ An),
        ("tensordot(Y, A, 1)", da.tensordot(Y, A, 1), np.tensordot(Yn, An, 1)),
    ]


def test_the_layers_we_rewrite_look_as_expected():
    """Guards the private dask structure the rewrite reads (pinned dask range)."""
    _, _, _, A, x, _ = operands()
    layers = (A @ x).__dask_graph__().layers
    (layer,) = [l for l in layers.values()
                if isinstance(l, Blockwise) and getattr(l.task, "func", None) is _matmul]
    (a, a_ind), (b, b_ind) = layer.indices
    assert a == A.name and a_ind == (".0", ".1") and b_ind == (".1", ".2")
    assert layer.output_indices == (".0", ".1", ".2")
    assert layers[a].collection_annotations["chunks"] == ((4, 4, 2), (3, 3))
    dot_layers = da.dot(A, x).__dask_graph__().layers.values()
    assert any(getattr(getattr(l, "task", None), "func", None) is _tensordot for l in dot_layers)


@pytest.mark.parametrize("scheduler", ["threads", "sync"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_local_results_equal_numpy(scheduler, dtype):
    tol = 1e-4 if dtype == np.float32 else 1e-10
    with dc.coded_matmul(n=5, k=3) as opt:
        for label, expr, want in cases(dtype):
            got = expr.compute(scheduler=scheduler)
            np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=label)
    assert {(n, k) for _, n, k, *_ in opt.rewrites} == {(5, 3)}
    assert len(opt.rewrites) >= len(cases())


def test_local_rewrite_encodes_once_and_releases():
    """On the local scheduler too, a loop of plain ``A @ x`` encodes A in its first call
    only: later graphs carry the kept coded blocks and no longer compute A."""
    from dask_coded.resident import LOCAL

    An, _, _, _, _, _ = operands()
    computed = []

    def chunk(block):
        if block.size:  # not dask's meta probe
            computed.append(1)
        return block

    A = da.from_array(An, chunks=(4, 3)).map_blocks(chunk, dtype=An.dtype)
    rng = np.random.default_rng(3)
    with dc.coded_matmul(n=5, k=3, keep=True) as opt:
        for i in range(3):
            xn = rng.standard_normal(6)
            np.testing.assert_allclose((A @ xn).compute(scheduler="threads"), An @ xn,
                                       rtol=1e-10)
            if i == 0:
                assert len(computed) == 6  # 3 row chunks x 2 column chunks, once
    assert len(computed) == 6
    assert [r[3] for r in opt.rewrites] == [False, True, True]
    assert len(LOCAL) == 2  # one encoding per column block of A
    assert dc.release(A) == 1 and len(LOCAL) == 0
    with dc.coded_matmul(n=5, k=3, keep=False):
        (A @ xn).compute(scheduler="sync")
    assert len(LOCAL) == 0 and len(computed) == 12


def test_local_rewrite_races_past_a_straggler():
    _, _, _, A, x, _ = operands()
    with dc.coded_matmul(n=5, k=3), dc.stragglers.local_stragglers(dc.stragglers.SlowWorkers({"1": 3.0})):
        t = time.perf_counter()
        (A @ x).compute(scheduler="threads")
        assert time.perf_counter() - t < 0.8 * 3.0  # well below the straggler's 3 s


def test_graphs_without_codable_products_are_untouched():
    An, xn, _, A, x, _ = operands()
    objects = da.from_array(An.astype(object), chunks=(4, 3))
    short = da.from_array(An[:2], chunks=(1, 3))
    exprs = [(A + 1).sum(), short @ x, objects @ x.astype(object), da.outer(x, x)]
    opt = CodedOptimizer(5, 3)
    for expr in exprs:
        hlg = expr.__dask_graph__()
        with warnings.catch_warnings(record=True):
            assert opt.rewrite(hlg) is hlg
        keys = expr.__dask_keys__()
        coded = opt(hlg, keys)
        plain = default_optimize(hlg, keys)
        assert dask.base.tokenize(dict(coded)) == dask.base.tokenize(dict(plain))
    # what stayed plain says why, in typed records
    assert all(r.scheme is None and r.n is None for r in opt.rewrites)
    reasons = " | ".join(r.reason for r in opt.rewrites)
    assert "its left operand has 2 rows, fewer than the 3 row blocks" in reasons
    assert "only real products are coded" in reasons
    plain = (objects @ x.astype(object)).compute()
    with dc.coded_matmul(5, 3):
        np.testing.assert_array_equal((objects @ x.astype(object)).compute(), plain)


@pytest.mark.parametrize("budget, embedded", [(None, True), (0, False)])
def test_a_numpy_operand_is_embedded_in_the_products(budget, embedded):
    """On distributed, ``A @ x`` with a numpy x runs its products at once: x (sliced and
    reshaped by dask) is nested in each product task, not a task the products wait for;
    beyond ``inline-bytes`` it stays a task. The coded blocks are never fused into the
    products, so they keep the keys the next graph finds resident."""
    An, xn, _, A, _, _ = operands()
    expr = A @ xn
    opt = CodedOptimizer(5, 3, local=False, resident={}, inline_bytes=budget)
    graph = opt(expr.__dask_graph__(), expr.__dask_keys__())
    products = [t for k, t in graph.items() if threshold_of(k) is not None]
    blocks = [k for k in graph if is_block(k)]
    columns = A.numblocks[1]  # one code for all of A's column blocks: 5 products in all
    assert columns == 2 and len(products) == len(blocks) == 5
    for task in products:
        assert all(is_block(d) for d in task.dependencies) is embedded
    x_tasks = set().union(*(t.dependencies for t in products)) - set(blocks)
    # a computed x: its chunks joined once, so each product fetches one array
    assert len(x_tasks) == (0 if embedded else 1)
    got = dask.get(graph, expr.__dask_keys__())
    np.testing.assert_allclose(np.concatenate(got), An @ xn, rtol=1e-10)


def test_bad_parameters_fail_at_the_with():
    with pytest.raises(dc.errors.CodeParameterError, match="k must be at most n"):
        with dc.coded_matmul(n=3, k=5):
            pass
    with pytest.raises(dc.errors.CodeParameterError,
                       match="first_call .* must be 'plain' or 'coded', got 'lazy'"):
        with dc.coded_matmul(n=6, k=4, first_call="lazy"):
            pass


@gen_cluster(client=True, nthreads=SIX, config=VALIDATE)
async def test_distributed_rewrite_is_correct_and_first_k(c, s, *workers):
    await c.register_plugin(dc.FirstKPlugin())
    with dc.coded_matmul(n=6, k=4):
        for label, expr, want in cases():
            np.testing.assert_allclose(await c.compute(expr), want, rtol=1e-10, atol=1e-10,
                                       err_msg=label)
    slow = workers[1]
    await c.register_plugin(dc.stragglers.StragglerPlugin(dc.stragglers.SlowWorkers({str(slow.name): 3.0}),
                                               match=("coded-prod",)))
    An, xn, _, A, x, _ = operands()
    stats = s.plugins[dc.FirstKPlugin.name].stats
    pruned = stats["pruned"]
    with dc.coded_matmul(n=6, k=4):
        np.testing.assert_allclose(await c.compute((A @ x).sum()), (An @ xn).sum())
    # decoded early, without the straggler's product (3 s): one code for all of A's
    # column blocks, so one pruned decode
    assert stats["pruned"] - pruned == 1


@gen_cluster(client=True, nthreads=SIX, config=VALIDATE)
async def test_the_decode_goes_straight_to_the_result(c, s, *workers):
    """The decoded product is not cut into A's row chunks in tasks of their own (nor
    squeezed and aliased by dask after that): the compute's result takes the decode and
    cuts it itself, one scheduler round trip after the decode, as ``CA @ x``."""
    await c.register_plugin(dc.FirstKPlugin())
    sent = []

    class Watch(SchedulerPlugin):
        def update_graph(self, scheduler, *, tasks=(), **kwargs):
            sent.append({key_name(k) for k in tasks})

    s.add_plugin(Watch(), name="watch")
    An, xn, Bn, _, _, _ = operands()
    A = da.from_array(An, chunks=(4, -1))  # one column block: no sum over the contraction
    with dc.coded_matmul(n=6, k=4):
        np.testing.assert_allclose(await c.compute(A @ xn), An @ xn, rtol=1e-10)
    with dc.coded_matmul(n=6, scheme="polynomial", splits=(2, 2)):
        got = await c.compute(A @ da.from_array(Bn, chunks=(-1, 5)))
        np.testing.assert_allclose(got, An @ Bn, rtol=1e-10, atol=1e-12)
    for names in sent:
        decodes = [n for n in names if n.startswith("coded-dec-")]
        finals = [n for n in names if n.startswith("finalize-")]
        assert len(decodes) == 1 and len(finals) == 1, names
        # what is left: A's chunks, B's, the encodings, products, decode and result
        assert all(n.startswith(("coded-", "finalize-", "array-", A.name)) for n in names), names


@gen_cluster(client=True, nthreads=SIX, config=VALIDATE)
async def test_distributed_rewrite_reuses_resident_blocks(c, s, *workers):
    An, xn, Bn, A, x, B = operands()
    CA = await dc.encode(A, 6, 4, client=c)
    CT = await dc.encode(A, 6, 4, client=c, transpose=True)
    plugin = s.plugins[dc.FirstKPlugin.name]

    class Watch(dc.FirstKPlugin):  # records the names of the tasks each graph had
        name = "watch"

        def update_graph(self, scheduler, *, tasks=(), **kw):
            self.blocks.update((str(k[0] if isinstance(k, tuple) else k), 1) for k in tasks)

    await c.register_plugin(Watch())
    seen = s.plugins["watch"].blocks
    pinned = plugin.stats["pinned"]
    with dc.coded_matmul(n=5, k=3):  # the resident code (6, 4) wins for A
        np.testing.assert_allclose(await c.compute(A @ x), An @ xn)
        np.testing.assert_allclose(await c.compute(A @ B), An @ Bn)
        np.testing.assert_allclose(await c.compute(A.T @ (A @ x)), An.T @ (An @ xn))
    assert plugin.stats["resident-encoded"] == 0  # nothing encoded in the graphs
    assert any(name.startswith("coded-prod-t4-") for name in seen)
    assert plugin.stats["pinned"] - pinned >= 6 * 4  # products ran where blocks live
    del CA, CT


@gen_cluster(client=True, nthreads=SIX, config=VALIDATE)
async def test_the_rewrite_runs_a_resident_matrix_in_its_product_tasks(c, s, *workers):
    """A resident matrix whose 4 blocks per worker run as one product task per worker (as
    ``blocks_per_worker="auto"`` starts) is multiplied the same way under the rewrite:
    6 product tasks per output block, each 1 / 4 of the work, not 24."""
    An, xn, Bn, A, x, B = operands()
    CA = await dc.encode(A, 6, 4, blocks_per_worker=4, client=c)
    CA.regroup(1)

    class Watch(SchedulerPlugin):
        name = "watch-keys"

        def __init__(self):
            self.keys = set()

        def transition(self, key, start, finish, *args, **kwargs):
            if isinstance(key, tuple) and str(key[0]).startswith("coded-prod-"):
                self.keys.add(key)

    await c.register_plugin(Watch())
    with dc.coded_matmul(n=6, k=4):
        np.testing.assert_allclose(await c.compute(A @ x), An @ xn)
        np.testing.assert_allclose(await c.compute(A @ B), An @ Bn)
    keys = s.plugins["watch-keys"].keys
    assert keys and all(str(k[0]).startswith("coded-prod-t4-") for k in keys)
    assert {k[-1] for k in keys} == set(range(6))
    assert s.plugins[dc.FirstKPlugin.name].stats["resident-encoded"] == 0
    del CA


# ---- what the code cannot handle falls back to plain dask, never changes the answer -------


def tricky_operands():
    rng = np.random.default_rng(5)
    An = rng.standard_normal((24, 6))
    An[5, 2], An[17, 0] = np.nan, np.inf
    Ai = rng.integers(-(2**40), 2**40, size=(24, 6))
    xi = rng.integers(-1000, 1000, size=6)
    return An, Ai, xi


def plain_and_coded(make, scheduler=None):
    """``make()`` computed plainly and under coded_matmul(6, 4)."""
    kw = {} if scheduler is None else {"scheduler": scheduler}
    plain = make().compute(**kw)
    with dc.coded_matmul(6, 4) as opt:
        coded = make().compute(**kw)
    return plain, coded, opt


@pytest.mark.parametrize("scheduler", ["threads", "sync"])
def test_nan_rows_integers_and_complex_match_plain_dask(scheduler):
    An, Ai, xi = tricky_operands()
    x = np.random.default_rng(6).standard_normal(6)
    A = da.from_array(An, chunks=(6, 6))
    plain, coded, opt = plain_and_coded(lambda: A @ x, scheduler)
    np.testing.assert_allclose(coded, plain, rtol=1e-10, atol=1e-10)  # NaN where plain has
    assert np.isnan(coded[5]) and np.isinf(coded[17]) and len(opt.rewrites) == 1
    # integer products stay exact and integer: left to plain dask
    Aid, xid = da.from_array(Ai, chunks=(6, 6)), da.from_array(xi, chunks=3)
    plain, coded, opt = plain_and_coded(lambda: Aid @ xid, scheduler)
    assert coded.dtype == plain.dtype == np.int64 and np.array_equal(coded, plain)
    assert [r.reason[:21] for r in opt.rewrites] == ["an integer product (i"]
    # complex x: not coded, same answer
    xc = da.from_array(x + 1j * x, chunks=3)
    plain, coded, opt = plain_and_coded(lambda: da.from_array(An[:4], chunks=(2, 6)) @ xc,
                                        scheduler)
    np.testing.assert_allclose(coded, plain)
    assert [r.reason[-28:] for r in opt.rewrites] == ["only real products are coded"]


@gen_cluster(client=True, nthreads=SIX, config=VALIDATE)
async def test_nan_rows_on_a_cluster_match_plain_dask(c, s, *workers):
    await c.register_plugin(dc.FirstKPlugin())
    An, _, _ = tricky_operands()
    x = np.random.default_rng(6).standard_normal(6)
    A = da.from_array(An, chunks=(6, 6))
    plain = await c.compute(A @ x)
    with dc.coded_matmul(6, 4):
        coded = await c.compute(A @ x)
    np.testing.assert_allclose(coded, plain, rtol=1e-10, atol=1e-10)


# ---- encoded once: the rewrite keeps the coded blocks of a plain dask array resident -------


@gen_cluster(client=True, nthreads=SIX, config=VALIDATE)
async def test_plain_dask_code_is_encoded_once(c, s, *workers):
    """An iterative loop of plain A @ x (and A.T @ r, the gradient pattern) encodes each
    array in its first call only; later calls move only x."""
    await c.register_plugin(dc.FirstKPlugin())
    plugin = s.plugins[dc.FirstKPlugin.name]
    rng = np.random.default_rng(1)
    An = rng.standard_normal((60, 8))
    A = da.from_array(An, chunks=(15, 8))
    B = da.from_array(An, chunks=(15, 4))  # B.T: its columns in four chunks
    encoded, reused, carried = [], [], []

    class Watch(SchedulerPlugin):
        def update_graph(self, scheduler, *, tasks=(), **kwargs):
            carried.append(any(key_name(k) in (A.name, B.name) for k in tasks))

    s.add_plugin(Watch(), name="watch")
    for i in range(4):
        xn = rng.standard_normal(8)
        with dc.coded_matmul(6, 4) as opt:
            got = await c.compute(A @ xn)
            grad = await c.compute(B.T @ (B @ xn))
        np.testing.assert_allclose(got, An @ xn, rtol=1e-9)
        np.testing.assert_allclose(grad, An.T @ (An @ xn), rtol=1e-9)
        encoded.append(plugin.stats["resident-encoded"])
        reused.append(sorted({r[3] for r in REWRITES.of(opt.uid)}))
        # the decodes need 4 products of 6: the other blocks may still be being encoded
        # (a graph sent now would name their encode tasks again, harmlessly)
        for _ in range(500):
            if all(k in s.tasks and s.tasks[k].state == "memory"
                   for m in plugin.resident.values() for k in m.keys):
                break
            await asyncio.sleep(0.01)
    # A, B and B.T: 6 blocks each, each code spanning all of its columns; all in call 1
    assert encoded == [6 + 6 + 6] * 4
    # and the rewrite says so: nothing was resident in call 1, everything after it
    assert reused == [[False], [True], [True], [True]]
    # later graphs carry no encode tasks (their blocks are read from memory), so A's and
    # B's chunks are not even in them
    assert carried[:2] == [True, True] and not any(carried[2:])
    resident = plugin.residency.report()
    assert sorted(m["source"] for m in resident.values()) == sorted([A.name, B.name, B.T.name])
    for key, block in plugin.blocks.items():  # each code's 6 blocks on 6 distinct workers
        (holder,) = s.tasks[key].who_has
        assert holder.address == block.worker
    per_code = {}
    for block in plugin.blocks.values():
        per_code.setdefault(block.matrix, set()).add(block.worker)
    assert all(len(workers) == 6 for workers in per_code.values())
    assert await c.scheduler.coded_release(client=c.id, source=A.name) == 1
    await until_forgotten(s, plugin, 6 + 6)


async def until_forgotten(s, plugin, blocks):
    import asyncio

    for _ in range(200):
        if len(plugin.blocks) == blocks:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{len(plugin.blocks)} blocks tracked, {blocks} expected")


@gen_cluster(client=True, nthreads=SIX,
             config={**VALIDATE, "coded.rewrite.max-resident": "1 B"})
async def test_resident_blocks_are_bounded_least_recently_used_first(c, s, *workers):
    await c.register_plugin(dc.FirstKPlugin())
    plugin = s.plugins[dc.FirstKPlugin.name]
    rng = np.random.default_rng(2)
    values = [rng.standard_normal((40, 5)) for _ in range(3)]
    arrays = [da.from_array(v, chunks=(10, 5)) for v in values]
    x = np.ones(5)
    for A, An in zip(arrays, values):
        with dc.coded_matmul(6, 4):
            np.testing.assert_allclose(await c.compute(A @ x), An @ x)
    # each new array pushed the least recently used one out (the bound is 1 byte)
    assert [m["source"] for m in plugin.residency.report().values()] == [arrays[-1].name]
    assert plugin.stats["resident-released"] == 2


def test_rewrites_are_reported_from_the_scheduler_and_released_on_exit():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=6, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        An, xn, _, A, x, _ = operands()
        with dc.coded_matmul(6, 4, keep=False) as opt:
            np.testing.assert_allclose((A @ x).compute(), An @ xn)
            np.testing.assert_allclose((A @ x).compute(), An @ xn)
        assert len(opt.rewrites) == 2 and all(r[4] for r in opt.rewrites)
        assert client.run_on_scheduler(_resident_count) == 0  # released at the exit
        with dc.coded_matmul(6, 4):
            (A @ x).compute()
        assert client.run_on_scheduler(_resident_count) == 1
        assert dc.release(A) == 1 and client.run_on_scheduler(_resident_count) == 0


def _resident_count(dask_scheduler=None):
    return len(dask_scheduler.plugins[dc.FirstKPlugin.name].resident)


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 4)
async def test_rewrite_with_several_blocks_per_worker(c, s, *workers):
    X = np.random.default_rng(4).standard_normal((400, 6))
    A = da.from_array(X, chunks=(100, 6))
    x = np.arange(6.0)
    await c.register_plugin(dc.FirstKPlugin())
    with dc.coded_matmul(n=4, k=2, blocks_per_worker=3) as opt:
        got = await c.compute(A @ x)
    np.testing.assert_allclose(got, X @ x, atol=1e-10)
    (name, n, k, reused, token, *_), = opt.rewrites
    assert (n, k, reused) == (12, 6, False)
    blocks = [ts for key, ts in s.tasks.items()
              if isinstance(key, tuple) and str(key[0]).startswith("coded-block-")]
    assert len(blocks) == 12
    held = [ws.address for ts in blocks for ws in ts.who_has]
    assert sorted(held.count(w.address) for w in workers) == [3, 3, 3, 3]


@gen_cluster(client=False, nthreads=SIX, config=VALIDATE)
async def test_resident_blocks_go_with_the_last_client(s, *workers):
    from distributed import Client

    An, xn, _, A, x, _ = operands()
    async with Client(s.address, asynchronous=True) as c:
        await c.register_plugin(dc.FirstKPlugin())
        with dc.coded_matmul(n=6, k=4):
            await c.compute(A @ x)
        plugin = s.plugins[dc.FirstKPlugin.name]
        assert plugin.resident  # kept for the next graph while a client is connected
        async with Client(s.address, asynchronous=True):
            pass  # another client leaving does not release them
        assert plugin.resident
    while any(str(k[0]).startswith("coded-block-") for k in s.tasks if isinstance(k, tuple)):
        await asyncio.sleep(0.01)  # released and forgotten once the last client left
    assert not plugin.resident


# ---- A @ B with both operands encoded ---------------------------------------------------


@pytest.mark.parametrize("scheme, splits", [("polynomial", (2, 2)), ("matdot", 2)])
def test_local_two_sided_rewrite_matches_numpy(scheme, splits):
    An, xn, Bn, A, x, B = operands()
    with dc.coded_matmul(n=6, scheme=scheme, splits=splits) as opt:
        for label, expr, want in cases():
            got = expr.compute(scheduler="threads")
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, err_msg=label)
    threshold = 4 if scheme == "polynomial" else 3
    # matrix-matrix layers coded by the 2-D scheme; matrix-vector ones left plain (no k)
    coded = [r for r in opt.rewrites if r.reason is None]
    assert coded and {r[1:3] for r in coded} == {(6, threshold)}
    assert all(r.operation in ("A @ B", "B @ A") and r.scheme == scheme for r in coded)
    assert all("no k given" in r.reason for r in opt.rewrites if r.reason is not None)


def test_two_sided_rewrite_takes_the_blocks_of_C_instead_of_dask_sum_tree():
    """dask sums ``A @ B`` over the contracted blocks (a tree of partial sums when there
    are many); the decoded C already holds the whole contraction, so the sum's output
    blocks are cut from C directly and the tree is gone, with the same values wherever
    the product is used."""
    rng = np.random.default_rng(9)
    An, Bn = rng.standard_normal((60, 200)), rng.standard_normal((200, 50))
    A, B = da.from_array(An, chunks=(20, 5)), da.from_array(Bn, chunks=(5, 25))
    plain = dict(default_optimize((A @ B).__dask_graph__(), (A @ B).__dask_keys__()))
    assert any("_chunk_sum-partial" in str(k) for k in plain)  # 40 blocks: a deep tree
    with dc.coded_matmul(n=6, scheme="polynomial", splits=(2, 2)) as opt:
        C = A @ B
        coded = opt(C.__dask_graph__(), C.__dask_keys__())
        assert not any("chunk_sum-" in str(k) and "aggregate" not in str(k) for k in coded)
        assert len(coded) < len(plain) / 2
        for label, expr, want in [("A @ B", C, An @ Bn), ("sum", C.sum(axis=0), (An @ Bn).sum(0)),
                                  ("A @ B + 1", C + 1, An @ Bn + 1)]:
            got = expr.compute(scheduler="threads")
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, err_msg=label)
    assert {r[1:3] for r in opt.rewrites if r.reason is None} == {(6, 4)}
    # in the dtype dask declares for the sum
    A32, B32 = A.astype(np.float32), B.astype(np.float32)
    with dc.coded_matmul(n=6, scheme="polynomial", splits=(2, 2)):
        C32 = A32 @ B32
        got = C32.compute(scheduler="threads")
    assert C32.dtype == got.dtype == np.float32
    np.testing.assert_allclose(got, An.astype(np.float32) @ Bn.astype(np.float32), rtol=1e-4,
                               atol=1e-3)


def test_two_sided_parameters_fail_at_the_with():
    with pytest.raises(dc.errors.CodeParameterError, match="more than n=4"):
        with dc.coded_matmul(n=4, scheme="polynomial", splits=(3, 2)):
            pass
    with pytest.raises(dc.errors.CodeParameterError, match="unknown scheme 'entangled'; the sch"):
        with dc.coded_matmul(n=4, k=2, scheme="entangled"):
            pass
    with pytest.raises(dc.errors.CodeParameterError, match="codes products: scheme must be"):
        with dc.coded_matmul(n=4, k=2, scheme="gradient"):
            pass


@gen_cluster(client=True, nthreads=SIX, config=VALIDATE)
async def test_distributed_two_sided_rewrite_encodes_A_once_and_leaves_the_slow_worker_out(
        c, s, *workers):
    """Plain ``A @ B`` of two dask arrays under ``scheme="polynomial"``: A's encoded
    operands are made in the first call on 6 distinct workers and kept resident; each
    call encodes only B (inside the products) and decodes from the first 4 of 6;
    ``release`` drops A's operands."""
    await c.register_plugin(dc.FirstKPlugin())
    await c.register_plugin(dc.stragglers.StragglerPlugin(dc.stragglers.SlowWorkers({str(workers[2].name): 30.0}),
                                               match=("coded-prod",), interruptible=True))
    plugin = s.plugins[dc.FirstKPlugin.name]
    rng = np.random.default_rng(6)
    An = rng.standard_normal((90, 40))
    A = da.from_array(An, chunks=(30, 20))
    reused = []
    for _ in range(3):  # a new B each call (the same graph could reuse the last result)
        Bn = rng.standard_normal((40, 70))
        with dc.coded_matmul(6, scheme="polynomial", splits=(2, 2)) as opt:
            got = await c.compute(A @ da.from_array(Bn, chunks=(20, 35)))
        np.testing.assert_allclose(got, An @ Bn, atol=1e-9)
        reused.append([r[3] for r in REWRITES.of(opt.uid)])
        for _ in range(500):  # the slow worker's operand may still be being encoded
            if all(s.tasks[k].state == "memory" for m in plugin.resident.values()
                   for k in m.keys if k in s.tasks):
                break
            await asyncio.sleep(0.01)
    assert reused == [[False], [True], [True]]
    assert plugin.stats["released"] >= 3, plugin.stats  # the slow worker's, each call
    assert plugin.stats["resident-encoded"] == 6  # A's operands, in the first call only
    (token, report), = plugin.residency.report().items()
    # the six encoded operands and A's row scales
    assert report["source"] == A.name and report["keys"] == 7
    holders = {next(iter(s.tasks[k].who_has)).address for k in plugin.resident[token].keys}
    assert len(holders) == 6
    assert await c.scheduler.coded_release(client=c.id, source=A.name) == 1
    assert plugin.resident == {}


def test_auto_keeps_the_resident_code_of_an_encoded_A():
    """``scheme="auto"`` multiplies an A encoded with dc.encode on its resident blocks;
    a named 2-D scheme is obeyed even then."""
    rng = np.random.default_rng(8)
    An, Bn = rng.standard_normal((60, 30)), rng.standard_normal((30, 60))
    A, B = da.from_array(An, chunks=(20, 30)), da.from_array(Bn, chunks=(30, 20))
    assert dc.plan_matmul(An.shape, Bn.shape, 6).scheme == "polynomial"
    CA = dc.encode(A, 6, 4, client=None)  # kept alive: its blocks are offered to the rewrite
    with dc.coded_matmul(6, 4, scheme="auto") as auto:
        np.testing.assert_allclose((A @ B).compute(scheduler="sync"), An @ Bn, atol=1e-9)
    with dc.coded_matmul(6, scheme="polynomial", splits=(2, 2)) as named:
        np.testing.assert_allclose((A @ B).compute(scheduler="sync"), An @ Bn, atol=1e-9)
    assert [r[2:4] for r in auto.rewrites] == [(CA.k, True)]
    assert [r[2:4] for r in named.rewrites] == [(4, False)]


def test_local_arrays_given_the_same_name_are_not_confused():
    """Two arrays with the same explicit ``name=`` and other data: the second product is
    its own, as plain dask's (the local encodings are told apart by their data)."""
    rng = np.random.default_rng(3)
    first, second = rng.standard_normal((60, 4)), rng.standard_normal((60, 4))
    x = np.ones(4)
    with dc.coded_matmul(n=6, k=4):
        a = (da.from_array(first, chunks=(15, 4), name="same") @ x).compute(scheduler="sync")
        b = (da.from_array(second, chunks=(15, 4), name="same") @ x).compute(scheduler="sync")
        again = (da.from_array(first, chunks=(15, 4), name="same") @ x).compute(
            scheduler="sync")
    np.testing.assert_allclose(a, first @ x, rtol=1e-10)
    np.testing.assert_allclose(b, second @ x, rtol=1e-10)
    np.testing.assert_allclose(again, first @ x, rtol=1e-10)


def test_too_few_workers_are_refused_at_the_with_as_encode_refuses_them():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=4, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster):
        with pytest.raises(dc.errors.TooFewWorkersError,
                           match=r"coded_matmul\(n=8\) .* cluster has 4: .*allow_shared_workers"):
            with dc.coded_matmul(n=8, k=6):
                pass
        A = da.from_array(np.arange(240.0).reshape(80, 3), chunks=(10, 3))
        with dc.coded_matmul(n=8, k=6, allow_shared_workers=True) as opt:
            got = (A @ np.ones(3)).compute()
        np.testing.assert_allclose(got, A.compute() @ np.ones(3))
        assert len(opt.rewrites) == 1


def gradient_steps(A, b, steps=3, lr=1e-4):
    """Least-squares gradient descent as a dask user writes it."""
    w = np.zeros(A.shape[1])
    for _ in range(steps):
        r = A @ w - b
        g = A.T @ r
        w = w - lr * (g.compute() if hasattr(g, "compute") else g)
    return w


def test_a_transpose_with_one_row_chunk_is_coded_on_the_local_scheduler():
    rng = np.random.default_rng(4)
    An, bn = rng.standard_normal((600, 8)), rng.standard_normal(600)
    A, b = da.from_array(An, chunks=(100, 8)), da.from_array(bn, chunks=100)
    want = gradient_steps(An, bn)
    with dc.coded_matmul(n=5, k=4) as opt:
        got = gradient_steps(A, b)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    records = opt.rewrites
    assert {r.operation for r in records} == {"A @ x", "A.T @ x"}
    assert all(r.scheme == "mds" and r.threshold == 4 and r.reason is None for r in records)
    # each product's encoding is made once and reused by the later iterations
    assert [r.reused for r in records[2:]] == [True] * (len(records) - 2)
    assert "A.T @ x" in repr(records[0]) or "A.T @ x" in repr(records[1])


@gen_cluster(client=True, nthreads=[("127.0.0.1", 1)] * 5, config=VALIDATE)
async def test_a_transpose_with_one_row_chunk_is_coded_on_distributed(c, s, *workers):
    rng = np.random.default_rng(5)
    An, bn = rng.standard_normal((600, 8)), rng.standard_normal(600)
    A, b = da.from_array(An, chunks=(100, 8)), da.from_array(bn, chunks=100)
    await c.register_plugin(dc.FirstKPlugin())
    w, want = np.zeros(8), gradient_steps(An, bn)
    with dc.coded_matmul(n=5, k=4) as opt:
        for _ in range(3):
            r = A @ w - b
            w = w - 1e-4 * await c.compute(A.T @ r)
    np.testing.assert_allclose(w, want, rtol=1e-10, atol=1e-12)
    records = [RewriteRecord(*r) for r in await c.scheduler.coded_rewrites(optimizer=opt.uid)]
    assert {r.operation for r in records} == {"A @ x", "A.T @ x"}
    assert all(r.reason is None for r in records) and len(records) == 6
    assert all(r.reused for r in records[2:])


def test_a_product_left_plain_warns_once_naming_the_layer_and_why():
    rng = np.random.default_rng(6)
    Ai = da.from_array(rng.integers(0, 9, (40, 4)), chunks=(10, 4))
    xi = np.arange(4)
    with dc.coded_matmul(n=5, k=3) as opt:
        with pytest.warns(dc.errors.PlainProductWarning,
                          match=r"left matmul-\w+ as plain dask: an integer product"):
            first = (Ai @ xi).compute()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the same reason again: no second warning
            (Ai @ xi).compute()
    np.testing.assert_array_equal(first, Ai.compute() @ xi)
    assert opt.rewrites[0].reason.startswith("an integer product (int64 @ int64)")


@pytest.mark.parametrize("scheme", ["mds", "auto"])
def test_k_left_out_is_the_theorys_best_and_is_recorded(scheme):
    An, xn, _, A, _, _ = operands()
    with dc.coded_matmul(n=6, scheme=scheme) as opt:
        got = (A @ xn).compute(scheduler="sync")
    np.testing.assert_allclose(got, An @ xn, rtol=1e-10)
    best = dc.theory.optimal_k(6, 1.0)
    assert opt.k == best and [(r.n, r.threshold, r.scheme) for r in opt.rewrites] == [
        (6, best, "mds")]


def test_a_gram_matrix_stays_plain_and_says_why():
    """X.T @ X: every coded product would need all of X; plain dask multiplies chunk by
    chunk where X lives. Small operands (a vector, a thin matrix) are still coded."""
    rng = np.random.default_rng(7)
    Xn = rng.standard_normal((400, 6))
    X = da.from_array(Xn, chunks=(100, 6))
    opt = CodedOptimizer(5, 3, inline_bytes=0)
    with pytest.warns(dc.errors.PlainProductWarning, match="would travel whole"):
        gram = opt(( X.T @ X).__dask_graph__(), (X.T @ X).__dask_keys__())
    np.testing.assert_allclose(dask.get(gram, (X.T @ X).__dask_keys__())[0][0], Xn.T @ Xn,
                               rtol=1e-12)
    (record,) = opt.rewrites
    assert record.scheme is None and record.operation == "A.T @ B"
    thin = X.T @ da.from_array(Xn[:, :1], chunks=(100, 1))  # one column: a coded block's worth
    opt(thin.__dask_graph__(), thin.__dask_keys__())
    assert opt.rewrites[-1].scheme == "mds"


@gen_cluster(client=True, nthreads=SIX, config=VALIDATE)
async def test_the_first_call_encodes_each_block_from_its_own_rows_where_they_are(c, s,
                                                                                 *workers):
    """An A encoded in the graph gets a systematic code: block j < k is A's row block j,
    made on the worker that holds those rows, from them alone; only the n - k parities
    need all of A, and the first call's decode does not wait for them. With
    ``first_call="coded"`` a persisted A is encoded in the first graph too."""
    from distributed import wait

    rng = np.random.default_rng(8)
    An, xn = rng.standard_normal((500, 4)), rng.standard_normal(4)
    A = c.persist(da.from_array(An, chunks=(100, 4)))  # k = 5 row blocks = its 5 chunks
    await wait(A)
    holder = {key: next(iter(s.tasks[key].who_has)).address
              for key in [(A.name, i, 0) for i in range(5)]}
    await c.register_plugin(dc.FirstKPlugin())
    with dc.coded_matmul(6, 5, first_call="coded") as opt:
        np.testing.assert_allclose(await c.compute(A @ xn), An @ xn, rtol=1e-10)
    assert [(r.beside, r.reused) for r in opt.rewrites] == [(False, False)]
    token = opt.rewrites[0].token
    blocks = {key[1]: b for key, b in s.plugins[dc.FirstKPlugin.name].blocks.items()
              if token in str(key[0])}
    assert sorted(blocks) == list(range(6))
    for j in range(5):
        deps = {d.key for d in s.tasks[blocks[j].key].dependencies}
        assert deps == {(A.name, j, 0)}  # its own rows only
        assert blocks[j].worker == holder[(A.name, j, 0)]  # encoded where they are
    assert {d.key for d in s.tasks[blocks[5].key].dependencies} == set(holder)  # the parity


def test_scheme_auto_without_k_codes_with_the_theorys_k_and_says_which_scheme():
    """``coded_matmul(n, scheme="auto")`` with ``k`` left out: a matrix-vector product is
    coded with 1-D MDS at ``optimal_k(n, coded.auto-k.initial-mu)``, and the record says
    which scheme auto chose."""
    from dask_coded import theory

    An = np.random.default_rng(11).standard_normal((60, 5))
    A = da.from_array(An, chunks=(20, 5))
    with dc.coded_matmul(n=6, scheme="auto") as opt:
        got = (A @ np.ones(5)).compute()
    np.testing.assert_allclose(got, An.sum(axis=1), rtol=1e-10)
    [record] = opt.rewrites
    assert record.scheme == "mds" and record.threshold == theory.optimal_k(6, 1.0) == 4


def test_a_nan_in_the_operand_is_refused_naming_it():
    """A NaN would spread through the decode to every entry: the rewrite refuses it,
    saying which operand holds it (the user's name for it is not known to the graph)."""
    A = da.from_array(np.ones((60, 4)), chunks=(10, 4))
    B = np.ones((4, 3))
    B[1, 2] = np.nan
    with dc.coded_matmul(6, 4):
        with pytest.raises(dc.errors.NonFiniteError,
                           match="the operand the coded matrix multiplies contains NaN"):
            (A @ da.from_array(B)).compute()


PLAIN_FIRST = {**VALIDATE, "coded.rewrite.first-call": "plain"}


async def persisted_operand(c, s, seed: int):
    """The plugin registered; a seeded generator, and a 60x8 matrix in numpy and persisted
    in four row chunks."""
    await c.register_plugin(dc.FirstKPlugin())
    rng = np.random.default_rng(seed)
    An = rng.standard_normal((60, 8))
    return s.plugins[dc.FirstKPlugin.name], rng, An, c.persist(da.from_array(An, chunks=(15, 8)))


@gen_cluster(client=True, nthreads=SIX, config=PLAIN_FIRST)
async def test_first_call_plain_runs_plain_dask_and_encodes_beside(c, s, *workers):
    """With ``first-call: plain`` and a persisted A the first graph's products are plain
    dask tasks (no product, no decode) while A's coded blocks are made beside them, only
    once the call's result is done; the first graph that finds them in memory runs
    coded, and they are made once; so are ``A.T``'s, from A's chunks. An array that is
    not persisted is encoded in its graph."""
    plugin, rng, An, A = await persisted_operand(c, s, seed=3)
    seen = []

    class Watch(SchedulerPlugin):
        def transition(self, key, start, finish, *args, **kwargs):
            if finish == "processing":
                seen.append(("product" if threshold_of(key) is not None else
                             "block" if is_block(key) else "plain", time.monotonic()))
            elif finish == "memory" and key_name(key).startswith("finalize"):
                seen.append(("result", time.monotonic()))

    s.add_plugin(Watch(), name="watch")
    records = []
    for call in range(3):
        w = rng.standard_normal(8)
        with dc.coded_matmul(6, 4) as opt:
            got = await c.compute(A @ w)
            records.append([(r.operation, r.beside, r.reused) for r in opt.rewrites])
        np.testing.assert_allclose(got, An @ w, rtol=1e-9)
        if call == 0:
            assert not any(kind == "product" for kind, _ in seen)  # plain dask ran
            (done,) = [t for kind, t in seen if kind == "result"]
            assert all(t >= done for kind, t in seen if kind == "block")
            await async_poll_for(lambda: plugin.resident and all(
                k in s.tasks and s.tasks[k].state == "memory"
                for m in plugin.resident.values() for k in m.keys), timeout=10)
    assert records == [[("A @ x", True, False)], [("A @ x", False, True)],
                       [("A @ x", False, True)]]
    assert any(kind == "product" for kind, _ in seen)  # later calls ran coded
    assert plugin.stats["resident-encoded"] == 6  # made once
    assert plugin.stats["encoded-beside"] == 7  # the 6 blocks and the row scales
    # A.T, the transpose of a persisted array: its blocks are made from A's chunks
    r = rng.standard_normal(60)
    with dc.coded_matmul(6, 4) as opt:
        np.testing.assert_allclose(await c.compute(A.T @ r), An.T @ r, rtol=1e-9)
        await async_poll_for(lambda: plugin.stats["resident-encoded"] == 12, timeout=10)
        await async_poll_for(lambda: all(
            k in s.tasks and s.tasks[k].state == "memory"
            for m in plugin.resident.values() for k in m.keys), timeout=10)
        np.testing.assert_allclose(await c.compute(A.T @ (2 * r)), An.T @ (2 * r), rtol=1e-9)
    assert [(r.beside, r.reused) for r in opt.rewrites] == [(True, False), (False, True)]
    with dc.coded_matmul(6, 4) as opt:  # not persisted: encoded in the graph, as "coded"
        B = da.from_array(An, chunks=(15, 8))
        np.testing.assert_allclose(await c.compute(B @ w), An @ w, rtol=1e-9)
    assert [r.beside for r in opt.rewrites] == [False]


@gen_cluster(client=True, nthreads=SIX, config=PLAIN_FIRST)
async def test_a_plain_first_call_of_a_transpose_reads_the_persisted_chunks(c, s, *workers):
    """``A.T @ r`` of a persisted A run plainly: dask optimizes and fuses its tasks as
    for plain dask, and the encodings beside them read A's chunks, transposed inside
    them; no separate transpose task reaches the scheduler (on a slow machine each would
    cost a task)."""
    plugin, rng, An, A = await persisted_operand(c, s, seed=7)
    names = []

    class Watch(SchedulerPlugin):
        def update_graph(self, scheduler, *, tasks=None, **kwargs):
            names.extend(key_name(k) for k in tasks or ())

    s.add_plugin(Watch(), name="watch")
    rn = rng.standard_normal(60)
    with dc.coded_matmul(6, 4) as opt:
        np.testing.assert_allclose(await c.compute(A.T @ rn), An.T @ rn, rtol=1e-10)
    assert [(r.operation, r.beside) for r in opt.rewrites] == [("A.T @ x", True)]
    assert any(n.startswith("coded-block") for n in names)
    assert not [n for n in names if n.startswith("transpose")]


# worker 0, the slow one, has a second thread: the row scales (not pinned) may be given
# to it, and must not wait behind its slow block
@gen_cluster(client=True, nthreads=[("127.0.0.1", 2)] + SIX[1:], config=PLAIN_FIRST,
             timeout=60)
async def test_first_call_plain_goes_coded_once_any_k_blocks_are_in_memory(c, s, *workers):
    """A block made slowly (its worker slow) does not keep the calls plain: the first
    graph that finds the row scales and any ``k`` blocks in memory runs coded, and its
    decode does not wait for the slow block, and each block is made once."""
    from dask_coded.stragglers import SlowWorkers, StragglerPlugin

    await c.register_plugin(StragglerPlugin(SlowWorkers(seconds={"0": 30.0}),
                                            match=["coded-block-"], interruptible=True))
    plugin, rng, An, A = await persisted_operand(c, s, seed=4)
    records = []

    async def call():
        w = rng.standard_normal(8)
        with dc.coded_matmul(6, 4) as opt:
            got = await c.compute(A @ w)
        np.testing.assert_allclose(got, An @ w, rtol=1e-9)
        records.append([(r.beside, r.reused) for r in opt.rewrites])

    def in_memory():
        return [k for m in plugin.resident.values() for k in m.keys
                if k in s.tasks and s.tasks[k].state == "memory"]

    def where():  # on failure: where each block and the scales are, and in what state
        print([(k, s.tasks[k].state, s.tasks[k].processing_on, s.tasks[k].who_has)
               for m in plugin.resident.values() for k in m.keys if k in s.tasks])

    await call()
    await async_poll_for(lambda: len(in_memory()) == 6, timeout=10,  # 5 blocks, scales
                         fail_func=where)
    slow = [k for m in plugin.resident.values() for k in m.keys if k not in in_memory()]
    assert len(slow) == 1 and s.tasks[slow[0]].processing_on.name == 0
    await call()
    await call()
    assert s.tasks[slow[0]].state == "processing"  # the calls did not wait for it
    assert records == [[(True, False)], [(False, False)], [(False, False)]]
    assert plugin.stats["resident-encoded"] == 6  # each block made once


@gen_cluster(client=True, nthreads=SIX, config=PLAIN_FIRST, timeout=60)
async def test_first_call_plain_goes_coded_once_its_encodings_are_under_way(c, s, *workers):
    """Once every block and the row scales are being made (the call that held them back
    is done), the next graph runs coded and waits for them as a coded first call would,
    rather than running plainly again beside them."""
    from dask_coded._scheduler.residency import resident_keys
    from dask_coded.stragglers import SlowWorkers, StragglerPlugin

    slow = {str(i): 2.0 for i in range(3)}  # three of six blocks: k = 4 wait for one
    await c.register_plugin(StragglerPlugin(SlowWorkers(seconds=slow),
                                            match=["coded-block-"], interruptible=True))
    plugin, rng, An, A = await persisted_operand(c, s, seed=5)
    records = []
    for call in range(2):
        w = rng.standard_normal(8)
        with dc.coded_matmul(6, 4) as opt:
            np.testing.assert_allclose(await c.compute(A @ w), An @ w, rtol=1e-9)
        records.append([(r.beside, r.reused) for r in opt.rewrites])
        token = opt.rewrites[0].token
        await async_poll_for(
            lambda: len(resident_keys(token, s.address, under_way=True)) == 7, timeout=10)
        in_memory = resident_keys(token, s.address)
        assert sum(map(is_block, in_memory)) < 4 or call == 1  # not decodable yet
    assert records == [[(True, False)], [(False, False)]]
    assert plugin.stats["resident-encoded"] == 6


@gen_cluster(client=True, nthreads=SIX, config=VALIDATE)
async def test_a_vector_times_a_persisted_matrix_is_coded_on_the_transposes_blocks(c, s,
                                                                                  *workers):
    """``r @ A`` in a loop, as a gradient is often written: the first call runs plain
    beside A.T's encoding, the next ones are coded on A.T's resident blocks, and
    ``A.T @ r`` multiplies the same blocks (nothing encoded again)."""
    plugin, rng, An, A = await persisted_operand(c, s, seed=6)
    records = []
    for call in range(3):
        rn = rng.standard_normal(60)
        r = da.from_array(rn, chunks=15)
        with dc.coded_matmul(6, 4) as opt:
            np.testing.assert_allclose(await c.compute(r @ A), rn @ An, rtol=1e-10)
        records += [(r.operation, r.beside, r.reason) for r in opt.rewrites]
        if call == 0:
            await async_poll_for(lambda: plugin.stats["resident-encoded"] == 6, timeout=10)
    assert records == [("x @ A", True, None), ("x @ A", False, None), ("x @ A", False, None)]
    rn = rng.standard_normal(60)
    with dc.coded_matmul(6, 4) as opt:
        np.testing.assert_allclose(await c.compute(A.T @ rn), An.T @ rn, rtol=1e-10)
    assert [(r.operation, r.reused) for r in opt.rewrites] == [("A.T @ x", True)]
    assert plugin.stats["resident-encoded"] == 6


@gen_cluster(client=True, nthreads=SIX, config=PLAIN_FIRST, timeout=120)
async def test_first_call_plain_keeps_resubmitted_layers_consistent(c, s, *workers):
    """A line search recomputes products of the first call while the coded blocks come
    into memory: a layer that ran plainly keeps its form, so distributed never sees a
    key with other dependencies (the conftest fixture fails the test if it does)."""
    from test_resubmitted import line_search

    await c.register_plugin(dc.FirstKPlugin())
    await line_search(c, 1, 3, persist=True)
    assert s.plugins[dc.FirstKPlugin.name].stats["encoded-beside"] > 0
