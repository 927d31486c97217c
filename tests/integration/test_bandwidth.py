"""The maximum bandwidth with real parts, on both datapaths: two namespaces behind veth link ports and
real iperf3 TCP between them. `--max-bandwidth 100M` on the sender's port (what it may send into the
switch: policed by the datapath) and `--max-bandwidth-in 100M` on the receiver's port (what the switch
delivers to it: a tbf shaper on its link) each hold a TCP stream to 90-105 Mbit/s; without them the
same stream is faster than that (asserted only where the machine shows it: the unlimited figure is
printed, never required). The figures are printed."""

from __future__ import annotations

import json

import pytest
from test_dhcp_router_guards import Lab, lab  # noqa: F401  (the fixture: a private switch and its VMs)

import netns as ns_helpers
from vswitch.control.model import PortSettings
from waiting import wait_until

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

RATE = 100_000_000
SECONDS = 5


def _iperf(server_ns: str, server_ip: str, client_ns: str) -> float:
    """Mbit/s the receiver counted over a TCP run of SECONDS (the first second left out: TCP's start)."""
    server = ns_helpers.popen(server_ns, ["iperf3", "-s", "-1", "-B", server_ip])
    try:
        wait_until(lambda: "iperf3" in ns_helpers.run(server_ns, ["ss", "-ltnp"]).stdout, what="iperf3 to listen")
        out = json.loads(ns_helpers.run(client_ns, ["iperf3", "-c", server_ip, "-t", str(SECONDS + 1), "-O", "1",
                                                    "-J"], timeout=60).stdout)
    finally:
        server.wait(timeout=30)
    return out["end"]["sum_received"]["bits_per_second"] / 1e6


def test_max_bandwidth_and_max_bandwidth_in_hold_tcp_to_the_rate(lab: Lab, datapath: str) -> None:  # noqa: F811
    vm_ns, _ = lab.vm("vm", "10.97.0.1/24", "02:97:00:00:00:01")
    peer_ns, _ = lab.vm("peer", "10.97.0.2/24", "02:97:00:00:00:02")
    wait_until(lambda: ns_helpers.run(vm_ns, ["ping", "-c", "1", "-W", "1", "10.97.0.2"], check=False).returncode == 0,
               what="vm to reach peer")
    free = _iperf(peer_ns, "10.97.0.2", vm_ns)

    info = lab.m.set_port(lab.sw, "vm", PortSettings.parse({"max_bandwidth": "100M"}))
    assert info.max_bandwidth == RATE
    assert info.datapath == ("kernel (tc-bpf)" if datapath == "kernel" else "python"), \
        "a maximum bandwidth keeps a link port on the fast path"
    out = _iperf(peer_ns, "10.97.0.2", vm_ns)
    dropped = lab.drops("vm", "drop_max_bandwidth")
    lab.m.set_port(lab.sw, "vm", PortSettings(max_bandwidth=0))

    info = lab.m.set_port(lab.sw, "peer", PortSettings.parse({"max_bandwidth_in": "100M"}))
    assert info.max_bandwidth_in == RATE
    into = _iperf(peer_ns, "10.97.0.2", vm_ns)
    print(f"\n{datapath} datapath, iperf3 TCP vm → peer over {SECONDS} s: no limit {free:.1f} Mbit/s; "
          f"--max-bandwidth 100M on vm {out:.1f} Mbit/s (drop_max_bandwidth {dropped:,}); "
          f"--max-bandwidth-in 100M on peer {into:.1f} Mbit/s")
    if free > 150:  # the limits must be what holds the stream down, not the machine
        assert 90 <= out <= 105, f"--max-bandwidth 100M: {out:.1f} Mbit/s"
        assert 90 <= into <= 105, f"--max-bandwidth-in 100M: {into:.1f} Mbit/s"
    else:
        pytest.fail(f"the unlimited stream reached only {free:.1f} Mbit/s: the limits cannot be measured")
    if datapath == "kernel":
        assert lab.m.datapath(lab.sw).program.counters("vm")["drop_max_bandwidth"] > 0, \
            "the program's own policer dropped the excess"
    assert lab.m.set_port(lab.sw, "peer", PortSettings(max_bandwidth_in=0)).max_bandwidth_in == 0
