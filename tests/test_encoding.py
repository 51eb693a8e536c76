"""``dc.encode``: every scheme's handle, and a mistyped parameter named whatever the
scheme (not a bare ``TypeError`` from deep inside)."""

import numpy as np
import pytest

import dask_coded as dc


def _parts():
    rng = np.random.default_rng(0)
    return [(rng.standard_normal((5, 2)), rng.standard_normal(5)) for _ in range(4)]


@pytest.mark.parametrize("scheme, data, params, wrong, right", [
    ("mds", "matrix", {"k": 3, "blocks_per_wroker": 2}, "blocks_per_wroker", "blocks_per_worker"),
    ("gradient", "parts", {"s": 1}, "s", "stragglers"),
    ("lagrange", "parts", {"degre": 2}, "degre", "degree"),
    ("polynomial", "matrix", {"split": (2, 1)}, "split", "splits"),
])
def test_a_parameter_the_scheme_does_not_take_is_named_with_those_it_takes(
        scheme, data, params, wrong, right):
    operand = np.ones((40, 4)) if data == "matrix" else _parts()
    with pytest.raises(dc.errors.CodeParameterError,
                       match=rf"scheme '{scheme}' takes no parameter {wrong};.*\b{right}\b"):
        dc.encode(operand, 4, scheme=scheme, client=None, **params)


@pytest.mark.parametrize("scheme, data, params, handle", [
    ("mds", "matrix", {"k": 3, "blocks_per_worker": 1}, dc.CodedMatrix),
    ("gradient", "parts", {"stragglers": 1}, dc.CodedPartitions),
    ("lagrange", "parts", {"degree": 1}, dc.CodedParts),
    ("polynomial", "matrix", {"splits": (2, 1)}, dc.EncodedOperand),
])
def test_the_parameters_a_scheme_takes_reach_it(scheme, data, params, handle):
    operand = np.ones((40, 4)) if data == "matrix" else _parts()
    encoded = dc.encode(operand, 4, scheme=scheme, client=None, **params)
    assert isinstance(encoded, handle)
