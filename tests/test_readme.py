"""Every python block in README.md runs as written, and prints what its comments say."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)

pytestmark = pytest.mark.slow  # each block starts its own cluster


def expected_lines(block: str) -> list[str]:
    """The ``# value`` comments of ``print(...)`` lines: what each should print."""
    return [m.group(1).strip() for line in block.splitlines()
            if line.lstrip().startswith("print(") and (m := re.search(r"#\s*(.+)$", line))]


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_block_runs_and_prints_its_comments(block, tmp_path):
    script = tmp_path / "snippet.py"
    script.write_text(block)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=240, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    printed = out.stdout.strip().splitlines()
    for want in expected_lines(block):
        if want.endswith("..."):  # the start of a repr
            assert any(want[:-3].strip(" ,") in line for line in printed), (want, printed)
        else:
            assert want in [line.strip() for line in printed], (want, printed)
    assert len(BLOCKS) >= 5
