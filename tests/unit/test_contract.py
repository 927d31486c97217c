"""The contract of every command of the table, with the same assertions over every way to reach it.

Each case in `CASES` drives one command of `vswitch.control.api.COMMANDS` and states what any
`SwitchApi` must do: its typed result, what changes, which error class refuses what. The cases run
against
- ``fake``: the in-memory fake the front-end tests use (tests/unit/fake_api.py);
- ``rest``: `RestSwitchApi` over a real unix socket to uvicorn serving ``make_app(FakeApi())``;
- ``manager``: the real `SwitchManager`, in process, on the in-memory kernel (tests/unit/memkernel.py,
  with one NIC ``eth0`` as the fake lists it), mostly on Private switches with memory ports: nothing
  on the host changes.
A command without a case fails `test_every_command_has_a_contract_case`: a new command is not done
until its contract is written. The role of each command (reader or admin) is checked over HTTP.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from socket import AF_INET
from typing import Any

import pytest
import uvicorn
from fake_api import FakeApi
from fastapi.testclient import TestClient
from memkernel import MemKernel

from vswitch.control.api import COMMANDS, SwitchApi
from vswitch.control.config_file import ConfigDocument, SwitchConfig
from vswitch.control.config_plan import ConfigPlan, ConfigStep
from vswitch.control.manager import SwitchManager
from vswitch.control.model import (
    AclRuleInfo,
    AclRuleSpec,
    Conflict,
    EventsPage,
    FdbEntryInfo,
    InvalidRequest,
    NicInfo,
    NotFound,
    PortInfo,
    PortKind,
    PortSettings,
    PortSpec,
    PortStatsInfo,
    StaticEntry,
    SwitchEvent,
    SwitchInfo,
    SwitchSettings,
    SwitchSpec,
    SwitchType,
    TraceInfo,
    TraceStepInfo,
    VswitchError,
)
from vswitch.control.netlink import Address
from vswitch.frontends.client import RestSwitchApi
from vswitch.frontends.rest import make_app
from vswitch.frontends.tokens import Role
from waiting import wait_until

SW = "contract"
MAC = "02:00:00:00:0a:01"
NIC = "eth0"


def _served(app: Any, path: str) -> Callable[[], None]:
    """Serve `app` with uvicorn on unix socket `path` in a thread; returns the stop function."""
    server = uvicorn.Server(uvicorn.Config(app, uds=path, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(10)
    return stop


@pytest.fixture(params=["fake", "rest", "manager"])
def api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SwitchApi]:
    if request.param == "fake":
        yield FakeApi()
    elif request.param == "rest":
        stop = _served(make_app(FakeApi()), str(tmp_path / "api.sock"))
        try:
            with RestSwitchApi(socket_path=str(tmp_path / "api.sock")) as remote:
                yield remote  # type: ignore[misc]
        finally:
            stop()
    else:
        kernel = MemKernel()
        kernel.add_link(NIC, mac="52:54:00:00:00:01", up=True)  # the fake's NIC
        with kernel() as nl:
            nl.add_address(NIC, Address(AF_INET, "192.0.2.10", 24))
        manager = SwitchManager(port_socket_dir=str(tmp_path / "ports"), netlink=kernel,
                                port_kinds=kernel.port_kinds)
        try:
            yield manager
        finally:
            manager.shutdown()


def _switch(api: SwitchApi, *ports: str) -> SwitchInfo:
    info = api.create_switch(SwitchSpec(SW, SwitchType.PRIVATE))
    assert isinstance(info, SwitchInfo)
    for p in ports:
        api.add_port(SW, PortSpec(p, PortKind.MEMORY, p))
    return info


# ---- the cases, one per command -----------------------------------------------------------------

def list_switches(api: SwitchApi) -> None:
    assert api.list_switches() == []
    _switch(api, "a")
    (info,) = api.list_switches()
    assert isinstance(info, SwitchInfo) and info.name == SW and info.type == "private"
    assert [type(p) for p in info.ports] == [PortInfo]


def create_switch(api: SwitchApi) -> None:
    steps = api.create_switch(SwitchSpec(SW, SwitchType.PRIVATE), dry_run=True)
    assert isinstance(steps, list) and steps and all(isinstance(s, str) for s in steps)
    assert api.list_switches() == [], "a dry run changes nothing"
    info = api.create_switch(SwitchSpec(SW, SwitchType.PRIVATE, ageing_s=60, max_entries=1024))
    assert isinstance(info, SwitchInfo)
    assert (info.name, info.type, info.ageing_s, info.max_entries, info.state) == (SW, "private", 60, 1024, "up")
    with pytest.raises(Conflict, match="already exists"):
        api.create_switch(SwitchSpec(SW, SwitchType.PRIVATE))
    with pytest.raises(InvalidRequest, match="ageing"):
        api.create_switch(SwitchSpec("other", SwitchType.PRIVATE, ageing_s=1))
    assert [s.name for s in api.list_switches()] == [SW]


def get_switch(api: SwitchApi) -> None:
    _switch(api, "a")
    info = api.get_switch(SW)
    assert isinstance(info, SwitchInfo) and [p.name for p in info.ports] == ["a"]
    with pytest.raises(NotFound, match="no switch named 'nope'"):
        api.get_switch("nope")


def set_switch(api: SwitchApi) -> None:
    _switch(api)
    info = api.set_switch(SW, SwitchSettings(ageing_s=60))
    assert isinstance(info, SwitchInfo) and (info.ageing_s, info.max_entries) == (60, 8192)
    info = api.set_switch(SW, SwitchSettings(max_entries=100))
    assert (info.ageing_s, info.max_entries) == (60, 100), "what is not given stays"
    assert api.get_switch(SW).max_entries == 100
    info = api.set_switch(SW, SwitchSettings.parse({"uplink_bandwidth": "1G"}))
    assert (info.uplink_bandwidth, info.max_entries) == (1_000_000_000, 100)  # type: ignore[union-attr]
    assert api.get_switch(SW).uplink_bandwidth == 1_000_000_000
    with pytest.raises(InvalidRequest, match="uplink_bandwidth: 'fast' is not a rate"):
        api.set_switch(SW, SwitchSettings.parse({"uplink_bandwidth": "fast"}))
    with pytest.raises(InvalidRequest, match="ageing"):
        api.set_switch(SW, SwitchSettings(ageing_s=1))
    with pytest.raises(InvalidRequest, match="nothing to change"):
        api.set_switch(SW, SwitchSettings())
    assert api.get_switch(SW).ageing_s == 60, "a refused change changes nothing"
    with pytest.raises(NotFound):
        api.set_switch("nope", SwitchSettings(ageing_s=60))
    api.add_port(SW, PortSpec("a", PortKind.MEMORY, "a"))
    api.fdb_add(SW, StaticEntry(MAC, "a"))
    api.create_switch(SwitchSpec("taken", SwitchType.PRIVATE))
    with pytest.raises(Conflict, match="already exists"):
        api.set_switch(SW, SwitchSettings(name="taken"))
    with pytest.raises(InvalidRequest, match="^name: 'no/slash' must not contain '/'"):
        api.set_switch(SW, SwitchSettings(name="no/slash"))
    info = api.set_switch(SW, SwitchSettings(name="renamed"))
    assert (info.name, info.ageing_s, [p.name for p in info.ports]) == ("renamed", 60, ["a"])
    assert [e.mac for e in api.fdb_show("renamed")] == [MAC], "its static entries go with it"
    with pytest.raises(NotFound):
        api.get_switch(SW)
    assert sorted(s.name for s in api.list_switches()) == ["renamed", "taken"]
    api.delete_switch("renamed")
    _set_switch_connection(api)


def _connection(info: SwitchInfo) -> tuple[str, str | None, str | None, list[str], list[str]]:
    """Type, NIC, host vNIC, the VM ports and the roles of the switch's own ports."""
    return (info.type, info.nic, info.host_vnic, [p.name for p in info.ports if p.role == "vm"],
            sorted(p.role for p in info.ports if p.role != "vm"))


def _set_switch_connection(api: SwitchApi) -> None:
    """`switch set` changes the connection (and renames a switch with a host vNIC); ports stay."""
    _switch(api, "a")
    api.fdb_add(SW, StaticEntry(MAC, "a"))
    info = api.set_switch(SW, SwitchSettings(type=SwitchType.INTERNAL))
    assert isinstance(info, SwitchInfo)
    assert _connection(info) == ("internal", None, f"vs-{SW}", ["a"], ["host-vnic"])
    steps = api.set_switch(SW, SwitchSettings(type=SwitchType.EXTERNAL, nic=NIC), dry_run=True)
    assert isinstance(steps, list) and steps and all(isinstance(s, str) for s in steps)
    assert _connection(api.get_switch(SW))[:2] == ("internal", None), "a dry run changes nothing"
    info = api.set_switch(SW, SwitchSettings(type=SwitchType.EXTERNAL, nic=NIC))
    assert _connection(info) == ("external", NIC, f"vs-{SW}", ["a"], ["host-vnic", "uplink"])  # type: ignore[arg-type]
    info = api.set_switch(SW, SwitchSettings(allow_management_os=False))
    assert _connection(info) == ("external", NIC, None, ["a"], ["uplink"])  # type: ignore[arg-type]
    assert info.allow_management_os is False  # type: ignore[union-attr]
    refusals: list[tuple[dict[str, Any], type, str]] = [
        ({"type": "external", "nic": "eth9"}, Conflict, "NIC 'eth9' does not exist"),
        ({"type": "external", "nic": "vs-other"}, Conflict, "named like a host vNIC"),
        ({"type": "private", "allow_management_os": True}, InvalidRequest, "^allow_management_os: only an external"),
        ({"type": "internal", "confirm_timeout_s": 5}, InvalidRequest, "^confirm_timeout_s: "),
        ({"type": "internal", "name": "other"}, InvalidRequest, "^name: rename"),
        ({"type": "external"}, InvalidRequest, "^nic: ")]
    for fields, error, message in refusals:
        with pytest.raises(error, match=message):
            api.set_switch(SW, SwitchSettings.parse(fields))
    assert _connection(api.get_switch(SW)) == ("external", NIC, None, ["a"], ["uplink"]), "refusals change nothing"
    info = api.set_switch(SW, SwitchSettings(type=SwitchType.PRIVATE))
    assert _connection(info) == ("private", None, None, ["a"], [])  # type: ignore[arg-type]
    info = api.set_switch(SW, SwitchSettings(type=SwitchType.EXTERNAL, nic=NIC, confirm_timeout_s=60))
    assert info.state == "awaiting-confirm"  # type: ignore[union-attr]
    assert api.confirm_switch(SW).state == "up"
    api.set_switch(SW, SwitchSettings(type=SwitchType.INTERNAL))
    info = api.set_switch(SW, SwitchSettings(name="moved"))
    assert _connection(info) == ("internal", None, "vs-moved", ["a"], ["host-vnic"])  # type: ignore[arg-type]
    assert [e.mac for e in api.fdb_show("moved")] == [MAC], "static entries stay through every change"


def delete_switch(api: SwitchApi) -> None:
    _switch(api, "a")
    assert api.delete_switch(SW) is None
    assert api.list_switches() == []
    with pytest.raises(NotFound):
        api.delete_switch(SW)


def confirm_switch(api: SwitchApi) -> None:
    _switch(api)
    with pytest.raises(Conflict, match="not waiting for confirmation"):
        api.confirm_switch(SW)
    with pytest.raises(NotFound):
        api.confirm_switch("nope")


def list_ports(api: SwitchApi) -> None:
    _switch(api, "a", "b")
    ports = api.list_ports(SW)
    assert [(type(p), p.name, p.kind, p.vlan_mode, p.up) for p in ports] == [
        (PortInfo, "a", "memory", "access 1", True), (PortInfo, "b", "memory", "access 1", True)]
    with pytest.raises(NotFound):
        api.list_ports("nope")


def add_port(api: SwitchApi) -> None:
    _switch(api)
    port = api.add_port(SW, PortSpec("t", PortKind.MEMORY, "t", trunk=tuple(range(1, 4095)), native=7))
    assert isinstance(port, PortInfo) and port.vlan_mode == "trunk 1-4094 native 7"
    with pytest.raises(Conflict, match="already has a port"):
        api.add_port(SW, PortSpec("t", PortKind.MEMORY, "t2"))
    with pytest.raises(NotFound):
        api.add_port("nope", PortSpec("x", PortKind.MEMORY, "x"))
    assert [p.name for p in api.list_ports(SW)] == ["t"]


def get_port(api: SwitchApi) -> None:
    _switch(api, "a")
    port = api.get_port(SW, "a")
    assert isinstance(port, PortInfo) and (port.name, port.vlan_mode, port.admin_up, port.learning,
                                           port.flooding) == ("a", "access 1", True, True, True)
    with pytest.raises(NotFound):
        api.get_port(SW, "zz")


def set_port(api: SwitchApi) -> None:
    _switch(api, "a", "b")
    port = api.set_port(SW, "a", PortSettings(vlan=10))
    assert isinstance(port, PortInfo) and port.vlan_mode == "access 10"
    port = api.set_port(SW, "a", PortSettings(trunk=tuple(range(1, 4095)), native=5))
    assert port.vlan_mode == "trunk 1-4094 native 5", "a trunk is shown as ranges"
    port = api.set_port(SW, "a", PortSettings(trunk=(10, 11, 12, 20)))
    assert port.vlan_mode == "trunk 10-12,20", "a trunk given without --native has none"
    port = api.set_port(SW, "a", PortSettings(admin_up=False, learning=False))
    assert (port.up, port.admin_up, port.learning, port.flooding) == (False, False, False, True)
    assert port.vlan_mode == "trunk 10-12,20", "what is not given stays"
    port = api.set_port(SW, "a", PortSettings(admin_up=True, flooding=False))
    assert (port.up, port.admin_up, port.learning, port.flooding) == (True, True, False, False)
    assert api.get_port(SW, "a") == port
    assert (port.dhcp_guard, port.router_guard) == (False, False), "the guards are off unless set (Hyper-V)"
    port = api.set_port(SW, "a", PortSettings(dhcp_guard=True))
    assert (port.dhcp_guard, port.router_guard, port.flooding) == (True, False, False)
    port = api.set_port(SW, "a", PortSettings(router_guard=True, dhcp_guard=False))
    assert (port.dhcp_guard, port.router_guard) == (False, True)
    assert api.get_port(SW, "a") == port
    assert (port.mac_spoofing, port.mac_limit, port.port_mac) == (True, 0, None), "vswitch's default: on"
    port = api.set_port(SW, "a", PortSettings(mac_spoofing=False, mac_limit=3))
    assert (port.mac_spoofing, port.mac_limit, port.port_mac, port.router_guard) == (False, 3, None, True)
    assert api.get_port(SW, "a") == port
    port = api.set_port(SW, "a", PortSettings(mac_spoofing=True, mac_limit=0))
    assert (port.mac_spoofing, port.mac_limit) == (True, 0)
    assert port.port_mirroring == "none", "no port mirroring unless set (Hyper-V)"
    port = api.set_port(SW, "a", PortSettings(port_mirroring="Source"))
    assert (port.port_mirroring, port.mac_limit) == ("source", 0), "Hyper-V's spelling taken, vswitch's kept"
    assert api.get_port(SW, "a") == port
    port = api.set_port(SW, "a", PortSettings(port_mirroring="none"))
    assert port.port_mirroring == "none"
    assert (port.isolated, port.pvlan) == (False, None), "neither unless set"
    port = api.set_port(SW, "a", PortSettings(isolated=True, pvlan="isolated", primary=100, secondary=101))
    assert (port.isolated, port.pvlan, port.primary, port.secondary) == (True, "isolated", 100, [101])
    assert port.vlan_mode == "private VLAN isolated, primary 100, secondary 101"
    assert api.get_port(SW, "a") == port
    with pytest.raises(Conflict, match="secondary VLAN 101 is isolated"):
        api.set_port(SW, "b", PortSettings(pvlan="community", primary=100, secondary=101))
    port = api.set_port(SW, "a", PortSettings(pvlan="none", isolated=False))
    assert (port.isolated, port.pvlan, port.vlan_mode) == (False, None, "access 1")
    assert port.storm_limit == 0, "no storm limit unless set (Hyper-V's StormLimit 0)"
    port = api.set_port(SW, "a", PortSettings(storm_limit=1000))
    assert (port.storm_limit, port.mac_limit) == (1000, 0)
    assert api.get_port(SW, "a") == port
    port = api.set_port(SW, "a", PortSettings(storm_limit=0))
    assert port.storm_limit == 0
    assert (port.max_bandwidth, port.bandwidth_burst, port.max_bandwidth_in, port.min_bandwidth_weight) == (0, 0, 0, 0)
    port = api.set_port(SW, "a", PortSettings.parse({"max_bandwidth": "100M", "bandwidth_burst": 65_536,
                                                     "min_bandwidth_weight": 20}))
    assert (port.max_bandwidth, port.bandwidth_burst, port.min_bandwidth_weight) == (100_000_000, 65_536, 20)
    assert api.get_port(SW, "a") == port
    port = api.set_port(SW, "a", PortSettings(max_bandwidth=0, bandwidth_burst=0, min_bandwidth_weight=0))
    assert (port.max_bandwidth, port.bandwidth_burst, port.min_bandwidth_weight) == (0, 0, 0)
    for bad, needle in [({"vlan": 3, "trunk": (4,)}, "not both"), ({"native": 3}, "native"),
                        ({}, "nothing to change"), ({"vlan": 5000}, "(?i)vlan"),
                        ({"mac": "01:00:5e:00:00:01"}, "group address"),
                        ({"dhcp_guard": "yes"}, "dhcp_guard: 'yes' is not true or false"),
                        ({"router_guard": 1}, "router_guard: 1 is not true or false"),
                        ({"mac_spoofing": "off"}, "mac_spoofing: 'off' is not true or false"),
                        ({"mac_limit": -1}, "mac_limit: -1 is not a MAC limit"),
                        ({"port_mirroring": "both"}, "port_mirroring: 'both' is not a port mirroring mode"),
                        ({"port_mirroring": True}, "port_mirroring: True is not a port mirroring mode"),
                        ({"isolated": "on"}, "isolated: 'on' is not true or false"),
                        ({"pvlan": "isolated", "primary": 100}, "secondary: an isolated private VLAN port needs"),
                        ({"pvlan": "bogus"}, "pvlan: 'bogus' is not a private VLAN mode"),
                        ({"storm_limit": -5}, "storm_limit: -5 is not a storm limit in frames per second"),
                        ({"storm_limit": 10**8}, "storm_limit: 100000000 is not a storm limit"),
                        ({"max_bandwidth": -8}, "max_bandwidth: -8 is not a rate in bits per second"),
                        ({"min_bandwidth_weight": 101}, "min_bandwidth_weight: 101 is not a minimum bandwidth weight")]:
        with pytest.raises(InvalidRequest, match=needle):  # settings are valid by construction
            api.set_port(SW, "a", PortSettings(**bad))
    with pytest.raises(Conflict, match="only a tap port's MAC .*memory port has no MAC"):
        api.set_port(SW, "a", PortSettings(mac="52:54:00:00:00:09"))
    with pytest.raises(Conflict, match="max_bandwidth_in: only a link port's delivery is shaped"):
        api.set_port(SW, "a", PortSettings(max_bandwidth_in=10**8))
    with pytest.raises(NotFound):
        api.set_port(SW, "zz", PortSettings(vlan=2))
    api.fdb_add(SW, StaticEntry(MAC, "b"))
    with pytest.raises(Conflict, match="static"):
        api.set_port(SW, "b", PortSettings(vlan=2))
    assert api.get_port(SW, "a") == port and api.get_port(SW, "b").vlan_mode == "access 1", \
        "a refused change changes nothing"


def remove_port(api: SwitchApi) -> None:
    _switch(api, "a", "b")
    assert api.remove_port(SW, "a") is None
    assert [p.name for p in api.list_ports(SW)] == ["b"]
    with pytest.raises(NotFound):
        api.remove_port(SW, "a")


def fdb_show(api: SwitchApi) -> None:
    _switch(api, "a")
    assert api.fdb_show(SW) == []
    api.fdb_add(SW, StaticEntry(MAC, "a"))
    assert api.fdb_show(SW) == [FdbEntryInfo(MAC, 1, "a", 0.0, True)]
    with pytest.raises(NotFound):
        api.fdb_show("nope")


def fdb_add(api: SwitchApi) -> None:
    _switch(api, "a", "b")
    api.set_port(SW, "b", PortSettings(trunk=(10, 20)))
    entry = api.fdb_add(SW, StaticEntry("02-00-00-00-0A-01", "a"))
    assert entry == FdbEntryInfo(MAC, 1, "a", 0.0, True), "the MAC is written canonically, the VLAN is the port's"
    assert api.fdb_add(SW, StaticEntry(MAC, "b", vlan=20)) == FdbEntryInfo(MAC, 20, "b", 0.0, True)
    assert api.fdb_add(SW, StaticEntry(MAC, "a", vlan=1)).port == "a", "adding again re-points"
    assert sorted((e.vlan, e.port) for e in api.fdb_show(SW)) == [(1, "a"), (20, "b")]
    with pytest.raises(Conflict, match="trunk without a native VLAN"):
        api.fdb_add(SW, StaticEntry(MAC, "b"))
    with pytest.raises(Conflict, match="not in VLAN 30"):
        api.fdb_add(SW, StaticEntry(MAC, "b", vlan=30))
    # each refusal names the field (the model's words in process, the schema's over REST)
    with pytest.raises(InvalidRequest, match="(?i)mac"):
        api.fdb_add(SW, StaticEntry("not-a-mac", "a"))
    with pytest.raises(InvalidRequest, match="(?i)mac"):
        api.fdb_add(SW, StaticEntry("01:00:5e:00:00:01", "a"))
    with pytest.raises(NotFound):
        api.fdb_add(SW, StaticEntry(MAC, "zz"))
    assert len(api.fdb_show(SW)) == 2, "a refused entry changes nothing"


def fdb_del(api: SwitchApi) -> None:
    _switch(api, "a", "b")
    api.set_port(SW, "b", PortSettings(trunk=(1, 20)))
    api.fdb_add(SW, StaticEntry(MAC, "a"))
    api.fdb_add(SW, StaticEntry(MAC, "b", vlan=20))
    with pytest.raises(InvalidRequest, match="give the VLAN"):
        api.fdb_del(SW, MAC)
    assert api.fdb_del(SW, MAC.upper(), vlan=20) is None
    assert [(e.mac, e.vlan) for e in api.fdb_show(SW)] == [(MAC, 1)]
    api.fdb_del(SW, MAC)
    assert api.fdb_show(SW) == []
    with pytest.raises(NotFound, match="no static entry"):
        api.fdb_del(SW, MAC)
    with pytest.raises(InvalidRequest, match="MAC"):
        api.fdb_del(SW, "zz")


def fdb_flush(api: SwitchApi) -> None:
    _switch(api, "a")
    api.fdb_add(SW, StaticEntry(MAC, "a"))
    assert api.fdb_flush(SW) == 0, "static entries are not flushed"
    assert len(api.fdb_show(SW)) == 1
    with pytest.raises(NotFound):
        api.fdb_flush("nope")


def stats(api: SwitchApi) -> None:
    _switch(api, "a", "b")
    rows = api.stats(SW)
    assert [(type(r), r.port) for r in rows] == [(PortStatsInfo, "a"), (PortStatsInfo, "b")]
    assert all(isinstance(r.rx_frames, int) and isinstance(r.drops, dict) and r.static_refused >= 0 for r in rows)
    with pytest.raises(NotFound):
        api.stats("nope")


def trace(api: SwitchApi) -> None:
    _switch(api, "a", "b")
    result = api.trace(SW, "a", "02:00:00:00:00:01", "02:00:00:00:00:02")
    assert isinstance(result, TraceInfo)
    assert (result.reason, result.out_ports, result.vlan) == ("FLOOD_UNKNOWN", ["b"], 1)
    assert [s.stage for s in result.steps][:2] == ["parse", "ingress"] and isinstance(result.steps[0], TraceStepInfo)
    with pytest.raises(NotFound):
        api.trace(SW, "zz", "02:00:00:00:00:01", "02:00:00:00:00:02")
    with pytest.raises(InvalidRequest):
        api.trace(SW, "a", "bogus", "02:00:00:00:00:02")
    offer = "0800" + "45000110000100004011" + "00" * 10 + "00430044" + "00" * 4 + "02"
    assert isinstance(api.trace(SW, "a", "02:00:00:00:00:01", "ff:ff:ff:ff:ff:ff", payload=offer), TraceInfo)
    for bad in ("08", "zz00", "080"):
        with pytest.raises(InvalidRequest, match="payload"):
            api.trace(SW, "a", "02:00:00:00:00:01", "02:00:00:00:00:02", payload=bad)


def watch(api: SwitchApi) -> None:
    _switch(api, "a")
    events = api.watch(SW, 0.05, 5)
    assert isinstance(events, list) and len(events) <= 5
    assert api.get_switch(SW).watches == 0, "a watch that returned records nothing more"
    watching = threading.Thread(target=api.watch, args=(SW, 3.0, 5), daemon=True)
    watching.start()
    wait_until(lambda: api.get_switch(SW).watches == 1, what="the switch to count the running watch")
    watching.join()
    assert api.get_switch(SW).watches == 0
    with pytest.raises(NotFound):
        api.watch("nope", 0.05)


def events(api: SwitchApi) -> None:
    start = api.events().latest
    _switch(api, "a")
    page = api.events(SW, since=start)
    assert isinstance(page, EventsPage) and all(type(e) is SwitchEvent for e in page.events)
    assert [(e.kind, e.switch, e.port) for e in page.events] == [("switch-created", SW, None),
                                                                  ("port-added", SW, "a")]
    seqs = [e.seq for e in page.events]
    assert seqs == sorted(seqs) and seqs[0] > start and page.next_since == page.latest == seqs[-1]
    assert page.events[0].detail["type"] == "private" and page.missed == 0
    first = api.events(SW, since=start, limit=1)
    assert [e.kind for e in first.events] == ["switch-created"] and first.next_since == seqs[0], \
        "a page cut by `limit` says where to go on"
    assert api.events(SW, since=page.latest).events == [], "nothing new: an empty page at once"
    assert api.events(SW, since=page.latest, wait_s=0.05).events == [], "nothing new within the wait"
    got: list[EventsPage] = []
    reader = threading.Thread(target=lambda: got.append(api.events(SW, since=page.latest, wait_s=20)))
    reader.start()
    api.fdb_add(SW, StaticEntry(MAC, "a"))  # before or while the reader waits: it gets it either way
    reader.join(25)
    assert [(e.kind, e.mac, e.vlan, e.port) for e in got[0].events] == [("fdb-add", MAC, 1, "a")], \
        "a waiting read returns with the event that arrived"
    for bad, needle in [({"limit": 0}, "limit"), ({"since": -1}, "since"), ({"wait_s": 31}, "wait_s")]:
        with pytest.raises(InvalidRequest, match=needle):
            api.events(SW, **bad)
    with pytest.raises(NotFound):
        api.events("nope")
    api.delete_switch(SW)
    assert api.events(SW, since=page.latest).events[-1].kind == "switch-deleted", \
        "a deleted switch's events stay readable"


def list_nics(api: SwitchApi) -> None:
    nics = api.list_nics()
    assert nics and all(type(n) is NicInfo for n in nics)
    assert not any(n.name == "lo" or n.name.startswith("vs-") for n in nics)
    assert all(isinstance(n.default_route, bool) and isinstance(n.addresses, list) for n in nics)


def config_export(api: SwitchApi) -> None:
    assert api.config_export() == ConfigDocument([])
    _switch(api, "b", "a")
    api.set_port(SW, "b", PortSettings(trunk=(10, 20), native=10))
    api.fdb_add(SW, StaticEntry(MAC, "b", vlan=20))
    doc = api.config_export()
    assert isinstance(doc, ConfigDocument) and type(doc.switches[0]) is SwitchConfig
    assert doc == ConfigDocument([SwitchConfig(
        SwitchSpec(SW, SwitchType.PRIVATE),
        [PortSpec("a", PortKind.MEMORY, "a"), PortSpec("b", PortKind.MEMORY, "b", trunk=(10, 20), native=10)],
        [StaticEntry(MAC, "b", 20)])]), "ports by name, each static entry with its VLAN"


def config_apply(api: SwitchApi) -> None:
    want = ConfigDocument([SwitchConfig(
        SwitchSpec(SW, SwitchType.PRIVATE, ageing_s=60),
        [PortSpec("a", PortKind.MEMORY, "a", vlan=10), PortSpec("b", PortKind.MEMORY, "b", trunk=(10, 20))],
        [StaticEntry(MAC, "a", 10)])])
    plan = api.config_apply(want, dry_run=True)
    assert isinstance(plan, ConfigPlan) and plan.dry_run and all(type(s) is ConfigStep for s in plan.steps)
    assert [s.action for s in plan.steps] == ["create-switch", "add-port", "add-port", "add-static"]
    assert plan.steps[0].text == f"create switch {SW} (private)"
    assert api.list_switches() == [], "a dry run changes nothing"
    plan = api.config_apply(want)
    assert not plan.dry_run and len(plan.steps) == 4
    assert api.get_port(SW, "b").vlan_mode == "trunk 10,20" and api.fdb_show(SW) == [FdbEntryInfo(MAC, 10, "a", 0.0,
                                                                                                 True)]
    assert api.config_export() == want
    assert api.config_apply(want).steps == [], "applying the same document again changes nothing"
    api.create_switch(SwitchSpec("other", SwitchType.PRIVATE))
    # the document leaves the ports as they are: the switch itself refuses the entry's port
    bad = ConfigDocument([SwitchConfig(SwitchSpec(SW, SwitchType.PRIVATE, ageing_s=30), None,
                                       [StaticEntry(MAC, "zz", vlan=1)])])
    with pytest.raises(NotFound, match=r"^step 3 of 3 \(static contract 02:00:00:00:0a:01 vlan 1: add \(port zz\)\) "
                                       r"failed: .*'zz'.*; nothing changed \(the 2 steps before it were undone\)$"):
        api.config_apply(bad)
    other = SwitchConfig(SwitchSpec("other", SwitchType.PRIVATE), [], [])
    assert api.config_export() == ConfigDocument([want.switches[0], other])
    assert api.config_apply(want).notes == ["switch other is not in the file: kept (--prune deletes it)"]
    assert [s.text for s in api.config_apply(want, prune=True).steps] == [
        "delete switch other (private; not in the file, --prune)"]
    assert [s.name for s in api.list_switches()] == [SW]


def acl_add(api: SwitchApi) -> None:
    _switch(api, "a")
    r = api.acl_add(SW, "a", AclRuleSpec("out", "deny", remote_ip="10.1.2.3/8"))
    assert type(r) is AclRuleInfo and (r.id, r.port, r.remote_ip, r.rule) == (1, "a", "10.0.0.0/8",
                                                                              "out, deny remote 10.0.0.0/8")
    r2 = api.acl_add(SW, "a", AclRuleSpec("in", "allow", weight=10, protocol="tcp", remote_port="80",
                                          stateful=True))
    assert (r2.id, r2.weight, r2.stateful) == (2, 10, True)
    with pytest.raises(Conflict):
        api.acl_add(SW, "a", AclRuleSpec("out", "deny", remote_ip="10.0.0.0/8"))
    with pytest.raises(NotFound):
        api.acl_add(SW, "zz", AclRuleSpec("out", "deny", remote_ip="any"))
    assert api.get_port(SW, "a").acl_rules == 2


def acl_list(api: SwitchApi) -> None:
    _switch(api, "a", "b")
    assert api.acl_list(SW) == []
    api.acl_add(SW, "b", AclRuleSpec("both", "meter", remote_ip="2001:db8::/32"))
    (r,) = api.acl_list(SW)
    assert (type(r), r.port, r.id, r.action, r.hits, r.bytes) == (AclRuleInfo, "b", 1, "meter", 0, 0)
    assert api.acl_list(SW, "a") == []
    with pytest.raises(NotFound):
        api.acl_list("nope")


def acl_remove(api: SwitchApi) -> None:
    _switch(api, "a")
    api.acl_add(SW, "a", AclRuleSpec("out", "deny", remote_mac="02:00:00:00:00:09"))
    with pytest.raises(NotFound):
        api.acl_remove(SW, "a", "7")
    api.acl_remove(SW, "a", "1")
    assert api.acl_list(SW) == [] and api.get_port(SW, "a").acl_rules == 0


CASES: dict[str, Callable[[SwitchApi], None]] = {f.__name__: f for f in (
    list_switches, create_switch, get_switch, set_switch, delete_switch, confirm_switch, list_ports, add_port,
    get_port, set_port, remove_port, fdb_show, fdb_add, fdb_del, fdb_flush, stats, trace, watch, events,
    list_nics, config_export, config_apply, acl_add, acl_list, acl_remove)}


def test_every_command_has_a_contract_case() -> None:
    missing = sorted(set(COMMANDS) - set(CASES))
    assert not missing, f"commands without a contract case in tests/unit/test_contract.py: {missing}"
    assert not set(CASES) - set(COMMANDS), "a case for a command the table does not declare"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_contract(name: str, api: SwitchApi) -> None:
    CASES[name](api)


def test_every_implementation_has_every_command() -> None:
    for cls in (FakeApi, SwitchManager, RestSwitchApi):
        missing = [n for n in COMMANDS if not callable(getattr(cls, n, None))]
        assert not missing, f"{cls.__name__} lacks {missing}"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_reader_may_call_exactly_the_commands_that_change_nothing(name: str) -> None:
    cmd = COMMANDS[name]
    api = FakeApi()
    client = TestClient(make_app(api, tokens={"adm": Role.ADMIN, "rdr": Role.READER}))
    url = re.sub(r"\{name\}", SW, cmd.route).replace("{port}", "a").replace("{mac}", MAC)
    r = client.request(cmd.http, url, headers={"Authorization": "Bearer rdr"}, json={})
    if cmd.mutates:
        assert cmd.role == "admin" and r.status_code == 403, (cmd.http, url, r.status_code)
        assert api.calls == [], "a reader's change never reaches the api"
    else:
        assert cmd.role == "reader" and r.status_code not in (401, 403), (cmd.http, url, r.status_code)


def test_refusals_keep_their_class_over_rest(tmp_path: Path) -> None:
    """What the server refuses comes back as the same VswitchError subclass with the server's words."""
    stop = _served(make_app(FakeApi()), str(tmp_path / "api.sock"))
    try:
        with RestSwitchApi(socket_path=str(tmp_path / "api.sock")) as remote:
            _switch(remote, "a")
            with pytest.raises(VswitchError) as e:
                remote.set_port(SW, "a", PortSettings(vlan=3, trunk=(4,)))
            assert type(e.value) is InvalidRequest and e.value.status == 400
    finally:
        stop()
