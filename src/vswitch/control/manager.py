"""SwitchManager: the in-process `SwitchApi` — intent in, running switches out.

Owns: the set of running switches (core + datapath + ports + host vNIC + NIC takeover), their
persistence in the `ConfigStore`, and the switch *types*: Private (ports only), Internal (plus a
host vNIC), External (plus an uplink on a physical NIC and, with allow-management-os, the host's
addresses and routes moved to the host vNIC).

Invariants:
- Every request is validated first; a refused request changes nothing (InvalidRequest / NotFound /
  Conflict carry the message).
- Creating a switch registers the undo of each step at once; a failure unwinds them in reverse, so
  a NIC is never left half taken over. The takeover snapshot is stored *before* the NIC is touched,
  so a daemon killed midway can still give everything back on its next start.
- Deleting a switch stops its datapath before giving the NIC back (the vNIC and NIC must no longer
  be bridged while IPv6 DAD runs on the NIC again).
- The host vNIC is a persistent TAP: if the daemon dies, the host keeps its addresses on it.
Must not touch: HTTP, argument parsing, frames.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from vswitch.control import hostnic
from vswitch.control.model import (
    WATCH_MAX_EVENTS,
    WATCH_MAX_S,
    Conflict,
    FdbEntryInfo,
    InvalidRequest,
    NotFound,
    PortInfo,
    PortKind,
    PortSpec,
    PortStatsInfo,
    SwitchInfo,
    SwitchSpec,
    SwitchType,
    VswitchError,
    clip,
    host_vnic_name,
)
from vswitch.control.netlink import Netlink
from vswitch.control.store import ConfigStore
from vswitch.core.frame import push_vlan
from vswitch.core.mac import format_mac, parse_mac
from vswitch.core.policy import PortPolicy
from vswitch.core.switch import SwitchCore
from vswitch.datapath import Datapath
from vswitch.ports import PORT_KINDS, LinkPort, Port, TapPort

log = logging.getLogger(__name__)

UPLINK_PORT = "uplink"
HOST_PORT = "host"
RESERVED_PORT_NAMES = {UPLINK_PORT, HOST_PORT}


@dataclass
class _Attached:
    spec: PortSpec | None     # None for the switch's own ports (uplink, host vNIC)
    port: Port
    role: str


@dataclass
class _Switch:
    spec: SwitchSpec
    core: SwitchCore
    datapath: Datapath
    ports: dict[str, _Attached] = field(default_factory=dict)
    vnic: TapPort | None = None
    takeover: hostnic.Takeover | None = None
    undo: ExitStack = field(default_factory=ExitStack)
    confirm_deadline: float | None = None


def policy_for(spec: PortSpec) -> PortPolicy:
    if spec.trunk is not None:
        return PortPolicy.trunk(set(spec.trunk), spec.native)
    return PortPolicy.access(spec.access_vlan)


class SwitchManager:
    """Creates and deletes switches and ports; serves `SwitchApi` in-process (thread-safe)."""

    def __init__(self, store: ConfigStore | None = None, *, takeover_fail_at: hostnic.FailAt = None,
                 busy_poll_us: int = 0) -> None:
        if not 0 <= busy_poll_us <= 100_000:
            raise InvalidRequest(f"busy_poll_us must be 0-100000, got {busy_poll_us}")
        self.store = store
        self.busy_poll_us = busy_poll_us
        self._switches: dict[str, _Switch] = {}
        self._lock = threading.RLock()
        self._takeover_fail_at = takeover_fail_at  # tests inject a failure into the NIC takeover
        #: what went wrong while restoring from the store (a switch that could not come back)
        self.restore_errors: list[str] = []

    # -- switches -----------------------------------------------------------------------------
    def create_switch(self, spec: SwitchSpec, *, dry_run: bool = False, persist: bool = True
                      ) -> SwitchInfo | list[str]:
        spec = spec.validate()
        with self._lock:
            if spec.name in self._switches:
                raise Conflict(f"switch {spec.name!r} already exists")
            vnic_name = host_vnic_name(spec.name) if spec.has_host_vnic else None
            self._check_links(spec, vnic_name)
            if dry_run:
                return self._plan(spec, vnic_name)
            sw = self._build(spec, vnic_name)
            self._switches[spec.name] = sw
            if persist and self.store is not None:
                self.store.save_switch(spec)
            return self._info(sw)

    def _check_links(self, spec: SwitchSpec, vnic_name: str | None) -> None:
        with Netlink() as nl:
            if spec.type == SwitchType.EXTERNAL:
                assert spec.nic is not None
                for other in self._switches.values():
                    if other.spec.nic == spec.nic:
                        raise Conflict(f"NIC {spec.nic!r} is already the uplink of switch {other.spec.name!r}")
                    if other.vnic is not None and other.vnic.ifname == spec.nic:
                        raise InvalidRequest(f"{spec.nic!r} is the host vNIC of switch {other.spec.name!r}")
                try:
                    hostnic.validate(nl, spec.nic, None, False)
                except hostnic.TakeoverRefused as exc:
                    raise InvalidRequest(str(exc)) from None
            if vnic_name is not None and nl.link_exists(vnic_name):
                raise Conflict(f"a link named {vnic_name!r} (the host vNIC name of switch {spec.name!r}) "
                               "already exists")

    def _plan(self, spec: SwitchSpec, vnic_name: str | None) -> list[str]:
        steps = [f"create switch {spec.name!r} ({spec.type}; MAC table: {spec.max_entries} entries, "
                 f"ageing {spec.ageing_s} s)"]
        if vnic_name:
            steps.append(f"create host vNIC {vnic_name} (persistent TAP) and attach it as port {HOST_PORT!r}")
        if spec.type == SwitchType.EXTERNAL:
            assert spec.nic is not None
            steps.append(f"attach {spec.nic} as port {UPLINK_PORT!r} (AF_PACKET, promiscuous)")
            with Netlink() as nl:
                snap = hostnic.capture(nl, spec.nic, None, False)
            if spec.allow_management_os:
                snap.update(vnic=vnic_name, allow_management_os=True,
                            vnic_link={"mac": "(new)", "mtu": 1500, "up": False})
            steps += [s.description for s in hostnic.build_plan(snap)]
            if spec.confirm_timeout_s:
                steps.append(f"revert all of the above unless `vswitch switch confirm {spec.name}` "
                             f"arrives within {spec.confirm_timeout_s:g} s")
        elif vnic_name:
            steps.append(f"bring {vnic_name} up (the host's adapter on this internal switch)")
        return steps

    def _build(self, spec: SwitchSpec, vnic_name: str | None) -> _Switch:
        core = SwitchCore(ageing_s=spec.ageing_s, max_entries=spec.max_entries)
        dp = Datapath(spec.name, core, busy_poll_s=self.busy_poll_us / 1e6)
        sw = _Switch(spec, core, dp)
        with ExitStack() as undo:
            dp.start()
            undo.callback(dp.stop)
            if vnic_name is not None:
                vnic = TapPort(HOST_PORT, vnic_name, persist=True)
                try:
                    vnic.open()
                except OSError as exc:
                    raise InvalidRequest(f"cannot create host vNIC {vnic_name}: {exc}") from exc
                undo.callback(vnic.destroy)
                sw.vnic = vnic
            if spec.type == SwitchType.EXTERNAL:
                assert spec.nic is not None
                uplink = LinkPort(UPLINK_PORT, spec.nic)
                try:
                    uplink.open()
                except OSError as exc:
                    raise InvalidRequest(f"cannot open NIC {spec.nic!r}: {exc}") from exc
                undo.callback(uplink.close)
                dp.attach(UPLINK_PORT, uplink, role="uplink")
                sw.ports[UPLINK_PORT] = _Attached(None, uplink, "uplink")
            if sw.vnic is not None:
                dp.attach(HOST_PORT, sw.vnic, role="host-vnic")
                sw.ports[HOST_PORT] = _Attached(None, sw.vnic, "host-vnic")
            if spec.type == SwitchType.EXTERNAL:
                assert spec.nic is not None
                takeover = hostnic.Takeover(spec.nic, vnic_name, allow_management_os=spec.allow_management_os,
                                            fail_at=self._takeover_fail_at)
                if self.store is not None:
                    # stored before the NIC is touched: a crash midway can still be undone on restart
                    self.store.put_snapshot(spec.name, takeover.snapshot())
                    undo.callback(self.store.drop_snapshot, spec.name)
                try:
                    takeover.apply()
                except hostnic.TakeoverError as exc:
                    raise InvalidRequest(f"taking over {spec.nic} failed and was rolled back: {exc}") from exc
                except hostnic.TakeoverRefused as exc:
                    raise InvalidRequest(str(exc)) from exc
                undo.callback(self._give_back, sw, takeover)
                sw.takeover = takeover
                if spec.confirm_timeout_s:
                    sw.confirm_deadline = time.monotonic() + spec.confirm_timeout_s
                    takeover.arm_confirm_timeout(spec.confirm_timeout_s,
                                                 on_revert=lambda _t, err, name=spec.name: self._reverted(name, err),
                                                 before_revert=lambda _t, dp=dp: dp.stop())
            elif vnic_name is not None:
                with Netlink() as nl:
                    nl.set_up(vnic_name, True)
            sw.undo = undo.pop_all()
        return sw

    @staticmethod
    def _give_back(sw: _Switch, takeover: hostnic.Takeover) -> None:
        sw.datapath.stop()  # stop bridging NIC and vNIC before the NIC's stack comes back
        takeover.restore()

    def _reverted(self, name: str, error: BaseException | None) -> None:
        """The confirm timeout fired: the takeover is undone; remove what is left of the switch."""
        log.warning("switch %s was not confirmed in time: reverted%s", name,
                    f" (with errors: {error})" if error else "")
        with self._lock:
            sw = self._switches.pop(name, None)
            if sw is None:
                return
            sw.takeover = None
            self._teardown(sw)
            if self.store is not None:
                self.store.delete_switch(name)

    def _teardown(self, sw: _Switch) -> None:
        try:
            sw.undo.close()
        finally:
            if self.store is not None:
                self.store.drop_snapshot(sw.spec.name)

    def delete_switch(self, name: str) -> None:
        with self._lock:
            sw = self._get(name)
            del self._switches[name]
            self._teardown(sw)
            if self.store is not None:
                self.store.delete_switch(name)

    def confirm_switch(self, name: str) -> SwitchInfo:
        with self._lock:
            sw = self._get(name)
            if sw.takeover is None or sw.confirm_deadline is None:
                raise InvalidRequest(f"switch {name!r} is not waiting for confirmation")
            sw.takeover.confirm()
            sw.confirm_deadline = None
            return self._info(sw)

    def list_switches(self) -> list[SwitchInfo]:
        with self._lock:
            return [self._info(sw) for sw in self._switches.values()]

    def get_switch(self, name: str) -> SwitchInfo:
        with self._lock:
            return self._info(self._get(name))

    # -- ports --------------------------------------------------------------------------------
    def add_port(self, switch: str, spec: PortSpec, *, persist: bool = True) -> PortInfo:
        spec = spec.validate()
        with self._lock:
            sw = self._get(switch)
            if spec.name in RESERVED_PORT_NAMES:
                raise InvalidRequest(f"port name {spec.name!r} is reserved for the switch's own ports")
            if spec.name in sw.ports:
                raise Conflict(f"switch {switch!r} already has a port {spec.name!r}")
            self._check_target(spec)
            port = self._make_port(spec)
            try:
                port.open()
            except OSError as exc:
                raise InvalidRequest(f"cannot open {spec.kind} port {spec.name!r} on {spec.target!r}: "
                                     f"{exc.strerror or exc}") from exc
            try:
                sw.datapath.attach(spec.name, port, policy_for(spec), role="vm")
            except Exception:
                port.close()
                raise
            sw.ports[spec.name] = _Attached(spec, port, "vm")
            if persist and self.store is not None:
                self.store.save_port(switch, spec)
            return self._port_info(sw, spec.name)

    def _check_target(self, spec: PortSpec) -> None:
        for other in self._switches.values():
            if spec.kind in (PortKind.TAP, PortKind.LINK):
                if other.spec.nic == spec.target:
                    raise Conflict(f"{spec.target!r} is the uplink of switch {other.spec.name!r}")
                if other.vnic is not None and other.vnic.ifname == spec.target:
                    raise Conflict(f"{spec.target!r} is the host vNIC of switch {other.spec.name!r}")
            for name, att in other.ports.items():
                if att.spec is not None and att.spec.kind == spec.kind and att.spec.target == spec.target:
                    raise Conflict(f"{spec.target!r} is already port {name!r} of switch {other.spec.name!r}")
        if spec.kind == PortKind.LINK:
            with Netlink() as nl:
                if not nl.link_exists(spec.target):
                    raise InvalidRequest(f"interface {spec.target!r} does not exist")

    @staticmethod
    def _make_port(spec: PortSpec) -> Port:
        cls = PORT_KINDS[str(spec.kind)]
        if spec.kind == PortKind.MEMORY:
            return cls(spec.name)  # type: ignore[call-arg]
        return cls(spec.name, spec.target)  # type: ignore[call-arg]

    def remove_port(self, switch: str, port: str) -> None:
        with self._lock:
            sw = self._get(switch)
            att = sw.ports.get(port)
            if att is None:
                raise NotFound(f"switch {switch!r} has no port {port!r}")
            if att.spec is None:
                raise InvalidRequest(f"port {port!r} belongs to the switch itself; delete the switch instead")
            sw.datapath.detach(port)
            del sw.ports[port]
            try:
                att.port.close()
            finally:
                if self.store is not None:
                    self.store.delete_port(switch, port)

    def list_ports(self, switch: str) -> list[PortInfo]:
        with self._lock:
            sw = self._get(switch)
            return [self._port_info(sw, name) for name in sw.ports]

    def port_object(self, switch: str, port: str) -> Port:
        """The live back-end of a port (tests and the lab use it, e.g. to inject into a memory port)."""
        with self._lock:
            sw = self._get(switch)
            if port not in sw.ports:
                raise NotFound(f"switch {switch!r} has no port {port!r}")
            return sw.ports[port].port

    def datapath(self, switch: str) -> Datapath:
        with self._lock:
            return self._get(switch).datapath

    # -- tables and counters --------------------------------------------------------------------
    def fdb_show(self, switch: str) -> list[FdbEntryInfo]:
        dp = self.datapath(switch)

        def read() -> list[FdbEntryInfo]:
            now = dp.now
            return [FdbEntryInfo(format_mac(e.mac), e.vlan, str(e.port),
                                 0.0 if e.static else max(0.0, now - e.seen), e.static)
                    for e in dp.core.fdb.entries(now)]
        return sorted(dp.call(read), key=lambda e: (e.vlan, e.port, e.mac))

    def fdb_flush(self, switch: str) -> int:
        dp = self.datapath(switch)
        return dp.call(lambda: dp.core.fdb.flush())

    def stats(self, switch: str) -> list[PortStatsInfo]:
        dp = self.datapath(switch)

        def read() -> list[PortStatsInfo]:
            out = []
            for pid, c in dp.core.counters.items():
                s = c.snapshot()
                out.append(PortStatsInfo(str(pid), s["rx_frames"], s["rx_bytes"], s["tx_frames"], s["tx_bytes"],
                                         s["floods"], s["learned"], s["moved"], s["drops"]))
            return out
        return dp.call(read)

    def trace(self, switch: str, in_port: str, src: str, dst: str, vlan: int | None = None) -> dict[str, Any]:
        dp = self.datapath(switch)
        try:
            src_b, dst_b = parse_mac(src), parse_mac(dst)
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        if vlan is not None and not 0 <= vlan <= 4094:
            raise InvalidRequest(f"VLAN must be 0-4094, got {vlan}")
        frame = dst_b + src_b + b"\x08\x00" + bytes(46)
        if vlan is not None:
            frame = push_vlan(frame, vlan)

        def run() -> dict[str, Any]:
            if in_port not in dp.core.policies:
                raise NotFound(f"switch {switch!r} has no port {in_port!r}")
            d, stages = dp.core.trace(in_port, frame, dp.now)
            return {
                "switch": switch, "in_port": in_port, "src": format_mac(src_b), "dst": format_mac(dst_b),
                "vlan": vlan,
                "stages": [{"stage": s.stage, "result": s.result, "reason": s.reason.name if s.reason else None,
                            **({"detail": s.detail} if s.detail else {})} for s in stages],
                "decision": {"reason": d.reason.name, "explanation": d.reason.value,
                             "out_ports": [str(p) for p in d.out_ports], "vlan": d.vlan},
            }
        return dp.call(run)

    def watch(self, switch: str, seconds: float, limit: int = 1000) -> list[dict[str, Any]]:
        """Record the switch's per-frame decisions for `seconds` (at most `limit` events); see `SwitchApi.watch`.

        Raises InvalidRequest when `seconds` is not in (0, WATCH_MAX_S] or `limit` not in
        1..WATCH_MAX_EVENTS, NotFound for an unknown switch. While recording, each event is one small
        tuple holding the frame's first bytes (never the frame), turned into a dict only at the end.
        """
        if not (isinstance(seconds, int | float) and not isinstance(seconds, bool) and 0 < seconds <= WATCH_MAX_S):
            raise InvalidRequest(f"watch time must be more than 0 and at most {WATCH_MAX_S:.0f} s, got {clip(seconds)}")
        if not (isinstance(limit, int) and not isinstance(limit, bool) and 1 <= limit <= WATCH_MAX_EVENTS):
            raise InvalidRequest(f"watch limit must be 1-{WATCH_MAX_EVENTS} events, got {clip(limit)}")
        dp = self.datapath(switch)
        raw: list[tuple[Any, ...]] = []
        done = threading.Event()

        def observe(pid: Any, buf: bytes, hdr: int, d: Any) -> None:
            # runs on the datapath thread, only while someone watches: keep it to one slice and one tuple
            if len(raw) >= limit:
                done.set()
                return
            # 18 bytes of L2 header + 60 of IPv4 header + 8 of ICMP are all _event() reads
            raw.append((time.time(), pid, buf[hdr:hdr + 86], len(buf) - hdr, d.reason, d.vlan, d.out_ports))

        dp.call(lambda: dp.frame_observers.append(observe))
        end = time.monotonic() + seconds
        try:
            # in slices: a switch deleted (or a daemon shutting down) ends its watches within a slice
            while not done.wait(min(0.25, max(0.0, end - time.monotonic()))) and time.monotonic() < end:
                with self._lock:
                    current = self._switches.get(switch)
                if current is None or current.datapath is not dp:
                    break
        finally:
            dp.call(lambda: dp.frame_observers.remove(observe))
        del raw[limit:]
        # converted oldest first while the tuples are dropped, so both forms never coexist in full;
        # equal MACs and output lists are one shared object each (a watch sees few distinct ones)
        shared: dict[Any, Any] = {}
        raw.reverse()
        events = []
        while raw:
            events.append(_event(*raw.pop(), shared))
        return events

    # -- life cycle -----------------------------------------------------------------------------
    def restore(self) -> None:
        """Recreate every stored switch and port; first give back whatever a crashed run left."""
        if self.store is None:
            return
        for spec, ports in self.store.load():
            try:
                self._reconcile_leftovers(spec)
                self.create_switch(spec, persist=False)
            except (VswitchError, OSError, hostnic.TakeoverError) as exc:
                msg = f"switch {spec.name!r} could not be restored: {exc}"
                log.error(msg)
                self.restore_errors.append(msg)
                continue
            for pspec in ports:
                try:
                    self.add_port(spec.name, pspec, persist=False)
                except (VswitchError, OSError) as exc:
                    msg = f"port {pspec.name!r} of switch {spec.name!r} could not be restored: {exc}"
                    log.error(msg)
                    self.restore_errors.append(msg)

    def _reconcile_leftovers(self, spec: SwitchSpec) -> None:
        """After a crash: undo a takeover still in place and delete a stale host vNIC."""
        assert self.store is not None
        snap = self.store.get_snapshot(spec.name)
        if snap is not None:
            log.info("switch %s: giving back %s as the previous run left it", spec.name, snap.get("nic"))
            hostnic.Takeover.from_snapshot(snap).restore()
            self.store.drop_snapshot(spec.name)
        if spec.has_host_vnic:
            with Netlink() as nl:
                nl.delete_link(host_vnic_name(spec.name), missing_ok=True)

    def shutdown(self) -> None:
        """Stop every switch and give every NIC back; the stored configuration stays."""
        with self._lock:
            for name in list(self._switches):
                sw = self._switches.pop(name)
                try:
                    self._teardown(sw)
                except Exception as exc:  # keep going: every other NIC must still be given back
                    log.error("switch %s: shutdown: %s", name, exc)

    # -- helpers --------------------------------------------------------------------------------
    def _get(self, name: str) -> _Switch:
        sw = self._switches.get(name)
        if sw is None:
            raise NotFound(f"no switch named {name!r}")
        return sw

    def _port_info(self, sw: _Switch, name: str) -> PortInfo:
        att = sw.ports[name]
        state = sw.datapath.port_state(name)
        policy = sw.core.policies[name]
        details = att.port.describe()
        if state["error"]:
            details["error"] = state["error"]
        if not state["up"]:
            # why, in words: a failed back-end's error, or a link that is down for now
            details["down_reason"] = state["error"] or ("link down" if state["link_down"] else "administratively down")
        if att.spec is not None:
            kind, target = str(att.spec.kind), att.spec.target
        else:
            kind = att.port.kind
            target = getattr(att.port, "ifname", "")
        return PortInfo(name, kind, target, policy.describe(), bool(state["up"]), att.role, details)

    def _info(self, sw: _Switch) -> SwitchInfo:
        spec = sw.spec
        deadline = None
        if sw.confirm_deadline is not None:
            deadline = max(0.0, round(sw.confirm_deadline - time.monotonic(), 1))
        return SwitchInfo(
            name=spec.name, type=str(spec.type), nic=spec.nic, allow_management_os=spec.allow_management_os,
            host_vnic=sw.vnic.ifname if sw.vnic else None,
            state="awaiting-confirm" if deadline is not None else "up",
            ports=[self._port_info(sw, n) for n in sw.ports], ageing_s=spec.ageing_s,
            max_entries=spec.max_entries, confirm_deadline_s=deadline)


def _event(t: float, pid: Any, f: bytes, length: int, reason: Any, vlan: int | None,
           out_ports: Any, shared: dict[Any, Any]) -> dict[str, Any]:
    """One `watch` event from what the datapath thread kept of a frame (its first bytes).

    `shared` holds the strings and lists already made for this watch, reused for equal values."""
    ethertype = int.from_bytes(f[12:14], "big") if len(f) >= 14 else None
    vid = None
    if ethertype in (0x8100, 0x88A8) and len(f) >= 18:
        vid = int.from_bytes(f[14:16], "big") & 0x0FFF
        ethertype = int.from_bytes(f[16:18], "big")
    src = shared.setdefault(f[6:12], format_mac(f[6:12])) if len(f) >= 12 else None
    dst = shared.setdefault(f[0:6], format_mac(f[0:6])) if len(f) >= 6 else None
    outs = shared.get(("out", *out_ports))
    if outs is None:
        outs = shared[("out", *out_ports)] = [str(p) for p in out_ports]
    return {"t": t, "in_port": shared.setdefault(("in", pid), str(pid)), "src": src, "dst": dst, "vid": vid,
            "vlan": vlan or None, "ethertype": ethertype, "length": length, "reason": reason.name,
            "out_ports": outs, "icmp": _icmp_echo(f, 18 if vid is not None else 14) if ethertype == 0x0800 else None}


def _icmp_echo(f: bytes, l3: int) -> dict[str, int] | None:
    """ICMPv4 echo request/reply identity (type, id, seq) of a frame whose IPv4 header starts at `l3`.

    Lets `lab trace` match the switch's decisions to the pings it sent and captured elsewhere."""
    if len(f) < l3 + 20 or f[l3] >> 4 != 4 or f[l3 + 9] != 1:
        return None
    icmp = l3 + (f[l3] & 0x0F) * 4
    if len(f) < icmp + 8 or f[icmp] not in (0, 8):
        return None
    return {"type": f[icmp], "id": int.from_bytes(f[icmp + 4:icmp + 6], "big"),
            "seq": int.from_bytes(f[icmp + 6:icmp + 8], "big")}


def make_manager(state_dir: str | None) -> SwitchManager:
    """A manager with its SQLite store under `state_dir` (None: in memory only)."""
    import os

    if state_dir is None:
        return SwitchManager()
    os.makedirs(state_dir, exist_ok=True)
    return SwitchManager(ConfigStore(os.path.join(state_dir, "config.sqlite")))


