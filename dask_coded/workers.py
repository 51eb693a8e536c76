"""The cluster a call runs on: the default client and the workers the scheduler knows.

``Client.scheduler_info(n_workers=-1)`` returns a cached identity that the client's own
periodic refresh (which asks for no workers) can overwrite between the fetch and the
return, so these ask the scheduler each time.
"""

from __future__ import annotations

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
    them, else :class:`~dask_coded.TooFewWorkersError` naming ``what`` (sync client)."""
    workers = live_workers(client)
    if len(workers) < n:
        raise TooFewWorkersError(f"{what} on n={n} workers needs n workers; the cluster "
                                 f"has {len(workers)}")
    return workers
