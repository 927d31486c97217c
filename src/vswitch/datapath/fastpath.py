"""The kernel datapath: a switch whose link ports in vswitchd's namespace are forwarded by the tc-bpf
fast path (datapath/kernel/), its other ports (a TAP vswitch reads, a QEMU socket) by Python through the
upcall path, with the control plane's view unchanged.

What qualifies (`refusal`): `link` ports (a VM's veth or TAP, an External switch's uplink NIC) and
the host vNIC — a persistent TAP in vswitchd's namespace whose program sits on its clsact egress
(what the host sends) and which the program delivers to with BPF_F_INGRESS (into the host stack).
The TAP's descriptor stays open on the fast path (the TAP has carrier while one is), unread; on the
uplink the program shares the NIC's clsact with the takeover's drop, which runs after it and catches
what the program leaves undecided.

`KernelDatapath` is a `Datapath` (a subclass, not a second class behind a Protocol: the thread, the
command queue, the port records, the link watch, the Python-served ports' loop and — when the
program's decision events cannot be read — the whole Python datapath are the base class's, so the
live move to Python is "stop being special"). While `program` is set, every port is a `SwitchProgram`
slot. A kernel port's link carries the program and its back-end is never opened (the host vNIC's TAP
is opened but not read: the program is on its egress): an AF_PACKET socket sees a frame before tc
ingress and would forward it a second time. A port only Python serves (`python_served`) has a slot
without a link (the program sends its known unicast and its VLAN's floods up) and is read by the
loop as on the Python datapath. For kernel ports Python does no per-frame work: the loop wakes for
commands, the tick, the upcall TAP and — only while someone watches — the program's decision events.

The upcall path (datapath/upcall.py): one upcall TAP per switch, made and closed with the program
(`_open_upcall`, `stop`, `_to_python`). The program redirects a frame it cannot decide to it with an
S-tag naming the in-slot and the cause; `_read_upcalls` runs it through the one decision function
(`SwitchCore.process`) as if it had arrived on that port and sends each output: a Python-served port
directly, a kernel port back down the same TAP naming its slot (`_send`; `vs_downcall` redirects it
out, into the host stack for the host vNIC). Frames from Python-served ports go through the same core
and down the same way. Frames cross with a virtio-net header both ways, so TSO super-frames stay whole.

Invariants:
- `core` holds the ports, policies, oper state and static entries as the program does (every change
  goes to both), so `policy`, `port_state` and `trace` answer from it.
- One MAC table, two holders, one master per entry: behind a kernel port the map is the master (the
  program learns, and tells each learn and move in its `vs_fdb_events` ring, which the core's copy
  learns as the loop drains it — `_program_learned`, so `events` tells each as the Python datapath
  does; the whole map is copied in every tick, catching up what a full ring lost, and when `trace`,
  the eviction or a frame sent up at the cap needs it: `_load_fdb`); behind a Python-served port the core is (it learns;
  `_MapMirror` writes each new or moved entry into the map at once, so the program's known unicast
  to it goes up as `upcall_dest`; the tick writes the core's last-seen times into the map and removes
  what the core forgot). `fdb show` reads the map. The one decision function and the one eviction
  rule (core/fdb.py) are used, never re-implemented.
- Counting: a frame sent up is counted by the program only as `upcall` and its cause (and, having
  learned its source, learned/moved/static_refused); the core counts its rx and decision, and its
  learning counts are put back (the program's were the first) — except at the cap, where the program
  learned nothing. tx of a kernel port is its link's own counter (what the program and the downcalls
  sent); a Python-served port counts its own.
- Table full: the program cannot evict; a new MAC at the cap goes up (`upcall_table_full`), where
  the core learns it by its fair eviction and the map gets the result (`_mirror_all`). The tick also
  keeps room: when the dynamic count is within `headroom` of the cap it evicts by the core's fair
  rule down to cap - headroom, so few frames need that.
- Ageing on the tick (`SwitchProgram.expire`, the core's rule on the program's clock), once a second.
- An `auto` switch whose every port only Python serves runs on the Python datapath (nothing for the
  program to forward): the first such port moves it there (MAC table and counters carried into the
  core, the program detached and unloaded, then the links' sockets opened — in that order: a few
  frames lost, none forwarded twice), the first kernel port brings it back. A `kernel` switch keeps
  such ports on its upcall path.
- `watch` (and `lab trace`) need every frame's decision: the first frame observer turns on the
  program's decision events (a flag in its config: with it off a frame pays one test of it), read
  from its `vs_events` ring buffer by `kernel/events.DecisionFeed` in the loop's own epoll set (no
  busy polling, at most DRAIN_LIMIT records per wake-up) and handed to the observers as
  ``obs(pid, head, 0, decision, length=, t=, path=events.KERNEL_PATH)`` — the Python datapath (and
  the upcall path, for what it decides) calls ``obs(pid, buf, hdr, decision)``; the last observer
  turns them off. A full ring never blocks the program: the event is counted (`events_lost`, `switch
  show`). Only when the ring cannot be read does the first observer move the switch to Python, as
  before the events existed.
- Back to the fast path (`_back_to_kernel`: a new program and upcall TAP, learned entries preloaded
  into its map before it is on any link, counters carried) when a port the program serves arrives.
- `set_mode` (`switch set --datapath`): "python" moves the switch to Python and keeps it there (a
  "python" switch on a real kernel is a KernelDatapath without a program from the start, so it can
  move later); "kernel"/"auto" bring it back ("kernel" refuses, saying why, the switch unchanged).
  `PythonDatapath` is left for switches that cannot move (the fast path could not be had when they
  were built, a simulated kernel).
- `stop` (switch delete, daemon shutdown) detaches and unloads and closes the upcall TAP: no qdisc,
  filter, program, map or TAP of ours is left (a clsact the takeover's drop still sits on stays: the
  give-back removes it). A SIGKILLed vswitchd leaves the programs attached and forwarding between
  kernel ports (the host vNIC's TAP loses its carrier with its last descriptor, and the host still
  sends and receives through it; the upcall TAP dies with vswitchd: what goes up is lost); the next
  start replaces them (tc.attach_ingress removes a filter of ours it finds first; a TAP of the upcall
  TAP's name is deleted and made again); if it comes back on the Python datapath instead,
  `PythonDatapath` removes that filter (a TAP's: on its egress) before opening the port (else the old
  program and Python would both forward each frame).
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

from vswitch.core.policy import PortMirroring, PortPolicy
from vswitch.core.reasons import PORT_FEATURE_DROPS, Reason
from vswitch.core.switch import Decision, SwitchCore, TraceStep, policy_change_flushes
from vswitch.datapath.loop import BATCH, Datapath, FdbRow, LinkWatcher, PortState
from vswitch.datapath.upcall import CAUSE_PORT, CAUSE_TABLE_FULL, UPCALL_HDR, UpcallChannel
from vswitch.ports.base import ETH_HLEN, LinkDown, Port, ignore_rx_drop, link_mtu, over_mtu
from vswitch.ports.link import LinkPort
from vswitch.ports.tap import TapPort

log = logging.getLogger(__name__)

KERNEL_LABEL = "kernel (tc-bpf)"
#: the MAC map is loaded with room for at least this many dynamic entries (not preallocated, but its
#: hash buckets are: ~16 bytes each), so most cap increases need no reload
FDB_ROOM_MIN = 65536
EXPIRE_EVERY_S = 1.0
#: the program's counters of the port features' drops (each also an event, core.reasons)
_FEATURE_DROP_LABELS = tuple(sorted(r.label for r in PORT_FEATURE_DROPS))
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


def python_served(port: Port, role: str) -> bool:
    """Whether a port the fast path cannot serve still fits a switch on the kernel datapath, served by
    Python through the upcall path (a TAP vswitch reads, a QEMU socket): any port but a link and the
    host vNIC, and none a `role_refusal` keeps off the fast path."""
    return role_refusal(role) is None and not (isinstance(port, LinkPort) or _is_host_tap(port, role))


def mixed_label(kernel_ports: int, python_kinds: list[str], sent_up: int = 0) -> str:
    """`switch show`'s datapath of a switch on the kernel datapath: `KERNEL_LABEL` alone, or with
    the ports Python serves through the upcall path ("kernel (tc-bpf), 3 ports; python: 1 port
    (qemu-stream)") and the kernel ports a port setting sends up (`sent_up`: "…; 1 sent up by its
    settings", which `port show` names)."""
    if not python_kinds and not sent_up:
        return KERNEL_LABEL
    text = f"{KERNEL_LABEL}, {kernel_ports} port{'' if kernel_ports == 1 else 's'}"
    if python_kinds:
        n = len(python_kinds)
        text += f"; python: {n} port{'' if n == 1 else 's'} ({', '.join(sorted(set(python_kinds)))})"
    if sent_up:
        text += f"; {sent_up} sent up by {'its' if sent_up == 1 else 'their'} settings (see port show)"
    return text


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
    try:
        return KernelDatapath(name, core, program, required=mode == "kernel", chosen_by=chosen_by, **kw)
    except Exception as exc:  # no upcall TAP (no /dev/net/tun, no netlink): no fast path either
        program.close()
        why = f"the fast path's upcall TAP could not be made: {str(exc)[:500]}"
        if mode == "kernel":
            raise FastPathRefused(f"switch {name!r} cannot use the kernel datapath ({chosen_by}): {why}") from exc
        dp = PythonDatapath(name, core, **kw)
        dp.label = f"python: {why}"
        return dp


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
        #: (port, counter) → the program's count when last reported as events (_report_feature_drops)
        self._feature_drops_seen: dict[tuple[Hashable, str], int] = {}
        #: the program's decision events while someone observes (a watch, lab trace)
        self._feed: Any = None
        #: decision events lost (a full ring) by the feeds closed so far
        self._lost_before = 0
        #: the program's learns and moves (events.FdbFeed), while it is loaded
        self._fdb_feed: Any = None
        self._fdb_lost_seen = 0
        #: on Python until the last observer goes: the program's events could not be read
        self._moved_for_watch = False
        #: while on the fast path: each kernel port's slot (its frames go down the upcall TAP)
        self._down: dict[Hashable, int] = {}
        #: slot → port, for the upcall reader (every port with a slot)
        self._slot_pid: dict[int, Hashable] = {}
        self._upcall: UpcallChannel | None = None
        self._up_ps: PortState | None = None
        #: the core's MAC table is a full copy of the map since the last tick (the fair eviction of a
        #: frame sent up at the cap needs it)
        self._fdb_loaded = False
        #: mirror into the map what the core learns behind kernel ports too (a frame sent up at the cap)
        self._mirror_all = False
        self._mirror = _MapMirror(self, core.fdb.events)
        core.fdb.events = self._mirror  # type: ignore[assignment]
        try:
            if program is not None:
                self._open_upcall(program)
                self._open_fdb_feed(program)
        except BaseException:
            core.fdb.events = self._mirror.recorder
            Datapath.stop(self)  # its epoll and wake-up pipe; the caller still owns the program
            raise

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
        """Stop the loop, then detach and unload the program and close the upcall TAP. Idempotent."""
        try:
            super().stop()
        finally:
            self._stop_events()
            self._close_fdb_feed()
            program, self.program = self.program, None
            try:
                if program is not None:
                    program.close()
            finally:
                self._close_upcall()
                if self.core.fdb.events is self._mirror:
                    self.core.fdb.events = self._mirror.recorder

    # -- ports ----------------------------------------------------------------------------------
    def open_port(self, port: Port, role: str = "vm") -> None:
        """A port the fast path serves stays closed; one only Python serves (through the upcall path)
        is opened; a switch's own port the fast path cannot have yet (`role_refusal`) is refused on a
        `kernel` switch (FastPathRefused). The host vNIC's TAP is opened on both paths (it exists while
        its descriptor or persistence holds it, and has carrier while a descriptor is open) but read
        only on Python. Raises OSError."""
        why = role_refusal(role)
        if why is not None and self.required:
            raise FastPathRefused(self._refused(why))
        if (why is None and refusal(port.name, port, role) is None and self.program is not None
                and not _is_host_tap(port, role)):
            return
        remove_stale_fast_path(port)  # on Python: as PythonDatapath.open_port
        port.open()

    def set_mode(self, mode: str, chosen_by: str, *, dry_run: bool = False) -> None:
        """`switch set --datapath`, live: "python" moves the switch to the Python datapath (MAC table and
        counters carried) and keeps it there; "kernel" and "auto" bring it onto the fast path when every
        port qualifies (statics, learned entries and counters carried; a watch goes on through the
        program's events). With `dry_run` only the checks that need no load. Raises FastPathRefused
        (mode "kernel" when the fast path cannot serve the switch now: the program is not built or does
        not load — the switch unchanged; ports only Python serves go through the upcall path)."""
        def check() -> None:
            if mode != "kernel" or self.program is not None:
                return
            from vswitch.datapath.kernel import unavailable_reason
            why = next(filter(None, (role_refusal(ps.role) for ps in self._ports.values())),
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
            why = role_refusal(role)
            if why is not None and self.required:
                raise FastPathRefused(self._refused(why))
            if self.program is None:
                return False
            if why is not None:
                self._to_python(why)
                return False
            if pid in self._ports:
                raise ValueError(f"port {pid!r} already attached")
            if python_served(port, role):  # a slot the program sends up for; the loop reads the port
                if not self._down and not self.required:  # nothing for the program to forward
                    self._to_python(_all_python(pid, port))
                    return False
                self._slot_pid[self.program.add_port(pid, policy, kernel=False)] = pid
                return False
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
            ps = self._ports[pid] = PortState(pid, port, role)
            self.core.add_port(pid, policy)
            self._flush_relearned()
            self._as_kernel_port(ps)
            self._relabel()
            return True
        if not self.call(do):
            super().attach(pid, port, policy, role)
            self.call(self._relabel)
            if not python_served(port, role):  # the first port the program can serve
                self.call(self._back_to_kernel)
        elif self.link_watch is not None:
            self.link_watch.watch(self, pid, port)

    def detach(self, pid: Hashable) -> Port:
        def do() -> Port:
            if self.program is None:  # moved to Python meanwhile (a watch)
                return Datapath.detach(self, pid)
            self._drain_fdb_feed()  # its slot's learns are told before the slot empties
            ps = self._ports.pop(pid)
            self._unregister(ps)  # a port Python served: its descriptors leave the loop
            ps.port.count_rx_drop = ignore_rx_drop
            self._slot_pid.pop(self.program.slot(pid), None)
            self._down.pop(pid, None)
            self.program.remove_port(pid)  # takes the program off the link, drops the port's entries
            self.core.remove_port(pid)
            self._flush_relearned()
            self._relabel()
            return ps.port
        port = self.call(do)
        self._unwatch(pid)
        self.call(self._back_to_kernel)  # the port that needed Python (a switch's own) may have been this one
        self.call(self._python_only)  # or the last one the program served
        return port

    def _python_only(self) -> None:
        """On the fast path with ports, none of them one the program serves: over to Python (not on a
        `kernel` switch)."""
        if self.program is not None and not self.required and self._ports and not self._down:
            pid, ps = next(iter(self._ports.items()))
            self._to_python(_all_python(pid, ps.port))

    def set_link_state(self, pid: Hashable, up: bool, mtu: int | None = None) -> None:
        super().set_link_state(pid, up, mtu)
        if self.program is None:
            return

        def do() -> None:
            if self.program is None or pid not in self._ports:
                return
            if pid in self._down:  # no socket of ours to find the link deleted (LinkPort._raise_if_deleted)
                self._ports[pid].error = "" if up else _deleted(self._ports[pid].port.ifname)
            if up and pid in self._down:  # the link may be a new one under the old name (a VM's veth rebuilt)
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
            self.program.set_policy(pid, self.core.policies[pid])  # with a MAC the port adopted
            if policy_change_flushes(old, policy):
                self.program.tables.flush(slot=self.program.slot(pid))
            self._flush_relearned()
            self._relabel()  # a setting may send the port up, or bring it back
        self.call(do)

    def _flush_relearned(self) -> None:
        """The learning domains changed (a private VLAN came, went or changed): the map forgets what
        the core forgot (SwitchCore.relearned), so neither holder keeps an entry under an old key."""
        for vlan in self.core.take_relearned():
            self.program.tables.flush(vlan=vlan)

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
        """The one MAC table, made whole in both holders. Behind a kernel port the map is the master:
        its entries go into the core through the core's own `learn` in last-seen order, so the core's
        LRU and fair eviction see what the program saw, and its events tell what the program did since
        the last copy (learned, moved, aged — one decision about what is an event, the core's). Behind
        a port Python serves the core is the master (it learned them; `_MapMirror` wrote each into
        the map): the map's entry gets the core's last-seen time, or goes when the core no longer has
        it (flushed, the port down), and one the map lacks is written. `MacTable.retain` then drops
        from the core what the map no longer has. Statics are in both."""
        self._drain_fdb_feed()  # the events first: the copy below then finds the core agreeing
        fdb, tables = self.core.fdb, self.program.tables
        kept: set[tuple[bytes, int]] = set()
        learned = []
        for pid, r in self._program_entries():
            if r.static:
                continue
            if pid in self._down:
                learned.append((pid, r))
                continue
            e = fdb.get(r.mac, r.vlan)
            if e is None or e.static or e.port != pid:
                tables.delete(r.mac, r.vlan)
                continue
            kept.add((r.mac, r.vlan))
            if e.seen * 1e9 > r.seen_ns + 1e9:  # the core refreshes once a second too
                tables.write_dynamic(r.mac, r.vlan, r.slot, int(e.seen * 1e9))
        for pid, r in sorted(learned, key=lambda e: e[1].seen_ns):
            fdb.learn(r.mac, r.vlan, pid, r.seen_ns / 1e9)
            kept.add((r.mac, r.vlan))
        for table in list(fdb.by_vlan.values()):
            for e in list(table.values()):
                if not e.static and e.port not in self._down and (e.mac, e.vlan) not in kept:
                    if self._write_entry(e.mac, e.vlan, e.port, e.seen):
                        kept.add((e.mac, e.vlan))
        fdb.retain(kept, self._clock())
        self._fdb_loaded = True

    def _write_entry(self, mac: bytes, vlan: int, pid: Hashable, seen: float) -> bool:
        """Write what the core learned into the map (False when it could not: the port has no slot yet,
        the map is full, or the key is static there)."""
        try:
            return bool(self.program.tables.write_dynamic(mac, vlan, self.program.slot(pid), int(seen * 1e9)))
        except (KeyError, OSError) as exc:
            log.debug("switch %s: %s not written to the fast path's MAC table: %s", self.name, mac.hex(":"), exc)
            return False

    # -- the program's learns and moves ------------------------------------------------------------
    def _open_fdb_feed(self, program: Any) -> None:
        """Put the program's MAC table events (events.FdbFeed) in the loop. Without them (logged) the
        core's copy, and the events, follow the map at each tick only."""
        from vswitch.datapath.kernel.events import FdbFeed
        try:
            feed = FdbFeed(program, self._program_learned)
        except OSError as exc:
            log.warning("switch %s: the fast path's MAC table events cannot be read (the table is copied "
                        "once a second instead): %s", self.name, exc)
            return
        self._fdb_feed = feed
        self._fdb_lost_seen = 0
        self._loop_feed(feed)

    def _drain_fdb_feed(self) -> None:
        feed = self._fdb_feed
        if feed is None:
            return
        feed.drain_waiting()
        lost = feed.lost
        if lost > self._fdb_lost_seen:
            log.warning("switch %s: %d MAC table events found the fast path's ring full; the table's copy "
                        "caught up from the map", self.name, lost - self._fdb_lost_seen)
            self._fdb_lost_seen = lost

    def _close_fdb_feed(self) -> None:
        """On the datapath thread (or after it stopped): what waits is learned, then the feed closed."""
        feed, self._fdb_feed = self._fdb_feed, None
        if feed is not None:
            self._unloop_feed(feed, "the MAC table events")

    def _loop_feed(self, feed: Any) -> None:
        """One of the program's rings (events.py) read in the loop: its descriptor in the epoll set."""
        self._ep.register(feed.fileno(), select.EPOLLIN)
        self._fd_handlers[feed.fileno()] = feed.drain

    def _unloop_feed(self, feed: Any, what: str) -> bool:
        """A ring's feed out of the loop, what waits in it handed over, closed; False (logged) when
        closing failed (the program is going anyway)."""
        fd = feed.fileno()
        self._fd_handlers.pop(fd, None)
        try:
            self._ep.unregister(fd)
        except (OSError, ValueError):
            pass  # the loop's epoll is closed already (stop)
        try:
            feed.close()
        except OSError as exc:
            log.debug("switch %s: closing %s: %s", self.name, what, exc)
            return False
        return True

    def _program_learned(self, ev: Any) -> None:
        """The program learned or moved a MAC behind a kernel port: the core's copy learns it now, by
        its own rule (which tells the event), so each learn and move is told as on the Python
        datapath, a flap between two ticks included. One the core has there already (a frame sent
        up, learned by both) is no event; behind a port Python serves the core is the master."""
        pid = self._slot_pid.get(ev.slot)
        if pid is None or pid not in self._down:
            return  # a slot emptied meanwhile (its entries went with it)
        fdb = self.core.fdb
        e = fdb.get(ev.mac, ev.vlan)
        if e is not None and (e.static or e.port == pid):
            return
        fdb.learn(ev.mac, ev.vlan, pid, ev.ktime_ns / 1e9)

    # -- the upcall path ----------------------------------------------------------------------------
    def _open_upcall(self, program: Any) -> None:
        """Create the upcall TAP, give it to `program` (its ifindex in the config, `vs_downcall` on its
        ingress) and put it in the loop. Raises OSError, NetlinkError (the TAP closed again)."""
        ch = UpcallChannel(self.name)
        ifindex = ch.open()
        try:
            program.set_upcall(ifindex)
        except BaseException:
            ch.close()
            raise
        self._upcall = ch
        # registered as a port's descriptor (never in `_ports`): the loop hands it to `_read_batch`
        ps = self._up_ps = PortState("(upcall)", ch.tap, "upcall")
        ps.fds = (ch.fileno(),)
        ps.generation = ch.tap.generation
        self._ep.register(ch.fileno(), select.EPOLLIN)
        self._fd_owner[ch.fileno()] = ps

    def _close_upcall(self) -> None:
        if self._up_ps is not None:
            self._unregister(self._up_ps)
            self._up_ps = None
        ch, self._upcall = self._upcall, None
        if ch is not None:
            ch.close()

    def _as_kernel_port(self, ps: PortState) -> None:
        """A port the program serves: the frames the core sends it go down the upcall TAP, in its format."""
        slot = self.program.slot(ps.pid)
        self._down[ps.pid] = slot
        self._slot_pid[slot] = ps.pid
        ps.hdr_len = UPCALL_HDR
        ps.max_len = UPCALL_HDR + ps.port.mtu + ETH_HLEN

    def _relabel(self) -> None:
        """`switch show`'s datapath: which ports the program serves and which Python does."""
        if self.program is not None:
            from vswitch.datapath.kernel.layout import upcall_reasons
            self.label = mixed_label(len(self._down), [ps.port.kind for ps in self._ports.values()
                                                       if ps.pid not in self._down],
                                     sum(1 for pid in self._down if upcall_reasons(self.core.policies[pid])))

    def _port_path(self, ps: PortState) -> str:
        if self.program is None:
            return "python"
        if ps.pid not in self._down:
            return f"python, through the upcall path: a {ps.port.kind} port (no link the program can send to)"
        from vswitch.datapath.kernel.layout import upcall_reasons
        why = upcall_reasons(self.core.policies[ps.pid])
        if why:
            return "python, through the upcall path: " + "; ".join(why)
        if self.core.policies[ps.pid].port_mirroring is PortMirroring.SOURCE:
            # the program cannot send a copy to these: while one is up, its mirrored frames go up
            py = [str(pid) for pid, pol in self.core.policies.items() if pid not in self._down
                  and pol.port_mirroring is PortMirroring.DESTINATION and self.core.is_up(pid)]
            if py:
                return (f"{KERNEL_LABEL}; its mirrored frames through the upcall path: port mirroring "
                        f"destination{'s' if len(py) > 1 else ''} {', '.join(py)} only Python serves")
        return KERNEL_LABEL

    def _read_batch(self, ps: PortState) -> None:
        if ps is self._up_ps:
            self._read_upcalls()
        else:
            super()._read_batch(ps)

    def _read_upcalls(self) -> None:
        """Serve what the program sent up: each frame through the one decision function
        (`SwitchCore.process`) as if it had arrived on its in-port, each output sent (a kernel
        port's back down). The program counted the frame as `upcall` and learned its source already
        (and counted that): the core counts the frame's rx and decision, not the learning again —
        except at the cap, where the program learned nothing and the core's fair eviction decides
        (what the core learns and evicts then is written into the map)."""
        ch = self._upcall
        if ch is None:
            return
        read, process, deliver = ch.read, self.core.process, self._deliver
        slot_pid, counters, observers, now = self._slot_pid, self.core.counters, self.frame_observers, self.now
        sample = self._sample_due(now)
        for _ in range(BATCH):
            try:
                got = read()
            except OSError as exc:  # its netdev deleted under us: stop reading rather than spin on it
                log.error("switch %s: the upcall TAP %s failed (%s): frames the fast path sends up are lost "
                          "from now on (a move to Python and back, as a watch does, makes a new one)",
                          self.name, ch.ifname, exc)
                if self._up_ps is not None:
                    self._unregister(self._up_ps)
                return
            if got is None:
                return
            slot, cause, buf = got
            pid = slot_pid.get(slot)
            if pid is None:  # not ours, or its port was removed meanwhile
                continue
            try:
                c = counters[pid]
                if cause == CAUSE_PORT:
                    # the program sent it up before learning (a port it does not decide for): the core
                    # learns and counts it, and the map gets what the core learned (its key: a private
                    # VLAN's secondary is learned under the primary, which the program cannot do)
                    self._mirror_all = True
                    try:
                        d = process(pid, buf, UPCALL_HDR, now)
                    finally:
                        self._mirror_all = False
                elif cause == CAUSE_TABLE_FULL:
                    if not self._fdb_loaded:  # once a tick: the fair eviction needs the whole table
                        self._load_fdb()
                    self._mirror_all = True
                    try:
                        d = process(pid, buf, UPCALL_HDR, now)
                    finally:
                        self._mirror_all = False
                else:
                    learned, moved, refused = c.learned, c.moved, c.static_refused
                    d = process(pid, buf, UPCALL_HDR, now)
                    c.learned, c.moved, c.static_refused = learned, moved, refused
                if observers:
                    for obs in observers:
                        obs(pid, buf, UPCALL_HDR, d)
                if sample:
                    sample = False
                    self._give_sample(pid, buf, UPCALL_HDR, d, now)
                if d.out_ports:
                    deliver(d, buf, UPCALL_HDR)
            except Exception as exc:  # one frame, not the switch
                self._internal_error(self._ports.get(pid), exc)

    def _send(self, ps: PortState, frame: bytes | bytearray | memoryview) -> None:
        slot = self._down.get(ps.pid)
        if slot is None:
            return super()._send(ps, frame)
        # a kernel port: down the upcall TAP; the program counts it as the port's tx (vs_downcall)
        ch = self._upcall
        c = self.core.counters.get(ps.pid)
        if ch is None or c is None:
            return None
        if len(frame) > ps.max_len and over_mtu(frame, UPCALL_HDR, ps.port.mtu):
            c.drop(Reason.DROP_OVERSIZE)
            return None
        try:
            ch.send(slot, frame)
        except LinkDown:
            c.drop(Reason.DROP_LINK_DOWN)
        except OSError:
            c.drop(Reason.DROP_TX_ERROR)
        return None

    def _mirror_learn(self, mac: bytes, vlan: int, pid: Hashable, now: float) -> None:
        """The core learned (or moved) `mac` behind `pid`: into the map when the core is its master
        (a port Python serves; any port while serving a frame sent up at the cap)."""
        if self.program is not None and (self._mirror_all or pid not in self._down):
            self._write_entry(mac, vlan, pid, now)

    def _mirror_delete(self, mac: bytes, vlan: int, pid: Hashable, evicted: bool) -> None:
        """The core evicted (its fair rule: gone from the map too) or aged out (`pid` one Python serves:
        the map's copy is the core's) an entry."""
        if self.program is not None and (evicted or pid not in self._down):
            try:
                self.program.tables.delete(mac, vlan)
            except OSError as exc:
                log.debug("switch %s: %s not removed from the fast path's MAC table: %s", self.name,
                          mac.hex(":"), exc)

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
        """The program's counters of one port. A frame that went up is counted by the core (its rx
        and decision), so only one that could not go up (`upcall_fail`) is a drop here; tx of a kernel
        port is what its link sent since the program went on it (a port Python serves counts its own)."""
        from vswitch.datapath.kernel import layout as L
        c = self.program.counters(ps.pid)
        drops = {L.COUNTERS[i]: c[L.COUNTERS[i]] for i, r in L.COUNTER_REASON.items()
                 if r.is_drop and c[L.COUNTERS[i]]}
        if c["upcall_fail"]:
            drops["upcall_fail"] = c["upcall_fail"]
        return {**{f: c[f] for f in L.PORT_COUNTER_FIELDS}, "tx_frames": c["tx_frames"], "tx_bytes": c["tx_bytes"],
                "mirrored": c["mirrored"], "mirror_tx": c["mirror_tx"], "drops": drops}

    # -- the tick ---------------------------------------------------------------------------------
    def _tick(self) -> None:
        claimed = self.core.claims[:] if self.program is not None else []
        super()._tick()
        for pid in dict.fromkeys(claimed):  # adopted MACs: their slots leave the upcall path, locked
            if self.program is not None and pid in self.core.policies:
                self.program.set_policy(pid, self.core.policies[pid])
                self._relabel()
        if self.program is None or self._clock() < self._next_expire:
            return
        self._next_expire = self._clock() + EXPIRE_EVERY_S
        self._fdb_loaded = False
        self.program.expire()
        self._load_fdb()  # the core's copy, and with it the MAC events, at most one tick behind
        self._report_feature_drops()
        cap = self.core.fdb.max_entries
        self._evict_down_to(cap - headroom(cap))

    def _report_feature_drops(self) -> None:
        """The port-feature drops the program counted since the last look, as the core's rate-limited
        `frame-dropped` events (the program reports no frame it drops; Python's drops are reported by
        the core itself, so only the program's counters are read, and only of ports a feature screens)."""
        seen = self._feature_drops_seen
        for pid in self._down:
            if not self.core.policies[pid].screened:
                continue
            try:
                c = self.program.counters(pid)
            except (KeyError, OSError):  # a port going, a map read failing: the next look catches up
                continue
            for label in _FEATURE_DROP_LABELS:
                n, before = c[label], seen.get((pid, label), 0)
                if n != before:
                    seen[(pid, label)] = n
                    if n > before:  # (fewer: a new program, counting from 0)
                        self.core.events.frame_dropped(pid, label, None, None, self.now, n - before)

    # -- decision events ------------------------------------------------------------------------
    def events_lost(self) -> int:
        """Decision events the program could not report to a watch (its ring was full), since the
        switch started."""
        def read() -> int:
            return self._lost_before + (self._feed.lost if self._feed is not None else 0)
        return self.call(read)

    def _start_events(self) -> bool:
        """On the datapath thread: the program's decision events to the observers and samplers, read
        from the loop's epoll set. False (logged) when the ring cannot be read: the caller moves to Python."""
        if self._feed is not None:
            return True
        from vswitch.datapath.kernel.events import DecisionFeed
        try:
            feed = DecisionFeed(self.program, self._observers, self.frame_samplers, every=bool(self._observers))
        except OSError as exc:
            log.warning("switch %s: the fast path's decision events cannot be read: %s", self.name, exc)
            return False
        self._feed = feed
        self._loop_feed(feed)
        return True

    def _sync_events(self) -> None:
        """On the datapath thread: the program's decision events as its readers need them — each
        decision while a frame observer watches, a sample (gated in the program, before the event
        exists) while only samplers read, none without either. An observer whose events cannot be
        read moves the switch to Python (`_watch_on_python`); a sampler alone then goes without."""
        if self.program is None:
            return
        if not (self._observers or self.frame_samplers):
            self._stop_events()
        elif self._start_events():
            self._feed.set_every(bool(self._observers))
        elif self._observers:
            self._watch_on_python()

    def add_sampler(self, obs: Callable[..., None]) -> None:
        super().add_sampler(obs)
        self._sync_events()

    def remove_sampler(self, obs: Callable[..., None]) -> None:
        super().remove_sampler(obs)
        self._sync_events()

    def _watch_on_python(self) -> None:
        """The fallback when the program's events cannot be read: Python decides while watched."""
        self._to_python("a watch asked for every frame's decision and the fast path's events cannot be read")
        self._moved_for_watch = True

    def _stop_events(self) -> None:
        """On the datapath thread: events off; what is left in the ring goes to the observers first."""
        feed, self._feed = self._feed, None
        if feed is not None and self._unloop_feed(feed, "the decision events"):
            self._lost_before += feed.lost

    def _fill(self, program: Any, learned: Iterable[Any] = ()) -> None:
        """Give a freshly loaded program the switch's ports (policies, oper state), its static entries
        — the core holds them —, the `learned` entries (core FdbEntry records, last seen on the
        datapath's monotonic clock), and put it on every link. Raises what the program's calls raise."""
        for pid, ps in self._ports.items():
            if python_served(ps.port, ps.role):
                program.add_port(pid, self.core.policies[pid], kernel=False)
            else:
                program.add_port(pid, self.core.policies[pid], ifindex=socket.if_nametoindex(ps.port.ifname),  # type: ignore[attr-defined]
                                 host=_is_host_tap(ps.port, ps.role))
            program.set_oper_up(pid, not (ps.carrier_down or ps.failed))
        for table in self.core.fdb.by_vlan.values():
            for e in table.values():
                if e.static:
                    program.add_static(e.mac, e.vlan, e.port)
        # before the program is on any link: the map has no other writer yet
        program.tables.preload([(e.mac, e.vlan, program.slot(e.port), int(e.seen * 1e9)) for e in learned])
        for pid, ps in self._ports.items():
            if not python_served(ps.port, ps.role):
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
            if self._upcall is not None:
                new.set_upcall(self._upcall.ifindex)
        except BaseException:
            new.close()
            raise
        old.hand_over_links()
        self._stop_events()
        self._close_fdb_feed()
        self.program = new
        old.close()
        self._slot_pid = {new.slot(pid): pid for pid in self._ports}
        self._down = {pid: new.slot(pid) for pid in self._down}
        self._open_fdb_feed(new)
        self._sync_events()

    # -- moving to Python and back ----------------------------------------------------------------
    def _back_to_kernel(self) -> None:
        """On the datapath thread: back on the fast path once nothing needs Python any more (a port the
        program serves, or none, on a switch not in mode "python"; a watch goes on through the
        program's events). Nothing changes when the program or the upcall TAP cannot be made or
        attached (logged)."""
        if self.program is not None or self._stopped or self.mode == "python" or (
                self._moved_for_watch and self._observers):
            return
        if any(role_refusal(ps.role) for ps in self._ports.values()):
            return
        if self._only_python_ports():
            return  # nothing for the program to forward
        why = self._try_back_to_kernel()
        if why is not None:
            log.warning("switch %s stays on the Python datapath: %s", self.name, why)

    def _only_python_ports(self) -> bool:
        """Nothing for the program to forward: not a `kernel` switch, and every port one only Python serves."""
        return not self.required and bool(self._ports) and all(python_served(ps.port, ps.role)
                                                                 for ps in self._ports.values())

    def _try_back_to_kernel(self) -> str | None:
        """On the datapath thread: move from Python onto a new program and upcall TAP; why not (the
        switch unchanged), or None when it did. The learned entries go into the program's map before
        it is on any link (`SwitchTables.preload`), Python-served ports stay open and keep theirs;
        counters go on from the core's."""
        why = next(filter(None, (role_refusal(ps.role) for ps in self._ports.values())), None)
        if why is not None:
            return why
        if self._only_python_ports():
            pid, ps = next(iter(self._ports.items()))
            return _all_python(pid, ps.port)  # nothing for the program to forward
        try:
            program = _load(self.core.fdb.ageing_s, self.core.fdb.max_entries)
        except (OSError, ValueError) as exc:
            return f"the fast path did not load: {str(exc)[:500]}"
        try:
            self._fill(program, learned=[e for e in self.core.fdb.entries(self.now) if not e.static])
            self._open_upcall(program)
        except Exception as exc:  # the switch keeps forwarding on Python
            program.close()
            return f"the fast path could not take the switch's links: {exc}"
        # the program is on every link before the sockets close: frames queued in them are dropped
        # with them, none is forwarded twice
        self.program = program
        self._slot_pid = {program.slot(pid): pid for pid in self._ports}
        self._open_fdb_feed(program)
        for ps in self._ports.values():
            if python_served(ps.port, ps.role):
                continue  # the loop goes on reading it
            self._unregister(ps)
            ps.queue.clear()
            ps.failed, ps.error, ps.link_down = False, "", False
            if not _is_host_tap(ps.port, ps.role):  # the TAP stays open (carrier), unread
                ps.port.close()
            self._as_kernel_port(ps)
        # the map learns again behind kernel ports; what the core learned behind Python's goes in with
        # the next tick's copy (`_load_fdb`)
        for pid in self._down:
            self.core.fdb.flush(port=pid)
        self._relabel()
        log.info("switch %s is back on the kernel datapath", self.name)
        self._sync_events()
        return None

    # -- moving to Python -------------------------------------------------------------------------
    def _to_python(self, why: str) -> None:
        """Move the switch to the Python datapath now (on the datapath thread): MAC table and counters
        into the core, the upcall TAP closed, the program off every link and unloaded, then the kernel
        ports' sockets opened (the Python-served ones are open already)."""
        program = self.program
        self._stop_events()  # the decisions still in the ring reach a watch before Python's own
        self._load_fdb()
        self._close_fdb_feed()
        for ps in self._ports.values():
            _fold(self.core.counters[ps.pid], self._program_snapshot(ps))
        kernel = set(self._down)
        self._down.clear()
        self._close_upcall()
        self.program = None
        self.label = f"python: {why}"
        # a switch given such a port first never forwarded on the fast path: not worth a line
        log.log(logging.INFO if self._ports else logging.DEBUG, "switch %s moves to the Python datapath: %s",
                self.name, why)
        try:
            program.close()
        finally:
            for ps in self._ports.values():
                if ps.pid not in kernel:
                    continue  # Python served it already
                ps.port.count_rx_drop = self.core.counters[ps.pid].drop
                try:
                    ps.port.open()
                except OSError as exc:
                    self._fail(ps, exc)  # the tick reopens it
                    continue
                ps.error = ""  # a deleted link's (set_link_state): open again, on a link of its name
                ps.hdr_len = ps.port.vnet_hdr_len  # known once open (PACKET_VNET_HDR accepted or not)
                ps.generation = -1
                self._sync_fds(ps)


def _deleted(ifname: str) -> str:
    """What `port list` says of a kernel port's link reported down: that it was deleted when no link
    of its name is left, else nothing (a carrier down is "link down")."""
    try:
        socket.if_nametoindex(ifname)
    except OSError:
        return f"link {ifname} was deleted"
    return ""


class _MapMirror:
    """The recorder of the core's MAC table events (`MacTable.events`), passing each on and telling the
    datapath, so what the core alone decides reaches the map as it happens: an entry learned or moved
    behind a port Python serves, an eviction (`_mirror_learn`, `_mirror_delete`). Per learn, not per
    frame: a refresh records nothing."""

    def __init__(self, dp: KernelDatapath, recorder: Any) -> None:
        self._dp = dp
        self.recorder = recorder

    def __getattr__(self, name: str) -> Any:
        return getattr(self.recorder, name)

    def learned(self, mac: bytes, vlan: int, port: Hashable, now: float) -> None:
        self.recorder.learned(mac, vlan, port, now)
        self._dp._mirror_learn(mac, vlan, port, now)

    def moved(self, mac: bytes, vlan: int, old_port: Hashable, port: Hashable, now: float) -> None:
        self.recorder.moved(mac, vlan, old_port, port, now)
        self._dp._mirror_learn(mac, vlan, port, now)

    def aged(self, mac: bytes, vlan: int, port: Hashable, now: float) -> None:
        self.recorder.aged(mac, vlan, port, now)
        self._dp._mirror_delete(mac, vlan, port, evicted=False)

    def evicted(self, mac: bytes, vlan: int, port: Hashable, now: float | None = None) -> None:
        self.recorder.evicted(mac, vlan, port, now)
        self._dp._mirror_delete(mac, vlan, port, evicted=True)


class _Observers(list):  # type: ignore[type-arg]
    """The frame observers of a KernelDatapath: adding the first one (on the datapath thread, as the
    manager's `watch` does) turns on the program's decision events for every frame, removing the last
    turns them off (or back to a sample, for the samplers: `_sync_events`).
    When the events cannot be read, the switch moves to the Python datapath instead (as before the
    events existed) and comes back with the last observer."""

    def __init__(self, dp: KernelDatapath, items: Iterable[Any]) -> None:
        super().__init__(items)
        self._dp = dp

    def append(self, obs: Any) -> None:
        super().append(obs)
        self._dp._sync_events()

    def remove(self, obs: Any) -> None:
        super().remove(obs)
        if not self:
            self._dp._sync_events()  # off, or sampled for the samplers left
            if self._dp._moved_for_watch:
                self._dp._moved_for_watch = False
                self._dp._back_to_kernel()


def _all_python(pid: Hashable, port: Port) -> str:
    """Why a switch whose every port Python serves is on the Python datapath (`switch show`)."""
    return f"port {pid} is a {port.kind} port and no port is one the fast path serves"


def _load(ageing_s: float, max_entries: int) -> Any:
    """A SwitchProgram for this cap (raises OSError/BpfError, ValueError)."""
    from vswitch.datapath.kernel.program import SwitchProgram
    return SwitchProgram(ageing_s=ageing_s, max_entries=max_entries, fdb_room=max(max_entries, FDB_ROOM_MIN))


def headroom(cap: int) -> int:
    """How far below the cap the tick keeps the fast path's dynamic entries (room for a tick's new MACs)."""
    return max(1, min(1024, cap // 16))


_SUMMED = ("rx_frames", "rx_bytes", "tx_frames", "tx_bytes", "floods", "learned", "moved", "static_refused",
           "mirrored", "mirror_tx")


def _fold(c: Any, snap: dict[str, Any]) -> None:
    """Add a fast-path snapshot into a core `PortCounters` (the switch moving to Python keeps its counts)."""
    for f in _SUMMED:
        setattr(c, f, getattr(c, f) + snap[f])
    for label, n in snap["drops"].items():
        r = _LABEL_REASON.get(label)
        if r is not None:
            c.drops[r] = c.drops.get(r, 0) + n

