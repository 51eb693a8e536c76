"""The paper's scheme: one coded block per worker, any ``k`` of ``n`` products decode.

``A``'s rows are split into ``k`` row blocks ``A_1 .. A_k`` of ``ceil(rows / k)`` rows
(the last zero-padded); coded block ``j`` is ``sum_i G[j, i] A_i`` for the generator ``G``
of an ``(n, k)`` MDS code (:mod:`dask_coded.codes`), held by worker ``j``; from any ``k``
products ``G[S] Y = R_S`` gives ``Y = [A_1 x; ..; A_k x]`` (Lee et al., IEEE Trans. IT
64(3), 2018, section III).

Rows are equilibrated first (``equilibrate=True``, what :func:`dask_coded.encode` does):
row ``r`` of A is divided by its 2-norm ``s_r`` before
encoding and row ``r`` of the decoded product is multiplied by it afterwards, so a coded
row never mixes rows of very different scales and the error bound holds row by row:
``|y_r - (A x)_r| <= c * cond(G_S) * eps * ||A_r|| ||x||`` with a modest constant ``c``,
where without equilibration a bound holds only for the whole result. The decode needs the
scales: a resident encoding keeps them in memory beside its blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from .. import config
from ..codes import (GroupedCode, MDSCode, check_shape, fewest_groups, make_code,
                     require_accurate)
from ..errors import CodeParameterError, NonFiniteError, TooFewResultsError
from ..verify import OperandScale, Verdict, Verify, inspect
from .base import RowScheme

#: auto uses the least-squares code with several blocks per worker up to this many blocks
#: (the search for its worst survivor set grows steeply with the blocks)
LSTSQ_BLOCKS = 64


def code_for(n: int, k: int, blocks_per_worker: int = 1,
             kind: str | None = None) -> MDSCode | GroupedCode:
    """The code for ``r = blocks_per_worker`` blocks on each of ``n`` workers, ``k`` of
    them needed, refused (:class:`~dask_coded.errors.CodeParameterError`) when its worst
    case misses ``coded.decode.max-error``.

    ``kind`` ``None``/``"auto"``, in order:

    1. the best certified square ``(n r, k r)`` family, when accurate (tried up to
       ``coded.grouped.square-blocks`` coded blocks);
    2. with several blocks per worker and at most 64 blocks, ``"lstsq"``, decoded by least
       squares from ``k r + coded.lstsq.margin`` block products;
    3. ``"grouped"`` (:func:`~dask_coded.codes.fewest_groups`): the workers in groups, a
       certified rotation code per group, as few groups as accuracy allows.
    """
    r = blocks_per_worker
    if not isinstance(r, (int, np.integer)) or isinstance(r, bool) or r < 1:
        raise CodeParameterError(f"blocks_per_worker must be a positive integer, got {r!r}")
    n, k = check_shape(n, k)
    r = int(r)
    kind = kind or config.get("code-kind")
    if kind == "grouped":
        return fewest_groups(n, k, r)
    if kind != "auto":
        code = make_code(n * r, k * r, kind)
        require_accurate(code)
        return code
    if n * r <= int(config.get("grouped.square-blocks")) or n == k:
        try:
            code = make_code(n * r, k * r, "auto")
            require_accurate(code)
            return code
        except CodeParameterError:
            pass
    if r > 1 and n * r <= LSTSQ_BLOCKS:
        code = make_code(n * r, k * r, "lstsq")
        require_accurate(code)
        return code
    return fewest_groups(n, k, r)


def check_divisor(value, r: int, name: str) -> int:
    """``value`` as an int when it is a positive divisor of ``r`` blocks per worker, else
    :class:`~dask_coded.errors.CodeParameterError` naming ``name``."""
    if (not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1
            or r % value):
        raise CodeParameterError(f"{name} must be a positive divisor of "
                                 f"blocks_per_worker={r}; got {value!r}")
    return int(value)


def exact_blocks(n: int, k: int, most: int) -> int:
    """The most blocks per worker, ``r <= most`` (halving from ``most``), whose code
    (:func:`code_for`) decodes from the blocks of any ``k`` of the ``n`` workers: its
    threshold is ``k r`` and any blocks meeting it decode. Such a code run as one product
    task per worker straggles as one block per worker does, and can be regrouped into
    more tasks per worker without a re-encode. 1 when none does."""
    r = max(1, int(most))
    while r > 1:
        try:
            code = code_for(n, k, r)
        except CodeParameterError:
            code = None
        exact = code is not None and code.threshold == k * r
        if exact and getattr(code, "rule", None) is None:
            return r
        r //= 2
    return 1


def check_finite_rows(A: np.ndarray, name: str = "A", offset: int = 0) -> None:
    """Raise :class:`NonFiniteError` naming the first row of ``A`` holding NaN or Inf."""
    finite = np.isfinite(A)
    if not finite.all():
        bad = int(np.flatnonzero(~finite.reshape(len(A), -1).all(axis=1))[0]) + offset
        raise NonFiniteError(
            f"{name} contains NaN or Inf (first in row {bad}); a coded block mixes k row "
            f"blocks, so it would corrupt every decode"
        )


def row_norms(A: np.ndarray) -> np.ndarray:
    """The 2-norm of each row of ``A`` in float64, 1 where a row is all zeros."""
    flat = np.asarray(A, dtype=np.float64).reshape(len(A), -1)
    norms = np.sqrt(np.einsum("ij,ij->i", flat, flat))
    norms[norms == 0] = 1.0
    return norms


def _column(v: np.ndarray, ndim: int) -> np.ndarray:
    """``v`` shaped to scale the rows of an ``ndim``-D array."""
    return v.reshape((-1,) + (1,) * (ndim - 1))


class MDSScheme(RowScheme):
    """``blocks_per_worker`` coded blocks per worker of one ``(N, K)`` code,
    ``N = n * blocks_per_worker`` blocks on ``n`` workers; threshold ``K`` (``K + margin``
    for a least-squares code). With one block per worker it is the paper's scheme.

    Several blocks per worker use the stragglers' partial work: a decode takes the first
    ``threshold`` block products to finish, whichever workers they come from, and a
    released block product that had not started never runs.

    Invariant: row block ``i`` is rows ``i*block_rows .. min((i+1)*block_rows, rows)``;
    every coded block has ``coded_rows`` rows (``block_rows`` rounded up to the code's
    symbols).
    """

    name = "mds"

    @classmethod
    def from_params(cls, n: int, *, k: int, rows: int, blocks_per_worker: int = 1,
                    kind: str | None = None, equilibrate: bool = True,
                    verify: str | None = None, errors: int | None = None) -> MDSScheme:
        """``k`` of ``n`` workers decode ``rows`` rows (:func:`code_for` picks the code,
        ``(n r, k r)`` for ``r = blocks_per_worker``, certified); ``verify``
        (``"detect"``, ``"correct"`` with ``errors``) checks each decode's products
        (:mod:`dask_coded.verify`)."""
        check = Verify.of(verify, errors)
        code = code_for(n, k, blocks_per_worker, kind)
        return cls(code, rows, equilibrate, blocks_per_worker, check)

    def __init__(self, code: MDSCode, rows: int, equilibrate: bool = True,
                 blocks_per_worker: int = 1, verify: Verify | None = None):
        if code.n % blocks_per_worker:
            raise ValueError(f"{code!r} has {code.n} blocks, not a multiple of "
                             f"blocks_per_worker={blocks_per_worker}")
        self.code = code
        self.rows = int(rows)
        self.equilibrate = bool(equilibrate)
        self.blocks_per_worker = int(blocks_per_worker)
        self.n_blocks, self.threshold, self.row_blocks = code.n, code.threshold, code.k
        #: which sets of finished block products decode: any ``threshold`` (``None``),
        #: or, for a grouped code, every group's threshold within the group
        self.rule = getattr(code, "rule", None)
        self.block_rows = max(1, -(-self.rows // code.k))
        self.coded_rows = code.coded_rows(self.block_rows)
        #: how each decode checks its products (``None``: it does not)
        self.verify = verify
        if verify is not None:
            self._check_verifiable(verify)
            if self.rule is None:
                self.threshold = code.threshold + verify.spare
            else:  # a grouped code is checked group by group: spares in every group
                self.rule = replace(self.rule, needs=tuple(
                    need + verify.spare for need in self.rule.needs))
                self.threshold = sum(self.rule.needs)

    def _check_verifiable(self, verify: Verify) -> None:
        need = self.code.threshold + verify.spare
        what = (f"verify={verify.mode!r}" if verify.mode == "detect"
                else f"verify='correct' with errors={verify.errors}")
        short = [(h, part) for h, part in enumerate(getattr(self.code, "parts", ()))
                 if part.threshold + verify.spare > part.n]
        if short:
            h, part = short[0]
            raise CodeParameterError(
                f"{what} checks {self.code!r} group by group and waits for "
                f"{part.threshold + verify.spare} products of group {h}'s {part.n} "
                f"(its k={part.threshold} plus {verify.spare} spare): use a smaller k")
        if self.blocks_per_worker > 1:
            raise CodeParameterError(
                f"{what} checks one coded block per worker; blocks_per_worker="
                f"{self.blocks_per_worker} is not supported with it")
        if not self.equilibrate:
            raise CodeParameterError(f"{what} bounds rounding on equilibrated rows; "
                                     f"equilibrate=False is not supported with it")
        if need > self.n_blocks:
            raise CodeParameterError(
                f"{what} waits for {need} products (k={self.code.threshold} plus "
                f"{verify.spare} spare), more than n={self.n_blocks}: use a larger n or a "
                f"smaller k")

    @property
    def n_workers(self) -> int:
        return self.n_blocks // self.blocks_per_worker

    @property
    def code_threshold(self) -> int:
        return self.code.threshold

    @property
    def tolerance(self) -> int:
        """Workers that may be lost with every block product of the others still
        decoding: ``floor((N - threshold) / r)`` (``n - k`` for one block per worker; a
        least-squares code's margin can cost one more; a grouped code's weakest group
        bounds it)."""
        lost = getattr(self.code, "tolerance", None)
        if lost is None:
            lost = self.n_blocks - self.threshold
        elif self.verify is not None:  # a grouped code: the spares come out of each group
            lost -= self.verify.spare
        return lost // self.blocks_per_worker

    @property
    def summary(self) -> str:
        """``mds (n, k) <kind>``, and the blocks per worker when several."""
        r = self.blocks_per_worker
        per = f", {r} blocks/worker" if r > 1 else ""
        return (f"mds ({self.n_workers}, {self.code.k // r}) {self.code.kind}{per}"
                + ("" if self.verify is None else f", verify={self.verify.mode}"))

    def __repr__(self) -> str:
        per = (f", blocks_per_worker={self.blocks_per_worker}"
               if self.blocks_per_worker > 1 else "")
        check = f", {self.verify!r}" if self.verify is not None else ""
        return (f"MDSScheme(n={self.code.n}, k={self.code.k}, rows={self.rows}, "
                f"{self.code.kind!r}{per}{check})")

    def __dask_tokenize__(self) -> tuple:
        return ("MDSScheme", self.code.__dask_tokenize__(), self.rows, self.equilibrate,
                self.blocks_per_worker, repr(self.verify))

    def inspect(self, products: Sequence[np.ndarray | None], scale: OperandScale) -> Verdict:
        """Check the finished ``products`` with the scheme's :attr:`verify` (see
        :func:`dask_coded.verify.inspect`); too few of them for the check raise
        :class:`~dask_coded.errors.TooFewResultsError`."""
        results = {j: p for j, p in enumerate(products) if p is not None}
        if not self.decodable(frozenset(results)):
            needs = (f"{self.threshold} (k={self.code.threshold} plus "
                     f"{self.verify.spare} spare)" if self.rule is None else
                     f"each group's k plus {self.verify.spare} spare of that group's "
                     f"products ({self.threshold} in all, {self.code!r})")
            raise self.verify.too_few(len(results), self.code.n, needs)
        errors = self.verify.errors if self.verify.mode == "correct" else len(results)
        return inspect(self.code, results, scale, errors)

    def blocks_needed(self, j: int) -> tuple[int, ...]:
        """Row blocks coded block ``j`` mixes that hold rows of A (with fewer rows than
        ``k * block_rows`` the trailing ones are all padding; block 0 stands in, with
        coefficient 0, when block ``j`` mixes only padding)."""
        real = -(-self.rows // self.block_rows)
        return tuple(i for i in self.code.blocks_needed(j) if i < real) or (0,)

    def encode_block(self, j: int, row_blocks: Sequence[np.ndarray],
                     needed: Sequence[int]) -> np.ndarray:
        blocks: list = [None] * self.code.k
        for i, block in zip(needed, row_blocks):
            block = np.asarray(block)
            check_finite_rows(block, offset=i * self.block_rows)
            blocks[i] = self.pad(self._equilibrated(block))
        zero = np.zeros_like(blocks[needed[0]])
        return self.code.encode([zero if b is None else b for b in blocks], workers=[j])[0]

    def encode(self, A: np.ndarray) -> list[np.ndarray]:
        check_finite_rows(A)
        return self.code.encode(self.split(self._equilibrated(A)))

    def _equilibrated(self, A: np.ndarray) -> np.ndarray:
        """``A`` with each row divided by its norm, in ``A``'s floating dtype (float32 at
        least; integers in float64)."""
        if not self.equilibrate:
            return A
        dtype = np.promote_types(A.dtype, np.float32) if A.dtype.kind == "f" else np.float64
        return A / _column(row_norms(A), A.ndim).astype(dtype)

    def scales(self, A: np.ndarray) -> np.ndarray | None:
        """The 2-norm of each row of ``A`` (1 for a zero row); ``None`` when rows are
        encoded as they are (``equilibrate=False``)."""
        return row_norms(np.asarray(A)) if self.equilibrate else None

    def decode(self, products: Sequence[np.ndarray | None],
               scales: np.ndarray | None = None) -> np.ndarray:
        results = {j: p for j, p in enumerate(products) if p is not None}
        threshold = self.code.threshold
        if len(results) < threshold:
            need = (f"k={threshold}" if threshold == self.code.k
                    else f"{threshold} (k={self.code.k} plus margin)")
            r = self.blocks_per_worker
            if r > 1:
                raise TooFewResultsError(
                    f"only {len(results)} of the {self.code.n} block products ({self.n_workers} "
                    f"workers x {r} blocks) arrived; {need} are needed to decode (this code "
                    f"tolerates {self.tolerance} lost workers)")
            raise TooFewResultsError(
                f"only {len(results)} of n={self.code.n} coded products arrived; {need} are "
                f"needed to decode"
            )
        Y = self.code.decode_stacked(results)
        if isinstance(Y, np.ndarray) and self.coded_rows == self.block_rows:
            out = Y.reshape((-1,) + Y.shape[2:])[: self.rows]  # no padding rows: a view
        else:
            out = np.concatenate([b[: self.block_rows] for b in Y])[: self.rows]
        if scales is None:
            return out
        return out * _column(scales, out.ndim).astype(out.dtype, copy=False)

    def product_tasks(self, blocks_per_task: int = 1) -> tuple[tuple[int, ...], ...]:
        """The coded blocks of each product task when each multiplies ``g =
        blocks_per_task`` blocks of one worker (``g`` divides ``blocks_per_worker``):
        task ``s n + w`` multiplies worker ``w``'s blocks ``w + n (s g + i)``, ``i < g``
        (its slot ``s`` of ``blocks_per_worker / g``; the layout of :meth:`placement`).
        ``g = blocks_per_worker`` runs one task per worker: the straggling of one block
        per worker, at the per-call cost of one task per worker."""
        r, n = self.blocks_per_worker, self.n_workers
        g = check_divisor(blocks_per_task, r, "blocks_per_task")
        return tuple(tuple(w + n * (s * g + i) for i in range(g))
                     for s in range(r // g) for w in range(n))

    def placement(self, workers: Sequence[str]) -> list[str]:
        """Block ``j`` on ``workers[j mod len(workers)]``: with ``n`` workers and several
        blocks per worker, worker ``w`` holds blocks ``w, w + n, w + 2n, ..``."""
        return [workers[j % len(workers)] for j in range(self.n_blocks)]
