"""`bench/run.py --quick` works: the benchmark a user runs with `make bench` builds, measures and reports.

A ~10 s smoke run (kernel bridge and vswitch on TAP ports, 1 s iperf3 tests): it must exit 0 and
write a table whose figures are real numbers for both setups. No timing assertions — the machine is
shared — only that traffic moved through each switch and was reported.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_tool

pytestmark = pytest.mark.root

RUN = Path(__file__).resolve().parents[2] / "bench" / "run.py"


def _row(table: str, setup: str) -> list[str]:
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == setup:
            return cells
    raise AssertionError(f"no row for {setup} in:\n{table}")


def _number(cell: str) -> float:
    m = re.match(r"[\d.]+", cell)
    assert m, f"expected a number, got {cell!r}"
    return float(m.group())


@pytest.mark.timeout(60)
def test_quick_bench_reports_numbers_for_bridge_and_vswitch(tmp_path):
    require_tool("iperf3")
    proc = subprocess.run([sys.executable, str(RUN), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=50)
    assert proc.returncode == 0, f"bench/run.py --quick failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    table = (tmp_path / "latest.md").read_text()
    for setup in ("kernel-bridge", "vswitch-tap"):
        cells = _row(table, setup)
        tcp1, tcp4, udp, ping = (_number(cells[i]) for i in (1, 2, 3, 6))
        assert tcp1 > 0 and tcp4 > 0, f"{setup}: TCP must have moved data: {cells}"
        assert udp > 0, f"{setup}: UDP packets must have been received: {cells}"
        assert ping > 0, f"{setup}: ping RTT must be measured: {cells}"
        assert cells[-1] == "1/1", f"{setup}: the run must have succeeded: {cells}"
    vs = _row(table, "vswitch-tap")
    assert _number(vs[8]) > 0, f"vswitch's CPU per packet must be measured from its process: {vs}"
    assert "(" in vs[1] and "×)" in vs[1], f"vswitch's figures must carry a ratio to the bridge: {vs}"
