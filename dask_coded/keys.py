"""The key names coded graphs use: the contract between the graph builder
(:mod:`dask_coded.graph`), the scheduler plugin (:mod:`dask_coded._scheduler`) and the
straggler injection (:mod:`dask_coded.stragglers.inject`).

* ``("coded-block-<token>", j)``: coded block ``j`` of an encoded matrix, resident and
  pinned to one worker;
* ``("coded-enc-<token>", j, c)``: coded block ``j`` encoded inside a rewritten graph (the
  plugin spreads ``j = 0..`` over distinct workers, loosely);
* ``("coded-prod-t<threshold>-<token>", *out, j)``: product ``j`` of a product group; the
  plugin reads the group's threshold (how many finished products its decode needs) from
  the name and pins the task where its coded block lives;
* ``("coded-scales-<token>", 0)``: the row scales a resident matrix was encoded with;
* ``("coded-dec-<token>", *out)``: the decode, the one dependent of a group's products.

Groups are found by key names, never by annotations: dask's linear fusion renames the
decode and drops annotations, but a product is never fused (it feeds a task with many
dependencies).
"""

from __future__ import annotations

import re

BLOCK_PREFIX = "coded-block-"
ENCODE_PREFIX = "coded-enc-"
PRODUCT_PREFIX = "coded-prod-"
DECODE_PREFIX = "coded-dec-"
SCALES_PREFIX = "coded-scales-"
_THRESHOLD = re.compile(r"^coded-prod-t(\d+)-")


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


def is_encode(key) -> bool:
    """A coded block encoded inside a rewritten graph."""
    return key_name(key).startswith(ENCODE_PREFIX)
