"""`lab trace` on the one-nic story: the printed path is what was captured, in time order.

The lab is built by hand (handlab.OneNicByHand: namespaces, veth, a Linux bridge, vswitchd with an
External switch and a VM on a TAP port), so these tests check the trace, not the lab builder.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from handlab import OneNicByHand
from labkit import running_lab
from rich.console import Console

from vswitch.frontends.client import RestSwitchApi
from vswitch.frontends.lab_trace_cli import print_trace
from vswitch.lab import load_topology
from vswitch.lab.trace import TraceError, trace

pytestmark = pytest.mark.root


def _api(socket_path: str) -> RestSwitchApi:
    return RestSwitchApi(socket_path=socket_path)


@pytest.fixture(scope="module")
def lab() -> Iterator[OneNicByHand]:
    with OneNicByHand() as built:
        yield built


def _shape(hops: list[dict]) -> list[tuple]:
    """(what, node or switch, direction/step) of each hop, the order the test cares about."""
    out = []
    for h in hops:
        if h["source"] == "switch":
            out.append(("switch", h["switch"], h["step"]))
        else:
            out.append((h["kind"], h["node"], h.get("direction")))
    return out


def _host_vnic_out(socket_path: str, switch: str) -> list[tuple]:
    """The capture hop of a frame leaving the host vNIC. On the Python datapath the TAP's packet taps see
    it; on the kernel fast path the program takes it at the TAP's tc egress, before any packet tap
    (docs/kernel-fastpath.md), so the switch's own report of its arrival is its first observation."""
    label = _api(socket_path).get_switch(switch).datapath
    return [] if label.startswith("kernel") else [("host-vnic", "host", "out")]


def _check_times(echo: dict) -> None:
    times = [h["t"] for h in echo["request"] + echo["reply"]]
    assert times == sorted(times), f"hops must be in time order: {times}"
    assert echo["request"] and echo["reply"]
    assert max(h["t"] for h in echo["request"]) <= min(h["t"] for h in echo["reply"]), \
        "the whole request path comes before the reply path"


def test_host_to_server_path_is_observed_hop_by_hop(lab: OneNicByHand) -> None:
    result = trace(lab, "host", "server", count=2, api_for=_api)
    assert result["received"] == 2, result["ping_output"]
    assert result["errors"] == []
    echo = result["echoes"][-1]  # the second ping: everything learned by then
    _check_times(echo)
    sw = lab.sw
    assert _shape(echo["request"]) == [
        *_host_vnic_out(lab.daemon.socket, sw),
        ("switch", sw, "arrive"),
        ("switch", sw, "decide"),
        ("physical-nic", "host", "out"),
        ("physical-switch-port", "physical-switch", None),
        ("server-nic", "server", "in"),
    ], json.dumps(echo["request"], indent=1)
    assert _shape(echo["reply"]) == [
        ("server-nic", "server", "out"),
        ("physical-switch-port", "physical-switch", None),
        ("physical-nic", "host", "in"),
        ("switch", sw, "arrive"),
        ("switch", sw, "decide"),
        ("host-vnic", "host", "in"),
    ], json.dumps(echo["reply"], indent=1)
    request = echo["request"][len(_host_vnic_out(lab.daemon.socket, sw)):]  # from the switch's arrival on
    if len(request) < len(echo["request"]):
        assert echo["request"][0]["link"] == lab.vnic, "the host vNIC's capture saw it leave"
    decide = request[1]
    assert decide["in_port"] == "host" and decide["out_ports"] == ["uplink"]
    assert decide["reason"] == "FORWARD_LEARNED" and "FORWARD_LEARNED" in decide["text"]
    assert request[0]["link"] == lab.vnic, "the switch reported the host vNIC as its port 'host'"
    psw = request[3]
    assert (psw["in_ports"], psw["out_ports"]) == ([lab.p1], [lab.p2])
    assert request[2]["link"] == lab.nic
    assert request[4]["link"] == lab.srv_if and "echo request received" in request[4]["text"]
    assert [p["link"] for p in echo["not_seen_at"]] == [lab.vm_if], "a learned unicast never reaches the VM"
    # every capture hop names a link that really was captured, with its timestamp
    captured = {(r["node"], r["ifname"], r["t"]) for r in result["records"]}
    for h in echo["request"] + echo["reply"]:
        if h["source"] == "capture" and h["kind"] != "physical-switch-port":
            assert (h["node"], h["link"], h["t"]) in captured, h


class _Blind:
    """The same lab, but without capture on the physical switch's ports."""

    def __init__(self, lab: OneNicByHand) -> None:
        self._lab = lab
        self.name = lab.name

    def netns(self, node: str) -> str:
        return self._lab.netns(node)

    def address(self, node: str) -> str:
        return self._lab.address(node)

    def capture_points(self) -> list:
        return [p for p in self._lab.capture_points() if p.kind != "physical-switch-port"]

    def switches(self) -> list:
        return self._lab.switches()


def test_a_link_not_captured_gives_no_hop(lab: OneNicByHand) -> None:
    """The topology still has the physical switch, but nothing captured there: no physical-switch hop."""
    result = trace(_Blind(lab), "host", "server", count=1, api_for=_api)
    assert result["received"] == 1
    hops = result["echoes"][0]["request"] + result["echoes"][0]["reply"]
    assert not any(h["kind"] == "physical-switch-port" for h in hops if h["source"] == "capture")
    assert any(h["kind"] == "server-nic" for h in hops if h["source"] == "capture")


def test_first_frame_to_an_unlearned_mac_is_flooded_then_unicast(lab: OneNicByHand) -> None:
    """After an fdb flush the host's first request is flooded (the VM sees a copy); the second is not."""
    assert trace(lab, "host", "server", count=1, api_for=_api)["received"] == 1  # warm the ARP caches
    _api(lab.daemon.socket).fdb_flush(lab.sw)
    result = trace(lab, "host", "server", count=2, api_for=_api)
    assert result["received"] == 2
    first, second = result["echoes"]
    decide = next(h for h in first["request"] if h["source"] == "switch" and h["step"] == "decide")
    assert decide["reason"] == "FLOOD_UNKNOWN" and sorted(decide["out_ports"]) == ["uplink", "vm1"]
    assert "flooded to ports" in decide["text"]
    vm_copy = [h for h in first["request"] if h["source"] == "capture" and h["kind"] == "vm-nic"]
    assert vm_copy and vm_copy[0]["pkttype"] == "otherhost", "the flooded copy was captured on the VM's NIC"
    decide2 = next(h for h in second["request"] if h["source"] == "switch" and h["step"] == "decide")
    assert decide2["reason"] == "FORWARD_LEARNED" and decide2["out_ports"] == ["uplink"]
    assert not any(h.get("kind") == "vm-nic" for h in second["request"] + second["reply"])


def test_vm_to_host_stays_inside_the_switch(lab: OneNicByHand) -> None:
    result = trace(lab, "vm", "host", count=2, api_for=_api)
    assert result["received"] == 2
    echo = result["echoes"][-1]
    _check_times(echo)
    sw = lab.sw
    assert _shape(echo["request"]) == [("vm-nic", "vm", "out"), ("switch", sw, "arrive"),
                                       ("switch", sw, "decide"), ("host-vnic", "host", "in")]
    assert _shape(echo["reply"]) == [*_host_vnic_out(lab.daemon.socket, sw), ("switch", sw, "arrive"),
                                     ("switch", sw, "decide"), ("vm-nic", "vm", "in")]
    assert not any(h.get("kind") in ("physical-nic", "physical-switch-port")
                   for h in echo["request"] + echo["reply"]), "once learned, nothing leaves through the uplink"
    assert lab.nic in [p["link"] for p in echo["not_seen_at"]]


def test_cli_trace_on_the_builtin_one_nic_lab() -> None:
    """`vswitch lab trace` on the lab builder's one-nic: VM → host, human and --json."""
    vswitch = str(Path(sys.executable).parent / "vswitch")
    name = f"trace{os.getpid()}"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([vswitch, "lab", *args], capture_output=True, text=True, timeout=120)

    up = run("up", "--builtin", "one-nic", "--name", name)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        human = run("trace", name, "--from", "vm1", "--to", "host", "--count", "1")
        assert human.returncode == 0, human.stdout + human.stderr
        assert "switch ext (python): known unicast → port host (FORWARD_LEARNED)" in human.stdout, human.stdout
        assert "not observed at: host eth1" in human.stdout, human.stdout
        data = json.loads(run("trace", name, "--from", "vm1", "--to", "host", "--count", "2", "--json").stdout)
        echo = data["echoes"][-1]
        kinds = [h.get("kind") for h in echo["request"] + echo["reply"] if h["source"] == "capture"]
        shown = json.loads(run("show", name, "--json").stdout)
        socket = next(sw["socket"] for sw in shown["switches"] if sw["name"] == "ext")
        host_out = [k for k, _, _ in _host_vnic_out(socket, "ext")]
        assert kinds == ["vm-nic", "host-vnic", *host_out, "vm-nic"], json.dumps(echo, indent=1)
        assert data["records"] and all(r["icmp_id"] == data["icmp_id"] for r in data["records"])
        refused = run("trace", name, "--from", "vm1", "--to", "nosuch")
        assert refused.returncode == 1 and "no node 'nosuch'" in refused.stderr, refused.stderr
        same = run("trace", name, "--from", "vm1", "--to", "vm1")
        assert same.returncode == 1 and "--from and --to are the same node ('vm1')" in same.stderr, same.stderr
        assert same.stdout == "", "refused before any ping or capture started"
    finally:
        down = run("down", name)
        assert down.returncode == 0, down.stdout + down.stderr


VLANS = """
name: vlans
nodes:
  host: {kind: host}
  vma: {kind: vm, interfaces: {eth0: {address: 10.2.0.1/24}}}
  vmb: {kind: vm, interfaces: {eth0: {address: 10.2.0.2/24}}}
  vmc: {kind: vm, interfaces: {eth0: {address: 10.2.0.3/24}}}
switches:
  lan: {host: host, type: private}
attachments:
  - {vm: vma, switch: lan, vlan: 10}
  - {vm: vmb, switch: lan, vlan: 10}
  - {vm: vmc, switch: lan, vlan: 20}
"""


def test_a_ping_across_vlans_fails_and_the_trace_says_where_the_arp_request_stopped(tmp_path: Path) -> None:
    """vma (VLAN 10) pings vmc (VLAN 20): no ARP answer; the trace shows ping's words and the switch's drop."""
    f = tmp_path / "vlans.yaml"
    f.write_text(textwrap.dedent(VLANS))
    with running_lab(load_topology(f), "trvlan") as lab:
        result = trace(lab, "vma", "vmc", count=2, api_for=_api)
        out = io.StringIO()
        print_trace(result, Console(file=out, width=300, highlight=False))
        text = out.getvalue()
    assert result["received"] == 0, result["ping_output"]
    assert result["ping_error"] and all(line in text for line in result["ping_error"]), text
    assert any("100% packet loss" in line for line in result["ping_error"]), result["ping_error"]
    arp = result["arp"]
    assert arp["requests_sent"] >= 1 and not arp["answered"], json.dumps(arp, indent=1)
    assert arp["stopped"] == ("switch lan flooded the ARP request from vma — VLAN 10, no member port reaches vmc "
                              "in VLAN 20 (sent to port vmb)"), arp["stopped"]
    assert arp["stopped"] in text, text
    decide = next(h for h in arp["request"] if h["source"] == "switch" and h["step"] == "decide")
    assert decide["vlan"] == 10 and decide["out_ports"] == ["vmb"] and decide["reason"] == "FLOOD_BROADCAST"
    assert [h["n"] for h in arp["hops"]] == list(range(1, len(arp["hops"]) + 1))
    times = [h["t"] for h in arp["hops"]]
    assert times == sorted(times)
    assert any(h["source"] == "capture" and h["node"] == "vmb" for h in arp["request"]), "vmb got the flood"
    assert not any(h.get("node") == "vmc" for h in arp["hops"]), "nothing reached vmc"


class _Untouchable:
    """A lab whose namespaces, captures and switches must not be touched."""

    name = "untouchable"

    def __getattr__(self, attr: str) -> object:
        raise AssertionError(f"trace touched the lab ({attr}) before refusing")


def test_the_same_node_as_source_and_destination_is_refused_before_anything_starts() -> None:
    with pytest.raises(TraceError, match=r"--from and --to are the same node \('vm1'\)"):
        trace(_Untouchable(), "vm1", "vm1", api_for=_api)  # type: ignore[arg-type]
