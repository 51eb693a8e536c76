"""``python -m dask_coded demo``: what the codes do, in numbers."""

from __future__ import annotations

import time

import numpy as np

from .audit import audit
from .codes import make_code


def run_demo(n: int = 12, k: int = 9, seed: int = 0, rows: int = 200_000) -> int:
    """Encode A's k row blocks into n, keep the first k of n products, decode A @ x.

    Returns a process exit code: 0 when the decoded product matches ``A @ x`` to 1e-9.
    """
    rng = np.random.default_rng(seed)
    code = make_code(n, k)
    print(f"code: {code}  (kind='auto' chose {code.kind!r} for n={n}, k={k})")
    print(f"audit: {audit(code)}")

    A = rng.standard_normal((rows, 64))
    x = rng.standard_normal(64)
    blocks = np.array_split(A, k)
    r = max(len(b) for b in blocks)
    padded = [np.pad(b, ((0, r - len(b)), (0, 0))) for b in blocks]
    coded = code.encode(padded)

    finish = rng.exponential(size=n)  # which workers straggle this time
    survivors = sorted(np.argsort(finish)[:k].tolist())
    stragglers = sorted(set(range(n)) - set(survivors))
    products = {j: coded[j] @ x for j in survivors}

    t = time.perf_counter()
    decoded = code.decode(products)
    t_decode = time.perf_counter() - t
    y = np.concatenate([d[: len(b)] for d, b in zip(decoded, blocks)])
    truth = A @ x
    err = float(np.linalg.norm(y - truth) / np.linalg.norm(truth))
    print(f"A: {A.shape}; {n} coded blocks of {coded[0].shape}; stragglers dropped: {stragglers}")
    print(f"decoded A @ x from workers {survivors} in {t_decode * 1e3:.1f} ms")
    print(f"relative error vs numpy A @ x: {err:.2e}  ->  {'OK' if err < 1e-9 else 'WRONG'}")
    return 0 if err < 1e-9 else 1
