"""Datapath: the forwarding loop of one switch, on its own thread.

Owns: the epoll set over the switch's ports, per-port bounded egress queues, the coarse clock
and ageing tick, and the command queue through which the control plane reads and changes the
switch. Every change to the core (ports, policies, FDB) happens on this thread, so the core needs
no locks; the control plane calls :meth:`Datapath.call`, which runs a function between batches
and returns its result.

Invariants:
- A port is read until EAGAIN (at most ``BATCH`` frames per wake-up) so syscalls are amortised.
- Writes never block: a port that would block gets a small drop-tail queue (``QUEUE_FRAMES``),
  drained on EPOLLOUT; a full queue drops and counts (DROP_QUEUE_FULL) — one slow or stuck port
  never stalls the others. A frame the kernel's own egress queue drops (EgressDropped: a shaped
  link's qdisc is full) is counted the same way and never retried: the socket stays writable, so
  retrying would spin on EPOLLOUT.
- A port whose link is down for now (LinkDown: a TAP being moved to another namespace) keeps its
  place: its frames are counted as DROP_LINK_DOWN, its FDB entries are flushed once, and it is back
  as soon as a read or write succeeds. Any other error marks the port down (out of every flood and
  lookup), flushes its FDB entries, and the port is reopened from the tick every few seconds.
- Busy polling is opt-in (``busy_poll_s``, like the kernel's net.core.busy_poll): after a batch the
  loop keeps polling without sleeping for that long, so a frame arriving soon after (a reply, the
  next TCP segment) is taken without a thread wake-up. It trades CPU for latency; 0 (default) sleeps.
  Its bound is vswitchd's option check (`model.check_busy_poll_us`), not repeated here.
- The datapath never dies of a frame: an exception while handling one frame (the core, offload
  conversion, an egress edit, a frame observer) drops that frame as DROP_INTERNAL_ERROR on its
  ingress port, the first traceback is logged (at most once a minute per switch), and the loop
  goes on. A port whose ``recv`` raises something other than OSError is failed like a broken one.
- Nothing longer than the egress port's MTU + L2 header (``ports.base.over_mtu``; GSO super-frames
  excepted) is written: it is counted as DROP_OVERSIZE on the egress port. A port's receive-side
  drops go to its own counters through ``Port.count_rx_drop``, set on attach.
- Link state pushed by the control plane (``set_link_state``, from netlink link events) is the
  truth about a TAP/link's carrier and MTU: a port reported down leaves every flood and lookup
  until it is reported up; a port's ``down_reason`` (no QEMU client) makes it show as down.
- Frames cross in the ingress port's format; `ports.offload.adapt` converts virtio-net headers
  (and completes checksums / segments GSO frames in software) only when formats differ.
- The core's events (`SwitchCore.events`: MACs learned/moved/aged/evicted, ports up/down with the
  reason — "link", "failed: <error>", "reopened" from here) are handed to `on_events` on this thread
  once per wake-up that produced some (and before a `call` returns, so a command's effects are told
  before the command), never per frame, and once more when the loop stops.
- The MACs ports with spoofing off adopted (`SwitchCore.take_claims`) go to `on_claims` on the tick.
- Other descriptors may join the epoll set with a handler (`_fd_handlers`: the kernel fast path's
  decision events, datapath/kernel/events.py); the handler runs on this thread when one is readable.
Must not touch: switch types, persistence, netlink.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import select
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Future
from typing import Any, NamedTuple, Protocol, TypeVar

from vswitch.core.counters import PortCounters
from vswitch.core.events import CoreEvent
from vswitch.core.policy import PortPolicy
from vswitch.core.reasons import Reason
from vswitch.core.switch import EDIT_KEEP, Decision, SwitchCore, TraceStep
from vswitch.ports.base import ETH_HLEN, LinkDown, Port, ignore_rx_drop, over_mtu
from vswitch.ports.errors import EgressDropped, FrameRejected, OffloadError
from vswitch.ports.offload import adapt, edit_tag

log = logging.getLogger(__name__)
T = TypeVar("T")

BATCH = 64
QUEUE_FRAMES = 256
TICK_S = 0.5
#: the core's clock advances in steps of this (1/100 s): coarse, so the MAC table refreshes a busy
#: entry at most 100 times a second, not once per frame; fine enough for the storm limit's bucket
#: (a tenth of a second deep: core/rates.py), which a whole-second clock would starve
CLOCK_STEP = 100
REOPEN_EVERY_S = 2.0
INTERNAL_ERROR_LOG_EVERY_S = 60.0
#: who decided a frame, as a frame observer is told (the kernel fast path's is events.KERNEL_PATH)
PYTHON_PATH = "python"
#: the frame samplers get at most one frame per this many seconds (per reader of frames: the Python
#: loop, each CPU of the kernel fast path): the web UI's picture needs a few dozen a second
SAMPLE_GAP_S = 0.02
_FRAME_ERRNOS = {errno.EINVAL, errno.EMSGSIZE}  # this frame is refused; the port is fine


class LinkWatcher(Protocol):
    """Who tells a datapath about its ports' links (control/'s LinkWatch): told of every port
    attached and detached; it answers through :meth:`Datapath.set_link_state`."""

    def watch(self, dp: Datapath, pid: Hashable, port: Port) -> None: ...

    def unwatch(self, dp: Datapath, pid: Hashable) -> None: ...


class FdbRow(NamedTuple):
    """One live MAC table entry as the control plane sees it: a copy, aged on the datapath's clock."""

    mac: bytes
    vlan: int
    port: Hashable
    age_s: float     # 0 for a static entry
    static: bool


class PortState:
    """The datapath's view of one attached port."""

    __slots__ = ("pid", "port", "hdr_len", "queue", "fds", "generation", "link_down", "failed",
                 "error", "next_reopen", "want_out", "role", "max_len", "carrier_down", "counters")

    def __init__(self, pid: Hashable, port: Port, role: str) -> None:
        self.pid = pid
        self.port = port
        self.hdr_len = port.vnet_hdr_len
        self.queue: deque[bytes | bytearray | memoryview] = deque()
        self.fds: tuple[int, ...] = ()
        self.generation = -1
        self.link_down = False
        self.failed = False
        self.error = ""
        self.next_reopen = 0.0
        self.want_out = False
        self.role = role
        #: a frame longer than this (vnet header included) may be over the MTU: see _send
        self.max_len = self.hdr_len + port.mtu + ETH_HLEN
        #: the link is down by netlink's word (set_link_state), not just by a failed write
        self.carrier_down = False
        #: the core's counters of this port, found by the first `_send` (not in the core's dict
        #: for every frame sent); stable while the port is attached
        self.counters: PortCounters | None = None


class Datapath:
    """The forwarding loop of one switch. Start it, attach ports, and talk to it through `call`."""

    #: which datapath forwards the switch's frames, and why (`switch show`); see datapath/fastpath.py
    label = "python"

    def __init__(self, name: str, core: SwitchCore, *, clock: Callable[[], float] = time.monotonic,
                 busy_poll_s: float = 0.0, link_watch: LinkWatcher | None = None) -> None:
        self.name = name
        self.busy_poll_s = busy_poll_s
        self.core = core
        self._clock = clock
        self._ports: dict[Hashable, PortState] = {}
        self._fd_owner: dict[int, PortState] = {}
        #: other descriptors in the epoll set, and what to call when one is readable (the kernel fast
        #: path's decision events)
        self._fd_handlers: dict[int, Callable[[], Any]] = {}
        self._ep = select.epoll()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._ep.register(self._wake_r, select.EPOLLIN)
        self._commands: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._running = False
        self._stopped = False
        self._next_tick = 0.0
        self.now = self._coarse_now()
        #: observers of every forwarded frame (lab trace); called on the datapath thread
        self.frame_observers: list[Callable[[Hashable, bytes, int, Decision], None]] = []
        #: observers of a sample of the frames (the web UI's decision stream): at most one frame per
        #: SAMPLE_GAP_S reaches them, chosen before anything is copied; change with add/remove_sampler
        self.frame_samplers: list[Callable[..., None]] = []
        self._sample_at = 0.0
        self.link_watch = link_watch
        #: who gets the core's events (events, how many were dropped); called on the datapath thread
        self.on_events: Callable[[list[CoreEvent], int], None] | None = None
        #: who stores the MACs ports with spoofing off adopted ((port, MAC) pairs, SwitchCore.take_claims);
        #: called on the datapath thread at most once a tick
        self.on_claims: Callable[[list[tuple[Hashable, bytes]]], None] | None = None
        #: --min-bandwidth-weight: the uplink's port id and each weighted in-port's skb priority there
        #: (an htb class); empty: no weights, and a batch pays one test of it
        self._uplink_pid: Hashable | None = None
        self._uplink_prio: dict[Hashable, int] = {}
        self._uplink_prio_now = 0
        self._error_logged_at = -INTERNAL_ERROR_LOG_EVERY_S
        self._errors_unlogged = 0

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._running = True
        self._thread = threading.Thread(target=self._run, name=f"datapath-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop and close every port (the ports' own close decides what survives). Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._thread is not None:
            self._running = False
            self._wake()
            self._thread.join(timeout=5)
            self._thread = None
            self._fail_pending_calls()
            self._hand_events()
        for ps in list(self._ports.values()):
            self._unregister(ps)
            self._unwatch(ps.pid)
            ps.port.count_rx_drop = ignore_rx_drop
            try:
                ps.port.close()
            except OSError as exc:
                log.warning("%s: closing port %s: %s", self.name, ps.pid, exc)
        self._ports.clear()
        try:
            self._ep.close()
        finally:
            for fd in (self._wake_r, self._wake_w):
                try:
                    os.close(fd)
                except OSError:
                    pass

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run `fn` on the datapath thread between batches and return its result (or raise)."""
        if self._thread is None or threading.current_thread() is self._thread:
            return fn()
        fut: Future[T] = Future()
        self._commands.put((fn, fut))
        self._wake()
        return fut.result(timeout=timeout)

    def _fail_pending_calls(self) -> None:
        # A call queued while the loop was stopping would otherwise wait for its whole timeout.
        while True:
            try:
                _fn, fut = self._commands.get_nowait()
            except queue.Empty:
                return
            if fut.set_running_or_notify_cancel():
                fut.set_exception(RuntimeError(f"datapath {self.name} is stopped"))

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass

    # -- ports (call these through `call` once started, or before start) -----------------------
    def open_port(self, port: Port, role: str = "vm") -> None:
        """Open a port's back-end before `attach` (the kernel fast path leaves the links it forwards
        closed: no socket sees their frames). Raises OSError."""
        port.open()

    def attach(self, pid: Hashable, port: Port, policy: PortPolicy | None = None, role: str = "vm") -> None:
        """Add an opened port to the switch."""
        def do() -> None:
            if pid in self._ports:
                raise ValueError(f"port {pid!r} already attached")
            ps = PortState(pid, port, role)
            self._ports[pid] = ps
            self.core.add_port(pid, policy)
            port.count_rx_drop = self.core.counters[pid].drop
            self._sync_fds(ps)
        self.call(do)
        if self.link_watch is not None:
            self.link_watch.watch(self, pid, port)

    def detach(self, pid: Hashable) -> Port:
        """Remove a port from the switch (its FDB entries go); the caller closes the port."""
        def do() -> Port:
            ps = self._ports.pop(pid)
            self._unregister(ps)
            self.core.remove_port(pid)
            ps.port.count_rx_drop = ignore_rx_drop
            return ps.port
        port = self.call(do)
        self._unwatch(pid)
        return port

    def _unwatch(self, pid: Hashable) -> None:
        if self.link_watch is not None:
            self.link_watch.unwatch(self, pid)

    def set_link_state(self, pid: Hashable, up: bool, mtu: int | None = None) -> None:
        """What netlink says of a port's link: carrier up/down and its MTU. Down takes the port
        out of floods and lookups (its FDB entries go) until it is reported up. Unknown ports
        (detached meanwhile) are ignored."""
        def do() -> None:
            ps = self._ports.get(pid)
            if ps is None:
                return
            if mtu is not None and mtu > 0:
                ps.port.mtu = mtu
                ps.max_len = ps.hdr_len + mtu + ETH_HLEN
            ps.carrier_down = not up
            if up:
                ps.link_down = False
            if not ps.failed:
                self.core.set_oper_up(pid, up)
        self.call(do)

    def port_state(self, pid: Hashable) -> dict[str, Any]:
        def do() -> dict[str, Any]:
            ps = self._ports[pid]
            waiting = None if ps.failed else ps.port.down_reason
            return {"up": not ps.failed and not ps.link_down and not ps.carrier_down and not waiting
                    and self.core.is_up(pid),
                    "link_down": ps.link_down or ps.carrier_down, "failed": ps.failed, "error": ps.error,
                    "down_reason": waiting, "mtu": ps.port.mtu, "queued": len(ps.queue), "role": ps.role,
                    "policy": self.core.policies[pid], "path": self._port_path(ps)}
        return self.call(do)

    def _port_path(self, ps: PortState) -> str:
        """Which datapath decides this port's frames, in words for `port show` (datapath thread)."""
        return "python"

    def port_failed(self, pid: Hashable, error: OSError) -> None:
        """The control plane found the port's endpoint dead (e.g. a TAP whose netdev went with its
        namespace, which an idle descriptor never reports): fail it like a failed read; the tick retries."""
        def do() -> None:
            ps = self._ports.get(pid)
            if ps is not None and not ps.failed:
                self._fail(ps, error)
        self.call(do)

    def attach_failed(self, pid: Hashable, port: Port, error: OSError, policy: PortPolicy | None = None,
                      role: str = "vm") -> None:
        """Add a port that could not be opened: it starts down with `error` (what `port list` shows)
        and the tick retries opening it, like any failed port."""
        def do() -> None:
            self.attach(pid, port, policy, role)
            self._fail(self._ports[pid], error)
        self.call(do)

    # -- tables, for the control plane (copies, read between batches) ---------------------------
    def fdb_entries(self) -> list[FdbRow]:
        """The live MAC table entries (aged ones left out), statics included."""
        def read() -> list[FdbRow]:
            now = self.now
            return [FdbRow(e.mac, e.vlan, e.port, 0.0 if e.static else max(0.0, now - e.seen), e.static)
                    for e in self.core.fdb.entries(now)]
        return self.call(read)

    def fdb_flush(self) -> int:
        """Forget every learned entry (statics stay); returns how many went."""
        return self.call(self.core.fdb.flush)

    def add_sampler(self, obs: Callable[..., None]) -> None:
        """On the datapath thread (through `call`): `obs` gets a sample of the frames decided, called as
        a frame observer is, at most one per SAMPLE_GAP_S (a frame not sampled pays one test)."""
        self.frame_samplers.append(obs)

    def remove_sampler(self, obs: Callable[..., None]) -> None:
        """On the datapath thread: `obs` gets no more samples (it is not one: nothing changes)."""
        if obs in self.frame_samplers:
            self.frame_samplers.remove(obs)

    def _sample_due(self, now: float) -> bool:
        """Whether a frame of the batch about to be read goes to the samplers (at most one a batch)."""
        return bool(self.frame_samplers) and now >= self._sample_at

    def _give_sample(self, pid: Hashable, buf: bytes, hdr: int, d: Decision, now: float) -> None:
        """The batch's one sampled frame to the samplers; the next one SAMPLE_GAP_S later."""
        self._sample_at = now + SAMPLE_GAP_S
        for obs in self.frame_samplers:
            obs(pid, buf, hdr, d)

    def port_counters(self) -> dict[Hashable, dict[str, Any]]:
        """Every port's counters (``PortCounters.snapshot``: drops by reason label), by port id."""
        return self.call(lambda: {pid: c.snapshot() for pid, c in self.core.counters.items()})

    # -- rules, for the control plane (applied between batches) --------------------------------
    # The control plane changes the switch's rules only through these, never on `core` itself: they
    # are where a second holder of the same tables (a kernel fast path) learns of the change too.
    def set_policy(self, pid: Hashable, policy: PortPolicy) -> None:
        """Give port `pid` a new policy (VLAN mode, admin state, learning, flooding)."""
        self.call(lambda: self.core.set_policy(pid, policy))

    def policy(self, pid: Hashable) -> PortPolicy:
        """Port `pid`'s current policy (KeyError: no such port)."""
        return self.call(lambda: self.core.policies[pid])

    def has_port(self, pid: Hashable) -> bool:
        """Whether `pid` is attached (failed or not)."""
        return self.call(lambda: pid in self._ports)

    def trace(self, pid: Hashable, frame: bytes) -> tuple[Decision, list[TraceStep]]:
        """What the core would do now with `frame` arriving on `pid` (`SwitchCore.trace`: learns and
        counts nothing). Raises KeyError when `pid` is not attached."""
        def run() -> tuple[Decision, list[TraceStep]]:
            if pid not in self._ports:
                raise KeyError(pid)
            return self.core.trace(pid, frame, self.now)
        return self.call(run)

    def fdb_evictions(self) -> int:
        """Dynamic entries the MAC table evicted (full, or shrunk) since the switch started."""
        return self.call(lambda: self.core.fdb.evictions)

    def set_fdb_limits(self, ageing_s: float, max_entries: int) -> int:
        """New ageing time and capacity; returns how many learned entries a smaller capacity evicted."""
        return self.call(lambda: self.core.fdb.set_limits(ageing_s, max_entries))

    def add_static(self, mac: bytes, vlan: int, pid: Hashable) -> None:
        """Pin `mac` in `vlan` to port `pid`: it never ages and never moves."""
        self.call(lambda: self.core.fdb.add_static(mac, vlan, pid))

    def remove_static(self, mac: bytes, vlan: int) -> bool:
        """Unpin `mac` in `vlan`; False when it was not static there."""
        return self.call(lambda: self.core.fdb.remove_static(mac, vlan))

    # -- registration -------------------------------------------------------------------------
    def _sync_fds(self, ps: PortState) -> None:
        port = ps.port
        if ps.generation == port.generation and ps.fds:
            return
        self._unregister(ps)
        data = port.fileno()
        fds = ((data,) if data >= 0 else ()) + tuple(port.extra_fds())
        for fd in fds:
            mask = select.EPOLLIN
            if fd == data and ps.queue:
                mask |= select.EPOLLOUT
                ps.want_out = True
            self._ep.register(fd, mask)
            self._fd_owner[fd] = ps
        ps.fds = fds
        ps.generation = port.generation
        ps.max_len = ps.hdr_len + port.mtu + ETH_HLEN  # a reopened link may have a new MTU

    def _unregister(self, ps: PortState) -> None:
        for fd in ps.fds:
            self._fd_owner.pop(fd, None)
            try:
                self._ep.unregister(fd)
            except (OSError, ValueError):
                pass
        ps.fds = ()
        ps.want_out = False

    # -- the loop -----------------------------------------------------------------------------
    def _coarse_now(self) -> float:
        # Steps of 1/CLOCK_STEP s: the FDB refreshes an entry's LRU position only when `now` changes.
        return int(self._clock() * CLOCK_STEP) / CLOCK_STEP

    def _run(self) -> None:
        poll = self._ep.poll
        fd_owner = self._fd_owner
        wake_r = self._wake_r
        spin_s = self.busy_poll_s
        perf = time.perf_counter
        spin_until = 0.0
        recorder = self.core.events
        while self._running:
            try:
                events = poll(0 if spin_s and perf() < spin_until else TICK_S)
            except InterruptedError:
                continue
            if spin_s and events:
                spin_until = perf() + spin_s
            self.now = self._coarse_now()
            for fd, ev in events:
                ps = None
                try:
                    if fd == wake_r:
                        self._run_commands()
                        continue
                    ps = fd_owner.get(fd)
                    if ps is None:
                        on_ready = self._fd_handlers.get(fd)
                        if on_ready is not None:
                            on_ready()
                        continue
                    if fd != ps.fds[0] or ps.port.fileno() != fd:
                        if self._service(ps, fd):
                            self._read_batch(ps)
                        continue
                    if ev & select.EPOLLOUT:
                        self._drain_queue(ps)
                    if ev & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP):
                        self._read_batch(ps)
                except Exception as exc:  # a bug outside the per-frame body: log it, keep running
                    self._internal_error(ps, exc, count=False)
            if self._clock() >= self._next_tick:
                try:
                    self._tick()
                except Exception as exc:
                    self._internal_error(None, exc, count=False)
            if recorder.out or recorder.dropped:
                self._hand_events()

    def _hand_events(self) -> None:
        """Give the core's waiting events to `on_events` (discarded when nobody listens)."""
        recorder = self.core.events
        if not (recorder.out or recorder.dropped):
            return
        events, dropped = recorder.drain()
        if self.on_events is None:
            return
        try:
            self.on_events(events, dropped)
        except Exception as exc:
            self._internal_error(None, exc, count=False)

    def _run_commands(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                fn, fut = self._commands.get_nowait()
            except queue.Empty:
                return
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                result = fn()
            except BaseException as exc:  # handed to the caller, never kills the loop
                self._hand_events()
                fut.set_exception(exc)
                continue
            # what the command caused (a port set down) is told before its caller goes on to tell
            # of the command itself
            self._hand_events()
            fut.set_result(result)

    def _service(self, ps: PortState, fd: int) -> bool:
        ready = False
        try:
            ready = bool(ps.port.service(fd))
        except OSError as exc:
            log.warning("%s: port %s: %s", self.name, ps.pid, exc)
        self._sync_fds(ps)
        return ready and not ps.failed

    def set_uplink_classes(self, uplink: Hashable | None, classes: Mapping[Hashable, int]) -> None:
        """Frames from the ports in `classes` leave port `uplink` with that skb priority (an htb class
        of the uplink's qdisc: SwitchManager._share_uplink); None or empty: none do."""
        def do() -> None:
            self._uplink_pid = uplink
            self._uplink_prio = dict(classes) if uplink is not None else {}
            self._mark_uplink(None)
        self.call(do)

    def _mark_uplink(self, pid: Hashable | None) -> None:
        """The uplink's socket priority for a batch from `pid` (set only when it changes: one
        setsockopt per change of weighted sender, none per frame). A frame that waits in the uplink's
        queue leaves with the priority of the batch that drains it."""
        prio = self._uplink_prio.get(pid, 0)
        if prio != self._uplink_prio_now:
            ups = self._ports.get(self._uplink_pid)
            set_priority = getattr(ups.port, "set_priority", None) if ups is not None else None
            if set_priority is not None:
                try:
                    set_priority(prio)
                except OSError:
                    return
            self._uplink_prio_now = prio

    def _read_batch(self, ps: PortState) -> None:
        if self._uplink_prio:
            self._mark_uplink(ps.pid)
        port = ps.port
        recv = port.recv
        process = self.core.process
        deliver = self._deliver
        send = self._send
        ports = self._ports
        pid = ps.pid
        hdr = ps.hdr_len
        now = self.now
        observers = self.frame_observers
        sample = self._sample_due(now)
        for _ in range(BATCH):
            try:
                buf = recv()
            except LinkDown:
                break
            except OSError as exc:
                self._fail(ps, exc)
                return
            except Exception as exc:  # the back-end's own state is suspect: fail it like a broken one
                self._internal_error(ps, exc)
                self._fail(ps, OSError(f"internal error: {exc!r}"))
                return
            if buf is None:
                break
            try:
                if ps.link_down:
                    self._link_back(ps)
                d = process(pid, buf, hdr, now)
                if observers:
                    for obs in observers:
                        obs(pid, buf, hdr, d)
                if sample:
                    sample = False
                    self._give_sample(pid, buf, hdr, d, now)
                out = d.out_ports
                if out:
                    # Known unicast to a port of the same format, untouched: what `_deliver` would do,
                    # without its call and loop (most frames under load; each call costs ~3 %).
                    if len(out) == 1 and d.edits is None and (ops := ports[out[0]]).hdr_len == hdr:
                        send(ops, buf)
                    else:
                        deliver(d, buf, hdr)
            except Exception as exc:  # one frame, not the switch: count it and go on
                self._internal_error(ps, exc)
        if port.generation != ps.generation:
            self._sync_fds(ps)

    def _internal_error(self, ps: PortState | None, exc: Exception, *, count: bool = True) -> None:
        """Count a frame the datapath failed on (DROP_INTERNAL_ERROR on its ingress port) and log
        the traceback, at most once per INTERNAL_ERROR_LOG_EVERY_S for this switch."""
        if count and ps is not None:
            c = self.core.counters.get(ps.pid)
            if c is not None:
                c.drop(Reason.DROP_INTERNAL_ERROR)
        now = self._clock()
        if now - self._error_logged_at < INTERNAL_ERROR_LOG_EVERY_S:
            self._errors_unlogged += 1
            return
        self._error_logged_at = now
        more = f" ({self._errors_unlogged} more since the last report)" if self._errors_unlogged else ""
        self._errors_unlogged = 0
        log.error("%s: internal error on a frame from port %s, dropped%s", self.name,
                  ps.pid if ps is not None else "-", more, exc_info=exc)

    def _deliver(self, d: Decision, buf: bytes, in_hdr: int) -> None:
        ports = self._ports
        send = self._send
        edits = d.edits
        if edits is None:  # the common case: every output port takes the frame as it came
            for pid in d.out_ports:
                ps = ports[pid]
                if ps.hdr_len == in_hdr:
                    send(ps, buf)
                else:
                    self._send_adapted(ps, buf, in_hdr)
            return
        i = 0
        for pid in d.out_ports:
            ps = ports[pid]
            frame: bytes | bytearray | memoryview = buf
            edit = edits[i]
            if edit != EDIT_KEEP:
                frame = edit_tag(buf, in_hdr, edit, d.vlan)
            i += 1
            if ps.hdr_len == in_hdr:
                send(ps, frame)
            else:
                self._send_adapted(ps, frame, in_hdr)

    def _send_adapted(self, ps: PortState, frame: bytes | bytearray | memoryview, in_hdr: int) -> None:
        """Send `frame` (in the ingress port's format, `in_hdr`) converted to `ps`'s format."""
        try:
            segments = adapt(frame, in_hdr, ps.hdr_len, ps.port.mtu)
        except OffloadError:
            c = self.core.counters.get(ps.pid)
            if c is not None:
                c.drop(Reason.DROP_TX_ERROR)
            return
        for seg in segments:
            self._send(ps, seg)

    def _send(self, ps: PortState, frame: bytes | bytearray | memoryview) -> None:
        c = ps.counters
        if c is None:
            # a port attached by a subclass (datapath/fastpath.py) has not been looked up yet; a
            # detached one has no counters in the core any more, and is never written again
            c = ps.counters = self.core.counters.get(ps.pid)
            if c is None:
                return
        if ps.failed:
            return
        n = len(frame)
        if n > ps.max_len and over_mtu(frame, ps.hdr_len, ps.port.mtu):
            c.drop(Reason.DROP_OVERSIZE)
            return
        q = ps.queue
        if q:
            if len(q) >= QUEUE_FRAMES:
                c.drop(Reason.DROP_QUEUE_FULL)
            else:
                q.append(frame)
            return
        try:
            ok = ps.port.write(frame)
        except OSError as exc:
            self._write_failed(ps, c, exc)
            return
        if ok:
            c.tx_frames += 1
            c.tx_bytes += n - ps.hdr_len
            if ps.link_down:
                self._link_back(ps)
        else:
            q.append(frame)
            self._want_out(ps, True)

    def _drain_queue(self, ps: PortState) -> None:
        c = self.core.counters.get(ps.pid)
        q = ps.queue
        if c is None:  # the port is being removed: nothing will read its queue
            q.clear()
            return
        while q:
            frame = q[0]
            try:
                ok = ps.port.write(frame)
            except OSError as exc:
                q.popleft()
                if not self._write_failed(ps, c, exc):
                    return
                continue
            if not ok:
                return
            q.popleft()
            c.tx_frames += 1
            c.tx_bytes += len(frame) - ps.hdr_len
            if ps.link_down:
                self._link_back(ps)
        self._want_out(ps, False)

    def _write_failed(self, ps: PortState, c: PortCounters, exc: OSError) -> bool:
        """Count a frame the port's write refused, the one place write errors are judged (a direct
        send and a queued one alike); False when the port has failed and must not be written again."""
        if isinstance(exc, EgressDropped):
            c.drop(Reason.DROP_QUEUE_FULL)
            return True
        if isinstance(exc, LinkDown):
            c.drop(Reason.DROP_LINK_DOWN)
            if not ps.link_down:
                ps.link_down = True
                self.core.fdb.flush(port=ps.pid)
            return True
        c.drop(Reason.DROP_TX_ERROR)
        if isinstance(exc, FrameRejected) or exc.errno in _FRAME_ERRNOS:
            return True
        self._fail(ps, exc)
        return False

    def _want_out(self, ps: PortState, on: bool) -> None:
        if ps.want_out == on or not ps.fds:
            return
        fd = ps.port.fileno()
        if fd < 0:
            return
        try:
            self._ep.modify(fd, select.EPOLLIN | (select.EPOLLOUT if on else 0))
            ps.want_out = on
        except OSError:
            pass

    def _link_back(self, ps: PortState) -> None:
        ps.link_down = False

    def _fail(self, ps: PortState, exc: OSError) -> None:
        """A real error: the port leaves forwarding (FDB flushed) and is reopened from the tick."""
        log.warning("%s: port %s failed: %s", self.name, ps.pid, exc)
        ps.failed = True
        ps.error = _error_text(exc)
        ps.queue.clear()
        self._unregister(ps)
        self.core.set_oper_up(ps.pid, False, f"failed: {ps.error}")
        try:
            ps.port.close()
        except OSError:
            pass
        ps.next_reopen = self._clock() + REOPEN_EVERY_S

    def _tick(self) -> None:
        now = self._clock()
        self._next_tick = now + TICK_S
        self.core.expire(self.now)
        if self.core.claims:
            claims = self.core.take_claims()
            if self.on_claims is not None:
                self.on_claims(claims)
        for ps in self._ports.values():
            if ps.failed and now >= ps.next_reopen:
                try:
                    ps.port.open()
                except OSError as exc:
                    ps.error = _error_text(exc)
                    ps.next_reopen = now + REOPEN_EVERY_S
                    continue
                ps.failed = False
                ps.error = ""
                ps.generation = -1
                self._sync_fds(ps)
                self.core.set_oper_up(ps.pid, not ps.carrier_down, "reopened")
                log.info("%s: port %s is back", self.name, ps.pid)
            elif ps.generation != ps.port.generation:
                self._sync_fds(ps)


def _error_text(exc: OSError) -> str:
    """The message without Python's "[Errno N]" prefix when there is one (shown by `port list`)."""
    if exc.strerror and exc.filename is None:
        return exc.strerror
    return str(exc)
