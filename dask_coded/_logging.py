"""Silence the one warning distributed logs for every released straggler.

When a decode has the products it needs, the scheduler plugin releases the others; a
worker still running one logs ``Async instruction for <Task cancelled
name="execute(('coded-prod-...', ...))"> ended with CancelledError``. That is the design
working, not a fault, so this filter drops those records (only those: any other
cancellation is still logged). It is installed in every process that imports
:mod:`dask_coded.kernels`, which every worker running a coded task does.
"""

from __future__ import annotations

import logging

from .keys import PRODUCT_PREFIX

_LOGGER = "distributed.worker.state_machine"


class ReleasedStragglerFilter(logging.Filter):
    """Drop the CancelledError record of a released coded product."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("CancelledError" in message and PRODUCT_PREFIX in message)


def install() -> None:
    """Add the filter to distributed's worker state-machine logger (idempotent)."""
    logger = logging.getLogger(_LOGGER)
    if not any(isinstance(f, ReleasedStragglerFilter) for f in logger.filters):
        logger.addFilter(ReleasedStragglerFilter())
