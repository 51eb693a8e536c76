"""Verified decodes: the spare products of a code check each other, and correct a few.

A decode of an ``(n, k)`` code gets products ``R_j = C_j x`` of the coded blocks
``C_j = sum_i G[j, i] A_i``. For a set ``F`` of ``m > k`` finished products the rows
``G_F`` span a ``k``-dimensional space; the rows of ``H_F`` (orthonormal, ``m - k`` of
them per symbol) span its left null space, ``H_F G_F = 0``. Correct products therefore
have the *syndrome* ``S = H_F R_F = H_F D``, where ``D`` is only their rounding; a wrong
product ``R_j + E_j`` adds ``H_F[:, j] E_j``, which no rounding explains.

**The bound.** Rows of ``A`` are equilibrated before encoding (unit 2-norm), so a coded
row ``c`` of worker ``j`` has ``||c|| <= g_j = ||G[j, :]||_1`` and its product with column
``x_t`` rounds by at most ``(d + k + 2) u g_j ||x_t||`` (inner dimension ``d``, unit
roundoff ``u``, the encode's sum included). With ``H_F`` orthonormal, every entry ``t`` of
the syndrome of correct products keeps

    ``||S[:, t]|| <= kappa * eps * sqrt(sum_{j in F} g_j^2) * ||x_t||``,
    ``kappa = d + (k + m) * symbols + 2``

(twice the worst-case bound, the syndrome's own arithmetic included). A product set whose
largest ratio of ``||S[:, t]||`` to that bound exceeds 1 is *inconsistent*: some product
in it is wrong. Rounding never crosses the bound, whatever the data (it is a worst case,
not a statistic); a corruption whose syndrome stays under it cannot be seen.

**Locating.** Products ``F \\ B`` consistent with each other hold at most the corrupt
products of ``B``: when ``|F| >= k + 2t``, the smallest set ``B`` of ``t`` products whose
removal leaves the rest consistent is the corrupt set (two such sets would leave ``k``
common products fitting two different results, which an MDS code forbids). ``"detect"``
waits for ``k + 1`` products and raises :class:`~dask_coded.errors.CorruptResultError` on
an inconsistency (naming the product when the products present locate it);
``"correct"`` waits for ``k + 2e`` and decodes from the products left once at most ``e``
wrong ones are set aside. A product holding NaN or Inf is wrong where it stands.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import scipy.linalg

from .errors import CodeParameterError, CorruptResultError, TooFewResultsError
from .suspects import LOCAL, TOPIC


class Code(Protocol):
    """What a check needs of a code (:class:`~dask_coded.codes.MDSCode` has it): the
    real generator, its rows per worker, ``k`` and the threshold; hashable."""

    generator: np.ndarray
    symbols: int
    k: int
    threshold: int

MODES = ("detect", "correct")


@dataclass(frozen=True)
class BoundedCode:
    """A code whose products are not coded rows of equilibrated ``A`` times ``x`` but
    carry their own rounding bound: product ``j`` rounds within ``bounds[j]`` times the
    inner dimension's rounding and ``x``'s column norms, in place of its generator rows'
    1-norms (a polynomial code's evaluation of two equilibrated operands:
    :meth:`~dask_coded.schemes.polynomial.PolynomialScheme.inspect`)."""

    code: Code
    bounds: tuple[float, ...]

    @property
    def generator(self) -> np.ndarray:
        return self.code.generator

    @property
    def symbols(self) -> int:
        return self.code.symbols

    @property
    def k(self) -> int:
        return self.code.k

    @property
    def threshold(self) -> int:
        return self.code.threshold

    def row_bounds(self, chosen: tuple[int, ...]) -> np.ndarray:
        """The bound of each generator row of the products ``chosen``."""
        return np.repeat(np.asarray(self.bounds)[list(chosen)], self.symbols)


@dataclass(frozen=True)
class Verify:
    """How a decode checks its products: ``mode`` ``"detect"`` (one spare product: an
    inconsistency raises) or ``"correct"`` (``2 * errors`` spare products: up to
    ``errors`` wrong ones are set aside)."""

    mode: str
    errors: int = 1

    @classmethod
    def of(cls, verify: str | None, errors: int | None = None) -> Verify | None:
        """The check for a user's ``verify=`` and ``errors=`` (``None``: no check),
        refused with :class:`~dask_coded.errors.CodeParameterError` naming a wrong one."""
        if verify is None or verify is False:
            if errors is not None:
                raise CodeParameterError("errors= is how many wrong products "
                                         "verify='correct' corrects; give verify='correct'")
            return None
        if verify not in MODES:
            raise CodeParameterError(f"verify must be 'detect', 'correct' or None, got "
                                     f"{verify!r}")
        if verify == "detect":
            if errors is not None:
                raise CodeParameterError("errors= applies to verify='correct'; 'detect' "
                                         "checks with one spare product")
            return cls("detect", 0)
        e = 1 if errors is None else errors
        if not isinstance(e, (int, np.integer)) or isinstance(e, bool) or e < 1:
            raise CodeParameterError(f"errors must be a positive integer, got {errors!r}")
        return cls("correct", int(e))

    @property
    def spare(self) -> int:
        """Products a decode waits for beyond the code's threshold: 1 to detect, ``2e``
        to correct ``e``."""
        return 1 if self.mode == "detect" else 2 * self.errors

    def too_few(self, arrived: int, n: int, needs: str) -> TooFewResultsError:
        """The error for a check that got ``arrived`` of ``n`` products and waits for
        ``needs`` (e.g. ``"5 (k=4 plus 1 spare)"``)."""
        return TooFewResultsError(f"only {arrived} of n={n} coded products arrived; "
                                  f"verify={self.mode!r} checks with {needs}")

    def __repr__(self) -> str:
        return ("Verify('detect')" if self.mode == "detect"
                else f"Verify('correct', errors={self.errors})")


@dataclass(frozen=True)
class OperandScale:
    """What the rounding bound needs of the operand ``x``: its rows ``inner`` (the
    inner dimension), the 2-norm of each column, and ``eps``, the machine epsilon of the
    coarser of the coded blocks' and ``x``'s dtypes."""

    inner: int
    norms: np.ndarray
    eps: float

    def __dask_tokenize__(self) -> tuple:
        return ("OperandScale", self.inner, self.norms.tobytes(), self.eps)


def operand_scale(x: Any, block_eps: float, axis: int = 0) -> OperandScale:
    """The :class:`OperandScale` of ``x`` for blocks of precision ``block_eps``:
    ``axis`` is the contracted one (a list of chunks is joined along it first)."""
    if isinstance(x, (list, tuple)):
        x = np.concatenate(x, axis=axis)
    x = np.moveaxis(np.asarray(x), axis, 0)
    eps = max(float(block_eps),
              float(np.finfo(x.dtype).eps) if x.dtype.kind == "f" else 0.0)
    flat = x.reshape(len(x), -1).astype(np.float64, copy=False)
    return OperandScale(int(len(x)), np.sqrt(np.einsum("ij,ij->j", flat, flat)), eps)


@dataclass(frozen=True)
class Verdict:
    """What a check of one decode's products found: ``checked`` the products compared,
    ``clean`` the ones the result comes from, ``suspects`` products located as wrong,
    ``candidates`` products among which a disagreement was found that could not be
    located, ``excess`` the largest syndrome over its rounding bound among ``clean``
    (at most 1)."""

    checked: tuple[int, ...]
    clean: tuple[int, ...]
    suspects: tuple[int, ...] = ()
    candidates: tuple[int, ...] = ()
    excess: float = 0.0

    @property
    def consistent(self) -> bool:
        return not self.suspects and not self.candidates


@functools.lru_cache(maxsize=512)
def _parity(code: Code, chosen: tuple[int, ...]) -> tuple[np.ndarray, float]:
    """``(H, sqrt(sum g_j^2))`` for the products ``chosen``: ``H`` orthonormal rows
    spanning the left null space of their generator rows, and the root sum of squares
    of those rows' 1-norms (or of their bounds, for a :class:`BoundedCode`)."""
    s = code.symbols
    rows = (np.asarray(chosen)[:, None] * s + np.arange(s)).ravel()
    G = code.generator[rows]
    H = scipy.linalg.null_space(G.T).T
    bounds = (code.row_bounds(chosen) if hasattr(code, "row_bounds")
              else np.abs(G).sum(axis=1))
    return H, float(np.sqrt((bounds ** 2).sum()))


def excess(code: Code, results: Mapping[int, np.ndarray], scale: OperandScale) -> float:
    """The largest ratio, over the entries of the products ``results``, of their
    syndrome's norm to its rounding bound (see the module doc): at most 1 when they are
    consistent; 0 when they cannot be compared (at most ``k`` of them)."""
    chosen = tuple(sorted(results))
    H, g = _parity(code, chosen)
    if H.shape[0] == 0:
        return 0.0
    s = code.symbols
    R = np.stack([np.asarray(results[j], dtype=np.float64) for j in chosen])
    cols = len(scale.norms)
    S = H @ R.reshape(len(chosen) * s, -1)  # (m - k) * s rows, one column per entry
    norms = np.sqrt(np.einsum("ij,ij->j", S, S)).reshape(-1, cols)
    kappa = scale.inner + (code.k + len(chosen)) * s + 2
    bound = kappa * scale.eps * g * scale.norms  # per column of x
    tiny = np.finfo(np.float64).tiny
    return float((norms / np.maximum(bound, tiny)).max())


def inspect(code: Code, results: Mapping[int, np.ndarray], scale: OperandScale,
            errors: int) -> Verdict:
    """Check the products ``results`` (at least ``k + 1``) of ``code`` and set aside up
    to ``errors`` wrong ones: the smallest set whose removal leaves the others
    consistent, searched while at least ``k + 2t`` products remain to locate ``t`` of
    them. A product with NaN or Inf is set aside first. ``errors=0`` only checks.

    A block-diagonal code (``parts`` over ``members``, a grouped code) is checked group
    by group, each group's products against its own code, up to ``errors`` wrong ones
    per group; the result is right only when every group's is (:func:`combined`)."""
    parts = getattr(code, "parts", None)
    if parts is not None:
        return combined([_inspect_group(part, members, results, scale, errors)
                         for part, members in zip(parts, code.members)])
    checked = tuple(sorted(results))
    bad = tuple(j for j in checked if not np.isfinite(np.asarray(results[j])).all())
    rest = {j: results[j] for j in checked if j not in bad}
    threshold = code.threshold
    if len(rest) <= threshold:  # nothing left to compare them with
        return Verdict(checked, (), bad, (), float("inf"))
    worst = excess(code, rest, scale)
    if worst <= 1.0:
        return Verdict(checked, tuple(rest), bad, (), worst)
    # inconsistent: locate the fewest products whose removal leaves the rest consistent
    most = min(max(errors - len(bad), 0), (len(rest) - threshold) // 2)
    for t in range(1, most + 1):
        found = []
        for B in itertools.combinations(tuple(rest), t):
            left = {j: v for j, v in rest.items() if j not in B}
            e = excess(code, left, scale)
            if e <= 1.0:
                found.append((B, e))
        if len(found) == 1:
            (B, e), = found
            return Verdict(checked, tuple(j for j in rest if j not in B),
                           tuple(sorted(bad + B)), (), e)
        if found:
            break  # ambiguous: beyond what these products can locate
    return Verdict(checked, (), bad, tuple(rest), worst)


def _inspect_group(part: Code, members: Sequence[int], results: Mapping[int, np.ndarray],
                   scale: OperandScale, errors: int) -> Verdict:
    """:func:`inspect` of one group: its products renumbered ``0 .. n_h - 1`` for
    ``part``, and the verdict's indices mapped back to the whole code's."""
    local = {i: results[j] for i, j in enumerate(members) if j in results}
    v = inspect(part, local, scale, errors)

    def back(indices):
        return tuple(members[i] for i in indices)
    return Verdict(back(v.checked), back(v.clean), back(v.suspects), back(v.candidates),
                   v.excess)


def combined(verdicts: Sequence[Verdict]) -> Verdict:
    """One verdict of independent groups: every product checked, set aside or suspected
    by any group; ``clean`` only when every group kept products to decode from (one group
    without a right result leaves no right result)."""
    def union(field_):
        return tuple(sorted(j for v in verdicts for j in getattr(v, field_)))
    clean = union("clean") if all(v.clean for v in verdicts) else ()
    return Verdict(union("checked"), clean, union("suspects"), union("candidates"),
                   max(v.excess for v in verdicts))


@dataclass
class Sources:
    """Who computed each product: ``{index: (address, name)}`` from the scheduler (filled
    in as products finish); a product not in it is named by its index."""

    names: dict = field(default_factory=dict)

    def address(self, j: int) -> str:
        """The worker's address, or ``"product j"``."""
        return self.names[j][0] if j in self.names else f"product {j}"

    def __call__(self, j: int) -> str:
        if j not in self.names:
            return f"product {j}"
        address, name = self.names[j]
        return address if str(name) == address else f"{address} (name {name})"

    def of(self, indices: Sequence[int]) -> str:
        """``"worker tcp://.. (name 3, product 0), .."``, or ``"product 0, .."``."""
        def one(j):
            if j not in self.names:
                return f"product {j}"
            address, name = self.names[j]
            return f"worker {address} (name {name}, product {j})"
        return ", ".join(one(j) for j in indices)


def event(verdict: Verdict, sources: Sources, mode: str, blocks: Sequence = ()) -> dict:
    """The msgpack-able record of one inconsistent decode: located ``suspects`` and
    unlocated ``candidates`` as ``[address, name]`` pairs (``["product j", "j", block
    key]`` for a product whose worker the decode was not told, so that the scheduler can
    find it where the block is pinned), the ``mode``, and whether the result was
    ``corrected``."""
    def pairs(indices):
        out = []
        for j in indices:
            if j in sources.names or j >= len(blocks) or blocks[j] is None:
                out.append([sources.address(j), str(sources.names.get(j, (None, j))[1])])
            else:
                out.append([sources.address(j), str(j), blocks[j]])
        return out
    return {"suspects": pairs(verdict.suspects), "candidates": pairs(verdict.candidates),
            "mode": mode, "corrected": bool(verdict.clean) and mode == "correct"}


def report_inconsistency(verdict: Verdict, sources: Sources, mode: str,
                         blocks: Sequence = ()) -> None:
    """Tell the scheduler of an inconsistent decode (an event under :data:`TOPIC`, which
    the scheduler plugin counts and ``client.get_events(TOPIC)`` lists); a decode not
    running on a ``distributed`` worker counts it in :data:`LOCAL`. ``blocks``: the key
    of each product's coded block, where the decode has them."""
    msg = event(verdict, sources, mode, blocks)
    try:
        from distributed import get_worker
        worker = get_worker()
    except (ImportError, ValueError):
        LOCAL.record(msg)
        return
    worker.log_event(TOPIC, msg)


def raise_or_pass(verdict: Verdict, verify: Verify, sources: Sources, k: int) -> None:
    """Raise :class:`~dask_coded.errors.CorruptResultError` unless ``verdict`` lets the
    decode return a right result under ``verify``."""
    if verdict.consistent:
        return
    if verify.mode == "correct" and verdict.clean:  # the products kept were checked
        return
    if verdict.suspects and not verdict.candidates and not verdict.clean:
        raise CorruptResultError(
            f"the coded products of {sources.of(verdict.suspects)} hold NaN or Inf, and "
            f"the {len(verdict.checked) - len(verdict.suspects)} others are too few to "
            f"check a result (k={k}); the result was not returned",
            suspects=[sources(j) for j in verdict.suspects])
    if verdict.suspects and not verdict.candidates:
        raise CorruptResultError(
            f"the coded products of {sources.of(verdict.suspects)} disagree with the "
            f"{len(verdict.clean)} others (verify={verify.mode!r}); the result was not "
            f"returned", suspects=[sources(j) for j in verdict.suspects])
    culprits = verdict.suspects + verdict.candidates
    more = ("at least k + 2 products are needed to say which: on distributed, the next "
            "decodes these workers contribute to wait for them (verify='correct' always "
            "does)" if verify.mode == "detect"
            else f"more than errors={verify.errors} of them are wrong")
    raise CorruptResultError(
        f"the coded products of {sources.of(culprits)} disagree (k={k}): one or more "
        f"is wrong, and {more}; the result was not returned",
        suspects=[sources(j) for j in verdict.suspects],
        candidates=[sources(j) for j in verdict.candidates])
