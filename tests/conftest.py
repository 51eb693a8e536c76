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
