"""Takeover plan and rollback logic without root: a plain-dict snapshot and an in-memory kernel.

``FakeKernel`` has the verbs of ``control.netlink.Netlink`` that ``hostnic`` uses and the kernel
behaviours that shape the plan: EEXIST for the same route key on two links, errors for deleting
what is not there, links that can vanish. The real-kernel twin of these tests is
tests/integration/test_takeover.py.
"""

from __future__ import annotations

import copy
import errno
import json
from socket import AF_INET, AF_INET6
from typing import Any

import pytest

from vswitch.control import hostnic
from vswitch.control.hostnic import Takeover, TakeoverError, TakeoverRefused, build_plan
from vswitch.control.netlink import Address, LinkInfo, LinkNotFound, NetlinkFailure, Route

NIC_MAC, VNIC_MAC = "52:54:00:12:34:56", "ee:00:00:00:00:01"
A1 = Address(AF_INET, "192.0.2.10", 24, flags=0x80, broadcast="192.0.2.255", label="eth1")
A2 = Address(AF_INET, "192.0.2.11", 24, flags=0x81, broadcast="192.0.2.255", label="eth1:0")
A6 = Address(AF_INET6, "2001:db8::10", 64, flags=0x80)
R_DEFAULT = Route(AF_INET, None, 0, gateway="192.0.2.1", priority=100, proto=3)
R_LINK = Route(AF_INET, "198.51.100.0", 24, scope=253, proto=3)
R_VIA_LINK = Route(AF_INET, "203.0.113.0", 24, gateway="198.51.100.1", proto=4)
R_TABLE = Route(AF_INET, None, 0, table=100, gateway="192.0.2.1", proto=4)
R_V6 = Route(AF_INET6, None, 0, gateway="2001:db8::1", priority=1024, proto=3)
SYSCTLS = {"net/ipv6/conf/eth1/disable_ipv6": "0", "net/ipv4/conf/eth1/arp_ignore": "0"}


class FakeKernel:
    """Just enough of a kernel for hostnic: links, addresses, routes, two sysctls, ingress qdiscs."""

    def __init__(self) -> None:
        self.netns: str | None = None
        self.links: dict[str, dict[str, Any]] = {
            "lo": {"mac": "00:00:00:00:00:00", "mtu": 65536, "up": True, "promisc": False, "loopback": True},
            "eth1": {"mac": NIC_MAC, "mtu": 1500, "up": True, "promisc": False},
            "vs-ext0": {"mac": VNIC_MAC, "mtu": 1400, "up": False, "promisc": False},
        }
        self.addrs: dict[str, list[Address]] = {"eth1": [A1, A2, A6], "vs-ext0": [], "lo": []}
        self.routes_: dict[str, list[Route]] = {"eth1": [R_DEFAULT, R_LINK, R_VIA_LINK, R_TABLE, R_V6],
                                                 "vs-ext0": [], "lo": []}
        self.sysctls = dict(SYSCTLS)
        self.ingress: set[str] = set()
        self.calls: list[str] = []

    def state(self) -> dict[str, Any]:
        state = copy.deepcopy({k: v for k, v in vars(self).items() if k != "calls"})
        # the kernel lists routes in its own key order, not insertion order; addresses keep theirs
        state["routes_"] = {name: sorted(rs, key=repr) for name, rs in state["routes_"].items()}
        return state

    # the Netlink surface ---------------------------------------------------------------------------
    def __enter__(self) -> FakeKernel:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def _get(self, name: str) -> dict[str, Any]:
        if name not in self.links:
            raise LinkNotFound(f"no link named {name!r}")
        return self.links[name]

    def link_exists(self, name: str) -> bool:
        return name in self.links

    def link(self, name: str) -> LinkInfo:
        d = self._get(name)
        flags = (1 if d["up"] else 0) | (0x100 if d["promisc"] else 0) | (0x8 if d.get("loopback") else 0)
        return LinkInfo(1, name, d["mac"], flags, d["mtu"], None, d.get("master"), d.get("slave_kind"))

    def ingress_qdisc_kind(self, name: str) -> str | None:
        return "ingress" if name in self.ingress else None

    def has_sysctl(self, path: str) -> bool:
        return path in self.sysctls

    def get_sysctl(self, path: str) -> str:
        return self.sysctls[path]

    def set_sysctl(self, path: str, value: str) -> None:
        self.sysctls[path] = value
        if path.endswith("/disable_ipv6") and value == "1":  # the kernel wipes IPv6 addresses
            nic = path.split("/")[3]
            self.addrs[nic] = [a for a in self.addrs[nic] if a.family != AF_INET6]

    def set_mac(self, name: str, mac: str) -> None:
        self._get(name)["mac"] = mac

    def set_mtu(self, name: str, mtu: int) -> None:
        self._get(name)["mtu"] = mtu

    def set_up(self, name: str, up: bool) -> None:
        self._get(name)["up"] = up

    def set_promisc(self, name: str, on: bool) -> None:
        self._get(name)["promisc"] = on

    def addresses(self, name: str) -> list[Address]:
        self._get(name)
        return list(self.addrs[name])

    def add_address(self, name: str, addr: Address, *, extra_flags: int = 0, exist_ok: bool = False) -> None:
        self._get(name)
        self.calls.append(f"add {addr} {name}")
        if any(str(a) == str(addr) for a in self.addrs[name]):
            if exist_ok:
                return
            raise NetlinkFailure(errno.EEXIST, "exists")
        self.addrs[name].append(addr)

    def del_address(self, name: str, addr: Address, *, missing_ok: bool = False) -> None:
        self._get(name)
        self.calls.append(f"del {addr} {name}")
        kept = [a for a in self.addrs[name] if str(a) != str(addr)]
        if len(kept) == len(self.addrs[name]) and not missing_ok:
            raise NetlinkFailure(errno.EADDRNOTAVAIL, "no such address")
        self.addrs[name] = kept

    def routes(self, name: str) -> list[Route]:
        return list(self.routes_[name])

    def add_route(self, name: str, route: Route, *, exist_ok: bool = False) -> None:
        self._get(name)
        self.calls.append(f"add route {route} {name}")
        key = (route.family, route.table, route.dst, route.dst_len, route.priority)
        existing = [r for rs in self.routes_.values() for r in rs]
        if any((r.family, r.table, r.dst, r.dst_len, r.priority) == key for r in existing):
            if exist_ok and route in self.routes_[name]:
                return
            # the same key on another link is EEXIST too, as IPv4 and IPv6 do for `ip route add`
            raise NetlinkFailure(errno.EEXIST, f"route {route} exists")
        self.routes_[name].append(route)

    def del_route(self, name: str, route: Route, *, missing_ok: bool = False) -> None:
        self._get(name)
        self.calls.append(f"del route {route} {name}")
        if route not in self.routes_[name]:
            if missing_ok:
                return
            raise NetlinkFailure(errno.ESRCH, "no such route")
        self.routes_[name].remove(route)

    def add_ingress_drop(self, name: str) -> None:
        self.ingress.add(name)

    def del_ingress(self, name: str, *, missing_ok: bool = False) -> None:
        if name not in self.ingress and not missing_ok:
            raise NetlinkFailure(errno.ENOENT, "no qdisc")
        self.ingress.discard(name)


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> FakeKernel:
    fake = FakeKernel()
    monkeypatch.setattr(hostnic, "Netlink", lambda netns=None: fake)
    return fake


def snapshot(kernel: FakeKernel, allow_management_os: bool = True) -> dict[str, Any]:
    return hostnic.capture(kernel, "eth1", "vs-ext0", allow_management_os)  # type: ignore[arg-type]


def test_plan_order_follows_the_documented_phases(kernel: FakeKernel) -> None:
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


def test_plan_text_is_for_humans(kernel: FakeKernel) -> None:
    texts = [str(s) for s in build_plan(snapshot(kernel))]
    assert texts[0] == f"set vs-ext0 MAC to {NIC_MAC} (the MAC of eth1)"
    assert "move 192.0.2.10/24 from eth1 to vs-ext0: add it to vs-ext0" in texts
    assert "withdraw route default via 192.0.2.1 metric 100 from eth1 (moving to vs-ext0)" in texts
    assert "move route 203.0.113.0/24 via 198.51.100.1 from eth1 to vs-ext0: install it on vs-ext0" in texts
    assert "remove 192.0.2.10/24 from eth1 (now on vs-ext0)" in texts
    assert "drop ingress on eth1 for the host stack (tc ingress drop)" in texts
    assert "set arp_ignore=8 on eth1 (sysctl net/ipv4/conf/eth1/arp_ignore=8, was 0)" in texts


def test_plan_without_management_os_touches_no_vnic(kernel: FakeKernel) -> None:
    steps = build_plan(snapshot(kernel, allow_management_os=False))
    assert not any("vs-ext0" in s.description or s.key.startswith("vnic") for s in steps)
    assert sum(s.key.startswith("nic-route") for s in steps) == 5


def test_snapshot_is_json_and_versioned(kernel: FakeKernel) -> None:
    snap = json.loads(json.dumps(snapshot(kernel)))
    assert [s.key for s in build_plan(snap)] == [s.key for s in build_plan(snapshot(kernel))]
    with pytest.raises(TakeoverRefused, match="version"):
        build_plan({**snap, "version": 99})


def test_apply_then_restore(kernel: FakeKernel) -> None:
    before = kernel.state()
    takeover = Takeover("eth1", "vs-ext0")
    takeover.apply()
    assert kernel.links["vs-ext0"]["mac"] == NIC_MAC and kernel.links["vs-ext0"]["up"]
    assert [str(a) for a in kernel.addrs["vs-ext0"]] == ["192.0.2.10/24", "192.0.2.11/24", "2001:db8::10/64"]
    assert kernel.addrs["vs-ext0"][1].label == "vs-ext0:0", "IPv4 labels follow the link name"
    assert kernel.addrs["eth1"] == [] and kernel.routes_["eth1"] == []
    assert kernel.ingress == {"eth1"} and kernel.links["eth1"]["promisc"]
    takeover.restore()
    assert kernel.state() == before
    takeover.restore()
    assert kernel.state() == before


def test_failure_at_every_step_restores_exactly(kernel: FakeKernel) -> None:
    before = kernel.state()
    n = len(Takeover("eth1", "vs-ext0").plan())
    for k in range(n):
        with pytest.raises(TakeoverError) as caught:
            Takeover("eth1", "vs-ext0", fail_at=k).apply()
        assert caught.value.rollback_errors == [], k
        assert kernel.state() == before, f"failure before step {k} left changes behind"


def test_fail_at_accepts_a_step_key(kernel: FakeKernel) -> None:
    with pytest.raises(TakeoverError) as caught:
        Takeover("eth1", "vs-ext0", fail_at="nic-ingress-drop").apply()
    assert caught.value.step is not None and caught.value.step.key == "nic-ingress-drop"
    assert "everything was rolled back" in str(caught.value)


def test_crash_at_any_point_is_restored_from_the_json_snapshot(kernel: FakeKernel) -> None:
    before = kernel.state()
    snap = json.loads(json.dumps(snapshot(kernel)))
    steps = build_plan(snap)
    for k in range(len(steps) + 1):
        for step in steps[:k]:  # the daemon got this far, then died
            step.do(kernel)  # type: ignore[arg-type]
        Takeover.from_snapshot(snap).restore()
        assert kernel.state() == before, f"crash after {k} steps not restored"


def test_restore_after_the_vnic_vanished(kernel: FakeKernel) -> None:
    before = kernel.state()
    takeover = Takeover("eth1", "vs-ext0")
    takeover.apply()
    vnic = kernel.links.pop("vs-ext0")  # the TAP died with its owner
    kernel.routes_["vs-ext0"], kernel.addrs["vs-ext0"] = [], []
    takeover.restore()
    kernel.links["vs-ext0"] = {**vnic, "mac": VNIC_MAC, "mtu": 1400, "up": False}
    assert kernel.state() == before


def test_a_failing_undo_is_reported_and_restore_can_be_retried(kernel: FakeKernel) -> None:
    before = kernel.state()
    takeover = Takeover("eth1", "vs-ext0")
    takeover.apply()
    nic = kernel.links.pop("eth1")  # e.g. a USB NIC unplugged for a moment
    with pytest.raises(TakeoverError) as caught:
        takeover.restore()
    assert caught.value.rollback_errors and takeover.applied
    kernel.links["eth1"] = nic
    takeover.restore()
    assert kernel.state() == before and not takeover.applied


@pytest.mark.parametrize("nic, vnic, setup, message", [
    ("eth9", "vs-ext0", None, "NIC 'eth9' does not exist"),
    ("lo", "vs-ext0", None, "loopback"),
    ("eth1", "vs-ext0", {"master": 7, "slave_kind": "bridge"}, "already a port of a bridge"),
    ("eth1", "vs-nope", None, "host vNIC 'vs-nope' does not exist"),
    ("eth1", None, None, "needs a host vNIC name"),
    ("eth1", "eth1", None, "same link"),
])
def test_refusals_change_nothing(kernel: FakeKernel, nic: str, vnic: str | None,
                                 setup: dict[str, Any] | None, message: str) -> None:
    kernel.links["eth1"].update(setup or {})
    before = kernel.state()
    for attempt in (Takeover(nic, vnic).plan, Takeover(nic, vnic).apply):
        with pytest.raises(TakeoverRefused, match=message):
            attempt()
    assert kernel.state() == before


def test_existing_ingress_qdisc_is_refused(kernel: FakeKernel) -> None:
    kernel.ingress.add("eth1")
    with pytest.raises(TakeoverRefused, match="already has an ingress qdisc"):
        Takeover("eth1", "vs-ext0").apply()


def test_address_lifetimes_keep_ticking() -> None:
    a = Address(AF_INET6, "2001:db8::5", 64, valid_lft=100, preferred_lft=50)
    assert a.aged(30) == Address(AF_INET6, "2001:db8::5", 64, valid_lft=70, preferred_lft=20)
    assert a.aged(60).preferred_lft == 0  # type: ignore[union-attr]
    assert a.aged(100) is None
    assert A1.aged(10**6) == A1, "permanent addresses do not age"
