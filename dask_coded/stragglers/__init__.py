"""Straggler models (:mod:`.models`, pure) and their injection (:mod:`.inject`); wrong
products injected by :mod:`.corrupt`."""

from __future__ import annotations

from .corrupt import CorruptProducts, local_corruption
from .inject import StragglerPlugin, TaskIds, local_stragglers
from .models import (
    DelayModel,
    ShiftedExponential,
    SlowWorkers,
    Stalls,
    Trace,
    seeded_rng,
)

__all__ = [
    "CorruptProducts",
    "DelayModel",
    "ShiftedExponential",
    "SlowWorkers",
    "Stalls",
    "StragglerPlugin",
    "TaskIds",
    "Trace",
    "local_corruption",
    "local_stragglers",
    "seeded_rng",
]
