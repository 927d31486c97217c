"""The minimum bandwidth weight with real parts, on both datapaths: an External switch whose uplink is
a veth to a "network" namespace running two iperf3 servers; `switch set --uplink-bandwidth 100M`
gives the uplink its capacity, two VM namespaces behind veth link ports with weights 20 and 80 send
iperf3 TCP through it at the same time: each gets its share of the congested uplink, 20 % / 80 % ± 5
points of what the two got together. The figures are printed."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from switchlab import delete_link, move_and_address, veth_pair

import datapaths
import netns as ns_helpers
from vswitch.control.manager import SwitchManager
from vswitch.control.model import DatapathMode, PortKind, PortSettings, PortSpec, SwitchSettings, SwitchSpec, SwitchType
from waiting import wait_until

pytestmark = [pytest.mark.root, pytest.mark.timeout(240)]

CAPACITY = 100_000_000
SECONDS = 6
SERVER = "10.98.0.100"


class ExternalLab:
    """An External switch (no management OS) on a veth NIC whose far end is a server namespace."""

    def __init__(self, netns, datapath: str) -> None:
        self.netns, self.links = netns, []
        self.server = netns("wsrv")
        self.nic, far = ns_helpers.unique_name("wn"), ns_helpers.unique_name("wf")
        veth_pair(self.nic, far)
        self.links.append(self.nic)
        ns_helpers.run(None, ["sysctl", "-qw", f"net.ipv6.conf.{self.nic}.disable_ipv6=1"])
        ns_helpers.run(None, ["ip", "link", "set", self.nic, "up"])
        ns_helpers.run(self.server, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
        move_and_address(far, self.server, f"{SERVER}/24")
        self.m = SwitchManager()
        self.sw = ns_helpers.unique_name("wx")
        self.m.create_switch(SwitchSpec(self.sw, SwitchType.EXTERNAL, nic=self.nic, allow_management_os=False,
                                        datapath=DatapathMode(datapath)))

    def vm(self, port: str, cidr: str, weight: int) -> str:
        ns = self.netns(port)
        nic, side = ns_helpers.unique_name("wv" + port), ns_helpers.unique_name("ws" + port)
        veth_pair(side, nic)
        self.links.append(side)
        ns_helpers.run(None, ["sysctl", "-qw", f"net.ipv6.conf.{side}.disable_ipv6=1"])
        ns_helpers.run(None, ["ip", "link", "set", side, "up"])
        self.m.add_port(self.sw, PortSpec(port, PortKind.LINK, side, min_bandwidth_weight=weight))
        ns_helpers.run(ns, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])
        move_and_address(nic, ns, cidr)
        return ns

    def close(self) -> None:
        self.m.shutdown()
        for link in self.links:
            delete_link(link)


@pytest.fixture
def xlab(netns, datapath: str) -> Iterator[ExternalLab]:
    made = ExternalLab(netns, datapath)
    try:
        datapaths.assert_runs_on(made.m.get_switch(made.sw).datapath, datapath)
        yield made
    finally:
        made.close()


def test_two_weighted_ports_share_a_congested_uplink_by_weight(xlab: ExternalLab, datapath: str) -> None:
    a = xlab.vm("a", "10.98.0.1/24", 20)
    b = xlab.vm("b", "10.98.0.2/24", 80)
    for ns in (a, b):
        wait_until(lambda ns=ns: ns_helpers.run(ns, ["ping", "-c", "1", "-W", "1", SERVER], check=False).returncode
                   == 0, what=f"{ns} to reach the server")
    info = xlab.m.set_switch(xlab.sw, SwitchSettings.parse({"uplink_bandwidth": "100M"}))
    assert info.uplink_bandwidth == CAPACITY  # type: ignore[union-attr]
    assert xlab.m.get_port(xlab.sw, "b").min_bandwidth_weight == 80
    qdisc = ns_helpers.run(None, ["tc", "class", "show", "dev", xlab.nic]).stdout
    assert "class htb 1:100" in qdisc and "class htb 1:101" in qdisc, qdisc

    servers = [ns_helpers.popen(xlab.server, ["iperf3", "-s", "-1", "-B", SERVER, "-p", str(p)]) for p in (5201, 5202)]
    try:
        wait_until(lambda: ns_helpers.run(xlab.server, ["ss", "-ltn"]).stdout.count(SERVER) >= 2,
                   what="both iperf3 servers to listen")
        clients = [ns_helpers.popen(ns, ["iperf3", "-c", SERVER, "-p", str(p), "-t", str(SECONDS + 1), "-O", "1",
                                         "-J"], stdout=-1)
                   for ns, p in ((a, 5201), (b, 5202))]
        results = [json.loads(c.communicate(timeout=60)[0]) for c in clients]
    finally:
        for s in servers:
            if s.poll() is None:
                s.kill()
            s.wait(timeout=30)
    got = [r["end"]["sum_received"]["bits_per_second"] / 1e6 for r in results]
    total = sum(got)
    shares = [100 * g / total for g in got]
    print(f"\n{datapath} datapath, uplink shared at 100 Mbit/s, weights 20 / 80, iperf3 TCP together over "
          f"{SECONDS} s: a {got[0]:.1f} Mbit/s ({shares[0]:.1f} %), b {got[1]:.1f} Mbit/s ({shares[1]:.1f} %), "
          f"together {total:.1f} Mbit/s")
    assert 15 <= shares[0] <= 25 and 75 <= shares[1] <= 85, shares
    assert total <= 105, "the uplink's capacity holds"

    xlab.m.set_port(xlab.sw, "a", PortSettings(min_bandwidth_weight=0))
    xlab.m.set_port(xlab.sw, "b", PortSettings(min_bandwidth_weight=0))
    assert "htb" not in ns_helpers.run(None, ["tc", "qdisc", "show", "dev", xlab.nic]).stdout, \
        "no weight: no htb on the uplink"
