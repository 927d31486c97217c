"""Helpers for integration tests: move links into namespaces, address them, run vswitchd.

Everything is named uniquely (tests/netns.py `unique_name`) and removed by the fixtures that
create it, even when a test fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pyroute2 import IPRoute, NetNS

import netns as ns_helpers
from vswitch.control.manager import SwitchManager
from vswitch.control.model import PortKind, PortSpec, SwitchSpec, SwitchType
from vswitch.control.netlink import Netlink
from vswitch.datapath.loop import Datapath
from vswitch.frontends.client import RestSwitchApi
from vswitch.lab.guest import GuestImage, QemuGuest

VENV_BIN = Path(sys.executable).parent


def move_and_address(ifname: str, ns: str, cidr: str, *, mac: str | None = None) -> None:
    """Move `ifname` (in this namespace) into `ns`, give it `cidr`, bring it up."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=ifname)[0]
        ipr.link("set", index=idx, net_ns_fd=ns)
    address_in(ns, ifname, cidr, mac=mac)


def address_in(ns: str, ifname: str, cidr: str | None, *, mac: str | None = None) -> None:
    with NetNS(ns) as nsr:
        idx = nsr.link_lookup(ifname=ifname)[0]
        if mac:
            nsr.link("set", index=idx, address=mac)
        if cidr:
            addr, plen = cidr.split("/")
            nsr.addr("add", index=idx, address=addr, prefixlen=int(plen))
        nsr.link("set", index=idx, state="up")
    # IPv6 chatter (RS, MLD, DAD) only adds noise to counters in these tests
    ns_helpers.run(ns, ["sysctl", "-qw", f"net.ipv6.conf.{ifname}.disable_ipv6=1"], check=False)


def veth_pair(a: str, b: str, ns_a: str | None = None, ns_b: str | None = None) -> None:
    """Create veth a<->b (here) and move the ends to their namespaces."""
    with Netlink() as nl:
        nl.create_veth(a, b)
        for name, ns in ((a, ns_a), (b, ns_b)):
            if ns:
                nl.move_to_netns(name, ns)


def delete_link(name: str, ns: str | None = None) -> None:
    try:
        with (NetNS(ns) if ns else IPRoute()) as r:
            found = r.link_lookup(ifname=name)
            if found:
                r.link("del", index=found[0])
    except Exception:
        pass


class Daemon:
    """`vswitchd` running inside namespace `ns` (None: here), driven through the `vswitch` CLI."""

    def __init__(self, ns: str | None, state_dir: str | None = None, env: dict[str, str] | None = None) -> None:
        self.ns = ns
        self.env = {**os.environ, **env} if env else None
        self._tmp = tempfile.TemporaryDirectory(prefix="vswitchd-")
        self.state_dir = state_dir or os.path.join(self._tmp.name, "state")
        self.socket = os.path.join(self._tmp.name, "vswitchd.sock")
        self.log_path = os.path.join(self._tmp.name, "vswitchd.log")
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 20) -> Daemon:
        argv = [str(VENV_BIN / "vswitchd"), "--state-dir", self.state_dir, "--socket", self.socket]
        full = ["ip", "netns", "exec", self.ns, *argv] if self.ns else argv
        self._log = open(self.log_path, "a")
        self.proc = subprocess.Popen(full, stdout=self._log, stderr=subprocess.STDOUT, text=True, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"vswitchd exited with {self.proc.returncode}:\n{self.log()}")
            if os.path.exists(self.socket) and self._answers():
                return self
            time.sleep(0.1)
        raise AssertionError(f"vswitchd did not come up in {timeout} s:\n{self.log()}")

    def _answers(self) -> bool:
        # in-process over the socket: a CLI process per probe costs a second or more on a loaded machine
        try:
            with self.api() as api:
                api.list_switches()
            return True
        except Exception:
            return False

    def api(self) -> RestSwitchApi:
        """A REST client of this daemon (in this process; close it, or use it as a context manager)."""
        return RestSwitchApi(self.socket)

    def log(self) -> str:
        try:
            return Path(self.log_path).read_text()
        except OSError:
            return ""

    def cli(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(VENV_BIN / "vswitch"), "--socket", self.socket, *args],
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"vswitch {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}\n--- daemon log ---\n{self.log()}")
        return proc

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        rc = self.proc.returncode
        self.proc = None
        self._log.close()
        return rc

    def cleanup(self) -> None:
        self.stop()
        self._tmp.cleanup()


@dataclass
class GuestSwitch:
    """A private switch (in this process) with a QEMU port, and the guest for it (not started yet)."""

    manager: SwitchManager
    switch: str
    guest: QemuGuest
    qemu_arg: str      # the -netdev argument the port printed
    dir: str           # a temporary directory for sockets and logs


@contextmanager
def switch_with_guest_port(image: GuestImage, port: str, kind: PortKind = PortKind.QEMU_STREAM
                           ) -> Iterator[GuestSwitch]:
    """Everything is stopped and removed afterwards, the guest first."""
    m = SwitchManager()
    tmp = tempfile.TemporaryDirectory(prefix="vsg-")
    guest = QemuGuest(image, os.path.join(tmp.name, "console.sock"))
    try:
        sw = ns_helpers.unique_name("sg")
        m.create_switch(SwitchSpec(sw, SwitchType.PRIVATE))
        info = m.add_port(sw, PortSpec(port, kind, os.path.join(tmp.name, f"{port}.sock")))
        yield GuestSwitch(m, sw, guest, info.details["qemu_arg"], tmp.name)
    finally:
        guest.stop()
        m.shutdown()
        tmp.cleanup()


def datapath_cpu_share(dp: Datapath, window_s: float = 2.0) -> float:
    """The share of one CPU the datapath's thread used over the next `window_s` seconds of wall time.

    A share, not CPU seconds, so that the bound means the same on any machine: a thread that spins
    takes most of a core (still ~2/3 of one with a busy loop on each of two cores), an idle one
    wakes only for its tick (well under 1 %). Raises AssertionError when the datapath has no thread.
    """
    thread = dp._thread
    assert thread is not None and thread.native_id is not None, "the datapath runs no thread"
    stat = f"/proc/self/task/{thread.native_id}/stat"

    def cpu_s() -> float:
        fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    wall0, cpu0 = time.monotonic(), cpu_s()
    time.sleep(window_s)  # a measuring window, not a wait for an event
    return (cpu_s() - cpu0) / (time.monotonic() - wall0)
