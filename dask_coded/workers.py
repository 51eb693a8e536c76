"""Which workers a client sees, asked of the scheduler directly.

``Client.scheduler_info(n_workers=-1)`` returns a cached identity that the client's own
periodic refresh (which asks for no workers) can overwrite between the fetch and the
return: measured here as an empty worker list in the middle of a benchmark. This asks
the scheduler each time.
"""

from __future__ import annotations


def worker_info(client) -> dict:
    """``{address: info}`` of every worker, fresh from the scheduler (sync client)."""
    return client.sync(client.scheduler.identity, n_workers=-1)["workers"]


def _addresses(dask_scheduler=None) -> list[str]:
    return sorted(dask_scheduler.workers)


def live_workers(client) -> list[str]:
    """Sorted addresses of the workers the scheduler knows now (only the addresses: the
    full identity is kilobytes per worker, and the shuffle asks every half second)."""
    return client.run_on_scheduler(_addresses)
