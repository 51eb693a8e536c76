"""Load ``coded.yaml`` into ``dask.config`` the way dask sub-projects do."""

from __future__ import annotations

import os
from typing import Any

import dask.config
import yaml

_FN = os.path.join(os.path.dirname(__file__), "coded.yaml")

with open(_FN) as f:
    defaults = yaml.safe_load(f)

dask.config.update_defaults(defaults)


def get(key: str) -> Any:
    """``dask.config.get("coded." + key)``, falling back to the packaged default.

    The fallback keeps the package working when something resets ``dask.config`` to a
    snapshot taken before this module was imported (``distributed.utils_test`` does).
    """
    fallback: Any = defaults["coded"]
    for part in key.split("."):
        fallback = fallback[part]
    return dask.config.get(f"coded.{key}", default=fallback)
