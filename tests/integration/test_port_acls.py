"""Port ACLs and extended ACLs with real parts, on both datapaths: namespaces behind veth link ports
(Python: AF_PACKET; the kernel fast path: tc-bpf, the ACL port through the upcall path), a real TCP
server (a Python socket server) and real clients. A rule allows or denies real connections, the most
specific one winning; a stateful extended allow admits the return traffic of the connections it opened
and nothing else; `acl list` counts exactly the frames and bytes sent."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from test_dhcp_router_guards import Lab, lab  # noqa: F401  (the fixture: a private switch and its VMs)

import netns as ns_helpers
from vswitch.control.model import AclRuleSpec
from waiting import wait_until

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

SRV, CLI, OTHER = "02:96:00:00:00:02", "02:96:00:00:00:01", "02:96:00:00:00:03"
SRV_IP, CLI_IP, OTHER_IP = "10.96.0.2", "10.96.0.1", "10.96.0.3"

SERVER = """
import socket, sys, threading
def serve(port):
    s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # IPv4 and IPv6 clients
    s.bind(("::", port)); s.listen(16)
    while True:
        c, _ = s.accept()
        try:
            c.sendall(b"hello")
        finally:
            c.close()
ports = [int(p) for p in sys.argv[1:]]
for p in ports[1:]:
    threading.Thread(target=serve, args=(p,), daemon=True).start()
import time; time.sleep(0.2)
print("ready", flush=True)
serve(ports[0])
"""

CLIENT = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
data = b""
while len(data) < 5:
    chunk = s.recv(5)
    if not chunk:
        break
    data += chunk
sys.exit(0 if data == b"hello" else 3)
"""

SEND_UDP = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(int(sys.argv[3])):
    s.sendto(bytes(int(sys.argv[4])), (sys.argv[1], int(sys.argv[2])))
"""


@contextmanager
def server(ns: str, *ports: int) -> Iterator[subprocess.Popen[str]]:
    """A TCP server in `ns` answering "hello" on each of `ports`, until the block ends (killed by PID)."""
    proc = ns_helpers.popen(ns, [sys.executable, "-c", SERVER, *map(str, ports)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def connects(ns: str, ip: str, port: int, timeout: float = 5.0) -> bool:
    """Whether a real TCP connection from `ns` to ip:port is set up and answered."""
    return ns_helpers.run(ns, [sys.executable, "-c", CLIENT, ip, str(port), str(timeout)], check=False,
                          timeout=timeout + 30).returncode == 0


def hits(on: Lab, port: str, rule_id: int) -> tuple[int, int]:
    r = next(r for r in on.m.acl_list(on.sw, port) if r.id == rule_id)
    return r.hits, r.bytes


def test_a_rule_allows_or_denies_real_tcp_and_the_most_specific_wins(lab: Lab, datapath: str) -> None:  # noqa: F811
    srv_ns, _ = lab.vm("srv", f"{SRV_IP}/24", SRV)
    cli_ns, _ = lab.vm("cli", f"{CLI_IP}/24", CLI)
    other_ns, _ = lab.vm("other", f"{OTHER_IP}/24", OTHER)
    with server(srv_ns, 5001):
        wait_until(lambda: connects(cli_ns, SRV_IP, 5001), what="the client to reach the server with no ACL")
        deny = lab.m.acl_add(lab.sw, "srv", AclRuleSpec("in", "deny", remote_ip="10.96.0.0/24"))
        if datapath == "kernel":
            assert lab.m.get_port(lab.sw, "srv").datapath == ("python, through the upcall path: port ACLs (the "
                                                               "program does not run them)")
            assert lab.m.get_port(lab.sw, "cli").datapath == "kernel (tc-bpf)", "the other ports stay down there"
        assert not connects(cli_ns, SRV_IP, 5001, timeout=2), "denied: the SYN never reaches the server"
        assert not connects(other_ns, SRV_IP, 5001, timeout=2)
        assert hits(lab, "srv", deny.id)[0] > 0 and lab.drops("cli", "drop_acl") > 0
        allow = lab.m.acl_add(lab.sw, "srv", AclRuleSpec("in", "allow", remote_ip=f"{CLI_IP}/32"))
        assert connects(cli_ns, SRV_IP, 5001), "the /32 allow is more specific than the /24 deny"
        assert not connects(other_ns, SRV_IP, 5001, timeout=2), "the rest of the /24 is still denied"
        assert hits(lab, "srv", allow.id)[0] > 0
        lab.m.acl_remove(lab.sw, "srv", str(deny.id))
        assert connects(other_ns, SRV_IP, 5001), "the deny removed, live"
        # an "out" rule on the client's own port: what the VM sends
        lab.m.acl_add(lab.sw, "cli", AclRuleSpec("out", "deny", remote_ip=SRV_IP))
        assert not connects(cli_ns, SRV_IP, 5001, timeout=2)
        assert connects(other_ns, SRV_IP, 5001)


def test_a_stateful_rule_admits_the_return_traffic_of_its_flows_only(lab: Lab, datapath: str) -> None:  # noqa: F811
    srv_ns, _ = lab.vm("srv", f"{SRV_IP}/24", SRV)
    cli_ns, _ = lab.vm("cli", f"{CLI_IP}/24", CLI)
    with server(srv_ns, 5001, 5002), server(cli_ns, 6001):
        wait_until(lambda: connects(cli_ns, SRV_IP, 5001), what="the client to reach the server with no ACL")
        assert connects(srv_ns, CLI_IP, 6001), "and the server the client's own listener"
        # the client's port: it may open TCP to port 5001 (stateful); nothing IP comes in otherwise
        web = lab.m.acl_add(lab.sw, "cli", AclRuleSpec("out", "allow", weight=10, protocol="tcp",
                                                       remote_port="5001", stateful=True, idle_timeout=60))
        lab.m.acl_add(lab.sw, "cli", AclRuleSpec("in", "deny", weight=1))
        assert connects(cli_ns, SRV_IP, 5001), "the SYN-ACK and the data come back: the flow is known"
        returned = hits(lab, "cli", web.id)[0]
        assert returned >= 4, "its frames out and their return traffic count on the stateful rule"
        assert not connects(cli_ns, SRV_IP, 5002, timeout=2), "no stateful rule opened it: its answer is denied"
        assert not connects(srv_ns, CLI_IP, 6001, timeout=2), "nothing comes in that the VM did not open"
        core = lab.m._switches[lab.sw].core  # type: ignore[attr-defined]
        assert next(r.flows for r in lab.m.acl_list(lab.sw, "cli") if r.id == web.id) >= 1, "its flows are open"
        syn = (bytes.fromhex(CLI.replace(":", "") + SRV.replace(":", "") + "0800" + "450000280001000040060000")
               + bytes(map(int, SRV_IP.split("."))) + bytes(map(int, CLI_IP.split(".")))
               + (40000).to_bytes(2, "big") + (6001).to_bytes(2, "big") + bytes(16))
        _, steps = lab.m.datapath(lab.sw).call(lambda: core.trace("srv", syn, 0.0))
        assert "port cli: ACL #2 on port cli (in, weight 1, deny any protocol) — weight 1, the highest matching: " \
               "not delivered" in [s.result for s in steps]


def test_acl_list_counts_the_frames_and_bytes_sent(lab: Lab, datapath: str) -> None:  # noqa: F811
    srv_ns, _ = lab.vm("srv", f"{SRV_IP}/24", SRV)
    cli_ns, _ = lab.vm("cli", f"{CLI_IP}/24", CLI)
    assert ns_helpers.ping(cli_ns, SRV_IP)  # ARP settled both ways before the rules count
    meter = lab.m.acl_add(lab.sw, "cli", AclRuleSpec("out", "meter", remote_ip=f"{SRV_IP}/32"))
    deny = lab.m.acl_add(lab.sw, "cli", AclRuleSpec("out", "deny", remote_ip=f"{SRV_IP}/32", local_ip=CLI_IP))
    n, size = 50, 300
    ns_helpers.run(cli_ns, [sys.executable, "-c", SEND_UDP, SRV_IP, "9", str(n), str(size)])
    frame = 14 + 20 + 8 + size
    wait_until(lambda: hits(lab, "cli", deny.id) == (n, n * frame), what=f"{n} denied frames of {frame} bytes")
    assert hits(lab, "cli", meter.id) == (n, n * frame), "the meter counted the same frames and bytes"
    assert lab.drops("cli", "drop_acl") == n
    rows = {r.id: r for r in lab.m.acl_list(lab.sw)}
    assert rows[deny.id].rule == f"out, deny remote {SRV_IP}/32 local {CLI_IP}/32"


def test_ipv6_rules_allow_and_deny_real_tcp(lab: Lab, datapath: str) -> None:  # noqa: F811
    srv_ns, srv_nic = lab.vm("srv", f"{SRV_IP}/24", SRV, ipv6=True)
    cli_ns, cli_nic = lab.vm("cli", f"{CLI_IP}/24", CLI, ipv6=True)
    other_ns, other_nic = lab.vm("other", f"{OTHER_IP}/24", OTHER, ipv6=True)
    for ns, nic, addr in ((srv_ns, srv_nic, "fd96::2"), (cli_ns, cli_nic, "fd96::1"), (other_ns, other_nic, "fd96::3")):
        ns_helpers.run(ns, ["ip", "-6", "addr", "add", f"{addr}/64", "dev", nic, "nodad"])
    with server(srv_ns, 5001):
        wait_until(lambda: connects(cli_ns, "fd96::2", 5001), what="the client to reach the server over IPv6")
        lab.m.acl_add(lab.sw, "srv", AclRuleSpec("in", "deny", remote_ip="fd96::/64"))
        allow = lab.m.acl_add(lab.sw, "srv", AclRuleSpec("in", "allow", remote_ip="fd96::1/128"))
        assert connects(cli_ns, "fd96::2", 5001), "the /128 allow is more specific than the /64 deny"
        assert not connects(other_ns, "fd96::2", 5001, timeout=2), "the rest of the /64 is denied"
        assert connects(other_ns, SRV_IP, 5001), "an IPv6 rule does not touch IPv4"
        assert hits(lab, "srv", allow.id)[0] > 0
