"""The key names coded graphs use, for people reading a graph or a task stream and for
the straggler harness (:mod:`dask_coded.stragglers.inject` matches on them). The scheduler
plugin does not read them: it knows the package's tasks by their type
(:class:`~dask_coded.graph.ProductTask`, :class:`~dask_coded.graph.EncodeTask`).

* ``("coded-block-<token>", j)``: coded block ``j`` of a matrix encoded by
  :func:`dask_coded.encode`, resident and pinned to one worker;
* ``("coded-block-<token>", j, c)``: coded block ``j`` of column block ``c`` of a dask
  array encoded inside a rewritten graph; ``<token>`` depends only on the array and the
  scheme, so the next graph that multiplies the same array names the same blocks;
* ``("coded-block-call-<token>", w)``: worker ``w``'s encoded operands of one call of
  :func:`dask_coded.matmul` on dask arrays, released with the call;
* ``("coded-prod-t<threshold>-<token>", *out, j)``: product ``j`` of a product group;
* ``("coded-scales-<token>", c)``: the row scales the blocks of ``<token>`` were encoded
  with (column block ``c``), read by the decode;
* ``("coded-dec-<token>", *out)``: the decode, the one dependent of a group's products
  (dask's linear fusion may rename it).
"""

from __future__ import annotations

import re

BLOCK_PREFIX = "coded-block-"
CALL_BLOCK_PREFIX = "coded-block-call-"
PRODUCT_PREFIX = "coded-prod-"
DECODE_PREFIX = "coded-dec-"
SCALES_PREFIX = "coded-scales-"
#: the steps of an encoding in a graph: rows cut from A's chunks, and per-chunk row norms
ROWS_PREFIX = "coded-rows-"
NORMS_PREFIX = "coded-norms-"
_THRESHOLD = re.compile(r"^coded-prod-t(\d+)-")


def as_key(key):
    """``key`` as the scheduler names it: a tuple key that travelled as a list (through
    ``run_on_scheduler``, an event, a decode's arguments) is a tuple again."""
    return tuple(key) if isinstance(key, list) else key


def key_name(key) -> str:
    """The name part of a dask key (``key[0]`` of a tuple key)."""
    return str(key[0] if isinstance(key, tuple) else key)


def product_name(threshold: int, token: str) -> str:
    """Name of the products of a group whose decode needs ``threshold`` of them."""
    return f"{PRODUCT_PREFIX}t{int(threshold)}-{token}"


def threshold_of(key) -> int | None:
    """The threshold in a product key, or ``None`` when ``key`` is not a coded product."""
    m = _THRESHOLD.match(key_name(key))
    return int(m.group(1)) if m else None


def product_index(key) -> int:
    """``j`` of a product key (its last element)."""
    return int(key[-1])


def is_block(key) -> bool:
    """A resident coded block (from :func:`dask_coded.encode`)."""
    return key_name(key).startswith(BLOCK_PREFIX)


def is_call_block(key) -> bool:
    """A block encoded for one call only (pinned, not kept resident)."""
    return key_name(key).startswith(CALL_BLOCK_PREFIX)


def is_scales(key) -> bool:
    """The row scales a decode multiplies back."""
    return key_name(key).startswith(SCALES_PREFIX)


def token_of(key) -> str:
    """``<token>`` of a block or scales key."""
    name = key_name(key)
    return name[len(BLOCK_PREFIX):] if is_block(key) else name[len(SCALES_PREFIX):]
