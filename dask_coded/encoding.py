"""``dask_coded.encode``: data encoded once by any registered scheme, the handle for what
the scheme codes.

The scheme is looked up in :data:`dask_coded.schemes.SCHEMES`; what it codes
(:attr:`~dask_coded.schemes.Scheme.data`) says which handle holds the encoding, so a new
scheme of a kind already here needs no change in this module.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .errors import CodeParameterError
from .matrix import CodedMatrix
from .matrix import encode as encode_matrix
from .operand import EncodedOperand, encode_operand
from .parts import CodedParts, encode_parts
from .schemes import lookup, refuse_unknown
from .sums import CodedPartitions


def encode(data: Any, n: int, k: int | str | None = None, kind: str | None = None, *,
           scheme: str = "mds", client: Any = None, **params: Any
           ) -> CodedMatrix | CodedParts | CodedPartitions | EncodedOperand:
    """Encode ``data`` once for ``n`` workers with the scheme ``scheme`` and keep the
    coded data on the workers (pinned; re-made elsewhere if a worker is lost).

    Parameters
    ----------
    data : array, or list of parts
        What the scheme codes: a 2-D matrix (``"mds"``: products ``A @ x``;
        ``"polynomial"``, ``"matdot"``: the left operand of ``A @ B``), partitions
        (``"gradient"``: ``sum(fn(p))``), or a list of data parts, each an array or a
        tuple of arrays (``"lagrange"``: ``f(part)`` for each part).
    n : int
        Workers (one coded block each, or ``blocks_per_worker`` with ``"mds"``).
    k : int or "auto"
        ``"mds"``: how many products a decode needs (see :func:`dask_coded.matrix.encode`).
    kind : str, optional
        The code family: ``"mds"``, see :func:`dask_coded.make_code`; ``"gradient"``,
        see :class:`dask_coded.schemes.GradientCode`.
    scheme : str
        A name in :data:`dask_coded.schemes.SCHEMES`.
    client : distributed.Client, optional
        Default: the current client; without one the coded data stays in this process.
    **params
        The scheme's own parameters: ``"mds"``: ``transpose``, ``blocks_per_worker``,
        ``workers``, ``allow_shared_workers``, ``progress``, ``verify``, ``errors``; ``"gradient"``:
        ``stragglers``, ``kind``; ``"polynomial"``/``"matdot"``: ``splits``, ``points``;
        ``"lagrange"``: ``degree``, ``points``, ``allow_shared_workers``.

    Returns
    -------
    CodedMatrix, CodedPartitions, EncodedOperand or CodedParts
        ``CA @ x``; ``CP.sum(fn)``; ``dc.matmul(EA, B)``; ``L.map(f, *args)``. Each has
        ``.release()`` (or ``dask_coded.release(handle)``).

    Examples
    --------
    >>> CA = dc.encode(A, n=6, k=4)  # doctest: +SKIP
    >>> L = dc.encode([(X1, y1), (X2, y2), (X3, y3)], n=6, scheme="lagrange",
    ...               degree=2)  # doctest: +SKIP
    """
    data_kind = lookup(scheme).data
    if data_kind == "rows":
        if k is None:
            raise CodeParameterError(f"scheme {scheme!r} needs k, how many of the n={n} "
                                     f"products a decode waits for (or k='auto')")
        _check_params(scheme, encode_matrix, params)
        return encode_matrix(data, n, k, kind, client=client, **params)
    if k is not None:
        raise CodeParameterError(f"k is the 'mds' scheme's threshold; scheme {scheme!r} "
                                 f"sets its own from its parameters")
    if kind is not None:
        params["kind"] = kind
    if data_kind == "partitions":
        _check_params(scheme, CodedPartitions, params)
        return CodedPartitions(data, n, client=client, **params)
    target = encode_operand if data_kind == "pair" else encode_parts
    _check_params(scheme, target, params)
    return target(data, n, scheme, client=client, **params)


def _check_params(scheme: str, target: Callable, params: dict) -> None:
    """Refuse, by name, a parameter that ``target`` (the handle's encode) does not take,
    listing those it takes; a target taking ``**params`` passes them on to a scheme's
    ``from_params``, which names its own."""
    signature = inspect.signature(target)
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        return
    taken = [name for name, p in signature.parameters.items()
             if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
             and name not in ("self", "A", "data", "partitions", "parts", "n", "k", "scheme",
                              "client")]
    refuse_unknown(scheme, taken, params)
