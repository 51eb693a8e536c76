"""The coded page of the scheduler's dashboard: listed in ``/individual-plots.json``
after ``import dask_coded``, served, and painting what the plugin saw."""

import asyncio
import json
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from distributed import Client
from distributed.utils_test import gen_cluster

import dask_coded as dc
from dask_coded.dashboard import PATH, _page, calls_data, encodings_data, suspects_data
from dask_coded.stragglers import CorruptProducts, SlowWorkers, StragglerPlugin

pytest.importorskip("bokeh")

SIX = [("127.0.0.1", 1)] * 6
DASHBOARD = {"dashboard": True, "dashboard_address": "127.0.0.1:0"}


def get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        assert r.status == 200
        return r.read()


@gen_cluster(client=True, nthreads=SIX, scheduler_kwargs=DASHBOARD, timeout=60)
async def test_the_page_is_listed_and_served(c, s, *workers):
    port = s.http_server.port  # (fetched in a thread: the server runs on this loop)
    plots = json.loads(await asyncio.to_thread(get, port, "/individual-plots.json"))
    assert PATH in plots.values()
    page = (await asyncio.to_thread(get, port, PATH)).decode()
    assert "bokeh" in page.lower() and "Dask: CodedPage" in page


@gen_cluster(client=True, nthreads=SIX, timeout=60)
async def test_released_products_that_never_started_are_told_apart(c, s, *workers):
    """4 blocks per worker, one worker slow by 2 s per product: its first product runs
    when the decode starts, the 3 behind it in its queue never start. The page marks
    the first "released" and the others "never started", and the fit of the straggling
    does not count those 3 as products that ran for the censor time."""
    A, x = np.random.default_rng(3).standard_normal((240, 8)), np.ones(8)
    CA = await dc.encode(A, 6, 4, blocks_per_worker=4, client=c)
    slow = str(next(w.name for w in workers if w.address == CA.workers[0]))
    await c.register_plugin(StragglerPlugin(SlowWorkers({slow: 2.0}), match=("coded-prod",),
                                            interruptible=True))
    np.testing.assert_allclose(await c.compute(CA @ x), A @ x)
    for _ in range(100):  # the worker plugin answers, or posts when each one leaves
        data = calls_data(s)
        on_slow = sorted(st for w, st in zip(data["worker"], data["status"]) if w == slow)
        if on_slow == ["never started"] * 3 + ["released"]:
            break
        await asyncio.sleep(0.05)
    assert on_slow == ["never started"] * 3 + ["released"]
    assert set(data["status"]) <= {"finished", "released", "never started"}
    # the fit of the straggling counts only the products that ran as censored
    seen = s.plugins[dc.FirstKPlugin.name].observations.report()
    assert len(seen["calls_censored"][-1]) == data["status"].count("released") >= 1
    assert len(seen["calls_released"][-1]) == len(data["status"]) - data["status"].count(
        "finished")


@gen_cluster(client=True, nthreads=SIX, timeout=60,
             config={"coded.verify.quarantine-after": None})
async def test_the_page_paints_stragglers_spans_encodings_and_suspects(c, s, *workers):
    A, x = np.random.default_rng(0).standard_normal((600, 20)), np.ones(20)
    CA = await dc.encode(A, 6, 4, client=c)
    CV = await dc.encode(A, 6, 4, verify="correct", client=c)
    slow = str(next(w.name for w in workers if w.address == CA.workers[5]))
    await c.register_plugin(StragglerPlugin(SlowWorkers({slow: 2.0}), match=("coded-prod",),
                                            interruptible=True))
    for _ in range(3):
        await c.compute(CA @ x)
    bad = str(next(w.name for w in workers if w.address == CV.workers[1]))
    await c.register_plugin(CorruptProducts([bad], how="sign"))
    await c.unregister_worker_plugin(StragglerPlugin.name)
    np.testing.assert_allclose(await c.compute(CV @ x), A @ x, atol=1e-8)

    page = _page()(s)
    page.update()
    calls = page.source.data
    slow_calls = {c for c, w, st in zip(calls["call"], calls["worker"], calls["status"])
                  if st == "released" and w == slow}
    assert slow_calls == {0, 1, 2}  # keyed by worker name, as SlowWorkers is
    assert len(page.spans.data["span"]) == 4 and min(page.spans.data["span"]) > 0
    assert page.encodings.data["blocks"] == [6, 6] and page.encodings.data["most"] == [1, 1]
    assert sorted(page.encodings.data["code"]) == sorted(
        [f"mds (6, 4) {CA.code.kind}", f"mds (6, 4) {CV.code.kind}, verify=correct"])
    assert min(page.encodings.data["bytes"]) > 600 * 20 * 8 / 4
    for _ in range(50):
        if suspects_data(s)["name"]:
            break
        await asyncio.sleep(0.05)
    page.update()
    assert page.suspects.data["name"] == [bad] and page.suspects.data["located"] == [1]
    assert calls_data(s, last=2)["span_call"] == [0, 1]
    assert encodings_data(s)["workers"] == [6, 6]


@pytest.mark.slow
def test_a_command_line_scheduler_serves_the_page_with_preload(tmp_path):
    sched = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--port", "0",
         "--dashboard-address", "127.0.0.1:0", "--preload", "dask_coded.dashboard",
         "--scheduler-file", str(tmp_path / "s.json")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        for _ in range(200):
            if (tmp_path / "s.json").exists():
                break
            time.sleep(0.1)
        with Client(scheduler_file=str(tmp_path / "s.json"), timeout=30) as client:
            port = client.scheduler_info()["services"]["dashboard"]
            assert PATH in json.loads(get(port, "/individual-plots.json")).values()
            assert "CodedPage" in get(port, PATH).decode()
            # the preload installed the plugin the page reads
            assert client.sync(client.scheduler.coded_first_k_tracked)["groups"] == 0
    finally:
        sched.terminate()
        sched.wait(30)


def test_autos_re_choices_reach_the_page():
    """k="auto" posts each re-choice to the scheduler; the page lists them."""
    import dask
    from distributed import LocalCluster

    from dask_coded.dashboard import choices_data

    settings = {"coded.auto-k.background": False, "coded.auto-k.min-calls": 2,
                "coded.auto-k.every": 2}
    with dask.config.set(settings), LocalCluster(
            n_workers=6, threads_per_worker=1, processes=False,
            dashboard_address=None) as cluster, Client(cluster) as client:
        A = np.random.default_rng(0).standard_normal((600, 20))
        CA = dc.encode(A, 6, "auto")
        for _ in range(6):
            np.testing.assert_allclose((CA @ np.ones(20)).compute(), A @ np.ones(20))
        made = [h for h in CA.retuner.history if "chosen" in h]
        assert made
        s = cluster.scheduler
        for _ in range(100):
            if len(s.get_events("dask-coded-auto")) >= len(made):
                break
            time.sleep(0.05)
        rows = choices_data(s)
        assert len(rows["matrix"]) == len(made)
        assert set(rows["matrix"]) == {str(CA.token)[:24]}
        assert rows["calls"] == [h["calls"] for h in made]
        page = _page()(s)
        page.update()
        assert page.choices.data["chosen"] == [str(h["chosen"]) for h in made]


def test_a_shuffles_epochs_reach_the_page():
    """Each CodedShuffle epoch posts its bytes; the page lists them with the ratio to
    uncoded unicasts."""
    from distributed import LocalCluster

    from dask_coded.dashboard import epochs_data

    with LocalCluster(n_workers=4, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        rng = np.random.default_rng(0)
        parts = [rng.standard_normal(500) for _ in range(12)]
        sh = dc.CodedShuffle(parts, storage=6, strategy="coded", seed=1, client=client)
        try:
            for _ in range(3):
                sh.next_epoch()
            reports = sh.report()
        finally:
            sh.close()
        s = cluster.scheduler
        for _ in range(100):
            if len(s.get_events("dask-coded-shuffle")) >= 3:
                break
            time.sleep(0.05)
        rows = epochs_data(s)
        assert rows["epoch"] == [r.epoch for r in reports]
        assert rows["master"] == [r.planned_master_bytes for r in reports]
        assert rows["uncoded"] == [r.unicast_bytes for r in reports]
        assert all(0 < ratio < 1 for ratio in rows["ratio"][1:])  # coded sends less
        page = _page()(s)
        page.update()
        assert page.epochs.data["strategy"] == ["coded"] * 3
