"""Coded shuffling of partitions between epochs (the paper's second half).

:func:`plan_delivery` (pure planner), :func:`next_caches` (cache policy),
:class:`CodedShuffle` (carries a plan out on a cluster, with byte accounting from the
transport) and the load predictions in :func:`dask_coded.theory.shuffle_load`.
"""

from .cache import next_caches
from .planner import Packet, Plan, plan_delivery
from .session import CodedShuffle, EpochReport

__all__ = ["CodedShuffle", "EpochReport", "Packet", "Plan", "next_caches", "plan_delivery"]
