"""Coded shuffling of partitions between epochs (the paper's second half).

:class:`Placement` and :func:`plan_segments` (the structured segment placement and its
delivery plan), :func:`plan_delivery` and :func:`next_caches` (greedy index coding over
whole-partition caches, and their cache policy), :class:`CodedShuffle` (carries a plan
out on a cluster; a benchmark can meter its bytes at the transport) and the load predictions in
:func:`dask_coded.theory.shuffle_load` and :func:`dask_coded.theory.shuffle_lower_bound`.
"""

from .cache import next_caches
from .placement import Placement, SegmentPacket, SegmentPlan, plan_segments
from .planner import Packet, Plan, plan_delivery
from .session import CodedShuffle, EpochReport

__all__ = ["CodedShuffle", "EpochReport", "Packet", "Placement", "Plan", "SegmentPacket",
           "SegmentPlan", "next_caches", "plan_delivery", "plan_segments"]
