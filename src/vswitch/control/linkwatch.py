"""LinkWatch: the kernel's word on the links behind TAP and link ports, pushed into datapaths.

Owns one thread and one rtnetlink socket per network namespace it watches, subscribed to
RTMGRP_LINK: vswitchd's own namespace (link ports, TAPs still here) and, for a TAP port whose
netdev was moved into another namespace (a VM's), that namespace — found from the TAP's own
descriptor (``TapPort.device_netns``, TUNGETDEVNETNS). A socket is opened inside a foreign
namespace by a short-lived thread that setns()es into it (``ports.netns.run_in``); the socket
stays bound to that namespace for its life, so the watch thread never changes namespace.

Every RTM_NEWLINK/RTM_DELLINK for a watched link becomes ``Datapath.set_link_state(pid, up,
mtu)`` (up = IFF_UP and IFF_RUNNING), so a link set down, even inside another namespace, is seen
in milliseconds instead of at the next failed write, and an MTU change takes effect at once.

Invariants:
- Links are matched by (namespace, ifindex) once resolved; a port is resolved by asking its
  namespace for the link by name (the reply comes back on the same socket as the events, so
  nothing between the question and the subscription is lost). A TAP whose link vanished from
  its namespace (moved, or mid-move) is resolved again until its namespace answers.
- The watch thread never holds its lock while it calls into a datapath, and datapaths call
  ``watch``/``unwatch`` from the control thread, so neither can wait on the other.
- It only reads: it never changes a link. Raw rtnetlink parsing (a few fixed structs) keeps
  control/netlink.py the one pyroute2 user, and needs no pyroute2 loop on a foreign thread.
Must not touch: frames, the store, switch types.
"""

from __future__ import annotations

import fcntl
import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from vswitch.ports import LinkPort, Port, TapPort
from vswitch.ports import netns as _netns

log = logging.getLogger(__name__)

RTMGRP_LINK = 1
NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLMSG_DONE = 3
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
NLM_F_REQUEST = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFF_UP = 0x1
IFF_RUNNING = 0x40
TUNGETIFF = 0x800454D2

_NLMSG = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_RTA = struct.Struct("=HH")
_IFREQ = struct.Struct("16sH22x")
RETRY_S = 0.1
_RCVBUF = 1 << 20


@dataclass(eq=False)
class _Entry:
    dp: Any  # Datapath (duck-typed: set_link_state)
    pid: Hashable
    port: Port
    ns: int = 0          # namespace inode, 0 until resolved
    ifname: str = ""
    ifindex: int = 0     # 0 until the namespace answered
    state: tuple[bool, int] | None = None
    next_try: float = 0.0


class _NsSocket:
    """An rtnetlink socket subscribed to link events in one namespace."""

    def __init__(self, ns: int, sock: socket.socket) -> None:
        self.ns = ns
        self.sock = sock
        self.seq = 0

    def ask(self, ifname: str) -> None:
        """Request RTM_NEWLINK for `ifname`; the answer arrives like an event."""
        self.seq += 1
        name = ifname.encode() + b"\0"
        rta = _RTA.pack(_RTA.size + len(name), IFLA_IFNAME) + name
        rta += b"\0" * (-len(rta) % 4)
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + rta
        try:
            self.sock.send(_NLMSG.pack(_NLMSG.size + len(body), RTM_GETLINK, NLM_F_REQUEST, self.seq, 0) + body)
        except OSError as exc:
            log.debug("linkwatch: asking for %s: %s", ifname, exc)


def _open_netlink() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK,
                         NETLINK_ROUTE)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)
        sock.bind((0, RTMGRP_LINK))
    except BaseException:
        sock.close()
        raise
    return sock


def _open_netlink_in(nsfd: int) -> socket.socket:
    """A netlink socket created inside the namespace `nsfd` (OSError when that fails); ours never
    changes namespace."""
    return _netns.run_in(nsfd, _open_netlink)


RELEASE_EVERY_S = 1.0  # how often to look for abandoned namespaces (a /proc scan)


def _own_ns() -> int:
    return os.stat("/proc/self/ns/net").st_ino


def _tap_name(port: TapPort) -> str:
    res = fcntl.ioctl(port.fileno(), TUNGETIFF, _IFREQ.pack(b"", 0))
    return res[:16].split(b"\0", 1)[0].decode()


def parse_links(data: bytes) -> list[tuple[int, int, str, int, int]]:
    """(message type, ifindex, name, flags, mtu) of every RTM_NEWLINK/RTM_DELLINK in `data`.
    Tolerates truncated or foreign messages (skipped)."""
    out = []
    off = 0
    while off + _NLMSG.size <= len(data):
        length, mtype, _flags, _seq, _pid = _NLMSG.unpack_from(data, off)
        if length < _NLMSG.size or off + length > len(data):
            break
        if mtype in (RTM_NEWLINK, RTM_DELLINK) and length >= _NLMSG.size + _IFINFO.size:
            _fam, _type, index, flags, _change = _IFINFO.unpack_from(data, off + _NLMSG.size)
            name, mtu = "", 0
            a = off + _NLMSG.size + _IFINFO.size
            end = off + length
            while a + _RTA.size <= end:
                alen, atype = _RTA.unpack_from(data, a)
                if alen < _RTA.size:
                    break
                payload = data[a + _RTA.size:a + alen]
                if atype == IFLA_IFNAME:
                    name = payload.split(b"\0", 1)[0].decode(errors="replace")
                elif atype == IFLA_MTU and len(payload) >= 4:
                    mtu = struct.unpack_from("=I", payload)[0]
                a += (alen + 3) & ~3
            out.append((mtype, index, name, flags, mtu))
        off += (length + 3) & ~3
    return out


class LinkWatch:
    """Watches the links of TAP and link ports and tells their datapaths (see module doc).

    ``watch(dp, pid, port)`` / ``unwatch(dp, pid)`` (other port kinds are ignored); ``close()``
    stops the thread and closes every socket (a later ``watch`` starts it again).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[int, Hashable], _Entry] = {}
        self._socks: dict[int, _NsSocket] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        # the thread's wake-up pipe: opened with the thread, closed with it (a manager that never
        # watches a link holds no descriptor for it)
        self._wake_r = self._wake_w = -1
        self._own = _own_ns()
        self._abandoned: set[int] = set()  # namespaces released for good (see _release_abandoned)
        self._next_release = 0.0

    def watch(self, dp: Any, pid: Hashable, port: Port) -> None:
        """Start watching the link behind `port` (a TapPort or LinkPort) for `dp`."""
        if not isinstance(port, TapPort | LinkPort):
            return
        with self._lock:
            self._entries[(id(dp), pid)] = _Entry(dp, pid, port)
            if self._thread is None:
                self._stop.clear()
                self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
                self._thread = threading.Thread(target=self._run, name="linkwatch", daemon=True)
                self._thread.start()
        self._wake()

    def unwatch(self, dp: Any, pid: Hashable) -> None:
        """Stop watching; idempotent."""
        with self._lock:
            self._entries.pop((id(dp), pid), None)

    def close(self) -> None:
        """Stop the thread and close the sockets. Idempotent."""
        with self._lock:
            t, self._thread = self._thread, None
            pipe = (self._wake_r, self._wake_w) if t is not None else ()  # that thread's own
        if t is not None:
            self._stop.set()
            self._wake()
            t.join(timeout=5)
        with self._lock:
            for s in self._socks.values():
                s.sock.close()
            self._socks.clear()
            if pipe and self._wake_r == pipe[0]:  # (a `watch` meanwhile opened a new one for its thread)
                self._wake_r = self._wake_w = -1
        for fd in pipe:
            os.close(fd)

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):  # full, or closed with the thread: nobody to wake
            pass

    # -- the thread --------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                pending = self._resolve_due()
                by_fd = {s.sock.fileno(): s for s in self._socks.values()}
                # poll, not select: a daemon with a thousand ports has descriptors past select's 1024
                poller = select.poll()
                for fd in (self._wake_r, *by_fd):
                    poller.register(fd, select.POLLIN)
                ready = {fd for fd, _ in poller.poll((RETRY_S if pending else 1.0) * 1000)}
                if self._wake_r in ready:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                for fd, s in by_fd.items():
                    if fd in ready:
                        self._read(s)
                if time.monotonic() >= self._next_release:
                    self._next_release = time.monotonic() + RELEASE_EVERY_S
                    self._release_abandoned()
            except Exception:  # never die: a dead watch would hide every later link change
                log.exception("linkwatch: unexpected error")
                time.sleep(RETRY_S)

    def _socket_for(self, ns: int, nsfd: int | None) -> _NsSocket:
        s = self._socks.get(ns)
        if s is None:
            sock = _open_netlink() if nsfd is None or ns == self._own else _open_netlink_in(nsfd)
            s = self._socks[ns] = _NsSocket(ns, sock)
        return s

    def _resolve_due(self) -> bool:
        """Ask each unresolved port's namespace for its link; True while some are unresolved."""
        now = time.monotonic()
        with self._lock:
            todo = [e for e in self._entries.values() if not e.ifindex]
        for e in todo:
            if e.next_try > now:
                continue
            e.next_try = now + RETRY_S
            try:
                if isinstance(e.port, TapPort):
                    if e.port.fileno() < 0:
                        continue  # closed (failed, being reopened): nothing to ask about yet
                    try:
                        nsfd = e.port.device_netns()
                    except OSError:  # a kernel without TUNGETDEVNETNS: the netdev is taken to be here
                        ns, e.ifname = self._own, _tap_name(e.port)
                        s = self._socket_for(ns, None)
                    else:
                        try:
                            ns = os.fstat(nsfd).st_ino
                            if ns in self._abandoned:
                                continue  # dying: a new socket would keep it alive again
                            e.ifname = _tap_name(e.port)
                            s = self._socket_for(ns, nsfd)
                        finally:
                            os.close(nsfd)
                else:
                    ns, e.ifname = self._own, e.port.ifname  # type: ignore[attr-defined]
                    s = self._socket_for(ns, None)
            except OSError as exc:
                log.debug("linkwatch: %s: %s", e.pid, exc)
                continue
            e.ns = ns
            s.ask(e.ifname)
        self._drop_idle_sockets()
        return bool(todo)

    def _release_abandoned(self) -> None:
        """Close our socket in a namespace nothing else holds any more (`ip netns del` of a VM's
        namespace): our socket alone would keep it, and the TAPs in it, alive for ever. Its ports
        are down; the TAP then vanishes with the namespace and the datapath fails the port."""
        for ns in [n for n in list(self._socks) if n != self._own]:
            if _netns.held_elsewhere(ns):
                continue
            log.info("linkwatch: namespace %d was abandoned; releasing it", ns)
            self._abandoned.add(ns)
            pushes = []
            with self._lock:
                self._socks.pop(ns).sock.close()
                for e in self._entries.values():
                    if e.ns == ns:
                        e.ifindex, e.ns = 0, 0
                        if e.state != (False, 0):
                            e.state = (False, 0)
                            pushes.append(e)
            for e in pushes:
                try:
                    e.dp.set_link_state(e.pid, False, None)
                except Exception as exc:  # a stopped datapath, a detached port: nothing to tell
                    log.debug("linkwatch: telling %s: %s", e.pid, exc)

    def _drop_idle_sockets(self) -> None:
        with self._lock:
            used = {e.ns for e in self._entries.values()} | {self._own}
            for ns in [n for n in self._socks if n not in used]:
                self._socks.pop(ns).sock.close()

    def _read(self, s: _NsSocket) -> None:
        while True:
            try:
                data = s.sock.recv(1 << 16)
            except BlockingIOError:
                return
            except OSError as exc:  # ENOBUFS: events were lost; ask again for every link here
                log.info("linkwatch: namespace %d: %s; resolving its links again", s.ns, exc)
                with self._lock:
                    for e in self._entries.values():
                        if e.ns == s.ns:
                            e.ifindex = 0
                            e.next_try = 0.0
                continue
            pushes = []
            with self._lock:
                for mtype, index, name, flags, mtu in parse_links(data):
                    for e in self._entries.values():
                        if e.ns != s.ns:
                            continue
                        if e.ifindex == index or (not e.ifindex and name == e.ifname and mtype == RTM_NEWLINK):
                            if mtype == RTM_DELLINK:
                                # moved away (a TAP) or deleted: find it again; meanwhile it is down
                                e.ifindex = 0
                                e.next_try = 0.0
                                state = (False, 0)
                            else:
                                e.ifindex = index
                                e.ifname = name or e.ifname
                                state = (bool(flags & IFF_UP and flags & IFF_RUNNING), mtu)
                            if state != e.state:
                                e.state = state
                                pushes.append((e, state))
            for e, (up, mtu) in pushes:
                try:
                    e.dp.set_link_state(e.pid, up, mtu or None)
                except Exception as exc:  # a stopped datapath, a detached port: nothing to tell
                    log.debug("linkwatch: telling %s: %s", e.pid, exc)
