"""The package on a cluster started from the command line (`dask scheduler`, `dask worker`)."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from distributed import Client

import dask_coded as dc

pytestmark = pytest.mark.slow  # a command-line cluster / docs and notebooks


@pytest.fixture
def cli_cluster(tmp_path):
    sched_file = tmp_path / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__VALIDATE": "True"}
    bindir = os.path.dirname(sys.executable)
    dask_cli = os.path.join(bindir, "dask")
    procs = [subprocess.Popen([dask_cli, "scheduler", "--scheduler-file", str(sched_file),
                               "--port", "0", "--dashboard-address", ":0", "--no-show"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.time() + 60
        while not sched_file.exists() and time.time() < deadline:
            time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        for i in range(4):
            procs.append(subprocess.Popen(
                [dask_cli, "worker", address, "--nthreads", "1", "--name", f"cli-{i}",
                 "--dashboard-address", ":0"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with Client(address, timeout=60) as client:
            client.wait_for_workers(4, timeout=60)
            yield client
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            p.wait(timeout=30)


def test_coded_products_on_a_command_line_cluster(cli_cluster):
    client = cli_cluster
    A = np.random.default_rng(0).standard_normal((400, 9))
    x = np.ones(9)
    CA = dc.encode(A, 4, 3, client=client)  # the scheduler unpickles FirstKPlugin: imports us
    np.testing.assert_allclose((CA @ x).compute(), A @ x)
    client.register_plugin(dc.stragglers.StragglerPlugin(dc.stragglers.SlowWorkers(seconds={"cli-2": 3.0}),
                                              match=("coded-prod",), interruptible=True))
    t = time.perf_counter()
    np.testing.assert_allclose((CA @ (2 * x)).compute(), A @ (2 * x))
    assert time.perf_counter() - t < 0.8 * 3.0  # the slow worker's 3 s product not waited for
    stats = client.sync(client.scheduler.coded_first_k_stats)
    assert stats["pinned"] >= 8 and stats["pruned"] >= 1
