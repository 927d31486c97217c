"""QEMU socket ports: a VM's NIC over a unix socket, no root and no TAP needed.

Owns the unix socket files it creates and the connections on them; never starts or stops QEMU.
A path holding a live socket (someone answers a connect) is never unlinked or taken over
(`SocketInUse`); ``close`` removes the socket file only while it still is the one this port bound
(same device and inode), so a file someone else put there since stays.

``QemuStreamPort`` listens on a SOCK_STREAM socket; QEMU 7.2 connects as a client
(``-netdev stream,...,server=off``) and each frame travels as a 4-byte big-endian length followed by
the frame. QEMU's stream client never reconnects, so the port must be listening before QEMU starts.

``QemuDgramPort`` binds a SOCK_DGRAM socket; one datagram is one frame (``-netdev dgram``).
Convention: QEMU binds ``<path>.qemu`` (its ``local.path``) and sends to ``<path>`` (its
``remote.path``); we send to the address the last frame came from, or to ``peer_path``
(default ``<path>.qemu``) before any arrived.

Invariants (both):
- ``vnet_hdr_len`` is 0: QEMU's socket netdevs carry bare Ethernet frames with complete checksums;
  the datapath segments/completes offloaded frames before writing here.
- Non-blocking throughout. ``write`` raises :class:`LinkDown` while no VM is there to take frames.
- A frame shorter than 14 bytes from QEMU is dropped and counted in ``rx_runts`` (DROP_RUNT); a
  frame carrying more than 65,535 bytes after its L2 header in ``rx_oversize`` (DROP_OVERSIZE);
  the connection stays. A stream length above 65535+18 (what QEMU itself refuses; DROP_BAD_LENGTH)
  or a stream that ends mid-frame (DROP_TRUNCATED) closes that connection, is counted, and the
  port goes back to accepting. Every such drop also goes to ``count_rx_drop`` (see ports.base).
- ``generation`` increases whenever the descriptor returned by ``fileno`` changes.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import stat
import struct
from typing import Any, NoReturn

from vswitch.core.reasons import Reason
from vswitch.ports.base import MAX_MTU, LinkDown, Port, grow_socket_buffers, over_mtu
from vswitch.ports.errors import FrameRejected

#: Largest length QEMU accepts in a stream frame header (NET_BUFSIZE-ish: 64 KiB + VLAN headers).
MAX_STREAM_FRAME = 65535 + 18
MIN_FRAME = 14
_UNTAGGED_MAX = MAX_MTU + 14  # longer than this may still fit when tagged: over_mtu decides
_SOCK_BUF_BYTES = 1 << 20
_HUNG_UP = select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0x2000)


class SocketInUse(FileExistsError):
    """A live socket (someone answers there) holds the path; it is never unlinked."""


def _peer_name(sock: socket.socket) -> str:
    """Who is on the other end of a connected unix socket: 'process PID (comm)' or 'a live socket'."""
    try:
        pid, _uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                              struct.calcsize("3i")))
    except OSError:
        pid = 0
    if pid <= 0:  # datagram sockets carry no credentials
        return "a live socket"
    if pid == os.getpid():
        return f"this vswitchd (pid {pid})"
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f"process {pid} ({f.read().strip()})"
    except OSError:
        return f"process {pid}"


def socket_listener(path: str) -> str | None:
    """Who answers on the unix socket at `path`, or None when nothing does (no file, a stale socket).

    A stream connect reaches a listener; EPROTOTYPE means the file is a datagram socket, which a
    datagram connect tells bound (success) from stale (ECONNREFUSED). Raises FileExistsError when
    `path` is not a socket, OSError when it cannot be checked (e.g. EACCES).
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError(errno.EEXIST, f"{path} exists and is not a socket; not removing it")
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        probe = socket.socket(socket.AF_UNIX, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return None
        except BlockingIOError:  # a listener with a full backlog is still a listener
            return "a live socket (busy)"
        except OSError as e:
            if e.errno == errno.EPROTOTYPE:
                continue
            raise
        else:
            return _peer_name(probe)
        finally:
            probe.close()
    return "a live socket"


def _remove_stale_socket(path: str) -> None:
    """Remove a socket file nobody answers on (left by an earlier run). SocketInUse for a live one,
    FileExistsError for anything that is not a socket: neither is touched."""
    who = socket_listener(path)
    if who is not None:
        raise SocketInUse(errno.EADDRINUSE, f"{path} is a live socket of {who}; not taking it over")
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _bound_identity(path: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the socket file just bound at `path`: what `_unlink_quietly` checks."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _bind_unix(path: str, kind: int) -> tuple[socket.socket, tuple[int, int] | None]:
    """A non-blocking unix socket of type `kind` bound at `path` (a stale socket file there removed
    first) and the identity of the file it made. SocketInUse for a live socket at `path`,
    FileExistsError for a file that is not a socket (neither is touched), OSError from bind."""
    _remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, kind | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC)
    try:
        sock.bind(path)
    except BaseException:
        sock.close()
        raise
    return sock, _bound_identity(path)


def _grow_buffers(sock: socket.socket) -> None:
    grow_socket_buffers(sock, _SOCK_BUF_BYTES)


def _unlink_quietly(path: str, identity: tuple[int, int] | None) -> None:
    """Unlink `path` only if it still is the file we bound: someone may have replaced it since."""
    if identity is None or _bound_identity(path) != identity:
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class _SocketFilePort(Port):
    """What both socket ports share: ``path`` is the socket file they bind."""

    path: str

    def destroy(self) -> None:
        """Release the port for good, and remove a stale socket file at its path that a crashed run
        left behind (a live socket or a non-socket stays untouched)."""
        self.close()
        try:
            _remove_stale_socket(self.path)
        except FileExistsError:  # SocketInUse included: somebody else's now
            pass


class QemuStreamPort(_SocketFilePort):
    """A listening unix stream socket for one QEMU ``-netdev stream`` client at a time.

    ``QemuStreamPort(name, path)``; ``extra_fds()`` is the listening socket, ``service(fd)``
    accepts. Counters: ``rx_runts``, ``rx_bad_length``, ``rx_truncated``, ``rx_oversize``,
    ``clients_accepted``, ``clients_rejected``, ``disconnects``.
    """

    kind = "qemu-stream"

    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self._identity: tuple[int, int] | None = None  # the socket file we bound (see close)
        self._listener: socket.socket | None = None
        self._conn: socket.socket | None = None
        # Bytes received but not yet returned: at most one partial frame plus the next header,
        # because we never ask the kernel for more (see recv).
        self._rx = bytearray()
        # Tail of a frame the kernel took only partly; it must go out before any other frame.
        self._tx = b""
        self.rx_runts = 0
        self.rx_bad_length = 0
        self.rx_truncated = 0
        self.rx_oversize = 0
        self.clients_accepted = 0
        self.clients_rejected = 0
        self.disconnects = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Listen on ``path``. A stale socket file there is removed first; SocketInUse for a live
        one, FileExistsError for a file that is not a socket (neither is touched)."""
        if self._listener is not None:
            return
        sock, self._identity = _bind_unix(self.path, socket.SOCK_STREAM)
        try:
            sock.listen(4)
        except BaseException:
            sock.close()
            raise
        self._listener = sock
        self.generation += 1

    def close(self) -> None:
        """Drop the client, stop listening and remove the socket file if it still is ours. Idempotent."""
        if self._conn is not None:
            self._drop_client(count=False)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
            _unlink_quietly(self.path, self._identity)
            self.generation += 1

    @property
    def connected(self) -> bool:
        """True while a QEMU client is attached."""
        return self._conn is not None

    @property
    def down_reason(self) -> str | None:
        """"waiting for QEMU to connect" while no client is attached (never connected, or left)."""
        return None if self._conn is not None else "waiting for QEMU to connect"

    def fileno(self) -> int:
        """The client connection's descriptor, or -1 while no client is connected."""
        return -1 if self._conn is None else self._conn.fileno()

    def extra_fds(self) -> tuple[int, ...]:
        """The listening socket, readable when a client is waiting to be accepted."""
        return () if self._listener is None else (self._listener.fileno(),)

    def service(self, fd: int) -> None:
        """Accept waiting clients. A newcomer replaces a client that already hung up; while a live
        client is attached, a second one is refused (closed) and counted."""
        listener = self._listener
        if listener is None:
            return
        while True:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            if self._conn is not None and self._client_hung_up():
                self._drop_client(count=True)
            if self._conn is not None:
                conn.close()
                self.clients_rejected += 1
                continue
            conn.setblocking(False)
            _grow_buffers(conn)
            self._conn = conn
            self._rx.clear()
            self._tx = b""
            self.clients_accepted += 1
            self.generation += 1

    def _client_hung_up(self) -> bool:
        poller = select.poll()
        poller.register(self._conn, _HUNG_UP)  # type: ignore[arg-type]
        return any(ev & _HUNG_UP for _fd, ev in poller.poll(0))

    def _drop_client(self, *, count: bool) -> None:
        conn = self._conn
        self._conn = None
        self._rx.clear()
        self._tx = b""
        if conn is not None:
            conn.close()
            if count:
                self.disconnects += 1
            self.generation += 1

    # -- frames ------------------------------------------------------------------------------

    def recv(self) -> bytes | None:
        """One frame from the client, or None when no complete frame is ready (or the client left).

        Reads never go past the next frame's length header, so a complete frame is never left in
        our buffer while the kernel's is empty: level-triggered epoll stays truthful even when the
        datapath caps how many frames it drains per wake-up.
        """
        if self._tx:
            self._flush_quietly()  # may find the client gone
        conn = self._conn
        if conn is None:
            return None
        rx = self._rx
        while True:
            have = len(rx)
            if have >= 4:
                length = int.from_bytes(rx[:4], "big")
                if length > MAX_STREAM_FRAME:
                    self.rx_bad_length += 1
                    self.count_rx_drop(Reason.DROP_BAD_LENGTH)
                    self._drop_client(count=True)
                    return None
                end = 4 + length
                if have >= end:
                    frame = bytes(rx[4:end])
                    del rx[:end]
                    if length < MIN_FRAME:
                        self.rx_runts += 1
                        self.count_rx_drop(Reason.DROP_RUNT)
                        continue
                    if length > _UNTAGGED_MAX and over_mtu(frame, 0, MAX_MTU):
                        self.rx_oversize += 1
                        self.count_rx_drop(Reason.DROP_OVERSIZE)
                        continue
                    return frame
                want = end - have + 4  # the rest of this frame and the next length header
            else:
                want = 4 - have
            try:
                data = conn.recv(want)
            except (BlockingIOError, InterruptedError):
                return None
            except OSError as e:
                if e.errno in (errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT):
                    self._drop_client(count=True)
                    return None
                raise
            if not data:
                if rx:
                    self.rx_truncated += 1
                    self.count_rx_drop(Reason.DROP_TRUNCATED)
                self._drop_client(count=True)
                return None
            rx += data

    def write(self, buf: bytes | bytearray | memoryview) -> bool:
        """Queue one frame to the client. False: the previous frame is still half sent and the
        socket is full. LinkDown: no client. FrameRejected: longer than QEMU accepts."""
        conn = self._conn
        if conn is None:
            raise LinkDown(errno.ENOTCONN, f"no QEMU client on {self.path}")
        if self._tx and not self._flush():
            return False
        n = len(buf)
        if n > MAX_STREAM_FRAME:
            raise FrameRejected(errno.EMSGSIZE, f"frame of {n} bytes is over QEMU's {MAX_STREAM_FRAME}")
        hdr = n.to_bytes(4, "big")
        try:
            sent = conn.sendmsg((hdr, buf), (), socket.MSG_NOSIGNAL)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as e:
            self._send_failed(e)
        if sent < 4 + n:
            # The stream must stay framed: keep the tail and send it before anything else.
            self._tx = b"".join((hdr, buf))[sent:]
        return True

    def _send_failed(self, e: OSError) -> NoReturn:
        """A send to the client failed: the client left (dropped, LinkDown) or any other OSError, raised as is."""
        if e.errno in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
            self._drop_client(count=True)
            raise LinkDown(e.errno, f"QEMU client on {self.path} left") from None
        raise e

    @property
    def tx_pending(self) -> int:
        """Bytes of a partly sent frame still waiting for room in the socket."""
        return len(self._tx)

    def flush(self) -> bool:
        """Try to send the pending tail of a partly sent frame. True when nothing is pending."""
        if not self._tx:
            return True
        if self._conn is None:
            return True
        try:
            return self._flush()
        except LinkDown:
            return True

    def _flush(self) -> bool:
        try:
            sent = self._conn.send(self._tx, socket.MSG_NOSIGNAL)  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as e:
            self._send_failed(e)
        self._tx = self._tx[sent:]
        return not self._tx

    def _flush_quietly(self) -> None:
        try:
            self._flush()
        except LinkDown:
            pass

    def describe(self) -> dict[str, Any]:
        """Kind, name, socket path, whether a client is attached, counters and the QEMU argument."""
        d = super().describe()
        d.update(path=self.path, connected=self.connected, rx_runts=self.rx_runts,
                 rx_bad_length=self.rx_bad_length, rx_truncated=self.rx_truncated,
                 rx_oversize=self.rx_oversize,
                 clients_accepted=self.clients_accepted, clients_rejected=self.clients_rejected,
                 disconnects=self.disconnects,
                 qemu_arg=f"-netdev stream,id={self.name},server=off,addr.type=unix,addr.path={self.path}")
        return d


class QemuDgramPort(_SocketFilePort):
    """A bound unix datagram socket talking to one QEMU ``-netdev dgram``: one frame per datagram.

    ``QemuDgramPort(name, path, peer_path=None)``: we bind ``path``; QEMU binds ``peer_path``
    (default ``path + ".qemu"``). With an explicit ``peer_path`` frames only go there; without one
    the port also follows the sender of the latest frame (a restarted VM on another path).
    """

    kind = "qemu-dgram"

    def __init__(self, name: str, path: str, peer_path: str | None = None) -> None:
        super().__init__(name)
        self.path = path
        self._identity: tuple[int, int] | None = None  # the socket file we bound (see close)
        self.peer_fixed = peer_path is not None
        self.peer_path = peer_path if peer_path is not None else path + ".qemu"
        self._dest = self.peer_path
        self._sock: socket.socket | None = None
        self.rx_runts = 0
        #: datagrams carrying more than 65,535 bytes after the L2 header (MSG_TRUNC included)
        self.rx_oversize = 0

    def open(self) -> None:
        """Bind ``path``. A stale socket file there is removed first; SocketInUse for a live one,
        FileExistsError for a file that is not a socket (neither is touched)."""
        if self._sock is not None:
            return
        sock, self._identity = _bind_unix(self.path, socket.SOCK_DGRAM)
        _grow_buffers(sock)
        self._sock = sock
        self.generation += 1

    def close(self) -> None:
        """Close the socket and remove the file we bound if it still is ours (QEMU's own file is
        QEMU's). Idempotent."""
        if self._sock is None:
            return
        self._sock.close()
        self._sock = None
        _unlink_quietly(self.path, self._identity)
        self.generation += 1

    def fileno(self) -> int:
        """The datagram socket's descriptor, or -1 when closed."""
        return -1 if self._sock is None else self._sock.fileno()

    @property
    def peer(self) -> str:
        """Where frames are sent now."""
        return self._dest

    def recv(self) -> bytes | None:
        """One frame (one datagram), or None when none is queued. Runts and oversize datagrams
        (more than 65,535 bytes after the L2 header, or too large for the buffer) are dropped
        and counted."""
        sock = self._sock
        if sock is None:
            raise OSError(errno.EBADF, f"qemu-dgram port {self.name} is not open")
        while True:
            try:
                data, _anc, flags, addr = sock.recvmsg(MAX_STREAM_FRAME + 1)
            except (BlockingIOError, InterruptedError):
                return None
            n = len(data)
            if flags & socket.MSG_TRUNC or (n > _UNTAGGED_MAX and over_mtu(data, 0, MAX_MTU)):
                self.rx_oversize += 1
                self.count_rx_drop(Reason.DROP_OVERSIZE)
                continue
            if n < MIN_FRAME:
                self.rx_runts += 1
                self.count_rx_drop(Reason.DROP_RUNT)
                continue
            if addr and not self.peer_fixed and addr != self._dest:
                self._dest = addr  # an unbound (anonymous) sender gives "" and cannot be answered
            return data

    def write(self, buf: bytes | bytearray | memoryview) -> bool:
        """Send one frame to QEMU. False: its queue is full. LinkDown: nobody bound at the peer path."""
        try:
            self._sock.sendto(buf, self._dest)  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as e:
            code = e.errno
            if code == errno.ENOBUFS:
                return False
            if code in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTCONN):
                raise LinkDown(code, f"no QEMU bound at {self._dest}") from None
            if code == errno.EMSGSIZE:
                raise FrameRejected(code, f"frame of {len(buf)} bytes is too large for a datagram") from None
            raise
        except AttributeError:
            raise OSError(errno.EBADF, f"qemu-dgram port {self.name} is not open") from None
        return True

    def describe(self) -> dict[str, Any]:
        """Kind, name, both socket paths, counters and the QEMU argument."""
        d = super().describe()
        d.update(path=self.path, peer_path=self.peer_path, peer=self._dest, rx_runts=self.rx_runts,
                 rx_oversize=self.rx_oversize,
                 qemu_arg=(f"-netdev dgram,id={self.name},local.type=unix,local.path={self.peer_path},"
                           f"remote.type=unix,remote.path={self.path}"))
        return d
