"""One owner per target: a link or a socket path belongs to one port of one switch (or one uplink / vNIC).

Kernel links: a TAP port of switch A is never also a link port of B or the NIC of an External switch;
the loopback device is never either. Sockets: a qemu-dgram port never shares a qemu-stream port's
path, a live socket of another process (or vswitchd's own API socket) is never unlinked or taken
over, '..' is refused, a plain name gets a socket in the manager's port socket directory, and a
port removes only the socket file it bound.

Run once, on `auto`: every check is a refusal (or a socket file) decided before any frame is forwarded,
the same whichever datapath the switch would run on.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from switchlab import Daemon, delete_link

import netns as ns_helpers
from listener import GREETING, other_process_listening
from vswitch.control.manager import SwitchManager
from vswitch.control.model import (
    Conflict,
    InvalidRequest,
    PortKind,
    PortSpec,
    SwitchSpec,
    SwitchType,
)
from vswitch.control.store import ConfigStore
from vswitch.frontends.client import RestSwitchApi

BROADCAST_FRAME = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x06" + bytes(46)


@pytest.fixture
def tmp() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="vsown-") as d:
        yield d


@pytest.fixture
def manager(tmp: str) -> Iterator[SwitchManager]:
    m = SwitchManager(port_socket_dir=os.path.join(tmp, "ports"))
    try:
        yield m
    finally:
        m.shutdown()


def _switches(m: SwitchManager, *names: str) -> None:
    for n in names:
        m.create_switch(SwitchSpec(n, SwitchType.PRIVATE))


# -- kernel links ---------------------------------------------------------------------------------

@pytest.mark.root
def test_link_port_on_a_tap_port_of_another_switch_is_refused(manager: SwitchManager) -> None:
    a, b = ns_helpers.unique_name("oa"), ns_helpers.unique_name("ob")
    _switches(manager, a, b)
    tap = ns_helpers.unique_name("ot")
    try:
        manager.add_port(a, PortSpec("vm1", PortKind.TAP, tap))
        with pytest.raises(Conflict) as exc:
            manager.add_port(b, PortSpec("leak", PortKind.LINK, tap))
        assert exc.value.status == 409
        assert f"tap port 'vm1' of switch {a!r}" in exc.value.message and tap in exc.value.message
        with pytest.raises(Conflict, match="tap port 'vm1'"):
            manager.add_port(a, PortSpec("again", PortKind.TAP, tap))  # same switch, same kind: refused too
        assert [p.name for p in manager.list_ports(b)] == [], "switch B is unchanged"
    finally:
        manager.remove_port(a, "vm1")  # a TAP port's netdev outlives a shutdown (it persists for the VM)
        delete_link(tap)


@pytest.fixture
def daemon_ns(netns) -> Iterator[tuple[str, Daemon]]:
    """A vswitchd in a fresh namespace: an External switch that wrongly went ahead would take over
    a link there, never one of this host."""
    ns = netns("own")
    d = Daemon(ns).start()
    try:
        yield ns, d
    finally:
        d.cleanup()


def _refused(d: Daemon, *args: str) -> str:
    r = d.cli(*args, check=False)
    assert r.returncode == 1, f"vswitch {' '.join(args)} was accepted:\n{r.stdout}{r.stderr}"
    return r.stderr


@pytest.mark.root
def test_external_on_a_port_of_another_switch_or_on_lo_is_refused(daemon_ns: tuple[str, Daemon]) -> None:
    ns, d = daemon_ns
    ns_helpers.run(ns, ["ip", "link", "add", "vetha", "type", "veth", "peer", "name", "vethb"])
    ns_helpers.run(ns, ["ip", "link", "set", "vetha", "up"])
    d.cli("switch", "create", "a", "--private")
    d.cli("port", "add", "a", "vm1", "--tap", "tapa")
    d.cli("port", "add", "a", "vm2", "--link", "vetha")
    d.cli("switch", "create", "in", "--internal")

    assert "tap port 'vm1' of switch 'a'" in _refused(d, "switch", "create", "x", "--external", "tapa")
    assert "link port 'vm2' of switch 'a'" in _refused(d, "switch", "create", "x", "--external", "vetha")
    assert "host vNIC of switch 'in'" in _refused(d, "switch", "create", "x", "--external", "vs-in")
    assert "loopback" in _refused(d, "switch", "create", "x", "--external", "lo")
    assert "loopback" in _refused(d, "port", "add", "a", "lo", "--link", "lo")
    assert "host vNIC of switch 'in'" in _refused(d, "port", "add", "a", "v", "--link", "vs-in")
    assert "link port 'vm2' of switch 'a'" in _refused(d, "port", "add", "in", "v", "--link", "vetha")

    listing = d.cli("switch", "list", "--json").stdout
    assert '"x"' not in listing, "no External switch was made"
    links = ns_helpers.run(ns, ["ip", "-o", "link", "show"]).stdout
    assert "vs-x" not in links, "no host vNIC was left behind"


# -- sockets --------------------------------------------------------------------------------------

def test_dgram_on_a_stream_ports_path_is_refused(manager: SwitchManager, tmp: str) -> None:
    _switches(manager, "a", "b")
    path = os.path.join(tmp, "s.sock")
    manager.add_port("a", PortSpec("s", PortKind.QEMU_STREAM, path))
    with pytest.raises(Conflict, match="qemu-stream port 's' of switch 'a'"):
        manager.add_port("b", PortSpec("d", PortKind.QEMU_DGRAM, path))
    manager.add_port("a", PortSpec("s2", PortKind.QEMU_STREAM, path + "2.qemu"))
    with pytest.raises(Conflict, match="qemu-stream port 's2'"):  # QEMU would bind <path>.qemu
        manager.add_port("b", PortSpec("d", PortKind.QEMU_DGRAM, path + "2"))
    assert stat.S_ISSOCK(os.lstat(path).st_mode) and manager.port_object("a", "s").extra_fds(), \
        "the stream port still listens on its own socket"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.connect(path)


def test_live_socket_of_another_process_is_refused_and_keeps_working(manager: SwitchManager, tmp: str) -> None:
    _switches(manager, "a")
    path = os.path.join(tmp, "service.sock")
    with other_process_listening(path) as proc:
        for kind in (PortKind.QEMU_STREAM, PortKind.QEMU_DGRAM):
            with pytest.raises(Conflict) as exc:
                manager.add_port("a", PortSpec("vm", kind, path))
            assert f"live socket of process {proc.pid}" in exc.value.message, exc.value.message
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(path)
            c.settimeout(10)
            assert c.recv(100) == GREETING, "the other service's socket still answers"
        assert manager.list_ports("a") == []


def test_vswitchd_api_socket_and_state_dir_are_never_a_port(tmp: str) -> None:
    d = Daemon(None, state_dir=os.path.join(tmp, "state")).start()
    try:
        with RestSwitchApi(socket_path=d.socket) as api:
            api.create_switch(SwitchSpec("lab", SwitchType.PRIVATE))
            alias = os.path.join(tmp, "alias")
            os.symlink(d.state_dir, alias)  # the same directory by another name
            for target in (d.socket, d.state_dir, os.path.join(d.state_dir, "x.sock"),
                           os.path.join(d.state_dir, "config.sqlite"), os.path.join(alias, "x.sock")):
                for kind in (PortKind.QEMU_STREAM, PortKind.QEMU_DGRAM):
                    with pytest.raises(Conflict, match="reserved for vswitchd itself"):
                        api.add_port("lab", PortSpec("vm", kind, target))
            api.health()
        assert d.stop() == 0, d.log()
        d.start()
        with RestSwitchApi(socket_path=d.socket) as api:
            [lab] = api.list_switches()
            assert lab.ports == [], "nothing was stored; the API survived a restart"
    finally:
        d.cleanup()


def test_dotdot_is_refused_not_resolved(manager: SwitchManager, tmp: str) -> None:
    _switches(manager, "a")
    os.mkdir(os.path.join(tmp, "sub"))
    for kind in (PortKind.QEMU_STREAM, PortKind.QEMU_DGRAM):
        with pytest.raises(InvalidRequest, match=r"'\.\.' component"):
            manager.add_port("a", PortSpec("vm", kind, os.path.join(tmp, "sub", "..", "x.sock")))
    assert not os.path.exists(os.path.join(tmp, "x.sock"))


def test_cli_refuses_dotdot_and_sends_plain_names_as_is(tmp: str) -> None:
    d = Daemon(None, state_dir=os.path.join(tmp, "state")).start()
    try:
        d.cli("switch", "create", "lab", "--private")
        r = subprocess.run([str(Path(sys.executable).parent / "vswitch"), "--socket", d.socket, "port", "add",
                            "lab", "vm", "--qemu-stream", "../x.sock"], cwd=os.path.join(tmp, "state"),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "'..' component" in r.stderr, r.stdout + r.stderr
        assert not os.path.exists(os.path.join(tmp, "x.sock"))
    finally:
        d.cleanup()


def _send_stream(c: socket.socket, frame: bytes) -> None:
    c.sendall(len(frame).to_bytes(4, "big") + frame)


def _recv_stream(c: socket.socket) -> bytes:
    def exactly(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = c.recv(n - len(buf))
            assert chunk, "the switch closed the connection"
            buf += chunk
        return buf
    return exactly(int.from_bytes(exactly(4), "big"))


def test_plain_name_gets_a_socket_in_the_port_socket_dir(tmp: str) -> None:
    ports_dir = os.path.join(tmp, "run", "ports")
    db = os.path.join(tmp, "config.sqlite")
    m = SwitchManager(ConfigStore(db), port_socket_dir=ports_dir)
    try:
        m.create_switch(SwitchSpec("lab", SwitchType.PRIVATE))
        info = m.add_port("lab", PortSpec("vm2", PortKind.QEMU_STREAM, "vm2"))
        m.add_port("lab", PortSpec("vm3", PortKind.QEMU_STREAM, "vm3"))
        path = os.path.join(ports_dir, "vm2.sock")
        assert info.target == path and f"addr.path={path}" in info.details["qemu_arg"], info
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        assert stat.S_IMODE(os.stat(ports_dir).st_mode) & 0o777 in (0o755, 0o750)
        with ConfigStore(db) as other:
            [(_, stored)] = other.load()
        assert [p.target for p in stored] == [path, os.path.join(ports_dir, "vm3.sock")], \
            "the store holds the resolved path, so a restart uses the same one"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as vm2, \
                socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as vm3:
            vm2.connect(path)
            vm3.connect(os.path.join(ports_dir, "vm3.sock"))
            vm3.settimeout(10)
            # a frame reaches only a port whose QEMU is attached: wait until the switch accepted both
            deadline = time.monotonic() + 10
            while not all(m.port_object("lab", p).connected for p in ("vm2", "vm3")):  # type: ignore[attr-defined]
                assert time.monotonic() < deadline, "the switch did not accept both clients"
                time.sleep(0.01)
            _send_stream(vm2, BROADCAST_FRAME)
            assert _recv_stream(vm3) == BROADCAST_FRAME, "the plain-named ports forward"
    finally:
        m.shutdown()
        if m.store is not None:
            m.store.close()
    assert not os.path.exists(os.path.join(ports_dir, "vm2.sock")), "shutdown removes the port's own socket"


def test_removing_a_port_leaves_a_socket_file_someone_else_put_there(manager: SwitchManager, tmp: str) -> None:
    _switches(manager, "a")
    path = os.path.join(tmp, "r.sock")
    manager.add_port("a", PortSpec("vm", PortKind.QEMU_STREAM, path))
    os.unlink(path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as newcomer:
        newcomer.bind(path)
        newcomer.listen(1)
        manager.remove_port("a", "vm")
        assert os.path.exists(path), "remove_port unlinked a socket file it did not bind"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(path)
