"""Host NIC takeover against a real kernel: state moved, then given back exactly.

Topology (one set of fresh namespaces per test):

    host ns:   NIC (veth) 10.50.0.1/24 + 10.50.0.2/24 (label <nic>:1) + 2001:db8:50::1/64, routes in
               main and table 100, a link route and a gateway route that depends on it;
               host vNIC = an unopened TAP (down, random MAC)
    physw ns:  Linux bridge joining the NIC's peer and the server's link
    server ns: 10.50.0.254/24, 2001:db8:50::fe/64 (the gateway)

"Exactly" means the ``ip -j``/``tc -j`` view of both links (flags, MAC, MTU, promiscuity,
addresses in kernel order, routes of every table, the two sysctls, qdiscs) is equal to the view
taken before. accept_dad=0 on the NIC keeps restored IPv6 addresses from being "tentative" for a
second, which would make the comparison race DAD rather than test the takeover.

No switch and so no datapath here: `Takeover` alone moves the host's state; the External switches
that use it forward on both datapaths in test_kernel_external.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from netns import ping, run, unique_name
from vswitch.control.hostnic import Takeover, TakeoverError, TakeoverRefused
from vswitch.control.netlink import Netlink

pytestmark = pytest.mark.root

EXPECTED_STEPS = 26  # see plan_keys below; parametrizes the failure injection


@dataclass
class Topo:
    host: str
    server: str
    nic: str
    vnic: str


def _sh(ns: str, *cmds: str) -> None:
    for cmd in cmds:
        run(ns, cmd.split())


@pytest.fixture
def topo(netns: Any) -> Topo:
    host, physw, server = netns("host"), netns("psw"), netns("srv")
    nic, peer, srv_if, srv_peer, vnic = (unique_name(t) for t in ("n", "p", "s", "sp", "vs"))
    with Netlink(host) as nl:
        nl.create_veth(nic, peer)
        nl.move_to_netns(peer, physw)
        nl.create_tap(vnic)
    with Netlink(server) as nl:
        nl.create_veth(srv_if, srv_peer)
        nl.move_to_netns(srv_peer, physw)
    _sh(physw, "ip link add br0 type bridge",
        f"ip link set {peer} master br0", f"ip link set {srv_peer} master br0",
        f"ip link set {peer} up", f"ip link set {srv_peer} up", "ip link set br0 up")
    _sh(server, f"sysctl -qw net.ipv6.conf.{srv_if}.accept_dad=0", f"ip addr add 10.50.0.254/24 dev {srv_if}",
        f"ip addr add 2001:db8:50::fe/64 dev {srv_if}", f"ip link set {srv_if} up")
    _sh(host, f"sysctl -qw net.ipv6.conf.{nic}.accept_dad=0",
        f"ip addr add 10.50.0.1/24 dev {nic}", f"ip addr add 10.50.0.2/24 dev {nic} label {nic}:1",
        f"ip addr add 2001:db8:50::1/64 dev {nic}", f"ip link set {nic} up",
        f"ip route add default via 10.50.0.254 dev {nic} metric 100",
        f"ip route add 10.77.0.0/24 dev {nic} scope link",
        f"ip route add 10.78.0.0/24 via 10.77.0.1 dev {nic} proto static",
        f"ip route add 10.98.0.0/16 via 10.50.0.254 dev {nic} src 10.50.0.2",
        f"ip route add default via 10.50.0.254 dev {nic} table 100",
        f"ip -6 route add 2001:db8:99::/48 via 2001:db8:50::fe dev {nic} metric 300",
        f"ip -6 route add default via 2001:db8:50::fe dev {nic}")
    return Topo(host=host, server=server, nic=nic, vnic=vnic)


def _json(ns: str, argv: list[str]) -> Any:
    out = run(ns, argv).stdout.strip()
    return json.loads(out) if out else []


def link_view(ns: str, name: str) -> dict[str, Any]:
    """Everything the takeover may touch on one link, as the kernel shows it."""
    link = _json(ns, ["ip", "-j", "-d", "link", "show", "dev", name])[0]
    routes = []
    for family in ("-4", "-6"):
        routes += _json(ns, ["ip", "-j", family, "route", "show", "table", "all", "dev", name])
    return {
        "link": {k: link.get(k) for k in ("ifname", "address", "flags", "mtu", "operstate", "promiscuity",
                                          "master", "qdisc")},
        "addrs": _json(ns, ["ip", "-j", "addr", "show", "dev", name])[0]["addr_info"],
        "routes": sorted(routes, key=lambda r: json.dumps(r, sort_keys=True)),
        "sysctls": [run(ns, ["cat", f"/proc/sys/net/{p}"]).stdout.strip()
                    for p in (f"ipv6/conf/{name}/disable_ipv6", f"ipv4/conf/{name}/arp_ignore")],
        "qdiscs": _json(ns, ["tc", "-j", "qdisc", "show", "dev", name]),
    }


def host_view(t: Topo) -> dict[str, Any]:
    vnic = link_view(t.host, t.vnic)
    # A never-up link has the "noop" qdisc; the kernel attaches the default (pfifo_fast) the first
    # time it goes up and keeps it after. Not state the takeover moves, so not compared.
    vnic["link"].pop("qdisc")
    vnic.pop("qdiscs")
    return {"nic": link_view(t.host, t.nic), "vnic": vnic}


def icmp_in_echos(ns: str) -> int:
    """The namespace's IcmpInEchos counter: echo requests its IP stack has processed."""
    names, values = (line.split() for line in run(ns, ["cat", "/proc/net/snmp"]).stdout.splitlines()
                     if line.startswith("Icmp:"))
    return int(values[names.index("InEchos")])


def plan_keys(t: Topo) -> list[str]:
    return [s.key for s in Takeover(t.nic, t.vnic, netns=t.host).plan()]


def test_dry_run_plan_describes_every_move_and_changes_nothing(topo: Topo) -> None:
    before = host_view(topo)
    texts = [s.description for s in Takeover(topo.nic, topo.vnic, netns=topo.host).plan()]
    n, v = topo.nic, topo.vnic
    mac = before["nic"]["link"]["address"]
    for expected in (f"set {v} MAC to {mac} (the MAC of {n})",
                     f"move 10.50.0.1/24 from {n} to {v}: add it to {v}",
                     f"withdraw route default via 10.50.0.254 metric 100 from {n} (moving to {v})",
                     f"move route default via 10.50.0.254 table 100 from {n} to {v}: install it on {v}",
                     f"remove 10.50.0.1/24 from {n} (now on {v})",
                     f"drop ingress on {n} for the host stack (tc ingress drop)"):
        assert expected in texts, f"plan lacks {expected!r}:\n" + "\n".join(texts)
    assert not any("fe80" in t for t in texts), "link-local addresses stay with their link"
    assert len(texts) == EXPECTED_STEPS, "\n".join(texts)
    assert host_view(topo) == before, "a dry run must not change anything"


def test_apply_moves_everything_and_restore_gives_it_back_exactly(topo: Topo) -> None:
    assert ping(topo.host, "10.50.0.254", count=1), "topology sanity: the host reaches its gateway"
    echos = icmp_in_echos(topo.host)
    assert ping(topo.server, "10.50.0.1", count=1), "topology sanity: the server reaches the host"
    assert icmp_in_echos(topo.host) > echos, "sanity: the counter moves when the host stack answers"
    before = host_view(topo)
    takeover = Takeover(topo.nic, topo.vnic, netns=topo.host)
    takeover.apply()
    after = host_view(topo)
    nic, vnic = after["nic"], after["vnic"]
    assert vnic["link"]["address"] == before["nic"]["link"]["address"], "the vNIC takes the NIC's MAC"
    assert {a["local"] for a in vnic["addrs"]} >= {"10.50.0.1", "10.50.0.2", "2001:db8:50::1"}
    assert not [a for a in nic["addrs"] if a["family"] == "inet"], "the NIC keeps no IPv4 address"
    assert nic["sysctls"] == ["1", "8"], "IPv6 disabled and arp_ignore=8 on the NIC"
    assert any(q["kind"] == "clsact" for q in nic["qdiscs"]), "tc ingress drop on the NIC"
    assert "PROMISC" in nic["link"]["flags"] and "UP" in nic["link"]["flags"]
    routed = _json(topo.host, ["ip", "-j", "route", "get", "10.78.0.5"])[0]
    assert routed["dev"] == topo.vnic and routed["gateway"] == "10.77.0.1", routed
    table100 = _json(topo.host, ["ip", "-j", "route", "show", "table", "100"])
    assert table100 and table100[0]["dev"] == topo.vnic
    echos = icmp_in_echos(topo.host)
    assert not ping(topo.server, "10.50.0.1", count=2, deadline=2), "the NIC no longer answers for the host"
    assert icmp_in_echos(topo.host) == echos, "the host stack saw nothing that arrived on the NIC (tc drop)"

    takeover.restore()
    assert host_view(topo) == before
    takeover.restore()  # idempotent
    assert host_view(topo) == before
    assert ping(topo.host, "10.50.0.254", count=1), "connectivity is back after restore"


@pytest.mark.parametrize("k", range(EXPECTED_STEPS))
def test_failure_at_step_k_restores_exactly(topo: Topo, k: int) -> None:
    before = host_view(topo)
    takeover = Takeover(topo.nic, topo.vnic, netns=topo.host, fail_at=k)
    with pytest.raises(TakeoverError) as caught:
        takeover.apply()
    assert caught.value.rollback_errors == []
    assert caught.value.step is not None and caught.value.step.key == plan_keys(topo)[k]
    assert not takeover.applied
    assert host_view(topo) == before, f"state differs after a failure before step {k}"


def test_vnic_vanishing_midway_is_a_real_failure_and_rolls_back(topo: Topo) -> None:
    before = host_view(topo)

    def delete_vnic_before_first_route_install(index: int, step: Any) -> bool:
        if step.key.startswith("vnic-route"):
            with Netlink(topo.host) as nl:
                nl.delete_link(topo.vnic, missing_ok=True)
        return False

    takeover = Takeover(topo.nic, topo.vnic, netns=topo.host, fail_at=delete_vnic_before_first_route_install)
    with pytest.raises(TakeoverError) as caught:
        takeover.apply()
    assert caught.value.step is not None and caught.value.step.key.startswith("vnic-route")
    assert caught.value.rollback_errors == []
    assert link_view(topo.host, topo.nic) == before["nic"]


def test_without_management_os_addresses_go_and_come_back(topo: Topo) -> None:
    before = host_view(topo)
    takeover = Takeover(topo.nic, None, allow_management_os=False, netns=topo.host)
    assert not any(topo.vnic in s.description for s in takeover.plan())
    takeover.apply()
    nic = link_view(topo.host, topo.nic)
    assert nic["addrs"] == [] and nic["routes"] == [], "no addresses, no routes (IPv6 disabled too)"
    assert host_view(topo)["vnic"] == before["vnic"], "no vNIC is touched"
    takeover.restore()
    assert host_view(topo) == before


def test_restore_from_json_snapshot_after_a_crash(topo: Topo) -> None:
    before = host_view(topo)
    first = Takeover(topo.nic, topo.vnic, netns=topo.host)
    first.apply()
    saved = json.dumps(first.snapshot())
    del first  # the daemon "crashed": no undo stack survives, only the JSON
    Takeover.from_snapshot(json.loads(saved)).restore()
    assert host_view(topo) == before


@pytest.mark.parametrize("case", ["missing-nic", "loopback", "bridge-port", "missing-vnic", "same-link"])
def test_refusals_name_the_problem_and_change_nothing(topo: Topo, case: str) -> None:
    nic, vnic, expected = topo.nic, topo.vnic, ""
    if case == "missing-nic":
        nic, expected = "nosuchnic0", "does not exist"
    elif case == "loopback":
        nic, expected = "lo", "loopback"
    elif case == "bridge-port":
        _sh(topo.host, "ip link add vtbr0 type bridge", f"ip link set {topo.nic} master vtbr0")
        expected = "port of a bridge"
    elif case == "missing-vnic":
        vnic, expected = "nosuchvnic0", "host vNIC 'nosuchvnic0' does not exist"
    else:
        vnic, expected = topo.nic, "same link"
    before = host_view(topo)
    lo_before = link_view(topo.host, "lo")
    takeover = Takeover(nic, vnic, netns=topo.host)
    for attempt in (takeover.plan, takeover.apply):
        with pytest.raises(TakeoverRefused, match=expected):
            attempt()
    assert host_view(topo) == before and link_view(topo.host, "lo") == lo_before
