"""The documentation site builds without warnings (executing its notebooks) and the
examples of its pages run."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # a command-line cluster / docs and notebooks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = os.path.join(ROOT, "docs", "notebooks")


def test_site_builds_without_warnings(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "site" / "api" / "index.html").exists()
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "worst_case_error" in api and "CodedShuffle" in api  # generated from docstrings
    for name in ("coded_sum", "CodedPartitions", "logistic_regression", "GradientCode"):
        assert name in api, name
    # every public name has its entry (its anchor, its signature), and the docstrings'
    # Sphinx roles are rendered as links, not left raw
    import re

    import dask_coded as dc

    anchors = set(re.findall(r'id="([\w.]+)"', api))
    assert [n for n in dc.__all__ if f"dask_coded.{n}" not in anchors] == []
    assert [n for n, where in dc.MOVED.items()
            if f"dask_coded.{where}.{n}" not in anchors] == []
    assert api.count("doc-signature") > 50
    assert ":func:" not in api and ":class:" not in api
    assert '<a href="#dask_coded.encode"><code>' in api
    # the notebooks are executed by the build (allow_errors: false) and shown with outputs
    for name in sorted(f[:-6] for f in os.listdir(NOTEBOOKS) if f.endswith(".ipynb")):
        page = (tmp_path / "site" / "notebooks" / name / "index.html").read_text()
        assert "jp-OutputArea-output" in page, name


def _python_blocks(page: str) -> list[str]:
    import re

    with open(os.path.join(ROOT, "docs", page)) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


@pytest.mark.parametrize("page", ["sums.md", "lagrange.md"])
def test_page_examples_run(page, tmp_path):
    for i, block in enumerate(_python_blocks(page)):
        script = tmp_path / f"block{i}.py"
        script.write_text(block)
        out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                             timeout=240, cwd=tmp_path)
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.startswith("True"), out.stdout


def test_moved_names_still_work_with_a_deprecation_warning():
    import warnings

    import dask_coded as dc

    with pytest.warns(DeprecationWarning, match="dask_coded.stragglers.SlowWorkers"):
        assert dc.SlowWorkers is dc.stragglers.SlowWorkers
    with pytest.warns(DeprecationWarning, match="dask_coded.errors.CodeParameterError"):
        from dask_coded import CodeParameterError
    assert CodeParameterError is dc.errors.CodeParameterError
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new spellings do not warn
        assert dc.CodedError is dc.errors.CodedError and dc.schemes.GradientCode
    with pytest.raises(AttributeError, match="no attribute 'Nonexistent'"):
        dc.Nonexistent
