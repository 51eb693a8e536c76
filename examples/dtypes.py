"""The dtype and accuracy of coded products beside numpy's, on the local scheduler.

    python examples/dtypes.py

For each pair of dtypes: the dtype numpy gives ``A @ x``, and the relative error (against
float64) of ``dc.encode(A) @ x`` and of plain dask ``A @ x`` under ``dc.coded_matmul``.
"""

import dask.array as da
import numpy as np

import dask_coded as dc

PAIRS = [("float32", "float32"), ("bool", "float32"), ("uint8", "float32"),
         ("float16", "float16"), ("float32", "float64"), ("int64", "float64")]


def relative_error(got, A, x) -> float:
    exact = A.astype(np.float64) @ x.astype(np.float64)
    return float(np.linalg.norm(got.astype(np.float64) - exact) / np.linalg.norm(exact))


def main() -> None:
    rng = np.random.default_rng(0)
    print("| A, x | numpy's dtype | dc.encode: dtype, error | coded_matmul: dtype, error |")
    print("|---|---|---|---|")
    for a_dtype, x_dtype in PAIRS:
        A = (rng.standard_normal((60, 5)) * 3).astype(a_dtype)
        x = rng.standard_normal(5).astype(x_dtype)
        encoded = (dc.encode(A, 6, 4, client=None) @ x).compute()
        with dc.coded_matmul(n=6, k=4):
            rewritten = (da.from_array(A, chunks=(10, 5)) @ x).compute(scheduler="threads")
        print(f"| {a_dtype}, {x_dtype} | {(A @ x).dtype} "
              f"| {encoded.dtype}, {relative_error(encoded, A, x):.1e} "
              f"| {rewritten.dtype}, {relative_error(rewritten, A, x):.1e} |")


if __name__ == "__main__":
    main()
