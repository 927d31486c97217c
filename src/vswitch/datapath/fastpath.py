"""The kernel datapath: a switch whose ports are all links in vswitchd's namespace, forwarded by the
tc-bpf fast path (datapath/kernel/), with the control plane's view unchanged.

What qualifies (`refusal`): `link` ports (a VM's veth or TAP, an External switch's uplink NIC) and
the host vNIC — a persistent TAP in vswitchd's namespace whose program sits on its clsact egress
(what the host sends) and which the program delivers to with BPF_F_INGRESS (into the host stack).
The TAP's descriptor stays open on the fast path (the TAP has carrier while one is), unread; on the
uplink the program shares the NIC's clsact with the takeover's drop, which runs after it and catches
what the program leaves undecided.

`KernelDatapath` is a `Datapath` (a subclass, not a second class behind a Protocol: the thread, the
command queue, the port records, the link watch and — when a port only Python serves arrives — the
whole Python datapath are the base class's, so the live move to Python is "stop being special").
While `program` is set, every port is a `SwitchProgram` slot, its link carries the program, and its
back-end is never opened (the host vNIC's TAP is opened but not read): an AF_PACKET socket sees a
frame before tc ingress and would forward it a second time. Python does no per-frame work; the loop
wakes for commands, the tick and — only while someone watches — the program's decision events.

Invariants:
- `core` holds the ports, policies, oper state and static entries as the program does (every change
  goes to both), so `policy`, `port_state` and `trace` answer from it. Its MAC table holds only the
  statics while on the fast path: the dynamic entries live in the program's map; `trace` and the
  tick's eviction copy them into the core first (`_load_fdb`), so the one decision function and the
  one eviction rule (core/fdb.py) are used, never re-implemented.
- Table full: the program cannot evict (it sends a new MAC at the cap up, which no one serves yet:
  the frame is lost, counted `upcall_table_full`). The tick keeps room: when the dynamic count is
  within `headroom` of the cap it evicts by the core's fair rule down to cap - headroom, so a new MAC
  waits at most one tick.
- Ageing on the tick (`SwitchProgram.expire`, the core's rule on the program's clock), once a second.
- A port only Python serves (`refusal` says which) added to an `auto` switch moves it to the Python
  datapath live: the MAC table and counters are carried into the core, the programs are detached and
  unloaded, then the links' sockets opened (in that order: a few frames lost, none forwarded twice).
  A `kernel` switch refuses it (FastPathRefused, an OSError saying why).
- `watch` (and `lab trace`) need every frame's decision: the first frame observer turns on the
  program's decision events (a flag in its config: with it off a frame pays one test of it), read
  from its `vs_events` ring buffer by `kernel/events.DecisionFeed` in the loop's own epoll set (no
  busy polling, at most DRAIN_LIMIT records per wake-up) and handed to the observers as
  ``obs(pid, head, 0, decision, length=, t=, path=events.KERNEL_PATH)`` — the Python datapath calls
  ``obs(pid, buf, hdr, decision)``; the last observer turns them off. A full ring never blocks the
  program: the event is counted (`events_lost`, `switch show`). Only when the ring cannot be read
  does the first observer move the switch to Python, as before the events existed.
- Back to the fast path (`_back_to_kernel`: a new program, learned entries preloaded into its map
  before it is on any link, counters carried) when the last port only Python serves is removed.
- `set_mode` (`switch set --datapath`): "python" moves the switch to Python and keeps it there (a
  "python" switch on a real kernel is a KernelDatapath without a program from the start, so it can
  move later); "kernel"/"auto" bring it back when every port qualifies ("kernel" refuses, saying why,
  the switch unchanged). `PythonDatapath` is left for switches that cannot move (the fast path could
  not be had when they were built, a simulated kernel).
- `stop` (switch delete, daemon shutdown) detaches and unloads: no qdisc, filter, program or map of
  ours is left (a clsact the takeover's drop still sits on stays: the give-back removes it). A
  SIGKILLed vswitchd leaves the programs attached and forwarding (the host vNIC's TAP loses its
  carrier with its last descriptor, and the host still sends and receives through it); the next
  start replaces them (tc.attach_ingress removes a filter of ours it finds first); if it comes back
  on the Python datapath instead, `PythonDatapath` removes that filter (a TAP's: on its egress)
  before opening the port (else the old program and Python would both forward each frame).
Must not touch: switch types, persistence, netlink outside datapath/kernel/tc.py.
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import time
from collections.abc import Callable, Hashable, Iterable
from typing import Any

from vswitch.core.policy import PortPolicy
from vswitch.core.reasons import Reason
from vswitch.core.switch import Decision, SwitchCore, TraceStep, policy_change_flushes
from vswitch.datapath.loop import Datapath, FdbRow, LinkWatcher, PortState
from vswitch.ports.base import Port, link_mtu
from vswitch.ports.link import LinkPort
from vswitch.ports.tap import TapPort

log = logging.getLogger(__name__)

KERNEL_LABEL = "kernel (tc-bpf)"
#: who decided a frame, as a frame observer is told (the kernel fast path's is events.KERNEL_PATH)
PYTHON_PATH = "python"
#: the MAC map is loaded with room for at least this many dynamic entries (not preallocated, but its
#: hash buckets are: ~16 bytes each), so most cap increases need no reload
FDB_ROOM_MIN = 65536
EXPIRE_EVERY_S = 1.0
_LABEL_REASON = {r.label: r for r in Reason}


class FastPathRefused(OSError):
    """A switch asked for the kernel datapath (`--datapath kernel`) cannot have it; `strerror` says why."""

    def __init__(self, why: str) -> None:
        super().__init__(errno.EOPNOTSUPP, why)


def role_refusal(role: str) -> str | None:
    """Why a switch's own port of this role cannot be on the fast path, None when it can (the uplink
    and the host vNIC both can: see `refusal`)."""
    return None


def refusal(pid: Hashable, port: Port, role: str) -> str | None:
    """Why a port cannot be on the fast path, None when it can: a `link` port (a VM's, the uplink), or
    the host vNIC — a TAP in vswitchd's namespace, the program on its egress."""
    why = role_refusal(role)
    if why is None and not (isinstance(port, LinkPort) or _is_host_tap(port, role)):
        why = f"port {pid} is a {port.kind} port"
    return why


def _is_host_tap(port: Port, role: str) -> bool:
    return role == "host-vnic" and isinstance(port, TapPort) and port.netns is None


def make_datapath(name: str, core: SwitchCore, *, mode: str, chosen_by: str, own_roles: Iterable[str] = (),
                  movable: bool = True, **kw: Any) -> Datapath:
    """The datapath of a new switch: `mode` is "python", "auto" or "kernel" (`chosen_by` says who chose
    it, for the label); `own_roles` the roles of the switch's own ports (uplink, host-vnic) it will
    attach; `movable` (a real kernel) lets a "python" switch move to the fast path later (`set_mode`:
    a KernelDatapath without a program); `kw` go to `Datapath`.
    `auto` gives the kernel datapath when the program loads and every own port qualifies, else the
    Python one saying why (`label`). Raises FastPathRefused (mode "kernel" only)."""
    if mode == "python":
        dp: Datapath = (KernelDatapath(name, core, None, required=False, chosen_by=chosen_by, mode=mode, **kw)
                        if movable else PythonDatapath(name, core, **kw))
        dp.label = f"python ({chosen_by})"
        return dp
    why = next(filter(None, map(role_refusal, own_roles)), None)
    program = None
    if why is None:
        from vswitch.datapath.kernel import unavailable_reason
        why = unavailable_reason()
    if why is None:
        try:
            program = _load(core.fdb.ageing_s, core.fdb.max_entries)
        except (OSError, ValueError) as exc:
            why = f"the fast path did not load: {str(exc)[:500]}"
    if program is None:
        assert why is not None
        if mode == "kernel":
            raise FastPathRefused(f"switch {name!r} cannot use the kernel datapath ({chosen_by}): {why}")
        dp = PythonDatapath(name, core, **kw)
        dp.label = f"python: {why}"
        return dp
    return KernelDatapath(name, core, program, required=mode == "kernel", chosen_by=chosen_by, **kw)


class PythonDatapath(Datapath):
    """The Python datapath, which first takes off a link port's link the fast-path filter a killed
    vswitchd may have left there: its program would go on forwarding every frame Python forwards too.
    It stays on Python: the fast path could not be had when the switch was built (or the kernel is
    simulated); `set_mode` changes only what it says."""

    def open_port(self, port: Port, role: str = "vm") -> None:
        remove_stale_fast_path(port)
        port.open()

    def set_mode(self, mode: str, chosen_by: str, *, dry_run: bool = False) -> None:
        """`switch set --datapath` on a switch that cannot move: "python" says so; "kernel" is refused
        (FastPathRefused saying why: the label's reason); "auto" stays as it is."""
        if mode == "python" and not dry_run:
            self.label = f"python ({chosen_by})"
        elif mode == "kernel":
            why = self.label.removeprefix("python: ").removeprefix("python ")
            raise FastPathRefused(f"switch {self.name!r} cannot use the kernel datapath ({chosen_by}): it was "
                                  f"built on the Python one ({why}); it is tried again when vswitchd starts")


def fast_path_filters() -> tuple[str, ...]:
    """The names of the fast path's tc filters: what a takeover may find on the NIC (the uplink is
    attached first) and keep in front of its drop."""
    from vswitch.datapath.kernel.program import PROGRAM, PROGRAM_EGRESS
    return PROGRAM, PROGRAM_EGRESS


def remove_stale_fast_path(port: Port) -> None:
    """Take off a link port's link (a TAP's egress: the host vNIC) the fast-path filter a killed
    vswitchd left there (its program goes on forwarding): before the Python datapath opens the link,
    and when a port is discarded for good (a crash recovery undoing it). Best effort: no link, no
    netlink, nothing of ours — nothing done."""
    egress = isinstance(port, TapPort) and port.netns is None
    if not (isinstance(port, LinkPort) or egress):
        return
    try:
        from vswitch.datapath.kernel import tc
        from vswitch.datapath.kernel.program import PROGRAM, PROGRAM_EGRESS
        if tc.remove_stale(socket.if_nametoindex(port.ifname), PROGRAM_EGRESS if egress else PROGRAM,  # type: ignore[attr-defined]
                           egress=egress):
            log.info("removed the fast path a previous vswitchd left on %s", port.ifname)  # type: ignore[attr-defined]
    except Exception as exc:  # the link is gone (open says so), no netlink here: nothing of ours there
        log.debug("looking for a stale fast path on %s: %s", port.ifname, exc)


class KernelDatapath(Datapath):
    """A switch's datapath on the kernel fast path; the `Datapath` methods with the same meaning.

    `program` is the loaded `SwitchProgram` (owned from here on: `stop` closes it); `required` (mode
    kernel) refuses ports only Python serves instead of moving to Python."""

    def __init__(self, name: str, core: SwitchCore, program: Any, *, required: bool, chosen_by: str = "",
                 mode: str | None = None, clock: Callable[[], float] = time.monotonic, busy_poll_s: float = 0.0,
                 link_watch: LinkWatcher | None = None) -> None:
        super().__init__(name, core, clock=clock, busy_poll_s=busy_poll_s, link_watch=link_watch)
        self.program: Any = program
        self.required = required
        self.chosen_by = chosen_by
        #: "kernel", "auto" or "python" (on Python for good, until `set_mode` says otherwise)
        self.mode = mode or ("kernel" if required else "auto")
        self.label = KERNEL_LABEL
        self._next_expire = 0.0
        #: each port's link tx counters when the program went on it (stats count from there)
        self._tx_base: dict[Hashable, tuple[int, int]] = {}
        #: the program's decision events while someone observes (a watch, lab trace)
        self._feed: Any = None
        #: decision events lost (a full ring) by the feeds closed so far
        self._lost_before = 0
        #: on Python until the last observer goes: the program's events could not be read
        self._moved_for_watch = False

    # A watch (or lab trace) needs every frame's decision: the first observer turns on the program's
    # decision events (events.DecisionFeed), the last one off.
    @property  # type: ignore[override]
    def frame_observers(self) -> list[Callable[[Hashable, bytes, int, Decision], None]]:
        return self._observers

    @frame_observers.setter
    def frame_observers(self, value: list[Callable[[Hashable, bytes, int, Decision], None]]) -> None:
        self._observers = _Observers(self, value)

    # -- lifecycle ------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the loop, then detach and unload the program. Idempotent."""
        try:
            super().stop()
        finally:
            self._stop_events()
            program, self.program = self.program, None
            if program is not None:
                program.close()

    # -- ports ----------------------------------------------------------------------------------
    def open_port(self, port: Port, role: str = "vm") -> None:
        """A link the fast path serves stays closed; one it cannot is opened (and, on a `kernel`
        switch, refused — even while a watch has it on Python: FastPathRefused). The host vNIC's TAP
        is opened on both paths (it exists while its descriptor or persistence holds it, and has
        carrier while a descriptor is open) but read only on Python. Raises OSError."""
        why = refusal(port.name, port, role)
        if why is not None and self.required:
            raise FastPathRefused(self._refused(why))
        if why is None and self.program is not None and not _is_host_tap(port, role):
            return
        remove_stale_fast_path(port)  # on Python: as PythonDatapath.open_port
        port.open()

    def set_mode(self, mode: str, chosen_by: str, *, dry_run: bool = False) -> None:
        """`switch set --datapath`, live: "python" moves the switch to the Python datapath (MAC table and
        counters carried) and keeps it there; "kernel" and "auto" bring it onto the fast path when every
        port qualifies (statics, learned entries and counters carried; a watch goes on through the
        program's events). With `dry_run` only the checks that need no load. Raises FastPathRefused
        (mode "kernel" when the fast path cannot serve the switch now: a port only Python serves, the
        program is not built or does not load — the switch unchanged)."""
        def check() -> None:
            if mode != "kernel" or self.program is not None:
                return
            from vswitch.datapath.kernel import unavailable_reason
            why = next(filter(None, (refusal(ps.pid, ps.port, ps.role) for ps in self._ports.values())),
                       None) or unavailable_reason()
            if why is not None:
                raise FastPathRefused(f"switch {self.name!r} cannot use the kernel datapath ({chosen_by}): {why}")

        def do() -> None:
            check()
            if mode == "python":
                self.mode, self.required, self.chosen_by = mode, False, chosen_by
                if self.program is not None:
                    self._to_python(chosen_by)
                self.label = f"python ({chosen_by})"
                return
            old = self.mode, self.required, self.chosen_by
            self.mode, self.required, self.chosen_by = mode, mode == "kernel", chosen_by
            why = None if self.program is not None else self._try_back_to_kernel()
            if why is None:
                return
            if mode == "kernel":
                self.mode, self.required, self.chosen_by = old
                raise FastPathRefused(f"switch {self.name!r} cannot use the kernel datapath ({chosen_by}): {why}")
            self.label = f"python: {why}"
        self.call(check if dry_run else do)

    def _refused(self, why: str) -> str:
        return (f"switch {self.name!r} runs on the kernel datapath ({self.chosen_by}): {why}, which only the "
                "Python datapath serves")

    def attach(self, pid: Hashable, port: Port, policy: PortPolicy | None = None, role: str = "vm") -> None:
        """Add a port: a slot of the program with the program on its link, or (a port only Python
        serves) the move to Python first. Raises ValueError (attached already), FastPathRefused,
        OSError (the link is gone), NetlinkError."""
        def do() -> bool:
            why = refusal(pid, port, role)
            if why is not None and self.required:
                raise FastPathRefused(self._refused(why))
            if self.program is None:
                return False
            if why is not None:
                self._to_python(why)
                return False
            if pid in self._ports:
                raise ValueError(f"port {pid!r} already attached")
            host = _is_host_tap(port, role)
            assert isinstance(port, LinkPort) or host
            if not host:  # the TAP stays open, unread: its carrier is its descriptor's
                port.close()  # opened while a watch had the switch on Python: the program serves it now
            ifindex = socket.if_nametoindex(port.ifname)  # type: ignore[attr-defined]
            self.program.add_port(pid, policy, ifindex=ifindex, host=host)
            try:
                self.program.attach(pid)
            except BaseException:
                self.program.remove_port(pid)
                raise
            port.mtu = link_mtu(None, port.ifname, port.mtu)  # type: ignore[attr-defined]  # what an open would have read
            self._ports[pid] = PortState(pid, port, role)
            self.core.add_port(pid, policy)
            self._tx_base[pid] = _link_tx(port.ifname)  # type: ignore[attr-defined]
            return True
        if not self.call(do):
            super().attach(pid, port, policy, role)
        elif self.link_watch is not None:
            self.link_watch.watch(self, pid, port)

    def detach(self, pid: Hashable) -> Port:
        def do() -> Port:
            if self.program is None:  # moved to Python meanwhile (a watch)
                return Datapath.detach(self, pid)
            ps = self._ports.pop(pid)
            self.program.remove_port(pid)  # takes the program off the link, drops the port's entries
            self.core.remove_port(pid)
            return ps.port
        port = self.call(do)
        self._unwatch(pid)
        self.call(self._back_to_kernel)  # the port only Python served may have been this one
        return port

    def set_link_state(self, pid: Hashable, up: bool, mtu: int | None = None) -> None:
        super().set_link_state(pid, up, mtu)
        if self.program is None:
            return

        def do() -> None:
            if self.program is None or pid not in self._ports:
                return
            if up:  # the link may be a new one under the old name (a VM's veth rebuilt)
                try:
                    self.program.relink(pid, socket.if_nametoindex(self._ports[pid].port.ifname))  # type: ignore[attr-defined]
                except OSError:
                    pass  # gone again: the next event says so
            self.program.set_oper_up(pid, up)
            if not up:  # as SwitchCore.set_oper_up: a port going down forgets what it learned
                self.program.tables.flush(slot=self.program.slot(pid))
        self.call(do)

    # -- rules ----------------------------------------------------------------------------------
    def set_policy(self, pid: Hashable, policy: PortPolicy) -> None:
        def do() -> None:
            if self.program is None:  # moved to Python meanwhile (a watch)
                return Datapath.set_policy(self, pid, policy)
            old = self.core.policies[pid]
            self.core.set_policy(pid, policy)
            self.program.set_policy(pid, policy)
            if policy_change_flushes(old, policy):
                self.program.tables.flush(slot=self.program.slot(pid))
        self.call(do)

    def add_static(self, mac: bytes, vlan: int, pid: Hashable) -> None:
        def do() -> None:
            if self.program is None:  # moved to Python meanwhile (a watch)
                return Datapath.add_static(self, mac, vlan, pid)
            self.program.add_static(mac, vlan, pid)
            self.core.fdb.add_static(mac, vlan, pid)
        self.call(do)

    def remove_static(self, mac: bytes, vlan: int) -> bool:
        def do() -> bool:
            if self.program is None:  # moved to Python meanwhile (a watch)
                return Datapath.remove_static(self, mac, vlan)
            if not self.core.fdb.remove_static(mac, vlan):
                return False
            self.program.tables.delete(mac, vlan)
            return True
        return self.call(do)

    def set_fdb_limits(self, ageing_s: float, max_entries: int) -> int:
        def do() -> int:
            if self.program is None:  # moved to Python meanwhile (a watch)
                return Datapath.set_fdb_limits(self, ageing_s, max_entries)
            if max_entries > self.program.fdb_room:
                self._reload(ageing_s, max_entries)
            self.program.set_limits(ageing_s, max_entries)
            gone = self._evict_down_to(max_entries)
            self.core.fdb.set_limits(ageing_s, max_entries)
            return gone
        return self.call(do)

    # -- tables ---------------------------------------------------------------------------------
    def fdb_entries(self) -> list[FdbRow]:
        def read() -> list[FdbRow]:
            if self.program is None:  # moved to Python meanwhile (a watch)
                return Datapath.fdb_entries(self)
            now_ns, ageing = time.monotonic_ns(), self.core.fdb.ageing_s
            rows = []
            for pid, r in self._program_entries():
                age = max(0.0, (now_ns - r.seen_ns) / 1e9)
                if r.static or age <= ageing:
                    rows.append(FdbRow(r.mac, r.vlan, pid, 0.0 if r.static else age, r.static))
            return rows
        return self.call(read)

    def fdb_flush(self) -> int:
        def do() -> int:
            if self.program is None:  # moved to Python meanwhile (a watch)
                return Datapath.fdb_flush(self)
            self.core.fdb.flush()  # only what a trace copied there
            return self.program.tables.flush()
        return self.call(do)

    def port_counters(self) -> dict[Hashable, dict[str, Any]]:
        def read() -> dict[Hashable, dict[str, Any]]:
            if self.program is None:
                return Datapath.port_counters(self)
            return {pid: self._snapshot(ps) for pid, ps in self._ports.items()}
        return self.call(read)

    def trace(self, pid: Hashable, frame: bytes) -> tuple[Decision, list[TraceStep]]:
        """`Datapath.trace` (SwitchCore.trace) on the program's MAC table, copied into the core first."""
        def run() -> tuple[Decision, list[TraceStep]]:
            if self.program is not None:
                self._load_fdb()
            return Datapath.trace(self, pid, frame)
        return self.call(run)

    def _program_entries(self) -> list[tuple[Hashable, Any]]:
        out = []
        for r in self.program.tables.fdb_entries():
            try:
                out.append((self.program.port_at(r.slot), r))
            except KeyError:  # a slot emptied while the map was read
                continue
        return out

    def _load_fdb(self) -> None:
        """The core's MAC table := the program's, through the core's own `learn` in last-seen order and
        its `expire`: the core's LRU and fair eviction see what the program saw, and its events tell
        what the program did since the last copy (learned, moved, aged — one decision about what is an
        event, the core's); `MacTable.retain` drops what the program no longer has. Statics are in both."""
        fdb = self.core.fdb
        kept: set[tuple[bytes, int]] = set()
        for pid, r in sorted(self._program_entries(), key=lambda e: e[1].seen_ns):
            if not r.static:
                fdb.learn(r.mac, r.vlan, pid, r.seen_ns / 1e9)
                kept.add((r.mac, r.vlan))
        fdb.retain(kept, self._clock())

    def _evict_down_to(self, limit: int) -> int:
        """Evict from the program by the core's fair rule until at most `limit` dynamic entries are left."""
        if self.program.tables.dynamic_count() <= limit:
            return 0
        self._load_fdb()
        gone = self.core.fdb.evict_down_to(limit)
        for e in gone:
            self.program.tables.delete(e.mac, e.vlan)
        return len(gone)

    def _snapshot(self, ps: PortState) -> dict[str, Any]:
        """A port's counters as `PortCounters.snapshot` shapes them: what the core counted (while on
        Python, if it was) plus what the program counted since it was loaded."""
        snap = self.core.counters[ps.pid].snapshot()
        mine = self._program_snapshot(ps)
        for f in _SUMMED:
            snap[f] += mine[f]
        for label, n in mine["drops"].items():
            snap["drops"][label] = snap["drops"].get(label, 0) + n
        return snap

    def _program_snapshot(self, ps: PortState) -> dict[str, Any]:
        """The program's counters of one port. A frame that went up (nobody serves upcalls yet) is a
        drop under its cause; tx is what the link sent since the program went on it."""
        from vswitch.datapath.kernel import layout as L
        c = self.program.counters(ps.pid)
        drops = {L.COUNTERS[i]: c[L.COUNTERS[i]] for i, r in L.COUNTER_REASON.items()
                 if r.is_drop and c[L.COUNTERS[i]]}
        drops.update({L.COUNTERS[i]: c[L.COUNTERS[i]] for i in L.UPCALL_CAUSES if c[L.COUNTERS[i]]})
        tx_frames, tx_bytes = _link_tx(getattr(ps.port, "ifname", ""))
        base = self._tx_base.get(ps.pid, (0, 0))
        return {**{f: c[f] for f in L.PORT_COUNTER_FIELDS}, "tx_frames": max(0, tx_frames - base[0]),
                "tx_bytes": max(0, tx_bytes - base[1]), "drops": drops}

    # -- the tick ---------------------------------------------------------------------------------
    def _tick(self) -> None:
        super()._tick()
        if self.program is None or self._clock() < self._next_expire:
            return
        self._next_expire = self._clock() + EXPIRE_EVERY_S
        self.program.expire()
        self._load_fdb()  # the core's copy, and with it the MAC events, at most one tick behind
        cap = self.core.fdb.max_entries
        self._evict_down_to(cap - headroom(cap))

    # -- decision events ------------------------------------------------------------------------
    def events_lost(self) -> int:
        """Decision events the program could not report to a watch (its ring was full), since the
        switch started."""
        def read() -> int:
            return self._lost_before + (self._feed.lost if self._feed is not None else 0)
        return self.call(read)

    def _start_events(self) -> bool:
        """On the datapath thread: the program's decision events to the observers, read from the
        loop's epoll set. False (logged) when the ring cannot be read: the caller moves to Python."""
        if self._feed is not None:
            return True
        from vswitch.datapath.kernel.events import DecisionFeed
        try:
            feed = DecisionFeed(self.program, self._observers)
        except OSError as exc:
            log.warning("switch %s: the fast path's decision events cannot be read: %s", self.name, exc)
            return False
        self._feed = feed
        self._ep.register(feed.fileno(), select.EPOLLIN)
        self._fd_handlers[feed.fileno()] = feed.drain
        return True

    def _watch_on_python(self) -> None:
        """The fallback when the program's events cannot be read: Python decides while watched."""
        self._to_python("a watch asked for every frame's decision and the fast path's events cannot be read")
        self._moved_for_watch = True

    def _stop_events(self) -> None:
        """On the datapath thread: events off; what is left in the ring goes to the observers first."""
        feed, self._feed = self._feed, None
        if feed is None:
            return
        fd = feed.fileno()
        self._fd_handlers.pop(fd, None)
        try:
            self._ep.unregister(fd)
        except (OSError, ValueError):
            pass  # the loop's epoll is closed already (stop)
        try:
            feed.close()
            self._lost_before += feed.lost
        except OSError as exc:  # the program is going anyway
            log.debug("switch %s: closing the decision events: %s", self.name, exc)

    def _fill(self, program: Any, learned: Iterable[Any] = ()) -> None:
        """Give a freshly loaded program the switch's ports (policies, oper state), its static entries
        — the core holds them —, the `learned` entries (core FdbEntry records, last seen on the
        datapath's monotonic clock), and put it on every link. Raises what the program's calls raise."""
        for pid, ps in self._ports.items():
            program.add_port(pid, self.core.policies[pid], ifindex=socket.if_nametoindex(ps.port.ifname),  # type: ignore[attr-defined]
                             host=_is_host_tap(ps.port, ps.role))
            program.set_oper_up(pid, not (ps.carrier_down or ps.failed))
        for table in self.core.fdb.by_vlan.values():
            for e in table.values():
                if e.static:
                    program.add_static(e.mac, e.vlan, e.port)
        # before the program is on any link: the map has no other writer yet
        program.tables.preload([(e.mac, e.vlan, program.slot(e.port), int(e.seen * 1e9)) for e in learned])
        for pid in self._ports:
            program.attach(pid)

    def _reload(self, ageing_s: float, max_entries: int) -> None:
        """A program with a larger MAC map in place of this one, on the same links (each filter replaced
        by tc.attach_ingress: a frame or two may pass unforwarded meanwhile): ports, policies, oper state
        and statics carried over; learned entries are learned again (the program alone counts what it
        adds)."""
        old = self.program
        new = _load(ageing_s, max_entries)
        try:
            self._fill(new)
        except BaseException:
            new.close()
            raise
        old.hand_over_links()
        watched = self._feed is not None
        self._stop_events()
        self.program = new
        old.close()
        if watched and not self._start_events():
            self._watch_on_python()

    # -- moving to Python and back ----------------------------------------------------------------
    def _back_to_kernel(self) -> None:
        """On the datapath thread: back on the fast path once nothing needs Python any more (every port
        a link port; a watch goes on through the program's events; not mode "python"). Nothing changes
        when the program cannot be loaded or attached (logged)."""
        if self.program is not None or self._stopped or self.mode == "python" or (
                self._moved_for_watch and self._observers):
            return
        if any(refusal(ps.pid, ps.port, ps.role) for ps in self._ports.values()):
            return
        why = self._try_back_to_kernel()
        if why is not None:
            log.warning("switch %s stays on the Python datapath: %s", self.name, why)

    def _try_back_to_kernel(self) -> str | None:
        """On the datapath thread: move from Python onto a new program; why not (the switch unchanged),
        or None when it did. The learned entries go into the program's map before it is on any link
        (`SwitchTables.preload`), counters go on from the core's."""
        why = next(filter(None, (refusal(ps.pid, ps.port, ps.role) for ps in self._ports.values())), None)
        if why is not None:
            return why
        try:
            program = _load(self.core.fdb.ageing_s, self.core.fdb.max_entries)
        except (OSError, ValueError) as exc:
            return f"the fast path did not load: {str(exc)[:500]}"
        try:
            self._fill(program, learned=[e for e in self.core.fdb.entries(self.now) if not e.static])
        except Exception as exc:  # the switch keeps forwarding on Python
            program.close()
            return f"the fast path could not take the switch's links: {exc}"
        # the program is on every link before the sockets close: frames queued in them are dropped
        # with them, none is forwarded twice
        self.program = program
        self.label = KERNEL_LABEL
        for ps in self._ports.values():
            self._unregister(ps)
            ps.queue.clear()
            ps.failed, ps.error, ps.link_down = False, "", False
            if not _is_host_tap(ps.port, ps.role):  # the TAP stays open (carrier), unread
                ps.port.close()
            self._tx_base[ps.pid] = _link_tx(ps.port.ifname)  # type: ignore[attr-defined]
        self.core.fdb.flush()
        log.info("switch %s is back on the kernel datapath", self.name)
        if self._observers and not self._start_events():
            self._watch_on_python()
        return None

    # -- moving to Python -------------------------------------------------------------------------
    def _to_python(self, why: str) -> None:
        """Move the switch to the Python datapath now (on the datapath thread): MAC table and counters
        into the core, the program off every link and unloaded, then the links' sockets opened."""
        program = self.program
        self._stop_events()  # the decisions still in the ring reach a watch before Python's own
        self._load_fdb()
        for ps in self._ports.values():
            _fold(self.core.counters[ps.pid], self._program_snapshot(ps))
        self.program = None
        self.label = f"python: {why}"
        # a switch given such a port first never forwarded on the fast path: not worth a line
        log.log(logging.INFO if self._ports else logging.DEBUG, "switch %s moves to the Python datapath: %s",
                self.name, why)
        try:
            program.close()
        finally:
            for ps in self._ports.values():
                ps.port.count_rx_drop = self.core.counters[ps.pid].drop
                try:
                    ps.port.open()
                except OSError as exc:
                    self._fail(ps, exc)  # the tick reopens it
                    continue
                ps.hdr_len = ps.port.vnet_hdr_len  # known once open (PACKET_VNET_HDR accepted or not)
                ps.generation = -1
                self._sync_fds(ps)


class _Observers(list):  # type: ignore[type-arg]
    """The frame observers of a KernelDatapath: adding the first one (on the datapath thread, as the
    manager's `watch` does) turns on the program's decision events, removing the last turns them off.
    When the events cannot be read, the switch moves to the Python datapath instead (as before the
    events existed) and comes back with the last observer."""

    def __init__(self, dp: KernelDatapath, items: Iterable[Any]) -> None:
        super().__init__(items)
        self._dp = dp

    def append(self, obs: Any) -> None:
        super().append(obs)
        dp = self._dp
        if dp.program is not None and not dp._start_events():
            dp._watch_on_python()

    def remove(self, obs: Any) -> None:
        super().remove(obs)
        if not self:
            self._dp._stop_events()
            if self._dp._moved_for_watch:
                self._dp._moved_for_watch = False
                self._dp._back_to_kernel()


def _load(ageing_s: float, max_entries: int) -> Any:
    """A SwitchProgram for this cap (raises OSError/BpfError, ValueError)."""
    from vswitch.datapath.kernel.program import SwitchProgram
    return SwitchProgram(ageing_s=ageing_s, max_entries=max_entries, fdb_room=max(max_entries, FDB_ROOM_MIN))


def headroom(cap: int) -> int:
    """How far below the cap the tick keeps the fast path's dynamic entries (room for a tick's new MACs)."""
    return max(1, min(1024, cap // 16))


_SUMMED = ("rx_frames", "rx_bytes", "tx_frames", "tx_bytes", "floods", "learned", "moved", "static_refused")


def _fold(c: Any, snap: dict[str, Any]) -> None:
    """Add a fast-path snapshot into a core `PortCounters` (the switch moving to Python keeps its counts)."""
    for f in _SUMMED:
        setattr(c, f, getattr(c, f) + snap[f])
    for label, n in snap["drops"].items():
        r = _LABEL_REASON.get(label)
        if r is not None:
            c.drops[r] = c.drops.get(r, 0) + n


def _link_tx(ifname: str) -> tuple[int, int]:
    """(tx_packets, tx_bytes) of a link in our namespace: what the fast path sent out of it (plus what
    the link's own stack sent, e.g. IPv6 neighbour discovery); (0, 0) when it cannot be read."""
    out = []
    for what in ("tx_packets", "tx_bytes"):
        try:
            with open(f"/sys/class/net/{ifname}/statistics/{what}") as f:
                out.append(int(f.read()))
        except (OSError, ValueError):
            return 0, 0
    return out[0], out[1]
