"""vswitchd processes of a lab: start one detached inside a host's namespace, wait until it answers,
stop it by PID.

Owns the daemon's command line, its files (state dir, socket, log — all under the lab's
directory) and the stop sequence: SIGTERM (vswitchd gives every NIC back and removes its socket),
then SIGKILL after a grace period.

Invariants:
- a daemon runs in its own session (``start_new_session``), so it outlives the `vswitch lab up`
  that started it and a Ctrl-C in that terminal does not reach it;
- a PID is signalled only while /proc/PID/cmdline is still our vswitchd with this socket — a
  recycled PID is never killed;
- no import of `vswitch.app`: the daemon is a separate program (``python -m vswitch.app.daemon``).
Must not touch: switches (ask the daemon), namespaces (see `netns`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from vswitch.lab.signals import escalate

DAEMON_MODULE = "vswitch.app.daemon"


class DaemonError(Exception):
    """A lab daemon did not start or stop; the message has the end of its log."""


def start(ns: str, state_dir: str, socket_path: str, log_path: str,
          ui: tuple[socket.socket, str] | None = None, lab_view: str | None = None) -> int:
    """Start vswitchd in namespace `ns`, detached; return its PID (it may not answer yet).

    `ui`: a listening TCP socket and a token file; the daemon serves its API and web UI on that
    socket. A socket stays in the namespace it was made in, so one bound here (the caller's
    namespace) lets a browser here reach a daemon that lives in the lab's host namespace.
    `lab_view`: the lab's view file, served at GET /lab for the web UI's lab page."""
    Path(state_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    argv = ["ip", "netns", "exec", ns, sys.executable, "-m", DAEMON_MODULE,
            "--state-dir", state_dir, "--socket", socket_path]
    if lab_view is not None:
        argv += ["--lab-view", lab_view]
    fds: tuple[int, ...] = ()
    if ui is not None:
        listener, token_file = ui
        fds = (listener.fileno(),)
        argv += ["--listen-fd", str(listener.fileno()), "--token-file", token_file]
    with open(log_path, "ab") as log:
        # `ip netns exec` execs the program: the PID we get is vswitchd's own
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True, pass_fds=fds)
    _children[proc.pid] = proc
    return proc.pid


#: daemons started by this process, so they can be reaped (no zombies while a test runs)
_children: dict[int, subprocess.Popen[bytes]] = {}


def tail(log_path: str, lines: int = 15) -> str:
    try:
        return "\n".join(Path(log_path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def alive(pid: int) -> bool:
    """True while `pid` runs (our own exited children are reaped, not counted as alive)."""
    proc = _children.get(pid)
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def answers(socket_path: str) -> bool:
    """True when an HTTP server answers GET /health on the unix socket."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2.0)
    try:
        s.connect(socket_path)
        s.sendall(b"GET /health HTTP/1.0\r\nHost: vswitchd\r\n\r\n")
        head = s.recv(64)
        return head.startswith(b"HTTP/1.") and head[8:13] == b" 200 "
    except OSError:
        return False
    finally:
        s.close()


def wait_ready(pid: int, socket_path: str, log_path: str, timeout_s: float = 30.0) -> None:
    """Wait until the daemon answers on its socket; DaemonError (with its log) if it dies or is slow."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            raise DaemonError(f"vswitchd (pid {pid}) exited during start-up:\n{tail(log_path)}")
        if os.path.exists(socket_path) and answers(socket_path):
            return
        time.sleep(0.05)
    raise DaemonError(f"vswitchd (pid {pid}) did not answer on {socket_path} within {timeout_s:g} s:\n"
                      f"{tail(log_path)}")


def is_ours(pid: int, socket_path: str) -> bool:
    """True when `pid` is a vswitchd serving `socket_path` (guards against recycled PIDs)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return DAEMON_MODULE.encode() in argv and socket_path.encode() in argv


def terminate(pid: int, grace_s: float) -> None:
    """SIGTERM, wait up to `grace_s`, then SIGKILL and wait up to 5 s. The caller has made sure
    `pid` is the process it means (PIDs are recycled); never by name or pattern."""
    escalate(lambda: [pid] if alive(pid) else [], grace_s, 5.0)


def stop(pid: int, socket_path: str, grace_s: float = 15.0) -> None:
    """SIGTERM, wait up to `grace_s`, then SIGKILL; silent when it is already gone."""
    # our own child is ours even between fork and exec, when its cmdline is still our own
    ours = pid in _children or is_ours(pid, socket_path)
    if ours:
        terminate(pid, grace_s)
    proc = _children.pop(pid, None)
    if proc is not None:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    if ours and alive(pid):
        raise DaemonError(f"vswitchd (pid {pid}) did not stop")
    try:
        os.unlink(socket_path)  # only left behind after SIGKILL
    except FileNotFoundError:
        pass
