"""Benchmark lab: uniquely named namespaces, links and processes that are always removed.

Owns: a :class:`Lab` (an ExitStack) that creates network namespaces, veth pairs and child
processes for one benchmark setup and undoes every step in reverse order on exit — also when a
measurement fails or the user presses Ctrl-C (``install_signal_handlers`` turns SIGTERM/SIGHUP
into KeyboardInterrupt so the same unwinding runs).

Invariants:
- Every name is ``pb<tag><pid><n>`` (at most 15 characters, so it can also name a link) and unique
  to this process; nothing that exists already is ever touched.
- Processes are stopped by PID only (the ones we started, then whatever still lives in our
  namespaces), never by pattern.
- Traffic only flows between addresses inside namespaces created here.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import time
from collections.abc import Sequence

from pyroute2 import IPRoute, NetNS
from pyroute2 import netns as pr_netns

from vswitch.control.netlink import Netlink
from vswitch.lab import netns as lab_netns

_counter = itertools.count()


def unique_name(tag: str) -> str:
    """A name unique to this process, usable for namespaces and links (<= 15 chars)."""
    return f"pb{tag[:4]}{os.getpid() % 10000}{next(_counter)}"[:15]


def install_signal_handlers() -> None:
    """Make SIGINT/SIGTERM/SIGHUP unwind like Ctrl-C, so every Lab removes what it created.

    Only in this process: pyroute2's NetNS forks helpers that inherit the handler and are stopped
    with SIGTERM; they must simply die, never run our teardown."""
    owner = os.getpid()

    def raise_interrupt(signum: int, _frame: object) -> None:
        if os.getpid() != owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise KeyboardInterrupt(f"signal {signum}")

    # SIGINT too: a shell starts background jobs with SIGINT ignored, and Ctrl-C must still unwind
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, raise_interrupt)


def cpu_prefix(cpus: str | None) -> list[str]:
    """``taskset -c CPUS`` to prepend to a command line, or nothing."""
    return ["taskset", "-c", cpus] if cpus else []


def run(ns: str | None, argv: Sequence[str], *, check: bool = True, timeout: float = 60,
        cpus: str | None = None, **kw) -> subprocess.CompletedProcess[str]:
    """Run argv in namespace ``ns`` (None: here), optionally pinned to ``cpus``."""
    full = (["ip", "netns", "exec", ns] if ns else []) + cpu_prefix(cpus) + list(argv)
    proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, **kw)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(full)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


class Lab(contextlib.ExitStack):
    """Resources of one setup; ``with Lab() as lab:`` removes them all, last first."""

    def netns(self, tag: str) -> str:
        """A new namespace with lo up and IPv6 off (no RS/MLD/DAD chatter in the counters)."""
        name = unique_name(tag)
        pr_netns.create(name)
        self.callback(self._remove_netns, name)
        run(name, ["ip", "link", "set", "lo", "up"])
        for key in ("all", "default"):
            run(name, ["sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1"], check=False)
        return name

    @staticmethod
    def _remove_netns(name: str) -> None:
        with contextlib.suppress(lab_netns.NetnsError):
            lab_netns.remove(name, grace_s=2.0)  # stops what runs inside, by PID

    def popen(self, ns: str | None, argv: Sequence[str], *, cpus: str | None = None,
              **kw) -> subprocess.Popen[str]:
        """Start argv in ``ns``; it is stopped (by PID) when the lab closes. ``ip netns exec`` and
        ``taskset`` exec the program, so the PID is the program's own."""
        full = (["ip", "netns", "exec", ns] if ns else []) + cpu_prefix(cpus) + list(argv)
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(full, text=True, **kw)
        self.callback(self._stop_proc, proc)
        return proc

    @staticmethod
    def _stop_proc(proc: subprocess.Popen[str]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def veth(self, a: str, ns_a: str | None, b: str, ns_b: str | None) -> None:
        """veth a<->b with each end moved to its namespace (None: here), both ends up."""
        with Netlink() as nl:
            nl.create_veth(a, b)
        self.callback(delete_link, a, ns_a)
        self.callback(delete_link, b, ns_b)
        for name, ns in ((a, ns_a), (b, ns_b)):
            if ns:
                move_link(name, None, ns)
            set_up(ns, name)

    def bridge(self, ns: str, name: str) -> None:
        with NetNS(ns) as r:
            r.link("add", ifname=name, kind="bridge")
            r.link("set", index=r.link_lookup(ifname=name)[0], state="up")
        self.callback(delete_link, name, ns)


def move_link(name: str, src_ns: str | None, dst_ns: str) -> None:
    """Move link ``name`` from ``src_ns`` (None: here) into ``dst_ns``."""
    with (NetNS(src_ns) if src_ns else IPRoute()) as r:
        r.link("set", index=r.link_lookup(ifname=name)[0], net_ns_fd=dst_ns)


def set_up(ns: str | None, name: str, *, cidr: str | None = None, master: str | None = None) -> None:
    """Bring ``name`` up in ``ns``, optionally with an address or enslaved to a bridge."""
    with (NetNS(ns) if ns else IPRoute()) as r:
        idx = r.link_lookup(ifname=name)[0]
        if master:
            r.link("set", index=idx, master=r.link_lookup(ifname=master)[0])
        if cidr:
            addr, plen = cidr.split("/")
            r.addr("add", index=idx, address=addr, prefixlen=int(plen))
        r.link("set", index=idx, state="up")


def delete_link(name: str, ns: str | None) -> None:
    """Delete ``name`` in ``ns`` if it still exists (it vanishes with its namespace or owner)."""
    with contextlib.suppress(Exception):
        if ns and not os.path.exists(f"/run/netns/{ns}"):
            return
        with (NetNS(ns) if ns else IPRoute()) as r:
            found = r.link_lookup(ifname=name)
            if found:
                r.link("del", index=found[0])


def link_stats(ns: str, name: str) -> dict[str, int]:
    """The link's 64-bit counters (rx_packets, rx_bytes, rx_dropped, ...)."""
    with NetNS(ns) as r:
        link = r.get_links(r.link_lookup(ifname=name)[0])[0]
        return dict(link.get_attr("IFLA_STATS64"))


def proc_cpu_s(pids: Sequence[int]) -> float:
    """CPU time (user + system, all threads, exited ones included) of the processes, in seconds.

    Read from each process's CPU clock (``clock_gettime`` on ``MAKE_PROCESS_CPUCLOCK(pid,
    CPUCLOCK_SCHED)``): nanosecond resolution, where /proc/PID/stat's utime+stime only counts
    10 ms ticks. Falls back to /proc/PID/stat when the clock cannot be read."""
    total = 0.0
    for pid in pids:
        try:
            total += time.clock_gettime((~pid << 3) | 2)
        except OSError:
            total += _stat_cpu_s(pid)
    return total


def _stat_cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    except (OSError, IndexError, ValueError):
        return 0.0
