"""vswitchd as a real process: unix socket (0660), restore after restart, SIGTERM → exit 0, TCP + token.

No root needed: private switches with memory and qemu-stream ports touch no kernel link.
The daemon runs as ``python -m vswitch.app.daemon`` (same code as the ``vswitchd`` entry point).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from vswitch.control.model import PortKind, PortSpec, SwitchSpec, SwitchType
from vswitch.frontends.cli import cli
from vswitch.frontends.client import DaemonUnreachable, RestSwitchApi

needs_manager = pytest.mark.skipif(
    importlib.util.find_spec("vswitch.control.manager") is None,
    reason="vswitch.control.manager (SwitchManager) does not exist yet; vswitchd cannot start without it",
)

START_TIMEOUT_S = 20.0


class Daemon:
    """One vswitchd subprocess with its log; `stop()` sends SIGTERM and returns the exit code."""

    def __init__(self, state: Path, sock: Path, *extra: str) -> None:
        self.sock = sock
        self.log_path = state.parent / f"vswitchd-{time.monotonic_ns()}.log"
        self.log = open(self.log_path, "w")  # closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vswitch.app.daemon", "--state-dir", str(state), "--socket", str(sock),
             "--log-level", "debug", *extra],
            stdout=self.log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"vswitchd exited with {self.proc.returncode} during start:\n{self.output()}")
            try:
                with RestSwitchApi(socket_path=str(self.sock), timeout_s=2) as api:
                    api.health()
                return
            except DaemonUnreachable:
                if time.monotonic() > deadline:
                    pytest.fail(f"vswitchd did not answer on {self.sock} within {START_TIMEOUT_S} s:\n"
                                f"{self.output()}")
                time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=20)
        finally:
            self.log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture
def paths(tmp_path: Path) -> tuple[Path, Path]:
    return tmp_path / "state", tmp_path / "run" / "vswitchd.sock"


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    try:
        yield started
    finally:
        for d in reversed(started):
            d.kill()


def start(daemons: list[Daemon], state: Path, sock: Path, *extra: str) -> Daemon:
    d = Daemon(state, sock, *extra)
    daemons.append(d)
    d.wait_ready()
    return d


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_manager
def test_lifecycle_restore_and_sigterm(paths: tuple[Path, Path], daemons: list[Daemon], tmp_path: Path) -> None:
    state, sock = paths
    d = start(daemons, state, sock)
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o660, "the socket is group-accessible, not world"

    qemu_sock = str(tmp_path / "vm1.sock")
    with RestSwitchApi(socket_path=str(sock)) as api:
        info = api.create_switch(SwitchSpec("lab", SwitchType.PRIVATE, ageing_s=60))
        assert not isinstance(info, list) and info.name == "lab" and info.type == "private"
        api.add_port("lab", PortSpec("a", PortKind.MEMORY, "a"))
        api.add_port("lab", PortSpec("b", PortKind.MEMORY, "b", vlan=10))

    runner = CliRunner()
    result = runner.invoke(cli, ["--socket", str(sock), "port", "add", "lab", "vm1", "--qemu-stream", qemu_sock])
    assert result.exit_code == 0, result.output + result.stderr
    assert "-netdev stream" in result.stdout and qemu_sock in result.stdout, "the QEMU argument is printed"
    result = runner.invoke(cli, ["--socket", str(sock), "switch", "list"])
    assert result.exit_code == 0 and "lab" in result.stdout
    result = runner.invoke(cli, ["--socket", str(sock), "switch", "show", "nope"])
    assert result.exit_code == 1 and "nope" in result.stderr
    result = runner.invoke(cli, ["--socket", str(sock), "trace", "lab", "--in-port", "a",
                                 "--src", "02:00:00:00:00:01", "--dst", "ff:ff:ff:ff:ff:ff"])
    assert result.exit_code == 0 and "output ports: b" not in result.stdout, "VLAN 10 port b is not flooded to"
    assert "vm1" in result.stdout

    assert d.stop() == 0, d.output()
    assert not sock.exists(), "the socket file is removed on SIGTERM"

    d2 = start(daemons, state, sock)
    with RestSwitchApi(socket_path=str(sock)) as api:
        [lab] = api.list_switches()
        assert lab.ageing_s == 60
        assert [p.name for p in lab.ports] == ["a", "b", "vm1"], "the restart restores every port, in order"
        assert [p.vlan_mode for p in lab.ports][1].startswith("access 10")
        api.delete_switch("lab")
    assert d2.stop(signal.SIGINT) == 0, d2.output()
    assert not sock.exists()


@needs_manager
def test_stale_socket_is_replaced_and_live_one_refused(paths: tuple[Path, Path], daemons: list[Daemon]) -> None:
    state, sock = paths
    sock.parent.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock))
    stale.close()  # the file stays, nobody listens: what a crash leaves behind
    d = start(daemons, state, sock)

    second = Daemon(state.parent / "state2", sock)
    daemons.append(second)
    assert second.proc.wait(timeout=20) == 1
    assert "another vswitchd is already serving" in second.output()
    assert sock.exists(), "the refused second daemon left the first one's socket alone"
    assert d.stop() == 0, d.output()


@needs_manager
def test_tcp_listener_requires_token(paths: tuple[Path, Path], daemons: list[Daemon], tmp_path: Path) -> None:
    state, sock = paths
    token_file = tmp_path / "token"
    token_file.write_text("t0ken-for-tests\n")
    token_file.chmod(0o600)
    port = free_port()
    d = start(daemons, state, sock, "--listen", f"127.0.0.1:{port}", "--token-file", str(token_file))
    url = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{url}/health").status_code == 200
    r = httpx.get(f"{url}/switches")
    assert r.status_code == 401 and "token" in r.json()["error"]
    assert httpx.get(f"{url}/switches", headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = httpx.get(f"{url}/switches", headers={"Authorization": "Bearer t0ken-for-tests"})
    assert r.status_code == 200 and r.json() == []
    with RestSwitchApi(url=url, token="t0ken-for-tests") as api:
        api.create_switch(SwitchSpec("viatcp", SwitchType.PRIVATE))
    with RestSwitchApi(socket_path=str(sock)) as api:  # the unix socket is trusted by its file mode
        assert [s.name for s in api.list_switches()] == ["viatcp"]
    result = CliRunner().invoke(cli, ["--url", url, "--token-file", str(token_file), "switch", "list", "--json"])
    assert result.exit_code == 0 and '"viatcp"' in result.stdout
    result = CliRunner().invoke(cli, ["--url", url, "switch", "list"])
    assert result.exit_code == 1 and "refused" in result.stderr
    assert d.stop() == 0, d.output()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--listen", "127.0.0.1:8470"], "--listen needs --token-file"),
        (["--listen", "0.0.0.0:8470", "--token-file", "/nonexistent"], "--allow-remote"),
        (["--listen", "nonsense", "--token-file", "/nonexistent"], "HOST:PORT"),
        (["--token-file", "/nonexistent"], "only applies with --listen"),
    ],
)
def test_refused_arguments(paths: tuple[Path, Path], extra: list[str], needle: str) -> None:
    state, sock = paths
    proc = subprocess.run(
        [sys.executable, "-m", "vswitch.app.daemon", "--state-dir", str(state), "--socket", str(sock), *extra],
        capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert not sock.exists()
