"""The cluster a call runs on: the default client and the workers the scheduler knows.

``Client.scheduler_info(n_workers=-1)`` returns a cached identity that the client's own
periodic refresh (which asks for no workers) can overwrite between the fetch and the
return, so these ask the scheduler each time.
"""

from __future__ import annotations

import warnings

import distributed

from .errors import TooFewWorkersError


def default_client():
    """The current ``distributed`` client, or ``None`` (no client: the local scheduler)."""
    try:
        return distributed.default_client()
    except ValueError:
        return None


def worker_info(client) -> dict:
    """``{address: info}`` of every worker, fresh from the scheduler (sync client)."""
    return client.sync(client.scheduler.identity, n_workers=-1)["workers"]


def _addresses(dask_scheduler=None) -> list[str]:
    return sorted(dask_scheduler.workers)


def live_workers(client) -> list[str]:
    """Sorted addresses of the workers the scheduler knows now (only the addresses: the
    full identity is kilobytes per worker)."""
    return client.run_on_scheduler(_addresses)


def require_workers(client, n: int, what: str) -> list[str]:
    """The sorted addresses of the workers the scheduler knows now, at least ``n`` of
    them, else :class:`~dask_coded.errors.TooFewWorkersError` naming ``what`` (sync client)."""
    return enough(live_workers(client), n, what)


def enough(workers, n: int, what: str) -> list[str]:
    """``workers`` sorted when there are at least ``n``, else
    :class:`~dask_coded.errors.TooFewWorkersError` naming ``what``."""
    if len(workers) < n:
        raise TooFewWorkersError(f"{what} on n={n} workers needs n workers; the cluster "
                                 f"has {len(workers)}")
    return sorted(workers)


def pick_workers(workers, n: int, allow_shared_workers: bool) -> list[str]:
    """Up to ``n`` distinct worker addresses (sorted); fewer only with
    ``allow_shared_workers`` (with a warning): the scheme places its blocks on them."""
    available = sorted(workers)
    if not available:
        raise TooFewWorkersError("the cluster has no workers; start some before encoding")
    if len(available) >= n:
        return available[:n]
    if not allow_shared_workers:
        raise TooFewWorkersError(
            f"n={n} coded blocks need n distinct workers, but the cluster has "
            f"{len(available)}; lower n, add workers, or pass allow_shared_workers=True "
            f"to place blocks round-robin"
        )
    warnings.warn(
        f"placing n={n} coded blocks on {len(available)} workers round-robin: a shared "
        f"worker that straggles delays all of its blocks",
        stacklevel=4,
    )
    return available
