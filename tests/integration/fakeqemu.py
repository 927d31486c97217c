"""A stand-in for `qemu -netdev stream`: relays a TAP (the guest's NIC) to a unix stream socket.

Independent of vswitch's own port code on purpose: it opens /dev/net/tun itself, without a
virtio-net header or offloads (like a guest NIC that does not negotiate them), and speaks QEMU's
framing — a 4-byte big-endian length, then the frame — as a client of the switch's socket.
"""

from __future__ import annotations

import fcntl
import os
import select
import socket
import struct
import threading

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


class FakeQemu:
    """Relay frames between TAP `ifname` (created here) and the switch's socket at `path`.

    `dgram=False`: `-netdev stream` (client of a stream socket, length-prefixed frames).
    `dgram=True`: `-netdev dgram` (binds `path + ".qemu"`, one frame per datagram to `path`).
    """

    def __init__(self, ifname: str, path: str, *, dgram: bool = False) -> None:
        self.ifname = ifname
        self.path = path
        self.dgram = dgram
        self.tap = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        fcntl.ioctl(self.tap, TUNSETIFF, struct.pack("16sH", ifname.encode(), IFF_TAP | IFF_NO_PI))
        self.sock: socket.socket | None = None
        self._stop_r, self._stop_w = os.pipe()
        self._thread: threading.Thread | None = None
        self.frames_in = 0
        self.frames_out = 0

    def connect(self) -> FakeQemu:
        if self.dgram:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            if os.path.exists(self.path + ".qemu"):
                os.unlink(self.path + ".qemu")
            self.sock.bind(self.path + ".qemu")
            self.sock.connect(self.path)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(self.path)
        self._thread = threading.Thread(target=self._relay, daemon=True)
        self._thread.start()
        return self

    def _relay(self) -> None:
        assert self.sock is not None
        sock, tap = self.sock, self.tap
        buf = b""
        while True:
            ready, _, _ = select.select([tap, sock, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            if tap in ready:
                try:
                    frame = os.read(tap, 65536)
                except OSError:
                    frame = b""
                if frame:
                    if self.dgram:
                        try:
                            sock.send(frame)
                        except OSError:
                            continue  # the switch's socket is full: a lost frame, as on a wire
                    else:
                        sock.sendall(struct.pack(">I", len(frame)) + frame)
                    self.frames_out += 1
            if sock in ready and self.dgram:
                frame = sock.recv(65536)
                try:
                    os.write(tap, frame)
                    self.frames_in += 1
                except OSError:
                    pass
            elif sock in ready:
                data = sock.recv(262144)
                if not data:
                    return
                buf += data
                while len(buf) >= 4:
                    (n,) = struct.unpack_from(">I", buf)
                    if len(buf) < 4 + n:
                        break
                    frame, buf = buf[4:4 + n], buf[4 + n:]
                    try:
                        os.write(tap, frame)
                        self.frames_in += 1
                    except OSError:
                        pass

    def disconnect(self) -> None:
        """Stop relaying and close the socket (the guest 'powers off'); the TAP stays."""
        os.write(self._stop_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None
            if self.dgram and os.path.exists(self.path + ".qemu"):
                os.unlink(self.path + ".qemu")
        os.read(self._stop_r, 16)

    def close(self) -> None:
        self.disconnect()
        for fd in (self.tap, self._stop_r, self._stop_w):
            os.close(fd)
