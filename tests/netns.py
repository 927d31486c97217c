"""Test helpers for real network namespaces: unique names, commands inside them, sure teardown.

Every namespace a test creates gets a unique name (``vt<tag><pid><n>``, at most 15 chars so it
can also name links) and is removed at teardown even when the test fails. Processes still
running inside a namespace are stopped by PID (found through /proc/*/ns/net), never by pattern.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from vswitch.lab import netns as lab_netns
from waiting import wait_until

_counter = itertools.count()


def unique_name(tag: str) -> str:
    """A short name unique to this test process, safe for namespaces and links (<= 15 chars)."""
    return f"vt{tag[:4]}{os.getpid() % 100000}{next(_counter)}"[:15]


def create(name: str) -> str:
    """Create namespace `name` with lo up (many tools, iperf3 or a ping to self, expect it)."""
    lab_netns.create(name)
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


_TCP_SINK = """
import hashlib, socket, sys
ls = socket.socket()
ls.bind((sys.argv[1], 0))
ls.listen(1)
print(ls.getsockname()[1], flush=True)
ls.settimeout(float(sys.argv[2]))
c, _ = ls.accept()
c.settimeout(float(sys.argv[2]))
h, n = hashlib.sha256(), 0
while chunk := c.recv(1 << 18):
    h.update(chunk)
    n += len(chunk)
print(n, h.hexdigest(), flush=True)
"""

_TCP_SOURCE = """
import hashlib, socket, sys
n = left = int(sys.argv[3])
block = bytes((i * 31 + 7) & 0xFF for i in range(1 << 20))
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[4]))
h = hashlib.sha256()
while left:
    chunk = block[:min(left, len(block))]
    c.sendall(chunk)
    h.update(chunk)
    left -= len(chunk)
c.shutdown(socket.SHUT_WR)
c.recv(1)  # returns once the sink has read everything and closed
print(n, h.hexdigest())
"""


def tcp_transfer(src_ns: str, dst_ns: str, dst_ip: str, nbytes: int, *, timeout: float = 120) -> float:
    """Send `nbytes` over one TCP connection from `src_ns` to a sink on `dst_ip` in `dst_ns` and check
    that every byte arrived, in order (count and SHA-256). Returns the seconds it took.

    A fixed amount, not a fixed time, and no rate floor: what is asserted is what a user relies on
    (the stream arrives whole); `timeout` only catches a transfer that stalls. The sink says which
    port it listens on once it listens, so the source never races it. Raises AssertionError.
    """
    sink = popen(dst_ns, [sys.executable, "-c", _TCP_SINK, dst_ip, str(timeout)],
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert sink.stdout is not None
        port = sink.stdout.readline().strip()
        if not port:
            raise AssertionError(f"the TCP sink in {dst_ns} did not start: {sink.communicate(timeout=10)[1]}")
        started = time.monotonic()
        src = run(src_ns, [sys.executable, "-c", _TCP_SOURCE, dst_ip, port, str(nbytes), str(timeout)],
                  timeout=timeout + 10)
        out, err = sink.communicate(timeout=timeout)
        took = time.monotonic() - started
    finally:
        if sink.poll() is None:
            sink.kill()
            sink.wait()
    sent, got = src.stdout.split(), out.split()
    assert got == sent, f"TCP {src_ns} → {dst_ip}: sent {sent}, the sink received {got or err}"
    return took

class PacedPing:
    """A paced ``ping -D`` from `ns` to `addr` running in the background, its replies read as they come.

    For "the host stays reachable across X": wait for a first reply (reachable before), do X, wait
    for a reply after X (reachable after), and bound the longest silence between replies (the
    outage) in seconds — a loss count in pings would depend on how fast ping and the switch run.
    Use as a context manager; the ping is stopped by PID.
    """

    _REPLY = re.compile(r"^\[(\d+\.\d+)\] .*icmp_seq=(\d+) ")

    def __init__(self, ns: str, addr: str, interval: float = 0.05) -> None:
        self.ns, self.addr, self.interval = ns, addr, interval
        self.replies: list[tuple[float, int]] = []  # (wall-clock time of the reply, icmp_seq)
        self.output: list[str] = []
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> PacedPing:
        self._proc = popen(self.ns, ["ping", "-D", "-n", "-i", str(self.interval), self.addr],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            self.output.append(line)
            if m := self._REPLY.match(line):
                self.replies.append((float(m.group(1)), int(m.group(2))))

    def wait_reply(self, after: float = 0.0, timeout: float = 30.0, what: str = "a reply") -> float:
        """Wall-clock time of the first reply later than `after` (time.time()); AssertionError when
        none comes within `timeout` s."""
        def later() -> float | None:
            return next((t for t, _ in self.replies if t > after), None)
        return wait_until(later, timeout, f"{what} from {self.addr} (ping in {self.ns})")

    def longest_silence(self) -> float:
        """The longest time between two consecutive replies so far, in seconds."""
        times = [t for t, _ in self.replies]
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)

    def stop(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
            self._proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=10)
