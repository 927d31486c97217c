"""One switch's kernel fast path: its loaded BPF object, its port slots and configuration, and the
attachment of the program to the switch's links and of `vs_downcall` to the switch's upcall TAP (`set_upcall`).

Owns: the PortId → slot mapping, what each slot holds (a `PortPolicy`, oper state, whether the
program can reach the port), the config (ageing, cap, group forward mask, the VLANs whose floods
need Python, whether decision events are on — events.py reads them), and which links it attached
(so `close` leaves none behind).
Invariants: the slots mirror the calls made here, as SwitchCore's ports mirror its own calls:
`add_port`/`set_policy`/`set_oper_up`/`remove_port` take the same arguments. MAC table policy that
SwitchCore applies on those calls (flushing on a membership change, ageing, fair eviction) stays
the caller's: this module offers the primitives (`tables.flush`, `tables.delete`).
Must not touch: SwitchCore, the Python datapath, control/.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path

from vswitch.core.isolation import learning_domains
from vswitch.core.policy import PortMirroring, PortPolicy
from vswitch.datapath.kernel import layout as L
from vswitch.datapath.kernel import tc
from vswitch.datapath.kernel.libbpf import BpfObject, RingBuffer, object_id, prog_test_run
from vswitch.datapath.kernel.tables import SwitchTables, TestOutput

PortId = Hashable
PROGRAM = "vs_ingress"
#: the program on the host vNIC's egress (its filter's name too)
PROGRAM_EGRESS = "vs_egress"
#: the program on the upcall TAP's ingress: sends what Python writes there out of the port it names
DOWNCALL = "vs_downcall"
OBJECT_PATH = Path(__file__).with_name("switch.bpf.o")
_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class RunResult:
    """What the program did with one frame in test mode: its verdict (TC_ACT_*), the decision or
    upcall cause (a `layout.COUNTERS` name), the VLAN, and the frames it would have sent."""

    verdict: int
    reason: str
    vlan: int
    outputs: tuple[TestOutput, ...]


@dataclass
class _Slot:
    port: PortId
    policy: PortPolicy
    ifindex: int
    kernel: bool
    upcall: bool
    oper_up: bool
    ingress: bool = False


@dataclass(frozen=True, slots=True)
class _Attached:
    ifindex: int
    netns: str | None
    created_qdisc: bool
    egress: bool = False


class SwitchProgram:
    """The fast path of one switch. `ageing_s`, `max_entries`, `group_fwd_mask` as SwitchCore's;
    `refresh_s` is how often a busy entry's last-seen time is rewritten (the core: every tick);
    `fdb_room` the most dynamic entries a later `set_limits` may allow (the map grows as entries come,
    so room costs nothing until used; default `max_entries`).

    Raises LibbpfMissing, BpfError (the object cannot be loaded: the message carries the verifier's
    log), FileNotFoundError when the object was not built (`make bpf`)."""

    def __init__(self, *, ageing_s: float = 300, max_entries: int = 8192, group_fwd_mask: int = 0,
                 refresh_s: float = 1.0, static_room: int = 1024, fdb_room: int | None = None,
                 object_path: Path | None = None) -> None:
        path = object_path or OBJECT_PATH
        if not path.exists():
            raise FileNotFoundError(f"{path}: the kernel fast path is not built (make bpf; needs clang, libbpf-dev)")
        self._fdb_room = max(max_entries, fdb_room or 0)
        self._obj = BpfObject(str(path), max_entries={"vs_fdb": self._fdb_room + static_room})
        try:
            self.tables = SwitchTables(self._obj)
            self.prog_fd = self._obj.program_fd(PROGRAM)
            self.egress_fd = self._obj.program_fd(PROGRAM_EGRESS)
            self.downcall_fd = self._obj.program_fd(DOWNCALL)
        except BaseException:
            self._obj.close()
            raise
        self._ageing_ns = int(ageing_s * _NS)
        self._refresh_ns = int(refresh_s * _NS)
        self._max_entries = max_entries
        self._group_fwd_mask = group_fwd_mask
        self._test_now_ns: int | None = None
        self._events = False
        self._sample_gap_ns = 0
        self._slots: dict[int, _Slot] = {}
        self._slot_of: dict[PortId, int] = {}
        self._attached: dict[PortId, _Attached] = {}
        self._upcall: _Attached | None = None
        self._upcall_ifindex = 0
        self._write_config()

    # -- configuration (SwitchCore's calls) ---------------------------------------------------
    def add_port(self, port: PortId, policy: PortPolicy | None = None, *, ifindex: int = 0,
                 kernel: bool = True, upcall: bool = False, host: bool = False) -> int:
        """A port in the lowest free slot; returns the slot. `ifindex` is its link in the program's
        namespace (0 with `kernel=False`: a port only Python serves). `host`: the link is the host
        vNIC (a TAP): the program goes on its egress, and frames for it into its ingress. Raises
        ValueError for a port that exists or when every slot is taken."""
        if port in self._slot_of:
            raise ValueError(f"port {port!r} already exists")
        if kernel and not ifindex:
            raise ValueError(f"port {port!r}: a kernel port needs its link's ifindex")
        slot = next((s for s in range(L.MAX_PORTS) if s not in self._slots), None)
        if slot is None:
            raise ValueError(f"the fast path has {L.MAX_PORTS} port slots, all taken")
        self._slots[slot] = _Slot(port, policy or PortPolicy(), ifindex, kernel, upcall, True, host)
        self._slot_of[port] = slot
        self.tables.reset_storm(slot)
        self.tables.reset_police(slot)
        self._write_port(slot)
        return slot

    def set_policy(self, port: PortId, policy: PortPolicy) -> None:
        """Raises KeyError for an unknown port. A new storm limit starts with a full bucket."""
        s = self._slots[self._slot_of[port]]
        old, s.policy = s.policy, policy
        self._write_port(self._slot_of[port])
        if old.storm_limit != policy.storm_limit:
            self.tables.reset_storm(self._slot_of[port])
        if (old.max_bandwidth, old.bandwidth_burst) != (policy.max_bandwidth, policy.bandwidth_burst):
            self.tables.reset_police(self._slot_of[port])

    def set_oper_up(self, port: PortId, up: bool) -> None:
        """Raises KeyError for an unknown port."""
        self._slots[self._slot_of[port]].oper_up = up
        self._write_port(self._slot_of[port])

    def remove_port(self, port: PortId) -> None:
        """Detach the port from its link (if attached), empty its slot and drop every MAC entry
        pointing to it (as SwitchCore.remove_port). Raises KeyError for an unknown port."""
        slot = self._slot_of[port]
        if port in self._attached:
            self.detach(port)
        s = self._slots.pop(slot)
        del self._slot_of[port]
        self.tables.clear_port(slot, s.ifindex)
        self.tables.flush(slot=slot, include_static=True)
        self._write_config()

    def slot(self, port: PortId) -> int:
        """Raises KeyError for an unknown port."""
        return self._slot_of[port]

    def port_at(self, slot: int) -> PortId:
        """Raises KeyError for an empty slot."""
        return self._slots[slot].port

    def add_static(self, mac: bytes, vlan: int, port: PortId) -> None:
        """MacTable.add_static. Raises KeyError for an unknown port, BpfError when the map is full."""
        self.tables.add_static(mac, vlan, self._slot_of[port])

    def set_limits(self, ageing_s: float, max_entries: int) -> None:
        """A new ageing time and cap (MacTable.set_limits without the eviction: that is the caller's,
        by the core's rule). Raises ValueError for a cap over the room the map was loaded with."""
        if max_entries > self._fdb_room:
            raise ValueError(f"a MAC table of {max_entries} entries is over the {self._fdb_room} the fast "
                             "path was loaded with")
        self._ageing_ns = int(ageing_s * _NS)
        self._max_entries = max_entries
        self._write_config()

    def expire(self, now_ns: int | None = None) -> int:
        """Remove dynamic entries not seen for more than the ageing time (MacTable.expire's rule);
        `now_ns` on CLOCK_MONOTONIC (time.monotonic_ns, the clock of bpf_ktime_get_ns), by default
        now or the test clock. Returns how many went."""
        if now_ns is None:
            now_ns = self._test_now_ns if self._test_now_ns is not None else time.monotonic_ns()
        n = 0
        for e in self.tables.fdb_entries():
            if not e.static and now_ns - e.seen_ns > self._ageing_ns:
                n += self.tables.delete(e.mac, e.vlan)
        return n

    def counters(self, port: PortId) -> dict[str, int]:
        """The port's counters summed over the CPUs (layout.COUNTERS names). Raises KeyError."""
        return self.tables.port_counters(self._slot_of[port])

    def _write_port(self, slot: int) -> None:
        s = self._slots[slot]
        self.tables.write_port(slot, L.pack_port(s.policy, ifindex=s.ifindex, oper_up=s.oper_up, kernel=s.kernel,
                                                 upcall=s.upcall, ingress=s.ingress), s.ifindex)
        self._write_config()

    def _write_config(self) -> None:
        # a flood in a VLAN with a flooding member only Python serves must go up (SwitchCore.flood_ports)
        py_vlans: set[int] = set()
        mirror_vlans: set[int] = set()
        mirror_dests = mirror_py = 0
        for s in self._slots.values():
            up = s.policy.admin_up and s.oper_up
            if not s.kernel and s.policy.flooding and up:
                py_vlans |= s.policy.member_vlans()
            elif s.kernel and L.delivers_through_python(s.policy):
                # its MACs are never in the map (Python learns them): a unicast to it is "unknown" here
                py_vlans |= s.policy.member_vlans()
            # port mirroring (SwitchCore._mirror_for): a flood in these VLANs reaches a source; the
            # destinations that are up, and those of them the program cannot send a copy to
            if s.policy.port_mirroring is PortMirroring.SOURCE and s.policy.flooding and up:
                mirror_vlans |= s.policy.member_vlans()
            elif s.policy.port_mirroring is PortMirroring.DESTINATION and up:
                mirror_dests += 1
                mirror_py += not s.kernel
        self.tables.write_config(L.pack_config(ageing_ns=self._ageing_ns, refresh_ns=self._refresh_ns,
                                               max_dynamic=self._max_entries, group_fwd_mask=self._group_fwd_mask,
                                               n_slots=max(self._slots, default=-1) + 1,
                                               py_vlans=frozenset(py_vlans), test_now_ns=self._test_now_ns,
                                               events=self._events, sample_gap_ns=self._sample_gap_ns,
                                               upcall_ifindex=self._upcall_ifindex,
                                               mirror_vlans=frozenset(mirror_vlans), mirror_dests=mirror_dests,
                                               mirror_py=mirror_py,
                                               domains=learning_domains(s.policy for s in self._slots.values())))

    # -- decision events ----------------------------------------------------------------------
    def set_events(self, on: bool, *, sample_gap_ns: int = 0) -> None:
        """Report (or stop reporting) decisions in the `vs_events` ring (events.py reads it): each one,
        or with `sample_gap_ns` at most one per that many ns per CPU (a sampled stream's)."""
        self._events = on and not sample_gap_ns
        self._sample_gap_ns = sample_gap_ns if on else 0
        self._write_config()

    def open_events(self, on_record: Callable[[bytes], None]) -> RingBuffer:
        """A consumer of the `vs_events` ring handing each raw record to `on_record` (the caller
        closes it before the program). Raises BpfError."""
        return RingBuffer(self.tables.events.fd, on_record)

    def open_fdb_events(self, on_record: Callable[[bytes], None]) -> RingBuffer:
        """A consumer of the `vs_fdb_events` ring (each learn and move, always on) handing each raw
        record to `on_record` (the caller closes it before the program). Raises BpfError."""
        return RingBuffer(self.tables.fdb_events.fd, on_record)

    def kernel_ids(self) -> tuple[int, frozenset[int]]:
        """The kernel ids of the program and of its maps (what `close` must leave unloaded)."""
        maps = (self.tables.fdb, self.tables.ports, self.tables.slot_of, self.tables.config, self.tables.state,
                self.tables.counters, self.tables.test_run, self.tables.test_out, self.tables.events,
                self.tables.event_buf, self.tables.fdb_events, self.tables.sample_at)
        return object_id(self.prog_fd), frozenset(object_id(m.fd) for m in maps)

    def program_ids(self) -> frozenset[int]:
        """The kernel ids of the programs (ingress, the host vNIC's egress, the upcall TAP's downcall)."""
        return frozenset((object_id(self.prog_fd), object_id(self.egress_fd), object_id(self.downcall_fd)))

    def downcall_id(self) -> int:
        """The kernel id of the downcall program (on the upcall TAP; `close` must leave it unloaded)."""
        return object_id(self.downcall_fd)

    # -- the upcall path ----------------------------------------------------------------------
    def set_upcall(self, ifindex: int, *, netns: str | None = None) -> None:
        """Frames that go up are sent to the upcall TAP `ifindex` (with the S-tag of switch.h), and
        `vs_downcall` goes on its ingress: what Python writes there leaves by the kernel port its
        S-tag names. Raises NetlinkError (the TAP is gone)."""
        if self._upcall is not None:
            a, self._upcall = self._upcall, None
            tc.detach_ingress(a.ifindex, remove_qdisc=a.created_qdisc, netns=a.netns)
        created = tc.attach_ingress(ifindex, self.downcall_fd, name=DOWNCALL, netns=netns)
        self._upcall = _Attached(ifindex, netns, created)
        self._upcall_ifindex = ifindex
        self._write_config()

    # -- test mode ----------------------------------------------------------------------------
    def set_test_clock(self, now_ns: int | None) -> None:
        """Test mode on with the program's clock at `now_ns` (outputs recorded, nothing sent, refresh
        on every new `now` as the core does), or off (None)."""
        self._test_now_ns = now_ns
        if now_ns is not None:
            self._refresh_ns = 0
        self._write_config()

    def run(self, port: PortId, frame: bytes) -> RunResult:
        """Test mode: run the program on `frame` arriving on `port` (BPF_PROG_TEST_RUN). Raises
        KeyError for an unknown port, RuntimeError when test mode is off, BpfError."""
        if self._test_now_ns is None:
            raise RuntimeError("SwitchProgram.run needs test mode (set_test_clock)")
        s = self._slots[self._slot_of[port]]
        verdict, _ = prog_test_run(self.prog_fd, frame, s.ifindex)
        reason, vlan, outs = self.tables.last_run()
        return RunResult(verdict, reason, vlan, tuple(outs))

    # -- links --------------------------------------------------------------------------------
    def attach(self, port: PortId, *, netns: str | None = None) -> None:
        """Put the program on the port's link ingress (the host vNIC: its egress) in `netns`, the
        switch's namespace. Raises KeyError, ValueError for a port only Python serves, NetlinkError."""
        s = self._slots[self._slot_of[port]]
        if not s.kernel:
            raise ValueError(f"port {port!r} is served by Python only: no link to attach to")
        if s.ingress:
            created = tc.attach_ingress(s.ifindex, self.egress_fd, name=PROGRAM_EGRESS, netns=netns, egress=True)
        else:
            created = tc.attach_ingress(s.ifindex, self.prog_fd, name=PROGRAM, netns=netns)
        self._attached[port] = _Attached(s.ifindex, netns, created, s.ingress)

    def detach(self, port: PortId) -> None:
        """Take the program off the port's link (a link already gone is fine). Raises KeyError when
        it was not attached, NetlinkError."""
        a = self._attached.pop(port)
        tc.detach_ingress(a.ifindex, remove_qdisc=a.created_qdisc, netns=a.netns, egress=a.egress)

    def relink(self, port: PortId, ifindex: int, *, netns: str | None = None) -> bool:
        """The port's link is now `ifindex` (deleted and created again under its name): the slot follows
        it and, if the port was attached, the program goes on the new link. False when nothing changed.
        Raises KeyError for an unknown port, NetlinkError."""
        slot = self._slot_of[port]
        s = self._slots[slot]
        if not s.kernel or s.ifindex == ifindex:
            return False
        attached = port in self._attached
        if attached:
            self.detach(port)  # the old link is gone: nothing to remove there
        self.tables.unmap_ifindex(s.ifindex)
        s.ifindex = ifindex
        self._write_port(slot)
        if attached:
            self.attach(port, netns=netns)
        return True

    @property
    def fdb_room(self) -> int:
        """The largest cap `set_limits` accepts (the map's size at load, less the static room)."""
        return self._fdb_room

    def hand_over_links(self) -> None:
        """Forget the links this program is on without detaching: a new program replaced it there
        (`tc.attach_ingress` replaces our filter), so `close` must not remove the new one's. The
        upcall TAP's filter too."""
        self._attached.clear()
        self._upcall = None

    def close(self) -> None:
        """Detach from every link and unload: no program, map or qdisc of ours is left. Idempotent;
        raises NetlinkError when a link refused the detach (the rest is still released)."""
        first: BaseException | None = None
        for port in list(self._attached):
            try:
                self.detach(port)
            except Exception as e:  # keep releasing; report the first failure
                first = first or e
        a, self._upcall = self._upcall, None
        if a is not None:
            try:  # the TAP may be gone already (closed first): then so is the filter
                tc.detach_ingress(a.ifindex, remove_qdisc=a.created_qdisc, netns=a.netns)
            except Exception as e:
                first = first or e
        self._obj.close()
        if first is not None:
            raise first

    def __enter__(self) -> SwitchProgram:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
