"""`switch set`: a running switch's connection (type, NIC, management OS) and name, on the in-memory kernel.

Every transition Hyper-V's Virtual Switch Manager offers, checked against what the kernel holds: an
External switch's NIC comes back exactly as it was (links, addresses, routes, sysctls compared with
the picture taken before the takeover); a new External takes the NIC over as a creation does; VM
ports, their settings, static entries and learned MACs stay. A refusal, the kernel refusing any
step, an unconfirmed change and a crash at every crash point leave the old connection or the new
one. What only a real kernel proves (ping through the switch after the change) is in
tests/integration/test_switch_set.py.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from memkernel import MemKernel, record_datapaths
from test_manager_kernel import (
    ADDRS,
    NIC,
    NIC_MAC,
    ROUTES,
    Host,
    _addrs,
    _Crash,
    _crash,
    _crash_at,
    _host_kernel,
    _no_crash_points,
    _routes,
)

from vswitch.control import hostnic
from vswitch.control import manager as manager_module
from vswitch.control.manager import SwitchManager
from vswitch.control.model import (
    Conflict,
    DatapathMode,
    InvalidRequest,
    PortKind,
    PortSpec,
    StaticEntry,
    SwitchInfo,
    SwitchSettings,
    SwitchSpec,
    SwitchType,
    VswitchError,
)
from vswitch.control.netlink import Address
from vswitch.control.store import ConfigStore
from waiting import wait_until

SW = "sw"
VNIC = "vs-sw"
EXTERNAL = SwitchSettings(type=SwitchType.EXTERNAL, nic=NIC, allow_management_os=True)
INTERNAL = SwitchSettings(type=SwitchType.INTERNAL)
PRIVATE = SwitchSettings(type=SwitchType.PRIVATE)
SPECS = {"external": SwitchSpec(SW, SwitchType.EXTERNAL, nic=NIC), "internal": SwitchSpec(SW, SwitchType.INTERNAL),
         "private": SwitchSpec(SW, SwitchType.PRIVATE),
         "external-no-os": SwitchSpec(SW, SwitchType.EXTERNAL, nic=NIC, allow_management_os=False)}
TO = {"external": EXTERNAL, "internal": INTERNAL, "private": PRIVATE,
      "external-no-os": SwitchSettings(type=SwitchType.EXTERNAL, nic=NIC, allow_management_os=False)}
#: (from, to): every change of connection
TRANSITIONS = [("external", "internal"), ("external", "private"), ("internal", "external"),
               ("private", "external"), ("internal", "private"), ("private", "internal"),
               ("external", "external-no-os"), ("external-no-os", "external"), ("internal", "external-no-os")]
FRAME = bytes.fromhex("ffffffffffff" "020000000001" "0800") + bytes(46)
VM_MAC = "02:00:00:00:00:01"
STATIC = "02:00:00:00:00:aa"


@pytest.fixture
def kernel() -> MemKernel:
    return _host_kernel()


@pytest.fixture
def host(tmp_path: Path, kernel: MemKernel) -> Iterator[Host]:
    h = Host(tmp_path, kernel)
    yield h
    h.close()


def _nic_picture(kernel: MemKernel) -> dict[str, Any]:
    """The NIC as the host sees it: link, addresses, routes, sysctls."""
    state = kernel.state()[None]
    return {"link": state["links"][NIC], "routes": [r for r in state["routes"] if r[0] == NIC],
            "sysctls": {k: v for k, v in state["sysctls"].items() if f"/{NIC}/" in k}}


def _prepare(m: SwitchManager, start: str) -> None:
    """Switch SW of type `start` with two VM ports (one on VLAN 10), a static entry and a learned MAC."""
    m.create_switch(SPECS[start])
    m.add_port(SW, PortSpec("vm1", PortKind.MEMORY, "vm1"))
    m.add_port(SW, PortSpec("vm2", PortKind.MEMORY, "vm2", vlan=10))
    m.fdb_add(SW, StaticEntry(STATIC, "vm1"))
    m.port_object(SW, "vm1").inject(FRAME)  # type: ignore[attr-defined]
    wait_until(lambda: any(e.mac == VM_MAC for e in m.fdb_show(SW)), what="vm1's MAC learned")


def _shape(info: SwitchInfo) -> tuple[str, str | None, str | None, list[str]]:
    return info.type, info.nic, info.host_vnic, sorted(p.name for p in info.ports)


def _expected(kind: str) -> tuple[str, str | None, str | None, list[str]]:
    spec = SPECS[kind]
    own = (["host"] if spec.has_host_vnic else []) + (["uplink"] if spec.nic else [])
    return str(spec.type), spec.nic, VNIC if spec.has_host_vnic else None, sorted(["vm1", "vm2", *own])


def _host_reachable(kernel: MemKernel, m: SwitchManager) -> None:
    """The NIC's addresses and routes are where the host uses them: on the vNIC of an External switch
    with management OS, nowhere while it runs without, on the NIC when no switch holds it."""
    info = m.get_switch(SW)
    if info.type == "external" and info.allow_management_os:
        on: str | None = VNIC
    elif info.type == "external":
        on = None
    else:
        on = NIC
    for link in (NIC, VNIC):
        if kernel().link_exists(link):
            want = [str(a) for a in ADDRS] if link == on else []
            assert [a for a in _addrs(kernel, link) if a in [str(x) for x in ADDRS]] == want, link
            assert _routes(kernel, link) == (sorted(str(r) for r in ROUTES) if link == on else []), link


@pytest.mark.parametrize("start, end", TRANSITIONS, ids=[f"{a}-to-{b}" for a, b in TRANSITIONS])
def test_every_transition_keeps_ports_statics_and_learned_macs_and_gives_the_nic_back_exactly(
        host: Host, kernel: MemKernel, start: str, end: str) -> None:
    initial, nic_before = kernel.state(), _nic_picture(kernel)
    m = host.manager()
    _prepare(m, start)
    info = m.set_switch(SW, TO[end])
    assert isinstance(info, SwitchInfo) and _shape(info) == _expected(end)
    assert m.get_port(SW, "vm2").vlan_mode == "access 10", "port settings stay"
    fdb = {(e.mac, e.port, e.static) for e in m.fdb_show(SW)}
    assert {(STATIC, "vm1", True), (VM_MAC, "vm1", False)} <= fdb, "static and learned entries stay"
    _host_reachable(kernel, m)
    if SPECS[end].type != SwitchType.EXTERNAL:
        assert _nic_picture(kernel) == nic_before, "the NIC is given back exactly"
        if SPECS[end].has_host_vnic:
            vnic = kernel().link(VNIC)
            assert vnic.up and vnic.mac != NIC_MAC, "an Internal vNIC is up with its own MAC"
    vm1, vm2 = m.port_object(SW, "vm1"), m.port_object(SW, "vm2")
    vm2.inject(FRAME)  # type: ignore[attr-defined]
    wait_until(lambda: any(e.mac == VM_MAC and e.port == "vm2" for e in m.fdb_show(SW)),
               what="a frame from vm2 handled after the change")
    assert m.store is not None and m.store.load()[0][0] == m.store.load()[0][0].updated({}), "stored"
    stored = m.store.load()[0][0]
    assert (stored.type, stored.nic, stored.has_host_vnic) == (SPECS[end].type, SPECS[end].nic,
                                                                SPECS[end].has_host_vnic)
    assert [s for s in m.store.statics(SW)] == [(STATIC, 1, "vm1")] and m.store.intents() == []
    del vm1
    # and back: the old connection exactly, then nothing left once deleted
    assert _shape(m.set_switch(SW, TO[start])) == _expected(start)  # type: ignore[arg-type]
    _host_reachable(kernel, m)
    m.delete_switch(SW)
    assert kernel.state() == initial


def test_external_to_internal_to_external_with_the_host_adapter_keeping_its_own_address(
        host: Host, kernel: MemKernel) -> None:
    """An Internal switch's vNIC keeps an address of its own through a trip to External and back."""
    m = host.manager()
    m.create_switch(SPECS["internal"])
    own = Address(ADDRS[0].family, "10.9.0.1", 24, broadcast="10.9.0.255")
    kernel().add_address(VNIC, own)
    m.set_switch(SW, EXTERNAL)
    assert _addrs(kernel, VNIC)[:1] == ["10.9.0.1/24"] and set(map(str, ADDRS)) <= set(_addrs(kernel, VNIC))
    m.set_switch(SW, INTERNAL)
    assert _addrs(kernel, VNIC) == ["10.9.0.1/24"] and _addrs(kernel, NIC) == [str(a) for a in ADDRS]


def test_management_os_off_and_on_moves_the_host_adapter_away_and_back(host: Host, kernel: MemKernel) -> None:
    m = host.manager()
    m.create_switch(SPECS["external"])
    info = m.set_switch(SW, SwitchSettings(allow_management_os=False))
    assert info.host_vnic is None and not kernel().link_exists(VNIC)  # type: ignore[union-attr]
    assert _addrs(kernel, NIC) == [] and _routes(kernel, NIC) == [], "the host has no adapter there any more"
    info = m.set_switch(SW, SwitchSettings(allow_management_os=True))
    assert info.host_vnic == VNIC and _addrs(kernel, VNIC) == [str(a) for a in ADDRS]  # type: ignore[union-attr]
    assert _routes(kernel, VNIC) == sorted(str(r) for r in ROUTES) and kernel().link(VNIC).mac == NIC_MAC


def test_dry_run_lists_the_steps_and_changes_nothing(host: Host, kernel: MemKernel) -> None:
    m = host.manager()
    m.create_switch(SPECS["external"])
    before, info = kernel.state(), m.get_switch(SW)
    steps = m.set_switch(SW, INTERNAL, dry_run=True)
    assert isinstance(steps, list)
    assert steps[0] == f"detach {NIC} (port 'uplink') and give it back as it was before the takeover:"
    assert f"  undo: move 192.0.2.10/24 from {NIC} to {VNIC}: add it to {VNIC}" in steps
    assert steps[-1] == f"bring {VNIC} up (the host's adapter on this internal switch)"
    steps = m.set_switch(SW, SwitchSettings(allow_management_os=False), dry_run=True)
    assert f"remove 192.0.2.10/24 from {NIC}" in steps and steps[-1].startswith(f"remove host vNIC {VNIC}")
    assert kernel.state() == before and m.get_switch(SW) == info


def _refusals() -> list[tuple[str, Callable[[SwitchManager], object], type, str]]:
    return [
        ("NIC a port elsewhere", lambda m: m.set_switch(SW, SwitchSettings(type=SwitchType.EXTERNAL, nic="eth2")),
         Conflict, "interface 'eth2' is already link port 'p' of switch 'other'"),
        ("NIC a port of its own", lambda m: m.set_switch("other", SwitchSettings(type=SwitchType.EXTERNAL,
                                                                                  nic="eth2")),
         Conflict, "interface 'eth2' is already link port 'p' of switch 'other'"),
        ("missing NIC", lambda m: m.set_switch(SW, SwitchSettings(type=SwitchType.EXTERNAL, nic="eth9")),
         Conflict, "NIC 'eth9' does not exist"),
        ("our own vNIC", lambda m: m.set_switch("other", SwitchSettings(type=SwitchType.EXTERNAL, nic=VNIC)),
         Conflict, "interface 'vs-sw' is already the host vNIC of switch 'sw'"),
        ("its own vNIC", lambda m: m.set_switch(SW, SwitchSettings(type=SwitchType.EXTERNAL, nic=VNIC)),
         Conflict, "named like a host vNIC"),
        ("confirm without a change", lambda m: m.set_switch(SW, SwitchSettings(
            type=SwitchType.INTERNAL, confirm_timeout_s=5)), InvalidRequest, "confirm_timeout_s: only with"),
        ("management OS on internal", lambda m: m.set_switch(SW, SwitchSettings(allow_management_os=False)),
         Conflict, "allow_management_os: only an external switch has this setting; switch 'sw' is internal"),
        ("the same connection, confirmed", lambda m: m.set_switch("other", SwitchSettings(
            type=SwitchType.PRIVATE, confirm_timeout_s=5)), InvalidRequest, "confirm_timeout_s: only with"),
        ("rename onto a taken vNIC name", lambda m: m.set_switch(SW, SwitchSettings(name="x")),
         Conflict, "a link named 'vs-x'"),
    ]


@pytest.mark.parametrize("attempt, error, message", [r[1:] for r in _refusals()], ids=[r[0] for r in _refusals()])
def test_refusals_name_the_problem_and_change_nothing(
        host: Host, kernel: MemKernel, attempt: Callable[[SwitchManager], object], error: type, message: str) -> None:
    kernel.add_link("eth2", up=True)
    kernel.add_link("vs-x")
    m = host.manager()
    m.create_switch(SPECS["internal"])
    m.create_switch(SwitchSpec("other", SwitchType.PRIVATE))
    m.add_port("other", PortSpec("p", PortKind.LINK, "eth2"))
    before, switches = kernel.state(), m.list_switches()
    assert m.store is not None
    stored = m.store.load()
    with pytest.raises(error, match=message):
        attempt(m)
    assert kernel.state() == before and m.list_switches() == switches and m.store.load() == stored


def test_changing_the_connection_while_awaiting_confirmation_is_refused(host: Host, kernel: MemKernel) -> None:
    m = host.manager()
    m.create_switch(SPECS["internal"])
    m.set_switch(SW, SwitchSettings(type=SwitchType.EXTERNAL, nic=NIC, confirm_timeout_s=3600))
    with pytest.raises(Conflict, match="waiting for confirmation"):
        m.set_switch(SW, PRIVATE)
    assert m.confirm_switch(SW).state == "up"
    assert m.set_switch(SW, PRIVATE).type == "private"  # type: ignore[union-attr]


# -- rename ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("start", ["internal", "external"])
def test_renaming_a_switch_renames_its_vnic_keeping_addresses_and_the_snapshot_follows(
        host: Host, kernel: MemKernel, start: str) -> None:
    initial = kernel.state()
    m = host.manager()
    _prepare(m, start)
    if start == "internal":
        kernel().add_address(VNIC, ADDRS[0])
    addrs = _addrs(kernel, VNIC)
    info = m.set_switch(SW, SwitchSettings(name="lab"))
    assert info.host_vnic == "vs-lab" and not kernel().link_exists(VNIC)  # type: ignore[union-attr]
    assert _addrs(kernel, "vs-lab") == [a.replace(VNIC, "vs-lab") for a in addrs]
    assert sorted(p.name for p in info.ports) == sorted(_expected(start)[3])  # type: ignore[union-attr]
    assert m.store is not None and [s.name for s, _ in m.store.load()] == ["lab"] and m.store.intents() == []
    if start == "external":
        assert m.store.get_snapshot("lab")["vnic"] == "vs-lab"  # type: ignore[index]
        assert kernel().addresses("vs-lab")[1].label == "vs-lab:0", "the IPv4 label follows the name"
        crashed = _crash(host)  # the stored snapshot gives the NIC back from the renamed vNIC
        m2 = crashed.manager()
        m2.restore()
        assert m2.restore_errors == [] and m2.get_switch("lab").host_vnic == "vs-lab"
        m2.delete_switch("lab")
        assert crashed.kernel.state() == initial
    m.delete_switch("lab")
    if start == "internal":
        assert kernel.state() == initial


# -- the kernel refusing a step, confirm or revert ---------------------------------------------------

@pytest.mark.parametrize("start, end", TRANSITIONS, ids=[f"{a}-to-{b}" for a, b in TRANSITIONS])
def test_the_kernel_refusing_any_step_leaves_the_old_connection_or_the_new_one(
        tmp_path: Path, start: str, end: str) -> None:
    def fresh(tag: str) -> tuple[Host, SwitchManager]:
        (tmp_path / tag).mkdir()
        h = Host(tmp_path / tag, _host_kernel())
        m = h.manager()
        m.create_switch(SPECS[start])
        m.add_port(SW, PortSpec("vm1", PortKind.MEMORY, "vm1"))
        return h, m

    h, m = fresh("count")
    start_calls = h.kernel.calls
    m.set_switch(SW, TO[end])
    steps = h.kernel.calls - start_calls
    h.close()
    for n in range(steps):  # (removing a TAP is a close, not a netlink call: internal → private has none)
        h, m = fresh(f"fail{n}")
        before, info = h.kernel.state(), m.get_switch(SW)
        h.kernel.fail_at(n, errno.EPERM)
        try:
            m.set_switch(SW, TO[end])
        except (VswitchError, OSError, hostnic.TakeoverError) as exc:
            assert "Operation not permitted" in str(exc), exc
            assert h.kernel.state() == before, f"the kernel refusing its step {n} left changes behind"
            assert _shape(m.get_switch(SW)) == _shape(info) and m.store is not None and m.store.intents() == []
            assert m.store.load()[0][0].type == SPECS[start].type
        else:  # a refused undo of the give-back is tried again: the change went through
            assert _shape(m.get_switch(SW))[:3] == _expected(end)[:3], n
        _host_reachable(h.kernel, m)
        h.close()


def test_an_unconfirmed_change_to_external_goes_back_to_internal_exactly(host: Host, kernel: MemKernel) -> None:
    m = host.manager()
    _prepare(m, "internal")
    before, info = kernel.state(), m.get_switch(SW)
    changed = m.set_switch(SW, SwitchSettings(type=SwitchType.EXTERNAL, nic=NIC, confirm_timeout_s=0.3))
    assert changed.state == "awaiting-confirm" and changed.type == "external"  # type: ignore[union-attr]
    wait_until(lambda: m.get_switch(SW).type == "internal", what="the revert to internal")
    after = m.get_switch(SW)
    assert _shape(after) == _shape(info) and after.state == "up"
    assert kernel.state() == before, "the NIC given back, the vNIC as it was"
    assert m.store is not None and m.store.load()[0][0].type == SwitchType.INTERNAL
    assert m.store.confirm_deadline(SW) is None and m.store.list_snapshots() == {}


def test_a_deadline_passed_while_down_reverts_a_change_on_restart(host: Host, kernel: MemKernel) -> None:
    m = host.manager()
    _prepare(m, "private")
    before = kernel.state()
    m.set_switch(SW, SwitchSettings(type=SwitchType.EXTERNAL, nic=NIC, confirm_timeout_s=3600))
    crashed = _crash(host)
    with ConfigStore(crashed.db) as store:
        spec = store.load()[0][0]
        store.save_switch(spec, confirm_deadline=time.time() - 1)
    m2 = crashed.manager()
    m2.restore()
    assert m2.restore_errors == [] and _shape(m2.get_switch(SW)) == _expected("private")
    assert crashed.kernel.state() == before


def test_a_restart_before_the_deadline_keeps_waiting_and_still_reverts(host: Host, kernel: MemKernel) -> None:
    m = host.manager()
    _prepare(m, "internal")
    m.set_switch(SW, SwitchSettings(type=SwitchType.EXTERNAL, nic=NIC, confirm_timeout_s=3600))
    crashed = _crash(host)
    with ConfigStore(crashed.db) as store:
        spec = store.load()[0][0]
        store.save_switch(spec, confirm_deadline=time.time() + 0.5)
    m2 = crashed.manager()
    m2.restore()
    assert m2.get_switch(SW).state == "awaiting-confirm"
    wait_until(lambda: m2.get_switch(SW).type == "internal", what="the revert after the restart")
    assert _addrs(crashed.kernel, NIC) == [str(a) for a in ADDRS]


# -- a crash at every step ---------------------------------------------------------------------------

CRASH_CASES = TRANSITIONS + [("internal", "rename"), ("external", "rename")]


@pytest.mark.parametrize("start, end", CRASH_CASES, ids=[f"{a}-to-{b}" for a, b in CRASH_CASES])
def test_a_crash_at_every_step_leaves_the_old_connection_or_the_new_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, start: str, end: str) -> None:
    """Kill at each crash point of the change, restart on what the kernel and the store kept: the
    switch is back with the old connection or the new one, the host reachable, and deleting it leaves
    the kernel as it started."""
    settings = SwitchSettings(name="lab") if end == "rename" else TO[end]
    name_after = {SW, "lab"}
    datapaths = record_datapaths(monkeypatch)

    def fresh(tag: str) -> Host:
        (tmp_path / tag).mkdir()
        h = Host(tmp_path / tag, _host_kernel())
        m = h.manager()
        m.create_switch(SPECS[start])
        m.add_port(SW, PortSpec("vm1", PortKind.MEMORY, "vm1"))
        return h

    learn = fresh("learn")
    initial = _host_kernel().state()
    seen: list[str] = []
    monkeypatch.setattr(manager_module, "crashpoint", seen.append)
    monkeypatch.setattr(hostnic, "crashpoint", seen.append)
    learn.managers[-1].set_switch(SW, settings)
    _no_crash_points(monkeypatch)
    learn.close()
    assert len(seen) >= 2, seen
    for k, point in enumerate(seen):
        h = fresh(f"crash{k}")
        nth = seen[:k + 1].count(point)
        crashed = _crash_at(monkeypatch, h, point, nth)
        with pytest.raises(_Crash):
            h.managers[-1].set_switch(SW, settings)
        _no_crash_points(monkeypatch)
        h.close()
        for dp in datapaths:
            dp.stop()
        after = crashed[0]
        m2 = after.manager()
        m2.restore()
        where = f"crash at {point}#{nth}"
        assert m2.restore_errors == [], where
        (info,) = m2.list_switches()
        assert info.name in name_after and [p.name for p in info.ports if p.role == "vm"] == ["vm1"], where
        if end != "rename":
            assert _shape(info)[:3] in (_expected(start)[:3], _expected(end)[:3]), where
        elif info.host_vnic is not None:
            assert info.host_vnic == f"vs-{info.name}", where
        assert m2.store is not None and m2.store.intents() == [], where
        if info.name == SW:
            _host_reachable(after.kernel, m2)
        m2.delete_switch(info.name)
        m2.shutdown()
        assert after.kernel.state() == initial, f"{where}: the kernel is not as it started"
        after.close()


@pytest.mark.parametrize("start, end", [("internal", "external"), ("private", "external"),
                                        ("external", "external-no-os"), ("external-no-os", "external")])
def test_a_dry_run_lists_exactly_the_takeover_the_change_then_makes(host: Host, kernel: MemKernel, start: str,
                                                                     end: str) -> None:
    m = host.manager()
    m.create_switch(SPECS[start])
    plan = m.set_switch(SW, TO[end], dry_run=True)
    assert isinstance(plan, list)
    m.set_switch(SW, TO[end])
    assert m.store is not None
    done = [s.description for s in hostnic.build_plan(m.store.get_snapshot(SW))]  # type: ignore[arg-type]
    attach = plan.index(f"attach {NIC} as port 'uplink' (AF_PACKET, promiscuous)")
    # (the same steps; routes of one scope may be listed in another order once given back and re-read)
    assert sorted(plan[attach + 1:attach + 1 + len(done)]) == sorted(done)


@pytest.mark.parametrize("start, end", [("external", "internal"), ("internal", "external"),
                                        ("external", "external-no-os"), ("private", "internal")])
def test_vm_ports_forward_between_each_other_throughout_the_change(
        host: Host, kernel: MemKernel, start: str, end: str) -> None:
    """Frames sent from vm1 to vm2 while the connection changes all arrive: the datapath never stops."""
    m = host.manager()
    m.create_switch(SPECS[start])
    m.add_port(SW, PortSpec("vm1", PortKind.MEMORY, "vm1"))
    m.add_port(SW, PortSpec("vm2", PortKind.MEMORY, "vm2"))
    vm1, vm2 = m.port_object(SW, "vm1"), m.port_object(SW, "vm2")
    to_vm2 = bytes.fromhex("020000000002" "020000000001" "0800") + bytes(46)
    vm2.inject(bytes.fromhex("ffffffffffff" "020000000002" "0800") + bytes(46))  # vm2's MAC learned
    wait_until(lambda: any(e.port == "vm2" for e in m.fdb_show(SW)), what="vm2's MAC learned")
    vm2.take()  # type: ignore[attr-defined]
    stop, sent = threading.Event(), [0]

    def send() -> None:
        while not stop.is_set():
            vm1.inject(to_vm2)  # type: ignore[attr-defined]
            sent[0] += 1
            time.sleep(0.001)  # pacing the sender, not waiting for anything
    sender = threading.Thread(target=send)
    sender.start()
    try:
        wait_until(lambda: sent[0] >= 20, what="frames flowing before the change")
        m.set_switch(SW, TO[end])
        mark = sent[0]
        wait_until(lambda: sent[0] >= mark + 20, what="frames flowing after the change")
    finally:
        stop.set()
        sender.join()
    wait_until(lambda: len(vm2.sent) == sent[0], what=f"all {sent[0]} frames at vm2")  # type: ignore[attr-defined]


def test_a_datapath_change_is_stored_and_shown_and_kept_apart_from_other_changes(host: Host) -> None:
    """`switch set --datapath` on the in-memory kernel (every switch runs on Python here: what moves a
    running switch between the fast path and Python is tests/integration/test_kernel_switch.py's)."""
    m = host.manager()
    _prepare(m, "private")
    steps = m.set_switch(SW, SwitchSettings(datapath=DatapathMode.PYTHON), dry_run=True)
    assert steps == [f"move switch {SW!r} from its datapath now (python (the kernel is simulated)) to the Python "
                     "datapath (--datapath python), keeping its ports, static and learned entries and counters"]
    assert m.store is not None and m.store.load()[0][0].datapath == DatapathMode.AUTO, "a dry run stores nothing"
    info = m.set_switch(SW, SwitchSettings(datapath=DatapathMode.PYTHON))
    assert isinstance(info, SwitchInfo) and info.datapath == "python (--datapath python)"
    assert m.store.load()[0][0].datapath == DatapathMode.PYTHON
    assert {e.mac for e in m.fdb_show(SW)} == {VM_MAC, STATIC} and [p.name for p in info.ports] == ["vm1", "vm2"]
    for settings in ({"datapath": "kernel", "name": "x"}, {"datapath": "kernel", "type": "internal"}):
        with pytest.raises(InvalidRequest, match="datapath: change the datapath in a `switch set` call of its own"):
            SwitchSettings.parse(settings)
