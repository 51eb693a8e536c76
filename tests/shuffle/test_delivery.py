"""Every delivery's plan has one cost interface, and an epoch adds its plans' costs."""

import numpy as np

from dask_coded.shuffle.delivery import Segments, WholePartitions
from dask_coded.shuffle.placement import Placement, route
from dask_coded.shuffle.planner import plan_delivery
from dask_coded.shuffle.session import _Cost

COST = ("master_bytes", "unicast_bytes", "coded_packets", "packet_count")


def test_both_plans_have_the_cost_interface_and_add_up():
    caches = {0: {0, 1}, 1: {1, 2}, 2: {0, 2}}
    demands = {0: {2}, 1: {0}, 2: {1}}
    whole = plan_delivery(caches, demands, [100, 100, 100], coded=True)
    pl = Placement.for_storage(3, 6, 4)
    _, routed = route(pl, [64] * 6, {p: p % 3 for p in range(6)},
                      {p: (p + 1) % 3 for p in range(6)})
    for plan in (whole, routed):
        values = [getattr(plan, name) for name in COST]
        assert all(isinstance(v, (int, np.integer)) and v >= 0 for v in values), plan
        assert plan.coded_packets <= plan.packet_count
        assert plan.master_bytes <= plan.unicast_bytes
    cost = _Cost()
    cost += whole
    cost += routed
    assert cost.master_bytes == whole.master_bytes + routed.master_bytes
    assert cost.packets == whole.packet_count + routed.packet_count
    assert whole.coded_packets >= 1  # the three requests XOR into one multicast


def test_deliveries_say_what_they_are():
    assert repr(WholePartitions("p2p")) == "WholePartitions('p2p')"
    assert repr(Segments()) == "Segments()"
