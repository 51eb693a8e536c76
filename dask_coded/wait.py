"""Wait for any ``k`` of ``n`` futures: the wait Dask lacks.

``distributed.wait`` returns on ``ALL_COMPLETED`` or ``FIRST_COMPLETED`` only. :func:`first_k`
returns as soon as any ``k`` futures have finished, in the order they finished, and can
cancel the others (a cancelled task that is already running keeps its worker's thread
until it ends: Dask does not interrupt running tasks).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from distributed import Future, as_completed

from .errors import CodedError


def _check(futures: Iterable, k: int) -> list[Future]:
    futures = list(futures)
    if not all(isinstance(f, Future) for f in futures):
        raise TypeError("first_k waits on distributed Futures (client.submit / client.compute)")
    keys = [f.key for f in futures]
    if len(set(keys)) < len(keys):
        twice = next(key for key in keys if keys.count(key) > 1)
        raise CodedError(f"first_k got the same future more than once ({twice!r}); pass "
                         f"distinct futures")
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)) or not (
            1 <= k <= len(futures)):
        raise CodedError(f"k must be an integer in 1..{len(futures)} (the number of futures), "
                         f"got {k!r}")
    return futures


def first_k(futures: Iterable[Future], k: int, *, cancel: bool = False,
            timeout: float | None = None) -> list[Future]:
    """The first ``k`` of ``futures`` to finish, in the order they finished.

    A future that errs before ``k`` have finished raises its exception here. With an
    asynchronous client use :func:`first_k_async`.

    Parameters
    ----------
    futures : iterable of distributed.Future
    k : int
        How many to wait for, ``1 <= k <= len(futures)``.
    cancel : bool
        Cancel the futures that had not finished when the ``k``-th did.
    timeout : float, optional
        Seconds to wait at most; ``TimeoutError`` after that.

    Returns
    -------
    list of distributed.Future
    """
    futures = _check(futures, k)
    k = int(k)
    done: list[Future] = []
    for f in as_completed(futures, timeout=timeout):
        if f.status == "error":
            f.result()  # raises the task's exception
        if _record(f, done, k):
            break
    _check_enough(futures, done, k)
    _cancel_rest(futures, done, cancel)
    return done


async def first_k_async(futures: Iterable[Future], k: int, *, cancel: bool = False,
                        timeout: float | None = None) -> list[Future]:
    """:func:`first_k` for an asynchronous client (``await dc.first_k_async(fs, k)``)."""
    futures = _check(futures, k)
    k = int(k)
    done: list[Future] = []
    async for f in as_completed(futures, timeout=timeout):
        if f.status == "error":
            await f  # raises the task's exception
        if _record(f, done, k):
            break
    _check_enough(futures, done, k)
    rest = _cancel_rest(futures, done, cancel)
    if rest is not None:
        await rest
    return done


def _record(f: Future, done: list[Future], k: int) -> bool:
    """File a future that completed; True once ``k`` have finished."""
    if f.status == "finished":
        done.append(f)
    return len(done) == k


def _check_enough(futures: list[Future], done: list[Future], k: int) -> None:
    if len(done) < k:
        raise CodedError(f"only {len(done)} of {len(futures)} futures finished (the others "
                         f"were cancelled or lost); {k} were needed")


def _cancel_rest(futures: list[Future], done: list[Future], cancel: bool):
    """Cancel the futures not in ``done`` (returns the client's awaitable when async)."""
    keys = {f.key for f in done}
    rest = [f for f in futures if f.key not in keys]
    if not cancel or not rest:
        return None
    return rest[0].client.cancel(rest)
