"""Packet capture across a lab's namespaces, for `lab trace`: what crossed which link, when, which way.

Owns: AF_PACKET sockets opened inside other network namespaces (by a throw-away thread that
entered the namespace, ``ports.netns.run_in``; a socket stays in the namespace it was created in),
their receive loop, and turning each ICMPv4 echo frame they see into a `CaptureRecord` (each ARP
frame into an `ArpRecord`) with the kernel's CLOCK_REALTIME timestamp (SO_TIMESTAMPNS) and the
direction the kernel reports (PACKET_OUTGOING = left through the link; anything else = arrived on it).
Also `run_in_netns`: start a program (e.g. `ping`) inside a namespace.

Invariants:
- Only throw-away threads change namespace, and they end there; the caller's thread never leaves
  its namespace.
- A socket gets its BPF filter (IPv4 ICMP and ARP only) before it is bound, so it never queues unrelated frames.
- Every socket is closed by `Capture.stop()`, also when opening a later one failed.
Must not touch: the switch, the topology, addresses or routes.
"""

from __future__ import annotations

import ctypes
import errno
import os
import select
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from vswitch.control.model import IcmpEcho
from vswitch.lab.hops import ETH_P_ARP, ArpRecord, CaptureRecord
from vswitch.ports import netns as _netns

ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = 35
SO_ATTACH_FILTER = 26
PACKET_OUTGOING = 4
PKTTYPE_NAMES = {0: "host", 1: "broadcast", 2: "multicast", 3: "otherhost", 4: "outgoing"}
#: a kernel timestamp further than this from the receive time is not trusted (some paths carry
#: a monotonic delivery time in skb->tstamp); the receive time is used instead
_MAX_SKEW_S = 1.0

class CapturePointLike(Protocol):
    """Where to capture: a link `ifname` in namespace `netns` (empty: this one) of lab node `node`."""

    node: str
    netns: str
    ifname: str
    label: str
    kind: str


def _in_namespace(netns: str, fn: Any) -> Any:
    """`fn()` run in `netns` (a name or a path; empty: here) by a thread that entered it; raises what it raises."""
    return _netns.run_in(netns, fn) if netns else fn()


def _capture_filter() -> bytes:
    """Classic BPF: accept ARP (ethertype 0x0806) and IPv4 (0x0800) with protocol 1 (ICMP), drop the rest."""
    insns = [
        (0x28, 0, 0, 12),         # ldh [12]
        (0x15, 3, 0, ETH_P_ARP),  # jeq #0x806, accept, next
        (0x15, 0, 3, 0x0800),     # jeq #0x800, next, drop
        (0x30, 0, 0, 23),         # ldb [23]
        (0x15, 0, 1, 1),          # jeq #1, next, drop
        (0x06, 0, 0, 0x40000),    # accept: ret #262144 (whole frame)
        (0x06, 0, 0, 0),          # drop: ret #0
    ]
    return b"".join(struct.pack("HBBI", *i) for i in insns)


_FILTER = _capture_filter()
_FILTER_BUF = ctypes.create_string_buffer(_FILTER)


def _open_socket(ifname: str) -> socket.socket:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: receives nothing until bound
    try:
        prog = struct.pack("HL", len(_FILTER) // 8, ctypes.addressof(_FILTER_BUF))
        s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.bind((ifname, ETH_P_ALL))
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s


def parse_icmp_echo(frame: bytes) -> tuple[str, str, str, str, int, int, int] | None:
    """(src_mac, dst_mac, src_ip, dst_ip, type, id, seq) of an untagged ICMPv4 echo frame, else None."""
    echo = IcmpEcho.from_frame(frame, 14) if frame[12:14] == b"\x08\x00" else None
    if echo is None:
        return None
    return (frame[6:12].hex(":"), frame[0:6].hex(":"), socket.inet_ntoa(frame[26:30]),
            socket.inet_ntoa(frame[30:34]), echo.type, echo.id, echo.seq)


def parse_arp(frame: bytes) -> tuple[str, str, int, str, str] | None:
    """(src_mac, dst_mac, op, sender_ip, target_ip) of an untagged Ethernet/IPv4 ARP frame, else None."""
    if len(frame) < 42 or frame[12:14] != ETH_P_ARP.to_bytes(2, "big") or frame[14:20] != b"\x00\x01\x08\x00\x06\x04":
        return None
    return (frame[6:12].hex(":"), frame[0:6].hex(":"), int.from_bytes(frame[20:22], "big"),
            socket.inet_ntoa(frame[28:32]), socket.inet_ntoa(frame[38:42]))


class Capture:
    """Capture ICMPv4 echo and ARP frames on many links at once: `start()`, do things, `stop()` → records."""

    def __init__(self, points: Iterable[CapturePointLike]) -> None:
        self.points = list(points)
        self._socks: list[tuple[socket.socket, CapturePointLike]] = []
        self._records: list[CaptureRecord | ArpRecord] = []
        #: links that could not be captured on, with the reason (reported, not fatal)
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1

    def start(self) -> Capture:
        by_ns: dict[str, list[CapturePointLike]] = {}
        for p in self.points:
            by_ns.setdefault(p.netns or "", []).append(p)
        try:
            for ns, pts in by_ns.items():
                def open_all(pts: Sequence[CapturePointLike] = pts) -> list[tuple[socket.socket | None, Any, str]]:
                    opened: list[tuple[socket.socket | None, Any, str]] = []
                    for p in pts:
                        try:
                            opened.append((_open_socket(p.ifname), p, ""))
                        except OSError as exc:
                            opened.append((None, p, exc.strerror or str(exc)))
                    return opened
                try:
                    opened = _in_namespace(ns, open_all)
                except OSError as exc:
                    self.errors += [f"{p.node} {p.ifname}: cannot enter namespace {ns}: {exc.strerror or exc}"
                                    for p in pts]
                    continue
                for s, p, err in opened:
                    if s is None:
                        self.errors.append(f"{p.node} {p.ifname}: cannot capture: {err}")
                    else:
                        self._socks.append((s, p))
            self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._thread = threading.Thread(target=self._run, name="lab-capture", daemon=True)
            self._thread.start()
        except BaseException:
            self._close()
            raise
        return self

    def stop(self) -> list[CaptureRecord | ArpRecord]:
        """Stop capturing (after reading what is already queued); return every record, in time order."""
        self._stop.set()
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._close()
        return sorted(self._records, key=lambda r: r.t)

    def _close(self) -> None:
        for s, _ in self._socks:
            s.close()
        self._socks = []
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def _run(self) -> None:
        ep = select.epoll()
        try:
            owners: dict[int, tuple[socket.socket, CapturePointLike]] = {}
            for s, p in self._socks:
                ep.register(s.fileno(), select.EPOLLIN)
                owners[s.fileno()] = (s, p)
            ep.register(self._wake_r, select.EPOLLIN)
            while not self._stop.is_set():
                for fd, _ in ep.poll(0.5):
                    if fd in owners:
                        self._drain(*owners[fd])
            for s, p in self._socks:  # what arrived before stop was asked for
                self._drain(s, p)
        finally:
            ep.close()

    def _drain(self, s: socket.socket, p: CapturePointLike) -> None:
        anc = socket.CMSG_SPACE(16)
        while True:
            try:
                data, ancdata, _flags, addr = s.recvmsg(65536, anc)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.ENETDOWN, errno.ENXIO, errno.ENODEV):
                    return
                raise
            now = time.time()
            t = now
            for level, kind, value in ancdata:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                    sec, nsec = struct.unpack("qq", value[:16])
                    kt = sec + nsec / 1e9
                    if abs(kt - now) <= _MAX_SKEW_S:
                        t = kt
            pkttype = addr[2] if isinstance(addr, tuple) and len(addr) > 2 else 0
            where = (t, p.node, p.netns, p.ifname, p.label, p.kind, "out" if pkttype == PACKET_OUTGOING else "in",
                     PKTTYPE_NAMES.get(pkttype, str(pkttype)))
            parsed = parse_icmp_echo(data)
            if parsed is not None:
                self._records.append(CaptureRecord(*where, *parsed))
                continue
            arp = parse_arp(data)
            if arp is not None:
                self._records.append(ArpRecord(*where, *arp))


def run_in_netns(netns: str, argv: Sequence[str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `argv` inside namespace `netns` (empty: here) and wait for it; output captured as text.

    The child is started from a thread that has entered the namespace, so it is born there (no
    preexec_fn, no `ip netns exec`)."""
    return _in_namespace(netns, lambda: subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout))
