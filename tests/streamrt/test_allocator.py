"""streamrt.allocator: glibc keeps freed memory when asked, and the opt-out is honoured."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from streamrt.allocator import keep_freed_memory


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_glibc_takes_the_thresholds_in_a_fresh_process():
    # in a child process: the setting is process-wide and must not leak into the test run
    code = "from streamrt.allocator import keep_freed_memory; print(keep_freed_memory())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "True"


def test_streamrt_malloc_default_leaves_the_allocator_alone(monkeypatch):
    monkeypatch.setenv("STREAMRT_MALLOC", "default")
    assert keep_freed_memory() is False
