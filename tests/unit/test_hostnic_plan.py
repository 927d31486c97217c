"""Takeover plan and rollback logic without root: a plain-dict snapshot and an in-memory kernel.

The kernel is tests/unit/memkernel.py, with the behaviours that shape the plan: EEXIST for the same
route key on two links, gateways that must be on-link, errors for deleting what is not there, links
that can vanish. The real-kernel twin of these tests is tests/integration/test_takeover.py; the
manager's use of the takeover is tests/unit/test_manager_kernel.py.
"""

from __future__ import annotations

import json
from socket import AF_INET, AF_INET6
from typing import Any

import pytest
from memkernel import MemKernel

from vswitch.control import hostnic
from vswitch.control.hostnic import Takeover, TakeoverError, TakeoverRefused, build_plan
from vswitch.control.netlink import Address, Route

NIC_MAC, VNIC_MAC = "52:54:00:12:34:56", "ee:00:00:00:00:01"
A1 = Address(AF_INET, "192.0.2.10", 24, flags=0x80, broadcast="192.0.2.255", label="eth1")
A2 = Address(AF_INET, "192.0.2.11", 24, flags=0x81, broadcast="192.0.2.255", label="eth1:0")
A6 = Address(AF_INET6, "2001:db8::10", 64, flags=0x80)
R_DEFAULT = Route(AF_INET, None, 0, gateway="192.0.2.1", priority=100, proto=3)
R_LINK = Route(AF_INET, "198.51.100.0", 24, scope=253, proto=3)
R_VIA_LINK = Route(AF_INET, "203.0.113.0", 24, gateway="198.51.100.1", proto=4)
R_TABLE = Route(AF_INET, None, 0, table=100, gateway="192.0.2.1", proto=4)
R_V6 = Route(AF_INET6, None, 0, gateway="2001:db8::1", priority=1024, proto=3)


@pytest.fixture
def kernel() -> MemKernel:
    """A host whose eth1 has addresses (a secondary among them) and routes in two tables, and a vNIC."""
    k = MemKernel()
    k.add_link("eth1", mac=NIC_MAC, up=True)
    k.add_link("vs-ext0", kind="tun", mac=VNIC_MAC, mtu=1400, persist=True)
    with k() as nl:
        for a in (A1, A2, A6):
            nl.add_address("eth1", a)
        for r in (R_LINK, R_DEFAULT, R_VIA_LINK, R_TABLE, R_V6):
            nl.add_route("eth1", r)
    return k


def takeover(kernel: MemKernel, nic: str = "eth1", vnic: str | None = "vs-ext0", **kw: Any) -> Takeover:
    return Takeover(nic, vnic, netlink=kernel, **kw)


def snapshot(kernel: MemKernel, allow_management_os: bool = True) -> dict[str, Any]:
    return hostnic.capture(kernel(), "eth1", "vs-ext0", allow_management_os)


def test_plan_order_follows_the_documented_phases(kernel: MemKernel) -> None:
    keys = [s.key for s in build_plan(snapshot(kernel))]
    assert keys == [
        "vnic-mac", "vnic-mtu", "vnic-up",
        "vnic-addr 192.0.2.10/24", "vnic-addr 192.0.2.11/24", "vnic-addr 2001:db8::10/64",
        # withdrawn from the NIC: gateway routes before the link route they depend on
        f"nic-route {R_DEFAULT}", f"nic-route {R_VIA_LINK}", f"nic-route {R_TABLE}", f"nic-route {R_V6}",
        f"nic-route {R_LINK}",
        # installed on the vNIC: link route first
        f"vnic-route {R_LINK}", f"vnic-route {R_DEFAULT}", f"vnic-route {R_VIA_LINK}",
        f"vnic-route {R_TABLE}", f"vnic-route {R_V6}",
        # secondaries leave before their primary (deleting a primary takes its secondaries along)
        "nic-addr 2001:db8::10/64", "nic-addr 192.0.2.11/24", "nic-addr 192.0.2.10/24",
        "nic-sysctl net/ipv6/conf/eth1/disable_ipv6", "nic-sysctl net/ipv4/conf/eth1/arp_ignore",
        "nic-ingress-drop", "nic-promisc",
    ]


def test_plan_text_is_for_humans(kernel: MemKernel) -> None:
    texts = [str(s) for s in build_plan(snapshot(kernel))]
    assert texts[0] == f"set vs-ext0 MAC to {NIC_MAC} (the MAC of eth1)"
    assert "move 192.0.2.10/24 from eth1 to vs-ext0: add it to vs-ext0" in texts
    assert "withdraw route default via 192.0.2.1 metric 100 from eth1 (moving to vs-ext0)" in texts
    assert "move route 203.0.113.0/24 via 198.51.100.1 from eth1 to vs-ext0: install it on vs-ext0" in texts
    assert "remove 192.0.2.10/24 from eth1 (now on vs-ext0)" in texts
    assert "drop ingress on eth1 for the host stack (tc ingress drop)" in texts
    assert "set arp_ignore=8 on eth1 (sysctl net/ipv4/conf/eth1/arp_ignore=8, was 0)" in texts


def test_plan_without_management_os_touches_no_vnic(kernel: MemKernel) -> None:
    steps = build_plan(snapshot(kernel, allow_management_os=False))
    assert not any("vs-ext0" in s.description or s.key.startswith("vnic") for s in steps)
    assert sum(s.key.startswith("nic-route") for s in steps) == 5


def test_snapshot_is_json_and_versioned(kernel: MemKernel) -> None:
    snap = json.loads(json.dumps(snapshot(kernel)))
    assert [s.key for s in build_plan(snap)] == [s.key for s in build_plan(snapshot(kernel))]
    with pytest.raises(TakeoverRefused, match="version"):
        build_plan({**snap, "version": 99})


def test_apply_then_restore(kernel: MemKernel) -> None:
    before = kernel.state()
    t = takeover(kernel)
    t.apply()
    nl = kernel()
    assert nl.link("vs-ext0").mac == NIC_MAC and nl.link("vs-ext0").up
    assert [str(a) for a in nl.addresses("vs-ext0")] == ["192.0.2.10/24", "192.0.2.11/24", "2001:db8::10/64"]
    assert nl.addresses("vs-ext0")[1].label == "vs-ext0:0", "IPv4 labels follow the link name"
    assert nl.addresses("eth1") == [] and nl.routes("eth1") == []
    assert nl.ingress_qdisc_kind("eth1") == "clsact" and nl.link("eth1").promisc
    t.restore()
    assert kernel.state() == before
    t.restore()
    assert kernel.state() == before


def test_failure_at_every_step_restores_exactly(kernel: MemKernel) -> None:
    before = kernel.state()
    n = len(takeover(kernel).plan())
    for k in range(n):
        with pytest.raises(TakeoverError) as caught:
            takeover(kernel, fail_at=k).apply()
        assert caught.value.rollback_errors == [], k
        assert kernel.state() == before, f"failure before step {k} left changes behind"


def test_fail_at_accepts_a_step_key(kernel: MemKernel) -> None:
    with pytest.raises(TakeoverError) as caught:
        takeover(kernel, fail_at="nic-ingress-drop").apply()
    assert caught.value.step is not None and caught.value.step.key == "nic-ingress-drop"
    assert "everything was rolled back" in str(caught.value)


def test_crash_at_any_point_is_restored_from_the_json_snapshot(kernel: MemKernel) -> None:
    before = kernel.state()
    snap = json.loads(json.dumps(snapshot(kernel)))
    steps = build_plan(snap)
    for k in range(len(steps) + 1):
        for step in steps[:k]:  # the daemon got this far, then died
            step.do(kernel())
        Takeover.from_snapshot(snap, netlink=kernel).restore()
        assert kernel.state() == before, f"crash after {k} steps not restored"


def test_restore_after_the_vnic_vanished(kernel: MemKernel) -> None:
    before = kernel.state()
    t = takeover(kernel)
    t.apply()
    kernel().delete_link("vs-ext0")  # the TAP died with its owner
    t.restore()
    del before[None]["links"]["vs-ext0"]  # and its sysctls: everything of it is gone
    before[None]["sysctls"] = {p: v for p, v in before[None]["sysctls"].items() if "/vs-ext0/" not in p}
    assert kernel.state() == before


def test_a_failing_undo_is_reported_and_restore_can_be_retried(kernel: MemKernel) -> None:
    before = kernel.state()
    t = takeover(kernel)
    t.apply()
    links = kernel.namespaces[None].links
    nic = links.pop("eth1")  # e.g. a USB NIC unplugged for a moment
    with pytest.raises(TakeoverError) as caught:
        t.restore()
    assert caught.value.rollback_errors and t.applied
    links["eth1"] = nic
    t.restore()
    assert kernel.state() == before and not t.applied


@pytest.mark.parametrize("nic, vnic, setup, message", [
    ("eth9", "vs-ext0", None, "NIC 'eth9' does not exist"),
    ("lo", "vs-ext0", None, "loopback"),
    ("eth1", "vs-ext0", {"master": 7, "slave_kind": "bridge"}, "already a port of a bridge"),
    ("eth1", "vs-nope", None, "host vNIC 'vs-nope' does not exist"),
    ("eth1", None, None, "needs a host vNIC name"),
    ("eth1", "eth1", None, "same link"),
])
def test_refusals_change_nothing(kernel: MemKernel, nic: str, vnic: str | None,
                                 setup: dict[str, Any] | None, message: str) -> None:
    for key, value in (setup or {}).items():  # what no netlink verb of ours sets (enslaving)
        setattr(kernel.namespaces[None].links["eth1"], key, value)
    before = kernel.state()
    for attempt in (takeover(kernel, nic, vnic).plan, takeover(kernel, nic, vnic).apply):
        with pytest.raises(TakeoverRefused, match=message):
            attempt()
    assert kernel.state() == before


def test_existing_ingress_qdisc_is_refused(kernel: MemKernel) -> None:
    kernel().add_ingress_drop("eth1")
    with pytest.raises(TakeoverRefused, match="already has an ingress qdisc"):
        takeover(kernel).apply()


def test_address_lifetimes_keep_ticking() -> None:
    a = Address(AF_INET6, "2001:db8::5", 64, valid_lft=100, preferred_lft=50)
    assert a.aged(30) == Address(AF_INET6, "2001:db8::5", 64, valid_lft=70, preferred_lft=20)
    assert a.aged(60).preferred_lft == 0  # type: ignore[union-attr]
    assert a.aged(100) is None
    assert A1.aged(10**6) == A1, "permanent addresses do not age"
