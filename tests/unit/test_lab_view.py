"""The lab's view for the web UI (vswitch.lab.state.Lab.view): what a lab's daemon serves at GET /lab —
the topology, links and switches without namespaces, PIDs or tokens, and the newest `lab trace` results."""

from __future__ import annotations

import json
from pathlib import Path

from vswitch.lab.state import VIEW_TRACES, Lab, view_path


def _lab(lab_dir: Path) -> Lab:
    return Lab("l1", {
        "name": "l1", "id": "ab12", "dir": str(lab_dir), "topology": {"name": "one-nic", "nodes": {}},
        "namespaces": {"host": "vsl-ab12-host"},
        "links": [{"node": "host", "netns": "vsl-ab12-host", "ifname": "eth1", "kind": "physical-nic",
                   "label": "eth1 (physical NIC of host)"}],
        "daemons": {"host": {"pid": 4242, "socket": "/run/x.sock", "ui_token": "secret-token"}},
        "switches": [{"name": "ext", "node": "host", "type": "external", "nic": "eth1", "vnic": "vs-ext",
                      "socket": "/run/x.sock"}]})


def test_the_view_names_what_the_page_draws_and_nothing_private(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    lab.publish_view()
    text = view_path(tmp_path).read_text()
    view = json.loads(text)
    assert view["links"] == [{"node": "host", "ifname": "eth1", "kind": "physical-nic",
                              "label": "eth1 (physical NIC of host)"}]
    assert view["switches"] == [{"name": "ext", "node": "host", "type": "external", "nic": "eth1", "vnic": "vs-ext"}]
    assert view["traces"] == []
    for private in ("secret-token", "4242", "vsl-ab12-host", "/run/x.sock"):
        assert private not in text, private


def test_recorded_traces_are_kept_newest_last_up_to_the_limit(tmp_path: Path) -> None:
    lab = _lab(tmp_path)
    lab.publish_view()
    for i in range(VIEW_TRACES + 3):
        lab.record_trace({"icmp_id": i})
    traces = json.loads(view_path(tmp_path).read_text())["traces"]
    assert [t["icmp_id"] for t in traces] == list(range(3, VIEW_TRACES + 3))
    assert not list(tmp_path.glob("*.tmp")), "written by rename: no temporary file left"


def test_a_lab_whose_directory_is_gone_records_nothing(tmp_path: Path) -> None:
    lab = _lab(tmp_path / "gone")
    lab.record_trace({"icmp_id": 1})
    assert not (tmp_path / "gone").exists()
