"""contrib/grafana-vswitch.json, the Grafana dashboard of GET /metrics: every query asks for metrics
vswitchd really serves (a scrape of the in-process manager says which) and is PromQL that Prometheus'
own promtool accepts (each query checked as a recording rule, Grafana's variables given values)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from vswitch.control.manager import SwitchManager
from vswitch.control.model import PortKind, PortSpec, SwitchSpec, SwitchType
from vswitch.frontends.rest import make_app

DASHBOARD = Path(__file__).resolve().parents[2] / "contrib" / "grafana-vswitch.json"
#: what Grafana puts in for its variables before it sends a query
GRAFANA_VALUES = {"$switch": ".*", "$__rate_interval": "5m"}


def _queries() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in dash["templating"]["list"] if v["type"] == "query"]
    return exprs


@pytest.fixture
def served(tmp_path: Path) -> Iterator[set[str]]:
    """The sample names a scrape of a switch with ports offers (counters with their _total)."""
    m = SwitchManager(port_socket_dir=str(tmp_path / "ports"))
    try:
        m.create_switch(SwitchSpec("lan", SwitchType.PRIVATE))
        m.add_port("lan", PortSpec("vm1", PortKind.MEMORY, "vm1"))
        text = TestClient(make_app(m)).get("/metrics").text
        yield {fam.name + ("_total" if fam.type == "counter" else "") for fam in text_string_to_metric_families(text)}
    finally:
        m.shutdown()


def test_every_panel_asks_for_metrics_vswitchd_serves(served: set[str]) -> None:
    queries = _queries()
    assert len(queries) >= 10
    asked = {name for q in queries for name in re.findall(r"\bvswitch_[a-z_]+\b", q)}
    assert asked, queries
    assert asked - served == set(), f"the dashboard asks for metrics /metrics does not have: {asked - served}"
    # the dashboard shows the families: traffic, drops by reason, floods, learning, the table, the datapath
    for name in ("vswitch_port_rx_frames_total", "vswitch_port_drops_total", "vswitch_port_floods_total",
                 "vswitch_port_learned_total", "vswitch_fdb_entries", "vswitch_switch_datapath_kernel"):
        assert name in asked, name


def test_promtool_parses_every_query(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is missing (Debian package prometheus; make test installs it)")
    rules = []
    for i, q in enumerate(_queries()):
        if q.startswith("label_values("):  # Grafana's own function: it asks for the label's values
            q = q[len("label_values("):].split(",")[0]
        for var, value in GRAFANA_VALUES.items():
            q = q.replace(var, value)
        rules.append({"record": f"vswitch:dashboard_query_{i}", "expr": q})
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "grafana-vswitch", "rules": rules}]}))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
