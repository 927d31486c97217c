"""The manager's control-plane rules against the in-memory kernel (tests/unit/memkernel.py): no root.

What a real kernel alone can prove (frames through AF_PACKET and TAP, tc really dropping, ping
through the moved addresses, SIGKILL of a real vswitchd) stays in tests/integration
(test_external_switch, test_takeover, test_crash_every_step). Here: what the manager decides and
undoes — the takeover moves the NIC's addresses and routes to the vNIC and gives them back exactly;
the kernel refusing any step at all leaves it as it was; confirm/revert; one owner per target; a
crash at every crash point of create and delete, then a new manager on what the crash left.
"""

from __future__ import annotations

import contextlib
import errno
import inspect
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from socket import AF_INET, AF_INET6
from typing import Any

import pytest
from memkernel import MemKernel, MemNetlink, record_datapaths

from vswitch.control import hostnic
from vswitch.control import manager as manager_module
from vswitch.control.manager import SwitchManager
from vswitch.control.model import (
    Conflict,
    InvalidRequest,
    PortKind,
    PortSettings,
    PortSpec,
    SwitchSpec,
    SwitchType,
    VswitchError,
)
from vswitch.control.netlink import Address, Netlink, NetlinkApi, Route
from vswitch.control.store import ConfigStore
from waiting import wait_until

NIC, VNIC, NIC_MAC = "eth1", "vs-ext", "52:54:00:12:34:56"
ADDRS = [Address(AF_INET, "192.0.2.10", 24, broadcast="192.0.2.255"),
         Address(AF_INET, "192.0.2.11", 24, broadcast="192.0.2.255", label="eth1:0"),
         Address(AF_INET6, "2001:db8::10", 64)]
ROUTES = [Route(AF_INET, "198.51.100.0", 24, scope=253, proto=3),   # link route first: others use it
          Route(AF_INET, None, 0, gateway="192.0.2.1", priority=100, proto=3),
          Route(AF_INET, "203.0.113.0", 24, gateway="198.51.100.1"),
          Route(AF_INET, "10.1.0.0", 16, gateway="192.0.2.1", prefsrc="192.0.2.10"),
          Route(AF_INET, None, 0, table=100, gateway="192.0.2.1"),
          Route(AF_INET6, None, 0, gateway="2001:db8::1", priority=1024, proto=3)]
EXT = SwitchSpec("ext", SwitchType.EXTERNAL, nic=NIC)


def _host_kernel() -> MemKernel:
    """A host with one NIC carrying addresses (a secondary among them) and routes in two tables."""
    k = MemKernel()
    k.add_link(NIC, mac=NIC_MAC, up=True)
    with k() as nl:
        for a in ADDRS:
            nl.add_address(NIC, a)
        for r in ROUTES:
            nl.add_route(NIC, r)
    return k


@pytest.fixture
def kernel() -> MemKernel:
    return _host_kernel()


class Host:
    """Managers on one kernel and store, and what each left running (stopped at the end)."""

    def __init__(self, tmp_path: Path, kernel: MemKernel) -> None:
        self.tmp_path = tmp_path
        self.kernel = kernel
        self.db = tmp_path / "config.sqlite"
        self.managers: list[SwitchManager] = []

    def manager(self, **kw: Any) -> SwitchManager:
        m = SwitchManager(ConfigStore(self.db), netlink=self.kernel, port_kinds=self.kernel.port_kinds,
                          port_socket_dir=str(self.tmp_path / "ports"), **kw)
        self.managers.append(m)
        return m

    def close(self) -> None:
        for m in self.managers:
            m.shutdown()
            assert m.store is not None
            m.store.close()


@pytest.fixture
def host(tmp_path: Path, kernel: MemKernel) -> Iterator[Host]:
    h = Host(tmp_path, kernel)
    yield h
    h.close()


def _addrs(kernel: MemKernel, link: str) -> list[str]:
    return [str(a) for a in kernel().addresses(link)]


def _routes(kernel: MemKernel, link: str) -> list[str]:
    return sorted(str(r) for r in kernel().routes(link))


def _store_is_empty(m: SwitchManager) -> bool:
    assert m.store is not None
    return m.store.load() == [] and m.store.intents() == [] and m.store.list_snapshots() == {}


def test_netlink_and_memkernel_both_have_every_verb_of_netlinkapi() -> None:
    def params(fn: Any) -> list[tuple[str, Any, Any]]:
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]
    verbs = [n for n in vars(NetlinkApi) if callable(vars(NetlinkApi)[n]) and (
        not n.startswith("_") or n in ("__enter__", "__exit__"))]
    assert {"link", "add_route", "add_ingress_drop", "set_sysctl", "links"} <= set(verbs)
    for verb in verbs:
        want = params(getattr(NetlinkApi, verb))
        assert params(getattr(Netlink, verb)) == want, f"Netlink.{verb}"
        assert params(getattr(MemNetlink, verb)) == want, f"MemNetlink.{verb}"


# -- takeover and give-back --------------------------------------------------------------------------

def test_external_moves_the_nics_protocols_to_the_vnic_and_gives_them_back_exactly(
        host: Host, kernel: MemKernel) -> None:
    before = kernel.state()
    m = host.manager()
    info = m.create_switch(EXT)
    assert info.host_vnic == VNIC  # type: ignore[union-attr]
    nl = kernel()
    assert _addrs(kernel, VNIC) == [str(a) for a in ADDRS], "addresses move in kernel order"
    assert _routes(kernel, VNIC) == sorted(str(r) for r in ROUTES)
    assert _addrs(kernel, NIC) == [] and _routes(kernel, NIC) == []
    vnic, nic = nl.link(VNIC), nl.link(NIC)
    assert (vnic.mac, vnic.up, vnic.kind) == (NIC_MAC, True, "tun"), "the vNIC takes the NIC's MAC"
    assert nl.ingress_qdisc_kind(NIC) == "clsact" and nic.promisc and nic.up
    assert nl.get_sysctl(f"net/ipv6/conf/{NIC}/disable_ipv6") == "1"
    assert nl.addresses(VNIC)[1].label == f"{VNIC}:0", "an IPv4 label follows the link's name"
    m.delete_switch("ext")
    assert kernel.state() == before
    assert _store_is_empty(m)


def test_external_without_management_os_removes_the_protocols_and_gives_them_back(
        host: Host, kernel: MemKernel) -> None:
    before = kernel.state()
    m = host.manager()
    m.create_switch(SwitchSpec("ext", SwitchType.EXTERNAL, nic=NIC, allow_management_os=False))
    assert not kernel().link_exists(VNIC)
    assert _addrs(kernel, NIC) == [] and _routes(kernel, NIC) == []
    m.delete_switch("ext")
    assert kernel.state() == before


def test_nic_list_offers_the_free_nic_with_its_speed_and_default_route(host: Host, kernel: MemKernel) -> None:
    kernel.namespaces[None].links[NIC].speed_mbps = 25000
    kernel.add_link("eth2", up=False)
    m = host.manager()
    nics = {n.name: n for n in m.list_nics()}
    assert (nics[NIC].speed_mbps, nics[NIC].default_route, nics[NIC].up) == (25000, True, True)
    assert (nics["eth2"].speed_mbps, nics["eth2"].default_route) == (None, False)
    m.create_switch(EXT)
    assert {n.name for n in m.list_nics()} == {"eth2"}, "neither the uplink nor the host vNIC is offered"


def test_port_set_mac_gives_a_tap_ports_link_the_mac_now_and_on_every_start(host: Host, kernel: MemKernel) -> None:
    m = host.manager()
    m.create_switch(SwitchSpec("lan", SwitchType.PRIVATE))
    m.add_port("lan", PortSpec("vm1", PortKind.TAP, "vmtap1"))
    kernel.add_link("vmlink2")
    m.add_port("lan", PortSpec("vm2", PortKind.LINK, "vmlink2"))
    m.set_port("lan", "vm1", PortSettings(mac="52:54:00:ab:cd:01"))
    assert kernel().link("vmtap1").mac == "52:54:00:ab:cd:01"
    with pytest.raises(Conflict, match="link port carries the frames of the link's far side"):
        m.set_port("lan", "vm2", PortSettings(mac="52:54:00:ab:cd:02"))
    assert kernel().link("vmlink2").mac != "52:54:00:ab:cd:02"
    m.shutdown()
    kernel().set_mac("vmtap1", "52:54:00:00:00:99")  # someone changed it while vswitchd was down
    m2 = host.manager()
    m2.restore()
    assert kernel().link("vmtap1").mac == "52:54:00:ab:cd:01", "the stored MAC is given again on attach"
    assert m2.get_port("lan", "vm1").mac == "52:54:00:ab:cd:01"


def _descriptors() -> dict[str, str]:
    """This process's open descriptors (fd → what it is), without the one listing them."""
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return out


def test_a_manager_that_is_shut_down_leaves_no_descriptor_open(host: Host, tmp_path: Path) -> None:
    (tmp_path / "warm").mkdir()
    warm = Host(tmp_path / "warm", host.kernel)
    warm.manager()  # whatever is opened once per process (imports), on a store of its own
    warm.close()
    before = _descriptors()
    for _ in range(5):
        m = host.manager()
        m.create_switch(SwitchSpec("lan", SwitchType.PRIVATE))
        m.delete_switch("lan")
        m.shutdown()
        assert m.store is not None
        m.store.close()
    # a leak of even two per manager (the link watch's pipe did) reaches select()'s 1024 in a test run
    left = {fd: what for fd, what in _descriptors().items() if fd not in before}
    assert not left, f"each manager closes what it opened: {left}"


def test_internal_switch_vnic_is_up_and_removed_on_delete(host: Host, kernel: MemKernel) -> None:
    before = kernel.state()
    m = host.manager()
    m.create_switch(SwitchSpec("int", SwitchType.INTERNAL))
    assert kernel().link("vs-int").up and kernel().link("vs-int").kind == "tun"
    m.delete_switch("int")
    assert kernel.state() == before


def test_dry_run_changes_nothing_and_lists_the_moves(host: Host, kernel: MemKernel) -> None:
    before = kernel.state()
    plan = host.manager().create_switch(EXT, dry_run=True)
    assert isinstance(plan, list) and "move 192.0.2.10/24 from eth1 to vs-ext: add it to vs-ext" in plan
    assert kernel.state() == before


def test_frames_cross_an_external_switch_on_memory_ports_and_its_tables_are_copies(
        host: Host, kernel: MemKernel) -> None:
    m = host.manager()
    m.create_switch(EXT)
    m.add_port("ext", PortSpec("vm1", PortKind.MEMORY, "vm1"))
    uplink, vnic, vm1 = (m.port_object("ext", p) for p in ("uplink", "host", "vm1"))
    broadcast = bytes.fromhex("ffffffffffff" "020000000001" "0800") + bytes(46)
    uplink.inject(broadcast)  # type: ignore[attr-defined]
    wait_until(lambda: vnic.sent and vm1.sent, what="the flood to the host vNIC and vm1")  # type: ignore[attr-defined]
    assert [(e.mac, e.vlan, e.port, e.static) for e in m.fdb_show("ext")] == [("02:00:00:00:00:01", 1, "uplink",
                                                                                False)]
    stats = {s.port: s for s in m.stats("ext")}
    assert (stats["uplink"].rx_frames, stats["uplink"].floods, stats["vm1"].tx_frames) == (1, 1, 1)
    dp = m.datapath("ext")
    dp.port_counters()["uplink"]["drops"]["tampered"] = 1
    dp.fdb_entries().clear()
    assert "tampered" not in dp.port_counters()["uplink"]["drops"] and len(dp.fdb_entries()) == 1, \
        "the control plane gets copies, never the core's live tables"
    assert m.fdb_flush("ext") == 1 and m.fdb_show("ext") == []


# -- rollback --------------------------------------------------------------------------------------

SPECS = [EXT, SwitchSpec("ext", SwitchType.EXTERNAL, nic=NIC, allow_management_os=False),
         SwitchSpec("int", SwitchType.INTERNAL)]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.type}-{s.allow_management_os}")
def test_the_kernel_refusing_any_step_of_a_create_leaves_it_as_it_was(
        host: Host, kernel: MemKernel, spec: SwitchSpec) -> None:
    before = kernel.state()
    m = host.manager()
    start = kernel.calls
    m.create_switch(spec)
    steps = kernel.calls - start
    m.delete_switch(spec.name)
    assert steps >= 2 and kernel.state() == before
    for n in range(steps):
        kernel.fail_at(n, errno.EPERM)
        with pytest.raises((VswitchError, OSError), match="Operation not permitted"):
            m.create_switch(spec)
        assert kernel.state() == before, f"the kernel refusing its step {n} left changes behind"
        assert m.list_switches() == [] and _store_is_empty(m), n
    m.create_switch(spec)  # and nothing left in the way of the next try
    m.delete_switch(spec.name)
    assert kernel.state() == before


def test_an_injected_failure_before_every_takeover_step_is_rolled_back(host: Host, kernel: MemKernel) -> None:
    before = kernel.state()
    for n in range(100):
        m = host.manager(takeover_fail_at=n)
        try:
            m.create_switch(EXT)
        except InvalidRequest as exc:
            assert "rolled back" in str(exc) and f"before step {n}" in str(exc)
            assert kernel.state() == before, f"failure before takeover step {n} left changes behind"
            assert _store_is_empty(m)
            continue
        assert m.store is not None
        assert n == len(hostnic.build_plan(m.store.get_snapshot("ext"))) > 10  # type: ignore[arg-type]
        m.delete_switch("ext")  # step n does not exist: the whole takeover ran
        assert kernel.state() == before
        break


# -- confirm or revert -----------------------------------------------------------------------------

def test_an_unconfirmed_takeover_is_reverted_at_its_deadline(host: Host, kernel: MemKernel) -> None:
    before = kernel.state()
    m = host.manager()
    info = m.create_switch(SwitchSpec("ext", SwitchType.EXTERNAL, nic=NIC, confirm_timeout_s=0.3))
    assert info.state == "awaiting-confirm"  # type: ignore[union-attr]
    wait_until(lambda: m.list_switches() == [], what="the revert")
    assert kernel.state() == before and _store_is_empty(m)


def test_a_confirmed_takeover_stays_across_a_restart(host: Host, kernel: MemKernel) -> None:
    m = host.manager()
    m.create_switch(SwitchSpec("ext", SwitchType.EXTERNAL, nic=NIC, confirm_timeout_s=3600))
    assert m.confirm_switch("ext").state == "up"
    with pytest.raises(Conflict, match="not waiting for confirmation"):
        m.confirm_switch("ext")
    crashed = _crash(host)
    m2 = crashed.manager()
    m2.restore()
    assert m2.restore_errors == []
    assert m2.get_switch("ext").state == "up" and _addrs(crashed.kernel, VNIC) == [str(a) for a in ADDRS]


def test_a_deadline_that_passed_while_the_daemon_was_down_is_reverted_on_restart(
        host: Host, kernel: MemKernel) -> None:
    before = kernel.state()
    m = host.manager()
    spec = SwitchSpec("ext", SwitchType.EXTERNAL, nic=NIC, confirm_timeout_s=3600)
    m.create_switch(spec)
    crashed = _crash(host)
    with ConfigStore(crashed.db) as store:
        store.save_switch(spec, confirm_deadline=time.time() - 1)
    m2 = crashed.manager()
    m2.restore()
    assert m2.list_switches() == [] and crashed.kernel.state() == before and _store_is_empty(m2)


# -- one owner per target --------------------------------------------------------------------------

def _refusals() -> list[tuple[str, Callable[[MemKernel], None], Callable[[SwitchManager], object], type, str]]:
    def nothing(k: MemKernel) -> None:
        pass

    def ext2(m: SwitchManager) -> object:
        return m.create_switch(SwitchSpec("ext2", SwitchType.EXTERNAL, nic=NIC))

    return [
        ("second uplink", nothing, ext2, Conflict, "interface 'eth1' is already the uplink of switch 'ext'"),
        ("link port on an uplink", nothing,
         lambda m: m.add_port("priv", PortSpec("p", PortKind.LINK, NIC)), Conflict, "already the uplink"),
        ("tap port on a vNIC", nothing,
         lambda m: m.add_port("priv", PortSpec("p", PortKind.TAP, VNIC)), Conflict,
         "interface 'vs-ext' is already the host vNIC of switch 'ext'"),
        ("vNIC as a NIC", nothing,
         lambda m: m.create_switch(SwitchSpec("e3", SwitchType.EXTERNAL, nic=VNIC)), Conflict,
         "already the host vNIC of switch 'ext'; it cannot also be the uplink of switch 'e3'"),
        ("a vNIC name left by a crash", lambda k: k.add_link("vs-old", kind="tun", persist=True),
         lambda m: m.add_port("priv", PortSpec("p", PortKind.TAP, "vs-old")), Conflict, "named like a host vNIC"),
        ("missing NIC", nothing,
         lambda m: m.create_switch(SwitchSpec("e3", SwitchType.EXTERNAL, nic="eth9")), Conflict,
         "NIC 'eth9' does not exist"),
        ("missing link", nothing,
         lambda m: m.add_port("priv", PortSpec("p", PortKind.LINK, "eth9")), Conflict,
         "interface 'eth9' does not exist"),
        ("NIC with a qdisc", lambda k: (k.add_link("eth2", up=True), k().add_ingress_drop("eth2")),
         lambda m: m.create_switch(SwitchSpec("e3", SwitchType.EXTERNAL, nic="eth2")), Conflict,
         "already has an ingress qdisc"),
        ("vNIC name is another link", lambda k: k.add_link("vs-i3"),
         lambda m: m.create_switch(SwitchSpec("i3", SwitchType.INTERNAL)), Conflict,
         "already exists and is not a TAP of ours"),
        ("vNIC name is a TAP with addresses", lambda k: (k.add_link("vs-i3", kind="tun", persist=True),
                                                         k().add_address("vs-i3", ADDRS[0])),
         lambda m: m.create_switch(SwitchSpec("i3", SwitchType.INTERNAL)), Conflict,
         "already exists and is not a TAP of ours"),
    ]


@pytest.mark.parametrize("setup, attempt, error, message", [r[1:] for r in _refusals()],
                         ids=[r[0] for r in _refusals()])
def test_one_owner_per_target_refusals_change_nothing(
        host: Host, kernel: MemKernel, setup: Callable[[MemKernel], None], attempt: Callable[[SwitchManager], object],
        error: type, message: str) -> None:
    setup(kernel)
    m = host.manager()
    m.create_switch(EXT)
    m.create_switch(SwitchSpec("priv", SwitchType.PRIVATE))
    before, switches = kernel.state(), m.list_switches()
    with pytest.raises(error, match=message):
        attempt(m)
    assert kernel.state() == before and m.list_switches() == switches


# -- crash and restore -----------------------------------------------------------------------------

class _Crash(BaseException):
    """vswitchd died here (a BaseException: nothing in the manager catches it as an error)."""


def _crash(host: Host) -> Host:
    """What a SIGKILL now leaves: a kernel with vswitchd's descriptors closed and the committed store.
    The old managers are stopped afterwards, on their own copy, like a process that is gone."""
    kernel = host.kernel.after_crash()
    crashed = Host(host.tmp_path / f"after-crash-{len(list(host.tmp_path.iterdir()))}", kernel)
    crashed.tmp_path.mkdir()
    with sqlite3.connect(host.db) as src, sqlite3.connect(crashed.db) as dst:
        src.backup(dst)  # committed transactions only, as on disk
    src.close()
    dst.close()
    return crashed


def test_restore_after_a_crash_adopts_the_takeover_and_ports(host: Host, kernel: MemKernel) -> None:
    before = kernel.state()
    m = host.manager()
    m.create_switch(EXT)
    m.add_port("ext", PortSpec("vm1", PortKind.TAP, "tap-vm1"))
    m.add_port("ext", PortSpec("vm2", PortKind.MEMORY, "vm2"))
    crashed = _crash(host)
    assert crashed.kernel.state() == kernel.state(), "persistent TAPs (vNIC, VM NICs) outlive the daemon"
    m2 = crashed.manager()
    start = crashed.kernel.calls
    m2.restore()
    assert m2.restore_errors == []
    assert [p.name for p in m2.list_ports("ext")] == ["uplink", "host", "vm1", "vm2"]
    assert crashed.kernel.calls == start, "an intact takeover is adopted, not done again"
    assert _addrs(crashed.kernel, VNIC) == [str(a) for a in ADDRS]
    m2.delete_switch("ext")
    assert crashed.kernel.state() == before


def test_restore_gives_the_nic_back_when_its_switch_cannot_come_back(host: Host, kernel: MemKernel) -> None:
    before = kernel.state()
    host.manager().create_switch(EXT)
    crashed = _crash(host)
    crashed.kernel.hold(VNIC)  # another process took the vNIC's descriptor while we were down
    m2 = crashed.manager()
    m2.restore()
    assert m2.list_switches() == [] and "already held by another process" in " ".join(m2.restore_errors)
    assert crashed.kernel.state() == before, "the host gets its NIC back rather than being cut off"


def _crash_points(host: Host, run: Callable[[SwitchManager], object],
                  monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    monkeypatch.setattr(manager_module, "crashpoint", seen.append)
    monkeypatch.setattr(hostnic, "crashpoint", seen.append)
    try:
        run(host.managers[-1])
    finally:
        _no_crash_points(monkeypatch)
    return seen


def _crash_at(monkeypatch: pytest.MonkeyPatch, h: Host, point: str, nth: int) -> list[Host]:
    """Make the `nth` pass through crash point `point` a SIGKILL of `h`'s vswitchd: the returned list
    gets what it left (`_crash`), and the call raises _Crash out of the manager."""
    crashed: list[Host] = []
    hits: dict[str, int] = {}

    def hook(name: str) -> None:
        hits[name] = hits.get(name, 0) + 1
        if name == point and hits[name] == nth:
            crashed.append(_crash(h))
            raise _Crash(name)
    monkeypatch.setattr(manager_module, "crashpoint", hook)
    monkeypatch.setattr(hostnic, "crashpoint", hook)
    return crashed


def _no_crash_points(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager_module, "crashpoint", lambda name: None)
    monkeypatch.setattr(hostnic, "crashpoint", lambda name: None)


@pytest.mark.parametrize("op", ["create", "delete", "add-port", "remove-port"])
@pytest.mark.parametrize("spec", [EXT, SwitchSpec("int", SwitchType.INTERNAL)], ids=lambda s: str(s.type))
def test_a_crash_at_every_step_leaves_the_old_state_or_the_new_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: SwitchSpec, op: str) -> None:
    """The non-root twin of tests/integration/test_crash_every_step.py: the kernel as the crash left it,
    the store as committed, a new manager; then the host is reachable (its addresses on the vNIC while
    the switch exists, on the NIC when not) and deleting the switch leaves the kernel as it started."""
    port = PortSpec("vm1", PortKind.TAP, "tap-vm1")

    def prepare(m: SwitchManager) -> None:
        if op != "create":
            m.create_switch(spec)
        if op == "remove-port":
            m.add_port(spec.name, port)

    run: Callable[[SwitchManager], object] = {
        "create": lambda m: m.create_switch(spec), "delete": lambda m: m.delete_switch(spec.name),
        "add-port": lambda m: m.add_port(spec.name, port), "remove-port": lambda m: m.remove_port(spec.name, port.name),
    }[op]
    datapaths = record_datapaths(monkeypatch)

    def fresh(tag: str) -> Host:
        (tmp_path / tag).mkdir()
        return Host(tmp_path / tag, _host_kernel())

    learn = fresh("learn")
    before = learn.kernel.state()
    prepare(learn.manager())
    points = _crash_points(learn, run, monkeypatch)
    learn.close()
    assert len(points) >= 2, points
    for k, point in enumerate(points):
        h = fresh(f"crash{k}")
        prepare(h.manager())
        nth = points[:k + 1].count(point)
        crashed = _crash_at(monkeypatch, h, point, nth)
        with pytest.raises(_Crash):
            run(h.managers[-1])
        _no_crash_points(monkeypatch)
        h.close()
        for dp in datapaths:  # a crash left after a commit leaves its datapath to nobody: stop it
            dp.stop()
        after = crashed[0]
        m2 = after.manager()
        m2.restore()
        where = f"crash at {point}#{nth}"
        assert m2.restore_errors == [], where
        nl = after.kernel()
        if spec.type == SwitchType.EXTERNAL:
            names = [s.name for s in m2.list_switches()]
            on = VNIC if names else NIC
            assert _addrs(after.kernel, on) == [str(a) for a in ADDRS], f"{where}: host unreachable"
            assert _routes(after.kernel, on) == sorted(str(r) for r in ROUTES), where
        for s in m2.list_switches():
            m2.delete_switch(s.name)
        m2.shutdown()
        assert not nl.link_exists("tap-vm1"), f"{where}: a VM TAP left behind"
        assert after.kernel.state() == before, f"{where}: the kernel is not as it started"
        after.close()
