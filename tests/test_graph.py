"""The graph builder: folding a decode's cut into the task that consumes it."""

import operator

import numpy as np
from dask.task_spec import Alias, DataNode, List, Task, TaskRef
from dask.local import get_sync

from dask_coded.graph import fold_cuts
from dask_coded.kernels import take_rows

DEC = ("coded-dec-abc", 0)


def cut_graph(consumers=1, extra=None):
    """A decode of 6 rows cut into 3 blocks, each relabelled by an alias, all of them
    concatenated by ``consumers`` tasks."""
    dsk = {DEC: DataNode(DEC, np.arange(6.0))}
    for i in range(3):
        dsk[("cut", i)] = Task(("cut", i), take_rows, TaskRef(DEC), 2 * i, 2 * i + 2)
        dsk[("out", i)] = Alias(("out", i), ("cut", i))
    outs = List(*[TaskRef(("out", i)) for i in range(3)])
    for c in range(consumers):
        dsk[f"final-{c}"] = Task(f"final-{c}", np.concatenate, outs)
    if extra is not None:
        dsk.update(extra)
    return dsk


def test_a_cut_consumed_by_one_task_is_folded_into_it():
    dsk = cut_graph()
    folded = fold_cuts(dsk, ["final-0"])
    assert set(folded) == {DEC, "final-0"}
    assert folded["final-0"].dependencies == {DEC}
    np.testing.assert_array_equal(get_sync(folded, "final-0"), np.arange(6.0))


def test_a_cut_with_two_consumers_stays():
    dsk = cut_graph(consumers=2)
    assert fold_cuts(dsk, ["final-0", "final-1"]) == dsk


def test_a_requested_block_is_never_folded_away():
    dsk = cut_graph()
    folded = fold_cuts(dsk, ["final-0", ("out", 1)])
    assert ("out", 1) in folded and get_sync(folded, ("out", 1)).tolist() == [2.0, 3.0]
    assert folded == dsk  # the requested block is a second consumer
    del dsk["final-0"]
    alone = fold_cuts(dsk, ("out", 1))  # one key asked for, as a bare tuple
    assert get_sync(alone, ("out", 1)).tolist() == [2.0, 3.0]


def test_work_after_the_cut_stays_in_its_own_tasks():
    """A block's own computation (here a negation) is not a cut: moving it into the
    consumer would serialise the blocks' work, so nothing is folded."""
    dsk = cut_graph()
    dsk[("out", 2)] = Task(("out", 2), operator.neg, TaskRef(("cut", 2)))
    folded = fold_cuts(dsk, ["final-0"])
    assert folded == dsk
    assert get_sync(folded, "final-0").tolist() == [0, 1, 2, 3, -4, -5]


def test_a_task_taking_the_cuts_of_several_decodes_takes_the_decodes():
    second = {("coded-dec-def", 0): DataNode(("coded-dec-def", 0), np.ones(2)),
              ("cut2", 0): Task(("cut2", 0), take_rows, TaskRef(("coded-dec-def", 0)), 0, 2)}
    dsk = cut_graph(extra=second)
    dsk["final-0"] = Task("final-0", np.concatenate,
                          List(*[TaskRef(("out", i)) for i in range(3)], TaskRef(("cut2", 0))))
    folded = fold_cuts(dsk, ["final-0"])
    assert folded["final-0"].dependencies == {DEC, ("coded-dec-def", 0)}
    assert get_sync(folded, "final-0").tolist() == [0, 1, 2, 3, 4, 5, 1, 1]
