"""QEMU socket ports never take over a live socket and remove only the file they bound. No root."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from listener import GREETING, other_process_listening
from vswitch.ports.qemu import QemuDgramPort, QemuStreamPort, SocketInUse, socket_listener


@pytest.fixture
def other_listener(tmp_path) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """A unix stream socket served by another process (its pid is what a refusal must name)."""
    path = str(tmp_path / "live.sock")
    with other_process_listening(path) as proc:
        yield path, proc


@pytest.mark.parametrize("cls", [QemuStreamPort, QemuDgramPort])
def test_live_stream_socket_of_another_process_is_left_alone(cls, other_listener) -> None:
    path, proc = other_listener
    assert socket_listener(path) == f"process {proc.pid} ({os.path.basename(sys.executable)[:15]})"
    with pytest.raises(SocketInUse, match=f"live socket of process {proc.pid}"):
        cls("p", path).open()
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(path)  # blocking: a unix connect with a timeout fails at once on a full backlog
    c.settimeout(5)
    assert c.recv(100) == GREETING, "the other process's socket still works"
    c.close()


def test_live_dgram_socket_is_left_alone(tmp_path) -> None:
    path = str(tmp_path / "d.sock")
    other = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    other.bind(path)
    try:
        assert socket_listener(path) == "a live socket"  # datagram sockets carry no credentials
        for cls in (QemuStreamPort, QemuDgramPort):
            with pytest.raises(SocketInUse):
                cls("p", path).open()
        c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        c.sendto(b"hello", path)
        assert other.recv(10) == b"hello"
        c.close()
    finally:
        other.close()


def test_own_process_is_named(tmp_path) -> None:
    path = str(tmp_path / "s.sock")
    port = QemuStreamPort("a", path)
    port.open()
    try:
        assert socket_listener(path) == f"this vswitchd (pid {os.getpid()})"
        with pytest.raises(SocketInUse):
            QemuStreamPort("b", path).open()
    finally:
        port.close()
    assert socket_listener(path) is None and not os.path.exists(path)


@pytest.mark.parametrize("cls", [QemuStreamPort, QemuDgramPort])
def test_close_leaves_a_socket_file_someone_else_put_there(cls, tmp_path) -> None:
    path = str(tmp_path / "p.sock")
    port = cls("p", path)
    port.open()
    os.unlink(path)
    newcomer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    newcomer.bind(path)
    newcomer.listen(1)
    try:
        port.close()
        assert os.path.exists(path), "close() removed a socket file it did not bind"
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(path)
        c.close()
    finally:
        newcomer.close()


@pytest.mark.parametrize("kind", [socket.SOCK_STREAM, socket.SOCK_DGRAM])
def test_stale_socket_file_of_either_type_is_replaced(kind: int, tmp_path) -> None:
    """What a SIGKILLed run leaves: a socket file nobody answers on. A restart must get its path back."""
    path = str(tmp_path / "stale.sock")
    s = socket.socket(socket.AF_UNIX, kind)
    s.bind(path)
    s.close()
    assert socket_listener(path) is None
    for cls in (QemuStreamPort, QemuDgramPort):
        port = cls("p", path)
        port.open()
        port.close()
        s = socket.socket(socket.AF_UNIX, kind)
        s.bind(path)
        s.close()
