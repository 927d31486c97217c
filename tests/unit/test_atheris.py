"""A bounded atheris (coverage-guided) run over `offload.adapt`; skipped when atheris is absent.

libFuzzer exits the process when it is done, so the target runs in a subprocess for a few
seconds (-max_total_time); a crash makes it exit non-zero with the crashing input in its output.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("atheris", reason="atheris is not installed (pip install atheris)")

TARGET = Path(__file__).resolve().parent.parent / "fuzz" / "atheris_adapt.py"


def test_atheris_finds_no_crash_in_adapt() -> None:
    with tempfile.TemporaryDirectory(prefix="vsfz") as work:
        proc = subprocess.run([sys.executable, str(TARGET), "-max_total_time=4", "-rss_limit_mb=1024",
                               f"-artifact_prefix={work}/"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"atheris found a crash in offload.adapt:\n{proc.stderr[-4000:]}"
