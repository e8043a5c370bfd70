"""The README's Python examples run as written (a stale example is a bug users meet first)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("code", [
    pytest.param(b, marks=pytest.mark.model, id=f"example{i}") if "WhisperStreamingModel" in b else pytest.param(b, id=f"example{i}")
    for i, b in enumerate(BLOCKS)
])
def test_readme_example_runs(code):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip()
