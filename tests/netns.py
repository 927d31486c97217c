"""Test helpers for real network namespaces: unique names, commands inside them, sure teardown.

Every namespace a test creates gets a unique name (``vt<tag><pid><n>``, at most 15 chars so it
can also name links) and is removed at teardown even when the test fails. Processes still
running inside a namespace are stopped by PID (found through /proc/*/ns/net), never by pattern.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from pyroute2 import netns as pr_netns

from vswitch.lab import netns as lab_netns
from waiting import wait_until

_counter = itertools.count()


def unique_name(tag: str) -> str:
    """A short name unique to this test process, safe for namespaces and links (<= 15 chars)."""
    return f"vt{tag[:4]}{os.getpid() % 100000}{next(_counter)}"[:15]


def create(name: str) -> str:
    pr_netns.create(name)
    # lo up: many tools (iperf3, ping to self) expect it
    run(name, ["ip", "link", "set", "lo", "up"])
    return name


def remove(name: str) -> None:
    """Stop every process inside `name` (by PID) and delete it; silent when already gone, so a
    teardown goes on to the next namespace."""
    try:
        lab_netns.remove(name, grace_s=2.0)
    except lab_netns.NetnsError:
        pass


def run(ns: str | None, argv: Sequence[str], *, check: bool = True, timeout: float = 60,
        **kw) -> subprocess.CompletedProcess[str]:
    """Run argv inside namespace `ns` (None: here) and return the completed process (text)."""
    full = ["ip", "netns", "exec", ns, *argv] if ns else list(argv)
    proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(full)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def popen(ns: str | None, argv: Sequence[str], **kw) -> subprocess.Popen[str]:
    full = ["ip", "netns", "exec", ns, *argv] if ns else list(argv)
    return subprocess.Popen(full, text=True, **kw)


def ping(ns: str, addr: str, *, count: int = 3, interval: float = 0.2, deadline: float = 10) -> bool:
    """True when `ns` gets at least one reply from `addr`."""
    proc = run(ns, ["ping", "-c", str(count), "-i", str(interval), "-w", str(deadline), addr],
               check=False, timeout=deadline + 5)
    return proc.returncode == 0


def tcp_listening(ns: str, port: int) -> bool:
    """True when something inside `ns` listens on TCP `port`."""
    return bool(run(ns, ["ss", "-Hltn", f"sport = :{port}"], check=False).stdout.strip())


@contextmanager
def iperf3_server(ns: str, addr: str, port: int = 5201) -> Iterator[subprocess.Popen[str]]:
    """A one-shot ``iperf3 -s`` bound to `addr` inside `ns`, yielded once it listens (waited for, not
    slept for: a client started before the listen fails with "connection refused"); stopped by PID."""
    server = popen(ns, ["iperf3", "-s", "-1", "-B", addr, "-p", str(port)])
    try:
        wait_until(lambda: server.poll() is not None or tcp_listening(ns, port),
                   what=f"iperf3 to listen on {addr}:{port} in {ns}")
        if server.poll() is not None:
            raise AssertionError(f"iperf3 -s in {ns} exited with {server.returncode} before listening")
        yield server
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()
