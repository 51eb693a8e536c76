"""Straggler models (:mod:`.models`, pure) and their injection (:mod:`.inject`)."""

from __future__ import annotations

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
    "DelayModel",
    "ShiftedExponential",
    "SlowWorkers",
    "Stalls",
    "StragglerPlugin",
    "TaskIds",
    "Trace",
    "local_stragglers",
    "seeded_rng",
]
