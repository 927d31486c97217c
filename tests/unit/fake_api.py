"""An in-memory `SwitchApi` for front-end unit tests (REST, CLI, client): no kernel, no datapath.

It follows the protocol's promises (trust the spec it is given, refuse with InvalidRequest/NotFound/
Conflict, change nothing on refusal) so the front ends can be tested for their own work: shapes, statuses, messages.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from vswitch.control import config_file, config_plan, ownership, pcapng
from vswitch.control.capture import BYTES_DEFAULT, COUNT_DEFAULT, SECONDS_DEFAULT, CaptureRequest
from vswitch.control.config_file import ConfigDocument
from vswitch.control.config_plan import ConfigPlan
from vswitch.control.events import EventLog
from vswitch.control.model import (
    EVENTS_LIMIT_DEFAULT,
    AclRuleInfo,
    AclRuleSpec,
    Conflict,
    EventKind,
    EventsPage,
    FdbEntryInfo,
    FrameEvent,
    InvalidRequest,
    NicInfo,
    NotFound,
    PortInfo,
    PortKind,
    PortSettings,
    PortSpec,
    PortStatsInfo,
    StaticEntry,
    SwitchInfo,
    SwitchSettings,
    SwitchSpec,
    SwitchType,
    TraceInfo,
    TraceStepInfo,
    canonical_mac,
    check_acl_id,
    check_events_query,
    check_field,
    host_vnic_name,
    policy_for,
    pvlan_conflicts,
    trace_payload,
)
from vswitch.core.mac import parse_mac
from vswitch.core.policy import format_vlan_list


def vlan_mode(spec: PortSpec) -> str:
    if spec.pvlan is not None:
        return policy_for(spec).describe()
    if spec.trunk is not None:
        text = "trunk " + format_vlan_list(spec.trunk)
        return text + (f" native {spec.native}" if spec.native is not None else "")
    return f"access {spec.access_vlan}"


def _pvlan_info(info: PortInfo, spec: PortSpec) -> None:
    pol = policy_for(spec)
    info.isolated = spec.isolated
    info.pvlan = str(spec.pvlan) if spec.pvlan is not None else None
    info.primary, info.secondary = spec.primary, sorted(pol.secondary_vlans)


class FakeApi:
    """Switches and ports in dicts; every call is recorded in `calls` (name, args)."""

    def __init__(self) -> None:
        self.switches: dict[str, SwitchInfo] = {}
        self.fdb: dict[str, list[FdbEntryInfo]] = {}
        self.specs: dict[tuple[str, str], PortSpec] = {}
        #: what `list_nics` answers
        self.nics: list[NicInfo] = [NicInfo("eth0", "52:54:00:00:00:01", True, "device", ["192.0.2.10/24"], True,
                                                   speed_mbps=25000),
                                           NicInfo("eth1", "52:54:00:00:00:02", False, "device")]
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.threads: set[str] = set()
        self._lock = threading.Lock()
        #: when set to an Event, `watch` waits on it: lets a test hold watches open
        self.watch_gate: threading.Event | None = None
        #: the real ring (control/events.py), told of the changes below as the manager tells it
        self.event_log = EventLog()
        #: the frames `capture` writes
        self.capture_frames: list[bytes] = [b"\xff" * 6 + b"\x02" + b"\0" * 53]

    def _note(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))
        self.threads.add(threading.current_thread().name)

    def _get(self, name: str) -> SwitchInfo:
        try:
            return self.switches[name]
        except KeyError:
            raise NotFound(f"no switch named {name!r}") from None

    def _owners(self) -> ownership.OwnerIndex:
        """Who holds each link and socket path, as the manager asks it (control/ownership.py)."""
        owners = ownership.OwnerIndex()
        for name, info in self.switches.items():
            owners.add_switch(name, info.nic, info.host_vnic)
            for p in info.ports:
                if (name, p.name) in self.specs:
                    owners.add_port(name, self.specs[(name, p.name)])
        return owners

    def create_switch(self, spec: SwitchSpec, *, dry_run: bool = False) -> SwitchInfo | list[str]:
        self._note("create_switch", spec, dry_run)
        if spec.name in self.switches:
            raise Conflict(f"switch {spec.name!r} already exists")
        # one owner per link, as the manager: a NIC or a (15-byte) host vNIC name another switch holds
        owners = self._owners()
        if spec.nic is not None:
            owners.refuse_taken([(ownership.LINK, spec.nic)], f"the uplink of switch {spec.name!r}")
        if spec.has_host_vnic:
            owners.refuse_taken([(ownership.LINK, host_vnic_name(spec.name))], f"the host vNIC of switch {spec.name!r}")
        if dry_run:
            steps = [f"create switch {spec.name} ({spec.type})"]
            if spec.nic:
                steps.append(f"move addresses and routes of {spec.nic} to {host_vnic_name(spec.name)}")
            return steps
        ports = self._own_ports(spec)
        info = SwitchInfo(
            name=spec.name, type=str(spec.type), nic=spec.nic, allow_management_os=spec.allow_management_os,
            host_vnic=host_vnic_name(spec.name) if spec.has_host_vnic else None,
            state="awaiting-confirm" if spec.confirm_timeout_s else "up", ports=ports,
            ageing_s=spec.ageing_s, max_entries=spec.max_entries, confirm_deadline_s=spec.confirm_timeout_s,
            uplink_bandwidth=spec.uplink_bandwidth,
        )
        self.switches[spec.name] = info
        self.fdb[spec.name] = []
        self.event_log.emit(spec.name, EventKind.SWITCH_CREATED, type=str(spec.type), nic=spec.nic)
        return info

    def delete_switch(self, name: str) -> None:
        self._note("delete_switch", name)
        self._get(name)
        del self.switches[name]
        self.event_log.emit(name, EventKind.SWITCH_DELETED)

    def confirm_switch(self, name: str) -> SwitchInfo:
        self._note("confirm_switch", name)
        info = self._get(name)
        if info.state != "awaiting-confirm":
            raise Conflict(f"switch {name!r} is not waiting for confirmation")
        info.state, info.confirm_deadline_s = "up", None
        return info

    def list_switches(self) -> list[SwitchInfo]:
        self._note("list_switches")
        return list(self.switches.values())

    def get_switch(self, name: str) -> SwitchInfo:
        self._note("get_switch", name)
        return self._get(name)

    def add_port(self, switch: str, spec: PortSpec) -> PortInfo:
        self._note("add_port", switch, spec)
        info = self._get(switch)
        if any(p.name == spec.name for p in info.ports):
            raise Conflict(f"switch {switch!r} already has a port named {spec.name!r}")
        self._owners().refuse_taken(ownership.port_targets(spec),
                                    f"{spec.kind} port {spec.name!r} of switch {switch!r}")
        self._check_pvlan(switch, spec)
        details: dict[str, Any] = {}
        if spec.kind == PortKind.QEMU_STREAM:
            details["qemu_arg"] = (f"-netdev stream,id={spec.name},server=off,"
                                   f"addr.type=unix,addr.path={spec.target}")
        elif spec.kind == PortKind.QEMU_DGRAM:
            details["qemu_arg"] = f"-netdev dgram,id={spec.name},remote.type=unix,remote.path={spec.target}"
        port = PortInfo(spec.name, str(spec.kind), spec.target, vlan_mode(spec), spec.admin_up, details=details,
                        admin_up=spec.admin_up, learning=spec.learning, flooding=spec.flooding,
                        dhcp_guard=spec.dhcp_guard, router_guard=spec.router_guard,
                        mac_spoofing=spec.mac_spoofing, mac_limit=spec.mac_limit,
                        port_mirroring=spec.port_mirroring, storm_limit=spec.storm_limit,
                        max_bandwidth=spec.max_bandwidth, bandwidth_burst=spec.bandwidth_burst,
                        max_bandwidth_in=spec.max_bandwidth_in, min_bandwidth_weight=spec.min_bandwidth_weight)
        _pvlan_info(port, spec)
        info.ports.append(port)
        self.specs[(switch, spec.name)] = spec
        self.event_log.emit(switch, EventKind.PORT_ADDED, port=spec.name, kind=str(spec.kind), target=spec.target)
        return port

    def _port(self, switch: str, port: str) -> PortInfo:
        for p in self._get(switch).ports:
            if p.name == port:
                return p
        raise NotFound(f"switch {switch!r} has no port {port!r}")

    def get_port(self, switch: str, port: str) -> PortInfo:
        self._note("get_port", switch, port)
        return self._port(switch, port)

    def set_port(self, switch: str, port: str, settings: PortSettings) -> PortInfo:
        self._note("set_port", switch, port, settings)
        info = self._port(switch, port)
        spec = self.specs.get((switch, port))
        if spec is None:
            raise InvalidRequest(f"port {port!r} belongs to the switch itself; its settings cannot be changed")
        new = settings.apply(spec)
        self._check_pvlan(switch, new)
        stranded = [e for e in self.fdb[switch] if e.static and e.port == port and e.vlan not in _members(new)]
        if stranded:
            raise Conflict(f"port {port!r} has static entries outside its new VLANs; delete them first")
        spec = self.specs[(switch, port)] = new
        info.vlan_mode, info.up = vlan_mode(spec), spec.admin_up
        info.admin_up, info.learning, info.flooding = spec.admin_up, spec.learning, spec.flooding
        info.mac = spec.mac
        info.dhcp_guard, info.router_guard = spec.dhcp_guard, spec.router_guard
        info.mac_spoofing, info.mac_limit = spec.mac_spoofing, spec.mac_limit
        info.storm_limit = spec.storm_limit
        info.max_bandwidth, info.bandwidth_burst = spec.max_bandwidth, spec.bandwidth_burst
        info.max_bandwidth_in, info.min_bandwidth_weight = spec.max_bandwidth_in, spec.min_bandwidth_weight
        info.port_mac = None if spec.mac_spoofing else spec.mac or spec.port_mac
        info.port_mirroring = spec.port_mirroring
        _pvlan_info(info, spec)
        return info

    def _check_pvlan(self, switch: str, spec: PortSpec) -> None:
        problems = pvlan_conflicts(spec, [s for (sw, _), s in self.specs.items() if sw == switch])
        if problems:
            raise Conflict("; ".join(str(p) for p in problems))

    def set_switch(self, name: str, settings: SwitchSettings, *, dry_run: bool = False) -> SwitchInfo | list[str]:
        self._note("set_switch", name, settings, dry_run)
        info = self._get(name)
        old = SwitchSpec(name, SwitchType(info.type), info.nic, info.allow_management_os,
                         ageing_s=info.ageing_s, max_entries=info.max_entries, uplink_bandwidth=info.uplink_bandwidth)
        spec = settings.apply(old)
        if spec.name != name and spec.name in self.switches:
            raise Conflict(f"switch {spec.name!r} already exists")
        if spec.nic is not None and spec.nic != old.nic:
            if spec.nic.startswith("vs-"):
                raise Conflict(f"{spec.nic!r} is named like a host vNIC of vswitch; it cannot be the uplink")
            if spec.nic not in {n.name for n in self.nics}:
                raise Conflict(f"NIC {spec.nic!r} does not exist")
        if dry_run:
            return [f"change switch {name} to {spec.type}" + (f" on {spec.nic}" if spec.nic else "")]
        if spec.name != name:
            self.switches[spec.name] = self.switches.pop(name)
            self.fdb[spec.name] = self.fdb.pop(name)
            self.specs = {(spec.name if s == name else s, p): v for (s, p), v in self.specs.items()}
        info.name, info.ageing_s, info.max_entries = spec.name, spec.ageing_s, spec.max_entries
        info.uplink_bandwidth = spec.uplink_bandwidth
        info.type, info.nic, info.allow_management_os = str(spec.type), spec.nic, spec.allow_management_os
        info.host_vnic = host_vnic_name(spec.name) if spec.has_host_vnic else None
        info.ports = [p for p in info.ports if p.role == "vm"] + self._own_ports(spec)
        if settings.confirm_timeout_s is not None:
            info.state, info.confirm_deadline_s = "awaiting-confirm", settings.confirm_timeout_s
        if settings.datapath is not None:
            info.datapath = f"python (--datapath {settings.datapath})"
        return info

    @staticmethod
    def _own_ports(spec: SwitchSpec) -> list[PortInfo]:
        """The switch's own ports (host vNIC, uplink) as its spec has them."""
        ports = []
        if spec.has_host_vnic:
            vnic = host_vnic_name(spec.name)
            ports.append(PortInfo(vnic, "tap", vnic, "access 1", True, role="host-vnic"))
        if spec.nic:
            ports.append(PortInfo("uplink", "link", spec.nic, "trunk 1-4094", True, role="uplink"))
        return ports

    def fdb_add(self, switch: str, entry: StaticEntry) -> FdbEntryInfo:
        self._note("fdb_add", switch, entry)
        self._port(switch, entry.port)
        spec = self.specs.get((switch, entry.port))
        own = (spec.native if spec.trunk is not None else spec.access_vlan) if spec is not None else 1
        vlan = entry.vlan if entry.vlan is not None else own
        if vlan is None:
            raise Conflict(f"port {entry.port!r} is a trunk without a native VLAN: give the VLAN (--vlan)")
        if spec is not None and vlan not in _members(spec):
            raise Conflict(f"port {entry.port!r} is not in VLAN {vlan}")
        added = FdbEntryInfo(entry.mac, vlan, entry.port, 0.0, True)
        self.fdb[switch] = [e for e in self.fdb[switch] if (e.mac, e.vlan) != (entry.mac, vlan)] + [added]
        self.event_log.emit(switch, EventKind.FDB_ADD, port=entry.port, mac=entry.mac, vlan=vlan)
        return added

    def fdb_del(self, switch: str, mac: str, vlan: int | None = None) -> None:
        self._note("fdb_del", switch, mac, vlan)
        self._get(switch)
        mac = canonical_mac("MAC", mac)
        if vlan is not None:
            check_field(PortSpec, "vlan", vlan)
        doomed = [e for e in self.fdb[switch] if e.static and e.mac == mac and vlan in (None, e.vlan)]
        if not doomed:
            raise NotFound(f"switch {switch!r} has no static entry for {mac}")
        if len(doomed) > 1:
            raise InvalidRequest(f"{mac} is static in several VLANs: give the VLAN (--vlan)")
        self.fdb[switch] = [e for e in self.fdb[switch] if e not in doomed]

    def acl_add(self, switch: str, port: str, rule: AclRuleSpec) -> AclRuleInfo:
        self._note("acl_add", switch, port, rule)
        info = self._port(switch, port)
        spec = self.specs.get((switch, port))
        if spec is None:
            raise InvalidRequest(f"port {port!r} is the switch's own; it takes no ACLs")
        if any(r.selector() == rule.selector() for r in spec.acls):
            raise Conflict(f"port {port!r} has that rule already")
        new = replace(rule, id=max((r.id or 0 for r in spec.acls), default=0) + 1)
        self.specs[(switch, port)] = spec.updated({"acls": [*spec.acls, new]})
        info.acl_rules += 1
        return _acl_info(port, new)

    def acl_list(self, switch: str, port: str | None = None) -> list[AclRuleInfo]:
        self._note("acl_list", switch, port)
        self._get(switch)
        if port is not None:
            self._port(switch, port)
        return [_acl_info(p, r) for (sw, p), spec in self.specs.items() if sw == switch and port in (None, p)
                for r in spec.acls]

    def acl_remove(self, switch: str, port: str, rule: str) -> None:
        self._note("acl_remove", switch, port, rule)
        info = self._port(switch, port)
        spec = self.specs.get((switch, port))
        rid = check_acl_id(rule)
        if spec is None or not any(r.id == rid for r in spec.acls):
            raise NotFound(f"port {port!r} has no ACL rule #{rid}")
        self.specs[(switch, port)] = spec.updated({"acls": [r for r in spec.acls if r.id != rid]})
        info.acl_rules -= 1

    def config_export(self) -> ConfigDocument:
        self._note("config_export")
        return config_file.document(
            (SwitchSpec(info.name, SwitchType(info.type), info.nic, info.allow_management_os,
                        ageing_s=info.ageing_s, max_entries=info.max_entries),
             [self.specs[(name, p.name)] for p in info.ports if (name, p.name) in self.specs],
             [StaticEntry(e.mac, e.port, e.vlan) for e in self.fdb[name] if e.static])
            for name, info in self.switches.items())

    def config_apply(self, document: ConfigDocument, *, dry_run: bool = False, prune: bool = False) -> ConfigPlan:
        self._note("config_apply", document, dry_run, prune)
        return config_plan.apply(self, document, dry_run=dry_run, prune=prune)  # type: ignore[arg-type]

    def list_nics(self) -> list[NicInfo]:
        self._note("list_nics")
        return list(self.nics)

    def remove_port(self, switch: str, port: str) -> None:
        self._note("remove_port", switch, port)
        info = self._get(switch)
        for i, p in enumerate(info.ports):
            if p.name == port:
                del info.ports[i]
                # as the manager: the port's MAC table entries, static ones too, go with it
                self.fdb[switch] = [e for e in self.fdb[switch] if e.port != port]
                return
        raise NotFound(f"switch {switch!r} has no port named {port!r}")

    def list_ports(self, switch: str) -> list[PortInfo]:
        self._note("list_ports", switch)
        return list(self._get(switch).ports)

    def fdb_show(self, switch: str) -> list[FdbEntryInfo]:
        self._note("fdb_show", switch)
        self._get(switch)
        return list(self.fdb[switch])

    def fdb_flush(self, switch: str) -> int:
        self._note("fdb_flush", switch)
        self._get(switch)
        dynamic = [e for e in self.fdb[switch] if not e.static]
        self.fdb[switch] = [e for e in self.fdb[switch] if e.static]
        return len(dynamic)

    def stats(self, switch: str) -> list[PortStatsInfo]:
        self._note("stats", switch)
        return [PortStatsInfo(p.name, 10, 1000, 8, 800, 3, 1, 0, drops={"DROP_SAME_PORT": 2})
                for p in self._get(switch).ports]

    def trace(self, switch: str, in_port: str, src: str, dst: str, vlan: int | None = None,
              payload: str | None = None) -> TraceInfo:
        self._note("trace", switch, in_port, src, dst, vlan, *(() if payload is None else (payload,)))
        trace_payload(payload)  # as SwitchManager.trace
        info = self._get(switch)
        if not any(p.name == in_port for p in info.ports):
            raise NotFound(f"switch {switch!r} has no port named {in_port!r}")
        for mac in (src, dst):  # as SwitchManager.trace
            try:
                parse_mac(mac)
            except ValueError as e:
                raise InvalidRequest(str(e)) from None
        if vlan is not None and not 0 <= vlan <= 4094:  # as SwitchManager.trace: 0 is a priority tag
            raise InvalidRequest(f"VLAN must be 0-4094, got {vlan}")
        out = [p.name for p in info.ports if p.name != in_port]
        classified = vlan or 1
        return TraceInfo(
            switch=switch, in_port=in_port, src=src, dst=dst, tag=vlan, vlan=classified, reason="FLOOD_UNKNOWN",
            explanation="unknown unicast: flooded", out_ports=out,
            steps=[
                TraceStepInfo("parse", f"{src} → {dst}", detail={"src": src, "dst": dst, "vid": vlan}),
                TraceStepInfo("ingress", f"admitted to VLAN {classified}", detail={"vlan": classified}),
                TraceStepInfo("learn", f"would learn {src} on port {in_port}", detail={"action": "learn"}),
                TraceStepInfo("decide", f"{dst} is not in the MAC table", "FLOOD_UNKNOWN",
                              {"lookup": "miss", "out_ports": out}),
            ])


    def watch(self, switch: str, seconds: float = 1.0, limit: int = 1000) -> list[FrameEvent]:
        """One event per port; blocks until `watch_gate` is set when a test sets one (or `seconds` pass)."""
        self._note("watch", switch, seconds, limit)
        info = self._get(switch)
        info.watches += 1
        try:
            if self.watch_gate is not None:
                self.watch_gate.wait(seconds)
            else:
                threading.Event().wait(seconds)  # a watch lasts its seconds, as the daemon's does
        finally:
            info.watches -= 1
        return [FrameEvent(t=1.0 + i, switch=switch, in_port=p.name, src="02:00:00:00:00:01",
                           dst="02:00:00:00:00:02", vid=None, vlan=1, ethertype=0x0800, length=60,
                           reason="FLOOD_UNKNOWN", out_ports=[q.name for q in info.ports if q is not p])
                for i, p in enumerate(info.ports)][:limit]


    def capture(self, switch: str, port: str, direction: str = "both", count: int = COUNT_DEFAULT,
                seconds: float = SECONDS_DEFAULT, max_bytes: int = BYTES_DEFAULT,
                filter: str | None = None) -> FakeCapture:
        """A pcapng stream of `capture_frames` (each an EPB, inbound), ending at once; checked as the
        manager checks (CaptureRequest.parse; the filter is not compiled: no libpcap in the fake)."""
        self._note("capture", switch, port, direction, count, seconds, max_bytes, filter)
        request = CaptureRequest.parse(direction, count, seconds, max_bytes, filter)
        self._port(switch, port)
        return FakeCapture(port, request, list(self.capture_frames))

    def events(self, switch: str | None = None, since: int = 0, limit: int = EVENTS_LIMIT_DEFAULT,
               wait_s: float = 0.0) -> EventsPage:
        self._note("events", switch, since, limit, wait_s)
        check_events_query(since, limit, wait_s)  # as SwitchManager.events
        if switch is not None and switch not in self.switches and not self.event_log.mentions(switch):
            raise NotFound(f"no switch named {switch!r}")
        return self.event_log.read(switch, since, limit, wait_s)


class FakeCapture:
    """What `FakeApi.capture` answers: SHB + IDB, one EPB per frame (up to the count), an ISB."""

    def __init__(self, port: str, request: CaptureRequest, frames: list[bytes]) -> None:
        self.port, self.request, self.frames, self.closed = port, request, frames, False

    def __iter__(self) -> Iterator[bytes]:
        yield pcapng.section_header("fake") + pcapng.interface_description(self.port, 262144)
        for i, f in enumerate(self.frames[:self.request.count]):
            yield pcapng.enhanced_packet(0, i, f, len(f), comment=f"in {self.port}: FLOOD_BROADCAST", flags=1)
        yield pcapng.interface_statistics(0, 99, dropped=0)

    def stop(self, why: str = "reader gone") -> None:
        self.closed = True

    def close(self) -> None:
        self.closed = True


def _acl_info(port: str, r: AclRuleSpec) -> AclRuleInfo:
    return AclRuleInfo(port, r.id or 0, r.direction, r.action, r.rule().describe(), 0, 0, r.weight, r.remote_mac,
                       r.remote_ip, r.local_ip, r.protocol, r.remote_port, r.local_port, r.stateful, r.idle_timeout)


def _members(spec: PortSpec) -> set[int]:
    if spec.pvlan is not None:
        return set(policy_for(spec).member_vlans())
    if spec.trunk is None:
        return {spec.access_vlan}
    return set(spec.trunk) | ({spec.native} if spec.native is not None else set())


def private(name: str) -> SwitchSpec:
    return SwitchSpec(name, SwitchType.PRIVATE)


def cli_on_one_port(api: FakeApi) -> Any:
    """`vswitch …` run by Click against `api` with private switch "s" holding memory port "vm1": a
    function of the arguments returning the output (asserting exit 0), or with ``ok=False`` Click's
    result whatever the exit status."""
    from click.testing import CliRunner

    from vswitch.frontends.cli import cli

    api.create_switch(private("s"))
    api.add_port("s", PortSpec("vm1", PortKind.MEMORY, "vm1"))
    runner = CliRunner()

    def run(*args: str, ok: bool = True) -> Any:
        result = runner.invoke(cli, list(args), obj=api)
        if not ok:
            return result
        assert result.exit_code == 0, (result.output, result.exception)
        return result.output
    return run


def stored_and_loaded(path: Any, spec: PortSpec) -> list[PortSpec]:
    """The ports of switch "s" as a ConfigStore at `path` loads them after saving `spec`."""
    from vswitch.control.store import ConfigStore

    with ConfigStore(path) as store:
        store.save_switch(SwitchSpec("s", SwitchType.PRIVATE))
        store.save_port("s", spec)
    with ConfigStore(path) as store:
        return store.load()[0][1]
