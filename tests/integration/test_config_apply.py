"""`vswitch config export` / `config apply` against a real vswitchd: export, delete, apply → the same
switches, ports and static entries, and frames flow again (a ping between two namespaces through
the switch); a file with one bad port, or a step the kernel refuses, changes nothing.

The daemon runs in its own namespace; each "VM" is a namespace holding one end of a veth whose
other end is a `link` port of the switch (veths outlive the switch, so the applied file finds them).
The mixed switch of the first test runs on both datapaths (its `datapath` is exported and applied back);
the refusal test stays on `auto` (the kernel one here): what it tests is the undo, before any frame.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from switchlab import Daemon, address_in, veth_pair

import datapaths
import netns as ns_helpers

pytestmark = pytest.mark.root

SW = "cfg"
MAC = "02:95:00:00:00:09"


def _body(export: str) -> str:
    """The document of an export without its header comment (which carries the date)."""
    return "".join(line for line in export.splitlines(keepends=True) if not line.startswith("#"))


@pytest.fixture
def lab(netns, tmp_path: Path) -> Iterator[tuple[Daemon, str, Path, list[str]]]:
    """The daemon, vm1's namespace, a directory for files, the switch-side ends of vm1's and vm2's veths."""
    host, vm1, vm2 = netns("cfh"), netns("cf1"), netns("cf2")
    sides = []
    for i, vm in ((1, vm1), (2, vm2)):
        # unique names: both ends are made in this namespace before they move
        side, nic = ns_helpers.unique_name(f"cs{i}"), ns_helpers.unique_name(f"cv{i}")
        veth_pair(side, nic, host, vm)
        address_in(host, side, None)
        address_in(vm, nic, f"10.95.0.{i}/24", mac=f"02:95:00:00:00:0{i}")
        sides.append(side)
    d = Daemon(host).start()
    try:
        yield d, vm1, tmp_path, sides
    finally:
        d.cleanup()


def _runs_on(d: Daemon, mode: str) -> None:
    with d.api() as api:
        datapaths.assert_runs_on(api.get_switch(SW).datapath, mode)


def test_export_delete_apply_gives_back_the_same_switch_and_frames_flow(
        lab: tuple[Daemon, str, Path, list[str]], datapath: str) -> None:
    d, vm1, tmp, (sw1, sw2) = lab
    d.cli("switch", "create", SW, "--private", "--ageing", "60", "--max-entries", "1024", "--datapath", datapath)
    d.cli("port", "add", SW, "p1", "--link", sw1, "--vlan", "10")
    d.cli("port", "add", SW, "p2", "--link", sw2, "--trunk", "10,20-22", "--native", "10")
    d.cli("port", "add", SW, "tap1", "--tap", ns_helpers.unique_name("cft"), "--vlan", "20")
    d.cli("port", "set", SW, "tap1", "--learning", "off")
    d.cli("fdb", "add", SW, MAC, "--port", "p2", "--vlan", "21")
    _runs_on(d, datapath)
    assert ns_helpers.ping(vm1, "10.95.0.2"), "vm1 reaches vm2 through the switch before the export"

    out = tmp / "host.yaml"
    d.cli("config", "export", "--output", str(out))
    exported = out.read_text()
    assert exported.startswith("# vswitch configuration, exported by vswitch")
    d.cli("switch", "delete", SW)
    assert d.cli("switch", "list", "--json").stdout.strip() == "[]"

    dry = d.cli("config", "apply", str(out), "--dry-run").stdout
    assert "  1. create switch cfg (private)" in dry and d.cli("switch", "list", "--json").stdout.strip() == "[]"
    applied = d.cli("config", "apply", str(out)).stdout
    assert applied.startswith(f"applied {out}:\n  1. create switch cfg (private)\n"), applied
    assert f"static cfg {MAC} vlan 21: add (port p2)" in applied
    assert _body(d.cli("config", "export").stdout) == _body(exported), "the same switch, ports and static entries"
    _runs_on(d, datapath)
    assert ns_helpers.ping(vm1, "10.95.0.2"), "vm1 reaches vm2 through the re-applied switch"
    assert d.cli("config", "apply", str(out)).stdout == "nothing to change\n"


def test_a_file_with_one_bad_port_or_a_refused_step_changes_nothing(
        lab: tuple[Daemon, str, Path, list[str]]) -> None:
    d, vm1, tmp, (sw1, sw2) = lab
    d.cli("switch", "create", SW, "--private")
    d.cli("port", "add", SW, "p1", "--link", sw1, "--vlan", "1")
    d.cli("port", "add", SW, "p2", "--link", sw2, "--vlan", "1")
    before = d.cli("config", "export").stdout
    good = tmp / "good.yaml"
    good.write_text(before)
    text = before.replace("ageing_s: 300", "ageing_s: 30")

    bad = tmp / "bad.yaml"
    bad.write_text(text.replace(f"target: {sw2}\n    vlan: 1", f"target: {sw2}\n    vlan: 5000")
                   .replace(f"target: {sw1}\n    vlan: 1", f"target: {sw1}\n    vlan: 20"))
    r = d.cli("config", "apply", str(bad), check=False)
    assert r.returncode == 1 and r.stderr.splitlines() == [
        f"Error: {bad} is refused, nothing changed:",
        "  switches[0].ports[1].vlan: 5000 is not a VLAN ID (1-4094)"], r.stderr

    refused = tmp / "refused.yaml"
    refused.write_text(text.replace(f"target: {sw1}\n    vlan: 1", f"target: {sw1}\n    vlan: 20")
                       .replace("  ports:\n", "  ports:\n  - name: p0\n    kind: link\n    target: nosuch0\n"))
    r = d.cli("config", "apply", str(refused), check=False)
    assert r.returncode == 1 and "(add port cfg/p0 (link nosuch0, vlan 1)) failed: interface 'nosuch0' does " \
                                 "not exist; nothing changed (the 2 steps before it were undone)" in r.stderr, r.stderr
    assert _body(d.cli("config", "export").stdout) == _body(before), "the running switch is as it was"
    assert ns_helpers.ping(vm1, "10.95.0.2"), "and it still forwards"
    assert d.cli("config", "apply", str(good)).stdout == "nothing to change\n"
