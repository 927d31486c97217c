"""GET /metrics: Prometheus' text format with the names and types of its conventions, values equal to
what `stats` and `fdb show` say, the bearer tokens' rules (a reader's is enough; none only when the
operator asks), and `promtool check metrics` (Debian's prometheus package, installed by make test).
No root: the in-process manager on memory ports, and the fake api."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_api import FakeApi, private
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from l2frames import BROADCAST, frame
from vswitch.control.manager import SwitchManager
from vswitch.control.model import PortKind, PortSettings, PortSpec, StaticEntry, SwitchSpec, SwitchType
from vswitch.frontends.rest import make_app
from vswitch.frontends.tokens import Role
from waiting import wait_until


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[SwitchManager]:
    m = SwitchManager(port_socket_dir=str(tmp_path / "ports"))
    yield m
    m.shutdown()


def scrape(client: TestClient) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """sample name → labels → value, from a scrape that must be Prometheus' text format."""
    r = client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(r.text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_the_metrics_are_what_stats_and_the_mac_table_say(manager: SwitchManager) -> None:
    m = manager
    m.create_switch(SwitchSpec("lan", SwitchType.PRIVATE, max_entries=4096))
    for p in ("vm1", "vm2", "vm3"):
        m.add_port("lan", PortSpec(p, PortKind.MEMORY, p))
    m.set_port("lan", "vm3", PortSettings(admin_up=False))
    m.fdb_add("lan", StaticEntry("02:00:00:00:00:99", "vm2"))
    for _ in range(3):
        m.port_object("lan", "vm1").inject(frame(BROADCAST, "a"))  # type: ignore[attr-defined]
    m.port_object("lan", "vm1").inject(frame(BROADCAST, "a")[:10])  # type: ignore[attr-defined]  # a runt
    wait_until(lambda: {s.port: s.rx_frames for s in m.stats("lan")}["vm1"] >= 4, what="the frames to be counted")
    client = TestClient(make_app(m))
    got = scrape(client)
    for s in m.stats("lan"):
        key = (("port", s.port), ("switch", "lan"))
        assert got["vswitch_port_rx_frames_total"][key] == s.rx_frames
        assert got["vswitch_port_tx_bytes_total"][key] == s.tx_bytes
        assert got["vswitch_port_floods_total"][key] == s.floods
        assert got["vswitch_port_learned_total"][key] == s.learned
        for reason, n in s.drops.items():
            assert got["vswitch_port_drops_total"][(("port", s.port), ("reason", reason), ("switch", "lan"))] == n
    assert got["vswitch_port_rx_frames_total"][(("port", "vm1"), ("switch", "lan"))] == 4, "3 floods and the runt"
    assert got["vswitch_port_drops_total"][(("port", "vm1"), ("reason", "drop_malformed"), ("switch", "lan"))] == 1
    assert got["vswitch_port_tx_frames_total"][(("port", "vm2"), ("switch", "lan"))] == 3, "the floods went out"
    assert got["vswitch_port_up"][(("port", "vm3"), ("switch", "lan"))] == 0, "admin down"
    assert got["vswitch_port_up"][(("port", "vm1"), ("switch", "lan"))] == 1
    assert got["vswitch_fdb_entries"][(("kind", "dynamic"), ("switch", "lan"))] == 1
    assert got["vswitch_fdb_entries"][(("kind", "static"), ("switch", "lan"))] == 1
    assert got["vswitch_fdb_capacity"][(("switch", "lan"),)] == 4096
    assert got["vswitch_fdb_evictions_total"][(("switch", "lan"),)] == 0
    assert got["vswitch_switch_datapath_kernel"][(("switch", "lan"),)] == 0
    assert got["vswitch_switch_info"][(("datapath", "python"), ("state", "up"), ("switch", "lan"),
                                       ("type", "private"))] == 1
    assert got["vswitch_switch_awaiting_confirm"][(("switch", "lan"),)] == 0
    m.port_object("lan", "vm1").inject(frame(BROADCAST, "a"))  # type: ignore[attr-defined]
    wait_until(lambda: scrape(client)["vswitch_port_rx_frames_total"][(("port", "vm1"), ("switch", "lan"))] == 5,
               what="the next scrape to count the next frame (read at each scrape, nothing cached)")
    m.delete_switch("lan")
    assert "vswitch_port_rx_frames_total" not in scrape(client), "a deleted switch has no series"


def test_evictions_from_a_full_table_are_counted(manager: SwitchManager) -> None:
    m = manager
    m.create_switch(SwitchSpec("lan", SwitchType.PRIVATE, max_entries=16))
    for p in ("vm1", "vm2"):
        m.add_port("lan", PortSpec(p, PortKind.MEMORY, p))
    for i in range(20):  # 20 sources into a table of 16: 4 evicted
        m.port_object("lan", "vm1").inject(frame(BROADCAST, bytes((2, 0, 0, 0, 1, i))))  # type: ignore[attr-defined]
    wait_until(lambda: m.get_switch("lan").fdb_evictions == 4, what="4 evictions")
    got = scrape(TestClient(make_app(m)))
    assert got["vswitch_fdb_evictions_total"][(("switch", "lan"),)] == 4
    assert got["vswitch_fdb_entries"][(("kind", "dynamic"), ("switch", "lan"))] == 16


def test_a_reader_token_reads_the_metrics_and_none_is_needed_only_when_the_operator_asks() -> None:
    api = FakeApi()
    api.create_switch(private("s"))
    tokens = {"adm": Role.ADMIN, "rdr": Role.READER}
    client = TestClient(make_app(api, tokens=tokens))
    assert client.get("/metrics").status_code == 401
    r = client.get("/metrics", headers={"Authorization": "Bearer rdr"})
    assert r.status_code == 200 and "vswitch_fdb_capacity" in r.text
    open_metrics = TestClient(make_app(api, tokens=tokens, public_metrics=True))
    assert open_metrics.get("/metrics").status_code == 200
    assert open_metrics.get("/switches").status_code == 401, "every other path still needs a token"


def test_promtool_accepts_the_metrics(manager: SwitchManager) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is missing (Debian package prometheus; make test installs it)")
    manager.create_switch(SwitchSpec("lan", SwitchType.PRIVATE))
    manager.add_port("lan", PortSpec("vm1", PortKind.MEMORY, "vm1"))
    manager.add_port("lan", PortSpec("vm2", PortKind.MEMORY, "vm2"))
    manager.port_object("lan", "vm1").inject(frame(BROADCAST, "a")[:10])  # type: ignore[attr-defined]  # a drop
    wait_until(lambda: any(s.drops for s in manager.stats("lan")), what="the runt to be counted")
    body = TestClient(make_app(manager)).get("/metrics").text
    proc = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
