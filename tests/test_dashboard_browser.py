"""The coded page in a real browser: headless Chromium (Debian's ``chromium`` and
``chromium-driver``, which ``.ci/run`` installs) loads it while coded products with a slow
worker run, and its plots receive the data."""

import shutil
import threading
import time

import numpy as np
import pytest
from distributed import Client, LocalCluster

import dask_coded as dc
from dask_coded.dashboard import PATH
from dask_coded.stragglers import SlowWorkers, StragglerPlugin

pytestmark = pytest.mark.slow
webdriver = pytest.importorskip("selenium.webdriver")
pytest.importorskip("bokeh")
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if CHROMIUM is None or DRIVER is None:
    pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)",
                allow_module_level=True)

# the page's data as the browser holds it (BokehJS's document model)
COLUMN = """
const doc = window.Bokeh && Bokeh.documents && Bokeh.documents[0];
const ds = doc && doc.get_model_by_name(arguments[0]);
return ds ? ds.data[arguments[1]].length : -1;
"""
RELEASED = """
const ds = Bokeh.documents[0].get_model_by_name('coded-products');
return Array.from(ds.data.status).filter(s => s === 'released').length;
"""


def painted(png, rgb, tolerance: int = 40) -> int:
    """Pixels of ``png`` within ``tolerance`` of colour ``rgb`` (the points are drawn
    with some transparency)."""
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("RGB"), dtype=int)
    return int((np.abs(pixels - np.array(rgb)).max(axis=-1) < tolerance).sum())


def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-dev-shm-usage", "--window-size=1200,900"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def test_the_page_paints_the_products_of_running_calls(tmp_path):
    with LocalCluster(n_workers=6, threads_per_worker=1, processes=False,
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        A = np.random.default_rng(0).standard_normal((1200, 40))
        CA = dc.encode(A, 6, 4, client=client)
        slow = str(client.scheduler_info()["workers"][CA.workers[2]]["name"])
        client.register_plugin(StragglerPlugin(SlowWorkers({slow: 0.3}),
                                               match=("coded-prod",), interruptible=True))
        stop = threading.Event()

        def calls():
            while not stop.is_set():
                np.testing.assert_allclose((CA @ np.ones(40)).compute(), A @ np.ones(40))

        runner = threading.Thread(target=calls, daemon=True)
        runner.start()
        driver = browser()
        try:
            driver.get(f"http://127.0.0.1:{cluster.scheduler.http_server.port}{PATH}")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if (driver.execute_script(COLUMN, "coded-products", "seconds") > 8
                        and driver.execute_script(RELEASED) > 0):
                    break
                time.sleep(0.25)
            assert driver.execute_script(COLUMN, "coded-products", "seconds") > 8
            assert driver.execute_script(RELEASED) > 0  # the slow worker's, released
            assert driver.execute_script(COLUMN, "coded-spans", "span") > 2
            assert driver.execute_script(COLUMN, "coded-encodings", "blocks") == 1
            # painted: the screenshot holds the finished (blue) and released (red) points
            time.sleep(1.0)  # a refresh after the data arrived
            shot = tmp_path / "coded-page.png"
            driver.save_screenshot(str(shot))
            assert painted(shot, (0x1f, 0x77, 0xb4)) > 50
            assert painted(shot, (0xd6, 0x27, 0x28)) > 10
        finally:
            driver.quit()
            stop.set()
            runner.join(30)
