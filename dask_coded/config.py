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


def get(key: str, default: Any = None) -> Any:
    """Return ``dask.config.get("coded." + key)`` (``default`` when unset)."""
    return dask.config.get(f"coded.{key}", default=default)
