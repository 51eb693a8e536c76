"""Injecting wrong products: a worker that returns wrong numbers without raising.

:class:`CorruptProducts` (a ``WorkerPlugin``) alters the coded products computed on the
workers it names, the way a bad core, a faulty accelerator or a misconfigured BLAS would;
:func:`local_corruption` does the same to products raced on the local scheduler. This is
the test and benchmark harness of ``verify=`` (:mod:`dask_coded.verify`): nothing in the
product imports it.

Kinds (``how``) of a product ``R``:

* ``"scale"``: ``R * (1 + amount)``;
* ``"offset"``: one seeded entry moved by ``amount * max|R|``;
* ``"nan"``: one seeded entry NaN;
* ``"zeros"``: all zeros;
* ``"sign"``: ``-R``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterable, Iterator

import dask.config
import numpy as np
from distributed.diagnostics.plugin import WorkerPlugin

from ..keys import PRODUCT_PREFIX, key_name
from .inject import TaskWrapper, install, uninstall

KINDS = ("scale", "offset", "nan", "zeros", "sign")


def _check_kind(how: str) -> None:
    if how not in KINDS:
        raise ValueError(f"how must be one of {KINDS}, got {how!r}")


def corrupted(product, how: str, amount: float = 1e-3, seed: int = 0):
    """``product`` altered as ``how`` says (see the module doc); a product that is not
    an array (or an object with a ``coded`` array) is returned as it is."""
    if dataclasses.is_dataclass(product) and hasattr(product, "coded"):  # rows set aside
        return dataclasses.replace(product, coded=corrupted(product.coded, how, amount, seed))
    if not isinstance(product, np.ndarray) or product.dtype.kind != "f" or not product.size:
        return product
    if how == "scale":
        return product * (1 + amount)
    if how == "sign":
        return -product
    if how == "zeros":
        return np.zeros_like(product)
    out = np.array(product, copy=True)
    where = int(np.random.default_rng(seed).integers(out.size))
    if how == "nan":
        out.flat[where] = np.nan
    elif how == "offset":
        out.flat[where] += amount * max(float(np.abs(out).max()), 1.0)
    else:
        _check_kind(how)
    return out


class CorruptProducts(WorkerPlugin):
    """Alter every coded product computed on the workers named ``workers`` (worker
    names, as ``SlowWorkers`` takes them), as ``how`` says (see the module doc).

    Register with ``client.register_plugin(CorruptProducts(["3"], how="scale"))``;
    ``client.unregister_worker_plugin(CorruptProducts.name)`` removes it.
    """

    name = "dask-coded-corrupt"

    def __init__(self, workers: Iterable, how: str = "scale", amount: float = 1e-3,
                 seed: int = 0):
        _check_kind(how)
        self.workers = {str(w) for w in workers}
        self.how, self.amount, self.seed = how, float(amount), int(seed)

    def wrap(self, worker, task):
        if str(worker.name) not in self.workers or not key_name(task.key).startswith(
                PRODUCT_PREFIX):
            return task
        return _Corrupted(task, self.how, self.amount, self.seed)

    def setup(self, worker) -> None:
        install(worker, self)

    def teardown(self, worker) -> None:
        uninstall(worker, self)


class _Corrupted(TaskWrapper):
    """A task whose result is :func:`corrupted`."""

    def __init__(self, task, how: str, amount: float, seed: int):
        super().__init__(task)
        self.how, self.amount, self.seed = how, amount, seed

    def __call__(self, data):
        return corrupted(self.task(data), self.how, self.amount, self.seed)


@contextlib.contextmanager
def local_corruption(indices: Iterable[int], how: str = "scale", amount: float = 1e-3,
                     seed: int = 0) -> Iterator[None]:
    """Alter products ``indices`` raced on the local scheduler (product ``j`` stands for
    worker ``j``) as ``how`` says."""
    _check_kind(how)
    chosen = {int(j) for j in indices}

    def corrupt(j: int, product):
        return corrupted(product, how, amount, seed) if j in chosen else product

    with dask.config.set({"coded.local-race.corrupt": corrupt}):
        yield
