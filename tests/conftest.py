import logging
import os

import pytest
from hypothesis import HealthCheck, settings

# Deterministic property tests: the same examples on every run and in CI.
settings.register_profile(
    "dask_coded",
    derandomize=True,
    deadline=None,
    max_examples=int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "60")),
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("dask_coded")


@pytest.fixture(autouse=True)
def _no_local_encodings_between_tests():
    """The rewrite's local encodings live in the process: each test starts without any."""
    from dask_coded.resident import LOCAL

    LOCAL.clear()
    yield
    LOCAL.clear()


class _RunSpecCollisions(logging.Handler):
    """Counts distributed's "Detected different `run_spec`" warnings: a graph resubmitted
    with a key whose dependencies changed (which distributed ignores, and which can hang)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        if "Detected different `run_spec`" in record.getMessage():
            self.messages.append(record.getMessage().splitlines()[0])


@pytest.fixture(autouse=True)
def _no_run_spec_collisions():
    """Every test fails if the scheduler saw a key resubmitted with other dependencies."""
    handler = _RunSpecCollisions()
    logger = logging.getLogger("distributed.scheduler")
    logger.addHandler(handler)
    yield
    logger.removeHandler(handler)
    assert not handler.messages, handler.messages[0]
