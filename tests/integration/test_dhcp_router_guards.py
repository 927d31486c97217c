"""The DHCP guard and the router guard with real parts, on both datapaths: a rogue DHCP server
(dnsmasq) and a real client (busybox udhcpc) in namespaces on two VM ports; a crafted router
advertisement (scapy builds it, a raw socket sends it) from one VM port to a namespace that accepts
RAs. VMs are veth cables whose switch end is a `link` port (AF_PACKET on Python, tc-bpf on the
kernel fast path)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from switchlab import delete_link, move_and_address, veth_pair

import datapaths
import netns as ns_helpers
from vswitch.control.manager import SwitchManager
from vswitch.control.model import DatapathMode, PortKind, PortSettings, PortSpec, SwitchSpec, SwitchType
from waiting import wait_until

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

SEND_RAW = """
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
s.bind((sys.argv[1], 0))
s.send(bytes.fromhex(sys.argv[2]))
"""


class Lab:
    """One private switch on `datapath` and its VMs: namespaces behind veth cables."""

    def __init__(self, netns, datapath: str) -> None:
        self.netns, self.sides = netns, []
        self.m = SwitchManager()
        self.sw = ns_helpers.unique_name("gd")
        self.m.create_switch(SwitchSpec(self.sw, SwitchType.PRIVATE, datapath=DatapathMode(datapath)))

    def vm(self, port: str, cidr: str | None, mac: str, *, ipv6: bool = False) -> tuple[str, str]:
        """A VM on port `port`: (its namespace, its NIC's name there)."""
        ns = self.netns(port)
        nic, side = ns_helpers.unique_name("gn" + port), ns_helpers.unique_name("gs" + port)
        veth_pair(side, nic)
        self.sides.append(side)
        ns_helpers.run(None, ["sysctl", "-qw", f"net.ipv6.conf.{side}.disable_ipv6=1"])
        ns_helpers.run(None, ["ip", "link", "set", side, "up"])
        self.m.add_port(self.sw, PortSpec(port, PortKind.LINK, side))
        if not ipv6:  # quiet: no router solicitations, MLD or DAD of its own
            ns_helpers.run(ns, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
        move_and_address(nic, ns, cidr, mac=mac)
        if ipv6:  # a host that takes what routers advertise (accept_ra 2: even if it forwarded)
            ns_helpers.run(ns, ["sysctl", "-qw", f"net.ipv6.conf.{nic}.disable_ipv6=0",
                                f"net.ipv6.conf.{nic}.accept_ra=2", f"net.ipv6.conf.{nic}.autoconf=1"])
        return ns, nic

    def drops(self, port: str, reason: str) -> int:
        return {s.port: s.drops.get(reason, 0) for s in self.m.stats(self.sw)}[port]

    def close(self) -> None:
        self.m.shutdown()
        for side in self.sides:
            delete_link(side)


@pytest.fixture
def lab(netns, datapath: str) -> Iterator[Lab]:
    made = Lab(netns, datapath)
    try:
        datapaths.assert_runs_on(made.m.get_switch(made.sw).datapath, datapath)
        yield made
    finally:
        made.close()


def _dnsmasq(ns: str, nic: str, first: str, last: str, tmp: Path) -> subprocess.Popen[str]:
    """A DHCP server in `ns` on `nic` handing out first..last; ready (port 67 bound) when returned."""
    proc = ns_helpers.popen(ns, [shutil.which("dnsmasq") or "dnsmasq", "--keep-in-foreground", "--no-daemon",
                                 "--conf-file=/dev/null", "--port=0", f"--interface={nic}", "--bind-interfaces",
                                 f"--dhcp-range={first},{last},255.255.255.0,1h", "--no-ping", "--user=root",
                                 f"--dhcp-leasefile={tmp / (ns + '.leases')}", f"--pid-file={tmp / (ns + '.pid')}",
                                 "--dhcp-authoritative"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def bound() -> bool:
        assert proc.poll() is None, f"dnsmasq in {ns} ended: {proc.stderr.read() if proc.stderr else ''}"
        return ":67 " in ns_helpers.run(ns, ["ss", "-Hlun"]).stdout

    wait_until(bound, what=f"dnsmasq in {ns} to listen on port 67")
    return proc


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _udhcpc(ns: str, nic: str, *, tries: int) -> str:
    """One DHCP exchange by busybox's udhcpc (`tries` DISCOVERs a second apart; no address
    configured): its report, e.g. 'lease of 10.94.0.120 obtained from 10.94.0.66', or '' for none."""
    proc = ns_helpers.run(ns, ["busybox", "udhcpc", "-i", nic, "-n", "-q", "-f", "-t", str(tries), "-T", "1",
                               "-A", "1", "-s", "/bin/true"], check=False, timeout=30)
    out = proc.stdout + proc.stderr
    return next((line.split("udhcpc: ", 1)[-1] for line in out.splitlines() if "obtained" in line), "")


@pytest.mark.skipif(shutil.which("dnsmasq") is None, reason="needs dnsmasq (Debian dnsmasq-base; `make test` as "
                    "root installs it)")
def test_dhcp_guard_stops_a_rogue_server_and_the_real_one_still_serves(lab: Lab, tmp_path: Path) -> None:
    rogue_ns, rogue_nic = lab.vm("rogue", "10.94.0.66/24", "02:94:00:00:00:66")
    client_ns, client_nic = lab.vm("client", None, "02:94:00:00:00:01")
    rogue = _dnsmasq(rogue_ns, rogue_nic, "10.94.0.100", "10.94.0.149", tmp_path)
    try:
        got = _udhcpc(client_ns, client_nic, tries=5)
        assert got.startswith("lease of 10.94.0.1") and "obtained from 10.94.0.66," in got, \
            f"with the guard off the client takes the rogue's lease: {got!r}"

        info = lab.m.set_port(lab.sw, "rogue", PortSettings(dhcp_guard=True))
        assert info.dhcp_guard and not info.router_guard
        got = _udhcpc(client_ns, client_nic, tries=2)
        assert got == "", f"with the guard on the rogue's offers never reach the client: {got!r}"
        assert lab.drops("rogue", "drop_dhcp_guard") >= 2, "the rogue answered each DISCOVER: dropped and counted"

        server_ns, server_nic = lab.vm("server", "10.94.0.2/24", "02:94:00:00:00:02")
        server = _dnsmasq(server_ns, server_nic, "10.94.0.200", "10.94.0.249", tmp_path)
        try:
            got = _udhcpc(client_ns, client_nic, tries=5)
            assert got.startswith("lease of 10.94.0.2") and "obtained from 10.94.0.2," in got, \
                f"the legitimate server on an unguarded port still serves the client: {got!r}"
        finally:
            _stop(server)
    finally:
        _stop(rogue)


ROUTER_LL, PREFIX = "fe80::94:1", "2001:db8:94::"


def _router_advertisement(src_mac: str) -> bytes:
    """A router's RA (lifetime 1800 s, prefix 2001:db8:94::/64 for SLAAC), checksummed by scapy."""
    from scapy.layers.inet6 import (
        ICMPv6ND_RA,
        ICMPv6NDOptPrefixInfo,
        ICMPv6NDOptSrcLLAddr,
        IPv6,
    )
    from scapy.layers.l2 import Ether

    pkt = (Ether(src=src_mac, dst="33:33:00:00:00:01") / IPv6(src=ROUTER_LL, dst="ff02::1", hlim=255)
           / ICMPv6ND_RA(routerlifetime=1800) / ICMPv6NDOptSrcLLAddr(lladdr=src_mac)
           / ICMPv6NDOptPrefixInfo(prefix=PREFIX, prefixlen=64, L=1, A=1, validlifetime=3600,
                                   preferredlifetime=1800))
    return bytes(pkt)


def _configured(ns: str) -> tuple[bool, bool]:
    """(an address in the advertised prefix, a default route via the router) in `ns`."""
    addrs = ns_helpers.run(ns, ["ip", "-6", "addr", "show"]).stdout
    routes = ns_helpers.run(ns, ["ip", "-6", "route", "show", "default"]).stdout
    return f"inet6 {PREFIX[:-1]}" in addrs, f"via {ROUTER_LL}" in routes  # 2001:db8:94:0:... (SLAAC)


def test_router_guard_keeps_a_rogue_router_advertisement_from_the_other_hosts(lab: Lab) -> None:
    mac = "02:94:00:00:01:01"
    router_ns, router_nic = lab.vm("router", None, mac)
    host_ns, _ = lab.vm("victim", None, "02:94:00:00:01:02", ipv6=True)
    ra = _router_advertisement(mac).hex()

    def send_ra() -> None:
        ns_helpers.run(router_ns, [sys.executable, "-c", SEND_RAW, router_nic, ra])

    lab.m.set_port(lab.sw, "router", PortSettings(router_guard=True))
    send_ra()
    wait_until(lambda: lab.drops("router", "drop_router_guard") == 1, what="the RA to be dropped by the guard")
    assert _configured(host_ns) == (False, False), "with the guard on the host configures neither prefix nor route"

    assert not lab.m.set_port(lab.sw, "router", PortSettings(router_guard=False)).router_guard
    send_ra()
    wait_until(lambda: _configured(host_ns) == (True, True),
               what="the host to take the advertised prefix and default route with the guard off")
    assert lab.drops("router", "drop_router_guard") == 1

