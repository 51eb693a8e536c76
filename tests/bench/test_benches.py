"""The new benchmarks run end to end on a tiny in-process cluster and write their tables
(each call inside checks its result against numpy)."""

import csv

import pytest

from dask_coded import theory
from dask_coded.bench import autocpu, blocks, gradients, matmul2d

pytestmark = pytest.mark.slow  # a cluster and a few seconds of injected delays each


def test_bench_blocks_writes_every_scheme(tmp_path):
    assert blocks.main(["--n", "4", "--calls", "1", "--threads", "--scale", "0.1",
                        "--warm-up", "6", "--models", "slow worker 5x",
                        "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "blocks.csv")))
    assert [r["scheme"] for r in rows][:8] == [
        "plain n chunks", "plain 4n chunks", "plain 8n chunks", "MDS k=3", "MDS k=2",
        "4 blocks/worker k=3", "8 blocks/worker k=3", "8 blocks/worker k=2"]
    assert rows[-1]["scheme"].startswith("auto: k=")
    # the model's best one-block and several-blocks codes by the theory are timed too
    names = [str(i) for i in range(4)]
    model = blocks.models(0.1, names)["slow worker 5x"]
    timed = {(int(r["k"]), int(r["r"])) for r in rows[3:-1]}
    for rs in ((1,), (2, 4, 8)):
        k, r, _ = theory.best_blocks(model, 4, rs=rs, trials=500, seed=1, workers=names,
                                     overhead=0.01)
        assert (k, r) in timed
    assert all(r["scheme"].endswith("(theory's best)") for r in rows[8:-1])
    assert all(float(r["oracle"]) <= float(r["theory"]) for r in rows[:-1])
    assert (tmp_path / "blocks.png").exists()


def test_bench_gradients_writes_every_scheme(tmp_path):
    assert gradients.main(["--n", "4", "--calls", "1", "--threads", "--scale", "0.1",
                           "--stragglers", "1", "--logistic-scale", "0.05",
                           "--models", "slow worker 5x", "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "gradients.csv")))
    assert [r["scheme"] for r in rows] == ["plain dask", "speculative",
                                           "gradient coding s=1"]
    assert (tmp_path / "gradients-logistic.png").exists()


def test_bench_matmul2d_with_dask_operands_writes_every_scheme(tmp_path, capsys):
    assert matmul2d.main(["--n", "6", "--calls", "1", "--threads", "--scale", "0.1",
                          "--rows", "120", "--inner", "60", "--cols", "120", "--runs", "2",
                          "--operands", "dask", "--out", str(tmp_path)]) == 0
    every = list(csv.DictReader(open(tmp_path / "matmul2d.csv")))
    rows = [r for r in every if r["run"] == "1"]
    # every scheme timed in each run, and the spread over the runs printed
    assert [r["scheme"] for r in every if r["run"] == "2"] == [r["scheme"] for r in rows]
    assert "## over 2 runs" in capsys.readouterr().out
    assert [r["scheme"] for r in rows][:-1] == [
        "plain dask A @ B", "1-D MDS of A, k=4", "polynomial (2, 2) real",
        "polynomial (2, 3) real", "matdot 3 real", "polynomial (2, 3) real, A encoded once"]
    assert rows[-1]["scheme"].startswith("coded_matmul(scheme='auto')")
    assert all(float(r["mean"]) > 0 for r in rows)
    theory = {r["scheme"]: float(r["theory"]) for r in rows}
    # the same threshold (4 of 6) and product work (1/4): the same expected time
    assert theory["1-D MDS of A, k=4"] == theory["polynomial (2, 2) real"] > 0
    # MatDot 3 waits for 5 products of 1/3 of the work each: slower than either
    assert theory["matdot 3 real"] > theory["polynomial (2, 2) real"]
    # encoding A once changes the bytes, not the race
    once = {r["scheme"]: r for r in rows}["polynomial (2, 3) real, A encoded once"]
    assert float(once["theory"]) == theory["polynomial (2, 3) real"]


@pytest.mark.parametrize("kind", ["rotation", "lstsq"])
def test_bench_numerics_times_every_family_least_squares_too(kind):
    import dask
    import numpy as np

    import dask_coded as dc
    from dask_coded.bench.numerics import throughput

    with dask.config.set({"coded.decode.max-error": float("inf")}):
        timed = throughput(dc.make_code(8, 6, kind), 2000, np.random.default_rng(0))
    assert all(np.isfinite(v) and v > 0 for v in timed.values())


def test_bench_lagrange_writes_every_scheme(tmp_path):
    from dask_coded.bench import lagrange

    assert lagrange.main(["--n", "5", "--calls", "1", "--threads", "--scale", "0.1",
                          "--rows", "50", "--models", "slow worker 5x",
                          "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "lagrange.csv")))
    assert [r["scheme"] for r in rows] == ["plain dask", "gradient coding s=1",
                                           "coded products k=4", "Lagrange k=2 (t=3)"]
    assert all(float(r["theory"]) > 0 for r in rows)


def test_bench_loops_codes_every_product_and_agrees_with_plain_dask(capsys):
    from dask_coded.bench import loops

    assert loops.main(["--n", "4", "--k", "3", "--rows", "400", "--cols", "6", "--iters", "3",
                       "--slow", "0.05", "--loops", "least-squares GD",
                       "--models", "slow machine (every task)"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()

    def row(peer):
        return next(line for line in lines if line.startswith(f"| {peer} |"))

    # encoded in the first graph: both products of every iteration coded (the records
    # say so); every peer's w equal to plain dask's (checked inside)
    assert "6 of 6: A @ x, A.T @ x" in row("coded_matmul, first call coded")
    assert "plain / coded_matmul:" in out and "first call coded" in out
    # the default: the first iteration plain dask, the encoding beside it
    assert "plain, encoding beside)" in row("coded_matmul")
    # dc.encode's encoding is timed apart from its iterations
    assert float(row("dc.encode").split("|")[2]) > 0


def test_interleaved_turns_give_every_peer_every_call_once_in_rotation():
    order = autocpu.turns(["a", "b", "c"], 7, 3)
    assert [label for label, _ in order] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    for label in "abc":
        assert [i for p, calls in order if p == label for i in calls] == list(range(7))
    assert {tuple(calls) for _, calls in order[6:]} == {(6,)}


def test_runs_are_averaged_call_by_call():
    runs = [{"a": [1.0, 3.0], "b": [2.0, 2.0]}, {"a": [3.0, 5.0], "b": [2.0, 4.0]}]
    assert autocpu.mean_of_runs(runs) == {"a": [2.0, 4.0], "b": [2.0, 3.0]}


@pytest.mark.parametrize("turn", ["5", "0"])
def test_bench_auto_cpu_times_every_peer_under_quotas(tmp_path, capsys, turn):
    """Three worker processes under CPU quotas (duty-cycled: works without cgroups), one
    worker at a fifth of the others' share; every result is checked inside."""
    assert autocpu.main(["--n", "3", "--rows", "300", "--cols", "40", "--calls", "10",
                         "--models", "slow", "--plain", "1", "--codes", "2x1",
                         "--mechanism", "signals", "--turn", turn,
                         "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "auto_cpu.csv")))
    k0 = autocpu.AutoK.initial_k(3)
    r0 = autocpu.exact_blocks(3, k0, 4)
    start = autocpu.start_label(3)  # auto's start as auto runs it, and its windows' bar
    assert start == (f"k={k0} r={r0} as 1 task" if r0 > 1 else f"k={k0} r=1")
    peers = ["plain 3 chunks", "k=2 r=1", start, "auto", f"{start} again"]
    if start == "k=2 r=1":
        peers.remove(start)
    assert [r["peer"] for r in rows[::10]] == peers
    assert all(float(r["seconds"]) > 0 for r in rows)
    out = capsys.readouterr().out
    assert "quotas by signals" in out and "auto / best fixed (k=" in out
    assert "the noise, " + start + " run again" in out
    assert "against both runs of its start (their mean): " in out
    assert ("interleaved on one cluster in turns of 5" in out) == (turn == "5")


def test_bench_scale_prints_construction_calls_and_the_simulation(capsys):
    from dask_coded.bench import scale

    assert scale.main(["--workers", "4", "--calls", "1", "--scale", "0.1",
                       "--simulate", "96"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    built = {tuple(r.split(" | ")[:2]): r for r in rows if "certified" not in r
             and r.split(" | ")[0].lstrip("| ").isdigit() and "groups=" in r}
    # from 96 workers on the codes are grouped, and each is certified below 1e-8
    assert {("| 96", "1"), ("| 1000", "1"), ("| 250", "8")} <= set(built)
    assert all(float(r.rstrip(" |").split(" | ")[-1]) <= 1e-8 for r in built.values())
    assert "## 4 in-process workers" in out
    peers = [r.split(" | ")[0] for r in rows if r.startswith(("| plain", "| coded"))]
    assert peers == ["| plain 1n chunks", "| plain 4n chunks", "| coded rotation k=3"]  # 3n/4
    simulated = [r for r in rows if r.split(" | ")[0] in ("| 96", "| 192", "| 500", "| 1000")
                 and "group(s)" in r]
    assert len(simulated) == 1
    # 4 blocks per worker as 4 and as 1 product task, and the gap the plugin measured
    several = [r.split(" | ")[:2] for r in rows if r.startswith("| blocks")]
    assert several == [["| blocks r=4 as 4 task(s) per worker", "16"],
                       ["| blocks r=4 as 1 task(s) per worker", "4"]]
    gaps = [float(line.split(" cost ")[1].split(" ms")[0]) for line in out.splitlines()
            if line.startswith("blocks r=4 as 4 task(s) per worker: one more product task")]
    assert len(gaps) == 1 and gaps[0] >= 0


def test_bench_verify_prints_the_detection_limits_of_both_codes(capsys):
    from dask_coded.bench import verify

    assert verify.main(["--limits-only", "--rows", "600", "--cols", "40"]) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()
            if line.startswith("| mds") or line.startswith("| polynomial")]
    assert [r[0] for r in rows] == ["| mds (6, 4)"] * 2 + [
        "| polynomial (2, 2), real points"] * 2 + ["| polynomial (2, 2), complex points"] * 2
    for r in rows:  # flagged above what is missed, and a miss moves the result by little
        assert float(r[2]) > float(r[3]) and float(r[4].rstrip(" |")) < 1e-8


def test_bench_shuffle_planner_prints_both_deals_beside_the_coded_caching_load(capsys):
    from dask_coded.bench import shuffle

    assert shuffle.main(["--planner", "--workers", "4,12", "--alphas", "0.25",
                         "--per-worker", "12"]) == 0
    rows = [r.strip("| ").split(" | ") for r in capsys.readouterr().out.splitlines()
            if r.startswith("| ") and r[2].isdigit()]
    assert [r[:2] for r in rows] == [["4", "0.25"], ["12", "0.25"]]
    for n, _, segments, rand, rand_u, bal, bal_u, even, mn, ratio, floor, ms in rows:
        assert float(bal) < float(rand)  # the balanced deal evens the demands
        assert float(ratio) == pytest.approx(float(bal_u) / float(mn), abs=0.01)
        assert int(segments) > 0 and float(ms) > 0
    assert float(rows[1][9]) <= 1.10  # n = 12: within 10% of Maddah-Ali and Niesen
