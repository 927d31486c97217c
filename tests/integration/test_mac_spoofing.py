"""MAC address spoofing with real parts, on both datapaths: three namespaces behind veth link ports
(Python: AF_PACKET; the kernel fast path: tc-bpf); one sends frames whose source is another's MAC
(an AF_PACKET socket). With spoofing off on its port it cannot steal the victim's MAC — the forged
frames are counted as dropped, the MAC table keeps the victim where it is and the victim keeps
receiving its traffic; with spoofing on the same frames move the victim's MAC to it."""

from __future__ import annotations

import sys

import pytest
from test_dhcp_router_guards import Lab, lab  # noqa: F401  (the fixture: a private switch and its VMs)

import netns as ns_helpers
from vswitch.control.model import PortSettings
from waiting import wait_until

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

ATTACKER, VICTIM, PEER = "02:95:00:00:00:66", "02:95:00:00:00:02", "02:95:00:00:00:01"
N_FORGED = 20

SEND_FORGED = """
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
s.bind((sys.argv[1], 0))
frame = bytes.fromhex(sys.argv[2])
for _ in range(int(sys.argv[3])):
    s.send(frame)
"""


def _forged(src: str) -> str:
    """A broadcast from `src` (an experimental ethertype, 0x88B5: no host's stack answers it)."""
    return ("ff" * 6 + src.replace(":", "") + "88b5").ljust(120, "0")


def _port_of(on: Lab, mac: str) -> list[str]:
    return [e.port for e in on.m.fdb_show(on.sw) if e.mac == mac]


def test_spoofing_off_a_vm_cannot_steal_another_ports_mac_and_with_it_on_it_can(lab: Lab) -> None:  # noqa: F811
    attacker_ns, attacker_nic = lab.vm("vm", "10.95.0.66/24", ATTACKER)
    victim_ns, _ = lab.vm("victim", "10.95.0.2/24", VICTIM)
    peer_ns, _ = lab.vm("peer", "10.95.0.1/24", PEER)

    def ping(ns: str, to: str) -> bool:
        return ns_helpers.run(ns, ["ping", "-c", "1", "-W", "1", to], check=False).returncode == 0

    def forge(n: int) -> None:
        ns_helpers.run(attacker_ns, [sys.executable, "-c", SEND_FORGED, attacker_nic, _forged(VICTIM), str(n)])

    def dropped() -> int:
        return lab.drops("vm", "drop_spoofed_mac")

    info = lab.m.set_port(lab.sw, "vm", PortSettings(mac_spoofing=False))
    assert (info.mac_spoofing, info.port_mac) == (False, None)
    wait_until(lambda: ping(attacker_ns, "10.95.0.1"), what="the attacker's own traffic to pass")
    wait_until(lambda: lab.m.get_port(lab.sw, "vm").port_mac == ATTACKER, what="its first source adopted")
    wait_until(lambda: ping(peer_ns, "10.95.0.2"), what="the peer to reach the victim")
    assert _port_of(lab, VICTIM) == ["victim"]

    # on the kernel fast path the port leaves the upcall path once its MAC is in its slot (a tick):
    # forge until the program's own stage drops one, so what follows is the program's decision
    dp = lab.m.datapath(lab.sw)
    program = getattr(dp, "program", None)
    if program is not None:
        def program_dropped() -> bool:
            forge(1)
            return program.counters("vm")["drop_spoofed_mac"] > 0
        wait_until(program_dropped, what="the fast path's slot to lock the port to its MAC")
    before = dropped()
    forge(N_FORGED)
    wait_until(lambda: dropped() == before + N_FORGED, what="every forged frame to be counted as dropped")
    assert _port_of(lab, VICTIM) == ["victim"], "a forged source is never learned"

    def told() -> bool:  # Python's first drop names its source; the program's counts come once a second
        return any(e.kind == "frame-dropped" and e.port == "vm" and e.reason == "drop_spoofed_mac"
                   and (program is None or (e.mac is None and e.count > 0)) for e in lab.m.events(lab.sw).events)
    wait_until(told, what="a frame-dropped event for the forged frames (on the fast path: the program's count)")
    assert ping(peer_ns, "10.95.0.2"), "the victim keeps receiving its traffic"
    assert ping(attacker_ns, "10.95.0.1"), "the attacker's own MAC still works"

    assert lab.m.set_port(lab.sw, "vm", PortSettings(mac_spoofing=True)).mac_spoofing
    forge(N_FORGED)
    wait_until(lambda: _port_of(lab, VICTIM) == ["vm"], what="with spoofing on the forged source to move the MAC")
    assert dropped() == before + N_FORGED, "nothing more dropped with spoofing on"


def test_a_mac_limit_sends_a_fast_path_port_up_and_port_show_says_why(lab: Lab, datapath: str) -> None:  # noqa: F811
    a_ns, _ = lab.vm("vm", "10.95.0.66/24", ATTACKER)
    b_ns, _ = lab.vm("peer", "10.95.0.1/24", PEER)
    kernel = datapath == "kernel"
    assert lab.m.get_port(lab.sw, "vm").datapath == ("kernel (tc-bpf)" if kernel else "python")

    info = lab.m.set_port(lab.sw, "vm", PortSettings(mac_limit=2))
    if kernel:
        assert info.datapath == ("python, through the upcall path: a MAC limit (the program keeps no count "
                                 "of MACs per port)")
        assert "1 sent up by its settings" in lab.m.get_switch(lab.sw).datapath
        assert lab.m.get_port(lab.sw, "peer").datapath == "kernel (tc-bpf)", "the other ports stay down there"
    else:
        assert info.datapath == "python"
    assert ns_helpers.run(a_ns, ["ping", "-c", "1", "-W", "2", "10.95.0.1"], check=False).returncode == 0
    if kernel:
        assert lab.m.datapath(lab.sw).program.counters("vm")["upcall_port"] > 0, "Python decided its frames"

    info = lab.m.set_port(lab.sw, "vm", PortSettings(mac_limit=0))
    assert info.datapath == ("kernel (tc-bpf)" if kernel else "python")
    assert "sent up" not in lab.m.get_switch(lab.sw).datapath
    assert ns_helpers.run(b_ns, ["ping", "-c", "1", "-W", "2", "10.95.0.66"], check=False).returncode == 0
