"""XOR packets on raw bytes: every dtype round-trips bit-exact.

A packet is the XOR of the byte views of its parts, each zero-padded to the packet's
length; a member recovers its part by XOR-ing out the parts it caches, then reads its
bytes back with the part's dtype and shape.
"""

from __future__ import annotations

import numpy as np


def as_bytes(a: np.ndarray) -> np.ndarray:
    """A uint8 view of ``a``'s memory (a C-contiguous copy first if needed)."""
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


def xor_packet(parts: list[np.ndarray], nbytes: int) -> np.ndarray:
    """``XOR_i pad(bytes(parts[i]), nbytes)``."""
    out = np.zeros(nbytes, dtype=np.uint8)
    for p in parts:
        b = as_bytes(p)
        np.bitwise_xor(out[: b.size], b, out=out[: b.size])
    return out


def decode_part(packet: np.ndarray, shape: tuple, dtype: str, *cached: np.ndarray) -> np.ndarray:
    """The part of ``packet`` that is not among ``cached``, as an array of ``shape``/``dtype``."""
    out = packet.copy()
    for p in cached:
        b = as_bytes(p)
        np.bitwise_xor(out[: b.size], b, out=out[: b.size])
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return out[:size].view(np.dtype(dtype)).reshape(shape).copy()


def copy_part(part: np.ndarray) -> np.ndarray:
    """A worker-local copy under a new key (the p2p strategy's task)."""
    return part
