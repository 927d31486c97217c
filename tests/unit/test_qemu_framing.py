"""QEMU socket ports over real unix sockets in a temp dir (no root), plus the in-memory port.

The test plays QEMU: it connects (stream) or binds ``<path>.qemu`` (dgram) and speaks the wire
format by hand, including the ugly cases — frames split across reads, runts, garbage lengths,
a client that leaves mid-frame, a full socket that only takes half a frame.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import struct
import tempfile
from collections.abc import Iterator

import pytest

from vswitch.ports import PORT_KINDS, FrameRejected, LinkDown, MemoryPort, QemuDgramPort, QemuStreamPort


@pytest.fixture
def sockdir() -> Iterator[str]:
    # Short path: unix socket addresses are limited to 108 bytes, pytest's tmp_path can be longer.
    d = tempfile.mkdtemp(prefix="vsq", dir="/tmp")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def frame(n: int = 60, fill: int = 0xAB) -> bytes:
    return bytes([0xFF] * 6 + [2, 0, 0, 0, 0, 1] + [0x08, 0x00]) + bytes([fill]) * (n - 14)


def wire(f: bytes) -> bytes:
    return struct.pack(">I", len(f)) + f


@pytest.fixture
def stream(sockdir: str) -> Iterator[QemuStreamPort]:
    port = QemuStreamPort("vm0", os.path.join(sockdir, "vm0.sock"))
    port.open()
    try:
        yield port
    finally:
        port.close()


def connect(port: QemuStreamPort) -> socket.socket:
    """Connect like QEMU and let the port accept, as the datapath would on listener readiness."""
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(port.path)
    (lfd,) = port.extra_fds()
    assert select.select([lfd], [], [], 2)[0], "the listening socket is readable when a client waits"
    port.service(lfd)
    return client


def recv_wait(port, timeout: float = 2.0) -> bytes | None:
    """recv() after waiting for the data fd, as an epoll loop would."""
    fd = port.fileno()
    if fd >= 0:
        select.select([fd], [], [], timeout)
    return port.recv()


def _closed_by_peer(client: socket.socket) -> bool:
    client.settimeout(2)
    try:
        return client.recv(10) == b""
    except ConnectionResetError:
        return True  # closed with our bytes unread: the kernel resets instead


def read_frames(client: socket.socket, count: int, timeout: float = 5.0) -> list[bytes]:
    client.settimeout(timeout)
    buf = b""
    out = []
    while len(out) < count:
        while len(buf) >= 4 and len(buf) >= 4 + struct.unpack(">I", buf[:4])[0]:
            n = struct.unpack(">I", buf[:4])[0]
            out.append(buf[4:4 + n])
            buf = buf[4 + n:]
        if len(out) >= count:
            break
        chunk = client.recv(1 << 20)
        assert chunk, "client stream ended early"
        buf += chunk
    return out


def test_registry_names_every_kind() -> None:
    assert set(PORT_KINDS) == {"tap", "link", "qemu-stream", "qemu-dgram", "vxlan", "memory"}
    assert all(cls.kind == k for k, cls in PORT_KINDS.items())


def test_frames_both_ways(stream: QemuStreamPort) -> None:
    gen = stream.generation
    assert stream.fileno() == -1 and not stream.connected
    with connect(stream) as client:
        assert stream.connected and stream.generation > gen, "a new client bumps the generation"
        client.sendall(wire(frame(60)) + wire(frame(1514, 1)))
        assert recv_wait(stream) == frame(60)
        assert recv_wait(stream) == frame(1514, 1)
        assert stream.recv() is None
        assert stream.write(frame(100, 2)) is True
        assert stream.write(memoryview(frame(14, 3))) is True, "14-byte frames are legal"
        assert read_frames(client, 2) == [frame(100, 2), frame(14, 3)]


def test_partial_reads_reassemble(stream: QemuStreamPort) -> None:
    with connect(stream) as client:
        data = wire(frame(900, 7)) + wire(frame(64, 8))
        got = []
        for i in range(len(data)):
            client.sendall(data[i:i + 1])
            f = recv_wait(stream, 0.5)
            if f is not None:
                got.append((i, f))
        assert [f for _, f in got] == [frame(900, 7), frame(64, 8)]
        assert got[0][0] == 4 + 900 - 1, "the frame appears exactly when its last byte arrives"


def test_runts_are_counted_and_connection_kept(stream: QemuStreamPort) -> None:
    with connect(stream) as client:
        client.sendall(wire(b"") + wire(b"\x01" * 5) + wire(b"\x02" * 13) + wire(frame(60, 9)))
        assert recv_wait(stream) == frame(60, 9)
        assert stream.rx_runts == 3
        assert stream.connected, "a runt does not end the connection"
        client.sendall(wire(frame(70)))
        assert recv_wait(stream) == frame(70)


def test_garbage_length_closes_and_port_accepts_again(stream: QemuStreamPort) -> None:
    with connect(stream) as client:
        gen = stream.generation
        client.sendall(b"\xff\xff\xff\xff" + b"junk")
        assert recv_wait(stream) is None
        assert not stream.connected and stream.rx_bad_length == 1
        assert stream.generation > gen
        assert stream.fileno() == -1
        with pytest.raises(LinkDown):
            stream.write(frame())
        assert _closed_by_peer(client), "the offending client is disconnected"
    with connect(stream) as client2:
        assert stream.connected
        client2.sendall(wire(frame(80)))
        assert recv_wait(stream) == frame(80)


def test_largest_legal_length_is_accepted(stream: QemuStreamPort) -> None:
    # the largest legal frame is a tagged one: 65,535 bytes after 18 bytes of L2 header
    big = frame(65535 + 18, 5)
    big = big[:12] + b"\x81\x00\x00\x05" + big[16:]
    # untagged, 65,535 + 14 is the most: one byte more is oversize, dropped, connection kept
    over = frame(65535 + 15, 6)
    with connect(stream) as client:
        client.sendall(wire(over) + wire(big))
        got = None
        for _ in range(100):
            got = recv_wait(stream)
            if got is not None:
                break
        assert got == big
        assert stream.rx_oversize == 1 and stream.connected
        with pytest.raises(FrameRejected):
            stream.write(big + b"x")


def test_disconnect_mid_frame_then_reconnect(stream: QemuStreamPort) -> None:
    client = connect(stream)
    client.sendall(wire(frame(500))[:200])
    client.close()
    assert recv_wait(stream) is None
    assert not stream.connected and stream.rx_truncated == 1 and stream.disconnects == 1
    with connect(stream) as client:
        client.sendall(wire(frame(60, 4)))
        assert recv_wait(stream) == frame(60, 4)


def test_clean_disconnect_is_not_truncation(stream: QemuStreamPort) -> None:
    client = connect(stream)
    client.sendall(wire(frame(60)))
    client.close()
    assert recv_wait(stream) == frame(60)
    assert recv_wait(stream) is None
    assert not stream.connected and stream.rx_truncated == 0


def test_second_client_refused_while_first_alive_replaces_dead_one(stream: QemuStreamPort) -> None:
    first = connect(stream)
    second = connect(stream)
    assert _closed_by_peer(second), "a second live client is refused"
    assert stream.clients_rejected == 1
    first.close()  # leaves without the datapath having noticed yet
    with connect(stream) as third:
        assert stream.connected and stream.clients_accepted == 2
        third.sendall(wire(frame(66)))
        assert recv_wait(stream) == frame(66)
    second.close()


def test_partial_writes_keep_the_stream_framed(stream: QemuStreamPort) -> None:
    with connect(stream) as client:
        # A small send buffer makes the kernel take part of a 60 KB frame and refuse the rest.
        stream._conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)  # type: ignore[union-attr]
        frames = [frame(60000 - i * 7, i) for i in range(12)]
        accepted: list[bytes] = []
        received = bytearray()
        saw_partial = saw_refusal = False
        client.setblocking(False)
        for f in frames:
            for _ in range(10000):
                ok = stream.write(f)
                saw_partial |= stream.tx_pending > 0
                if ok:
                    accepted.append(f)
                    break
                saw_refusal = True
                try:
                    received += client.recv(3000)  # drain slowly, in odd-sized bites
                except BlockingIOError:
                    pass
        assert saw_partial, "the socket took only part of a frame; the rest waited in the port"
        assert saw_refusal, "a full socket makes write() return False instead of blocking"
        while not stream.flush():
            received += client.recv(1 << 16)
        client.settimeout(2)
        got: list[bytes] = []
        while len(got) < len(accepted):
            while len(received) >= 4 and len(received) >= 4 + int.from_bytes(received[:4], "big"):
                n = int.from_bytes(received[:4], "big")
                got.append(bytes(received[4:4 + n]))
                del received[:4 + n]
            if len(got) < len(accepted):
                received += client.recv(1 << 16)
        assert got == accepted == frames, "every accepted frame arrives whole and in order"


def test_write_without_client_is_link_down(stream: QemuStreamPort) -> None:
    with pytest.raises(LinkDown):
        stream.write(frame())


def test_stale_socket_replaced_and_non_socket_refused(sockdir: str) -> None:
    path = os.path.join(sockdir, "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()  # the file stays behind, as after a crash
    port = QemuStreamPort("p", path)
    port.open()
    port.open()  # idempotent
    port.close()
    assert not os.path.exists(path), "close() removes the socket file"
    regular = os.path.join(sockdir, "file")
    with open(regular, "w") as fh:
        fh.write("precious")
    with pytest.raises(FileExistsError):
        QemuStreamPort("q", regular).open()
    assert open(regular).read() == "precious"


def test_stream_describe_gives_qemu_argument(stream: QemuStreamPort) -> None:
    d = stream.describe()
    assert d["qemu_arg"] == f"-netdev stream,id=vm0,server=off,addr.type=unix,addr.path={stream.path}"
    assert d["vnet_hdr_len"] == 0 and d["kind"] == "qemu-stream"


# -- datagram --------------------------------------------------------------------------------


def test_dgram_both_ways_and_runts(sockdir: str) -> None:
    path = os.path.join(sockdir, "vm1.sock")
    port = QemuDgramPort("vm1", path)
    port.open()
    try:
        assert port.describe()["qemu_arg"] == (
            f"-netdev dgram,id=vm1,local.type=unix,local.path={path}.qemu,remote.type=unix,remote.path={path}")
        with pytest.raises(LinkDown):
            port.write(frame())  # QEMU not there yet
        qemu = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        qemu.bind(path + ".qemu")
        qemu.settimeout(2)
        assert port.write(frame(60, 1)), "the conventional peer path works before any frame arrived"
        assert qemu.recv(70000) == frame(60, 1)
        qemu.sendto(b"\x00" * 10, path)
        qemu.sendto(frame(1514, 2), path)
        assert recv_wait(port) == frame(1514, 2)
        assert port.rx_runts == 1
        assert port.recv() is None
        qemu.close()
        os.unlink(path + ".qemu")
        with pytest.raises(LinkDown):
            port.write(frame())
    finally:
        port.close()
    assert not os.path.exists(path)


def test_dgram_learns_peer_from_first_frame(sockdir: str) -> None:
    path = os.path.join(sockdir, "vm2.sock")
    port = QemuDgramPort("vm2", path)
    port.open()
    qemu = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        other = os.path.join(sockdir, "elsewhere")
        qemu.bind(other)
        qemu.settimeout(2)
        qemu.sendto(frame(64), path)
        assert recv_wait(port) == frame(64)
        assert port.peer == other
        assert port.write(frame(64, 3))
        assert qemu.recv(2000) == frame(64, 3)
    finally:
        qemu.close()
        port.close()


# -- memory ----------------------------------------------------------------------------------


def test_memory_port_inject_take_and_readiness() -> None:
    port = MemoryPort("m", vnet_hdr_len=10, max_queue=2)
    port.open()
    try:
        fd = port.fileno()
        assert not select.select([fd], [], [], 0)[0]
        port.inject(b"a" * 20)
        port.inject(b"b" * 20)
        assert select.select([fd], [], [], 0)[0], "readable while frames wait"
        assert port.recv() == b"a" * 20 and port.recv() == b"b" * 20 and port.recv() is None
        assert not select.select([fd], [], [], 0)[0], "not readable once drained"
        assert port.write(b"x") and port.write(b"y")
        assert port.write(b"z") is False, "max_queue simulates a full queue"
        assert port.take() == [b"x", b"y"] and port.sent == []
        port.down = True
        with pytest.raises(LinkDown):
            port.write(b"q")
        port.down = False
        port.error = OSError(5, "boom")
        with pytest.raises(OSError):
            port.write(b"q")
        assert port.describe()["vnet_hdr_len"] == 10
    finally:
        port.close()
        port.close()
