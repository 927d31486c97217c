"""The switches under test, each joining two namespaces: what to build and how to find its process.

Owns one builder per candidate. Every builder takes a :class:`netlab.Lab` (which undoes all it
creates) and the CPU set to pin the switch to (None: unpinned) and returns a :class:`Pair`.

Topology, identical for every candidate::

    A: <if> 10.201.0.1/24 ──┐                          ┌── <if> 10.201.0.2/24 :B
                            └── switch under test (S) ─┘

Namespaces A, B and S; the switch's process and its side of the links live in S. TAP-based
candidates create their TAPs in S and move them into A and B; veth-based candidates keep the
switch-side veth end in S.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from netlab import Lab, move_link, run, set_up, unique_name

IP_A, IP_B = "10.201.0.1", "10.201.0.2"
PLEN = 24
VENV_BIN = Path(sys.executable).parent
#: extra vswitchd arguments for every vswitch setup (run.py --vswitchd-args, e.g. "--busy-poll-us 50")
VSWITCHD_EXTRA_ARGS: list[str] = []
#: run.py --baseline-src: a vswitch source tree (its ``src/``) whose vswitchd the ``…-base`` setups run,
#: so a change and the code before it are measured in the same interleaved run
BASELINE_SRC: str | None = None


@dataclass
class Pair:
    """Two namespaces joined by one switch: where to run traffic and what to account."""

    name: str
    ns_a: str
    ns_b: str
    if_a: str
    if_b: str
    ip_a: str = IP_A
    ip_b: str = IP_B
    #: the switch's processes (utime + stime are its CPU cost); empty for the kernel bridge
    switch_pids: list[int] = field(default_factory=list)
    ns_sw: str | None = None


def _endpoints(lab: Lab) -> tuple[str, str, str]:
    return lab.netns("a"), lab.netns("b"), lab.netns("s")


def _address(ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
    set_up(ns_a, if_a, cidr=f"{IP_A}/{PLEN}")
    set_up(ns_b, if_b, cidr=f"{IP_B}/{PLEN}")


# -- (a) the Linux kernel bridge -------------------------------------------------------------------

def kernel_bridge(lab: Lab, cpus: str | None) -> Pair:
    """veth A–S, veth B–S, both S ends on a bridge; default offloads (GSO frames cross whole)."""
    ns_a, ns_b, ns_s = _endpoints(lab)
    if_a, if_b, sa, sb, br = (unique_name(t) for t in ("ia", "ib", "sa", "sb", "br"))
    lab.veth(if_a, ns_a, sa, ns_s)
    lab.veth(if_b, ns_b, sb, ns_s)
    lab.bridge(ns_s, br)
    set_up(ns_s, sa, master=br)
    set_up(ns_s, sb, master=br)
    _address(ns_a, if_a, ns_b, if_b)
    return Pair("kernel-bridge", ns_a, ns_b, if_a, if_b, ns_sw=ns_s)


def kernel_bridge_2(lab: Lab, cpus: str | None) -> Pair:
    """`kernel_bridge` again under its own name: the noise control. Measured interleaved with the first,
    its per-round ratio to it shows how far a run's ratios stray with no real difference."""
    return dataclasses.replace(kernel_bridge(lab, cpus), name="kernel-bridge-2")


# -- (b, c) vswitch --------------------------------------------------------------------------------

class Vswitchd:
    """vswitchd in namespace ``ns`` (optionally pinned), driven over its REST socket."""

    def __init__(self, lab: Lab, ns: str, cpus: str | None, src: str | None = None) -> None:
        from vswitch.frontends.client import RestSwitchApi

        tmp = tempfile.TemporaryDirectory(prefix="pbvs-")
        lab.callback(tmp.cleanup)
        self.socket = os.path.join(tmp.name, "vswitchd.sock")
        self.log_path = os.path.join(tmp.name, "vswitchd.log")
        log = open(self.log_path, "w")
        lab.callback(log.close)
        # Another tree's vswitchd: this venv's interpreter with that tree's package first on the path.
        program = ([str(VENV_BIN / "vswitchd")] if src is None else
                   ["env", f"PYTHONPATH={os.path.join(src, 'src')}", sys.executable, "-m", "vswitch.app.daemon"])
        argv = [*program, "--state-dir", os.path.join(tmp.name, "state"),
                "--socket", self.socket, "--log-level", "warning", *VSWITCHD_EXTRA_ARGS]
        self.proc = lab.popen(ns, argv, cpus=cpus, stdout=log, stderr=subprocess.STDOUT)
        self.api = RestSwitchApi(self.socket)
        lab.callback(self.api.close)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vswitchd exited ({self.proc.returncode}): {Path(self.log_path).read_text()}")
            if os.path.exists(self.socket):
                try:
                    self.api.health()
                    break
                except Exception:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"vswitchd did not come up: {Path(self.log_path).read_text()}")
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def create_private(self, name: str, datapath: str = "python") -> str:
        """Create a private switch (on the Python datapath unless told: what the older setups measure);
        returns which datapath it runs on (`SwitchInfo.datapath`)."""
        from vswitch.control.model import DatapathMode, SwitchSpec, SwitchType

        return self.api.create_switch(SwitchSpec(name, SwitchType.PRIVATE, datapath=DatapathMode(datapath))).datapath

    def add_port(self, switch: str, port: str, kind: str, target: str) -> None:
        from vswitch.control.model import PortKind, PortSpec

        self.api.add_port(switch, PortSpec(port, PortKind(kind), target))


def vswitch_tap(lab: Lab, cpus: str | None, *, src: str | None = None) -> Pair:
    """vswitchd in S owning two TAP ports (vnet header + TSO); the TAPs are moved into A and B.
    ``src``: run that source tree's vswitchd (``--baseline-src``)."""
    ns_a, ns_b, ns_s = _endpoints(lab)
    d = Vswitchd(lab, ns_s, cpus, src)
    sw = unique_name("sw")
    d.create_private(sw)
    if_a, if_b = unique_name("ta"), unique_name("tb")
    d.add_port(sw, "a", "tap", if_a)
    d.add_port(sw, "b", "tap", if_b)
    move_link(if_a, ns_s, ns_a)
    move_link(if_b, ns_s, ns_b)
    _address(ns_a, if_a, ns_b, if_b)
    return Pair("vswitch-tap" if src is None else "vswitch-tap-base", ns_a, ns_b, if_a, if_b,
                switch_pids=[d.pid], ns_sw=ns_s)


def vswitch_link(lab: Lab, cpus: str | None, *, datapath: str = "python", src: str | None = None) -> Pair:
    """vswitchd in S with two link ports on the S ends of veths: on the Python datapath (AF_PACKET +
    PACKET_VNET_HDR), or with ``datapath="kernel"`` on the kernel fast path (tc-bpf on those ends).
    ``src``: run that source tree's vswitchd (``--baseline-src``)."""
    ns_a, ns_b, ns_s = _endpoints(lab)
    if_a, if_b, sa, sb = (unique_name(t) for t in ("ia", "ib", "sa", "sb"))
    lab.veth(if_a, ns_a, sa, ns_s)
    lab.veth(if_b, ns_b, sb, ns_s)
    d = Vswitchd(lab, ns_s, cpus, src)
    sw = unique_name("sw")
    d.create_private(sw, datapath)
    d.add_port(sw, "a", "link", sa)
    d.add_port(sw, "b", "link", sb)
    _address(ns_a, if_a, ns_b, if_b)
    name = ("vswitch-link" if datapath == "python" else "vswitch-kernel") + ("" if src is None else "-base")
    return Pair(name, ns_a, ns_b, if_a, if_b, switch_pids=[d.pid], ns_sw=ns_s)


def vswitch_kernel(lab: Lab, cpus: str | None) -> Pair:
    """`vswitch_link` on the kernel datapath (refused, so the run says why, where it cannot load)."""
    return vswitch_link(lab, cpus, datapath="kernel")


def vswitch_tap_base(lab: Lab, cpus: str | None) -> Pair:
    """`vswitch_tap` with the ``--baseline-src`` tree's vswitchd."""
    if BASELINE_SRC is None:
        raise RuntimeError("vswitch-tap-base needs --baseline-src")
    return vswitch_tap(lab, cpus, src=BASELINE_SRC)


def vswitch_link_base(lab: Lab, cpus: str | None) -> Pair:
    """`vswitch_link` (Python datapath) with the ``--baseline-src`` tree's vswitchd."""
    if BASELINE_SRC is None:
        raise RuntimeError("vswitch-link-base needs --baseline-src")
    return vswitch_link(lab, cpus, src=BASELINE_SRC)


# -- (c2) an External switch: the host's own traffic across the uplink ------------------------------
#
# Here A is the host namespace itself (S): the host's address moves with the takeover to the host
# vNIC, and B is a "server" behind the NIC (a veth whose other end is in B). The baseline is a
# kernel bridge holding the same NIC, the host's address on the bridge's own port.

def _nic(lab: Lab) -> tuple[str, str, str, str]:
    """The host namespace S with a "NIC" (a veth end) whose peer is the server B's interface."""
    ns_s, ns_b = lab.netns("s"), lab.netns("b")
    nic, if_b = unique_name("ni"), unique_name("ib")
    lab.veth(nic, ns_s, if_b, ns_b)
    set_up(ns_b, if_b, cidr=f"{IP_B}/{PLEN}")
    return ns_s, ns_b, nic, if_b


def bridge_external(lab: Lab, cpus: str | None) -> Pair:
    """A kernel bridge in S holding the NIC; the host's address on the bridge itself."""
    ns_s, ns_b, nic, if_b = _nic(lab)
    br = unique_name("br")
    lab.bridge(ns_s, br)
    set_up(ns_s, nic, master=br)
    set_up(ns_s, br, cidr=f"{IP_A}/{PLEN}")
    return Pair("bridge-external", ns_s, ns_b, br, if_b, ns_sw=ns_s)


def vswitch_external(lab: Lab, cpus: str | None, *, datapath: str = "kernel") -> Pair:
    """vswitchd in S with an External switch on the NIC (allow management OS): the takeover moves
    the host's address to the host vNIC; its traffic crosses vNIC → switch → uplink → B."""
    from vswitch.control.model import DatapathMode, SwitchSpec, SwitchType

    ns_s, ns_b, nic, if_b = _nic(lab)
    set_up(ns_s, nic, cidr=f"{IP_A}/{PLEN}")
    d = Vswitchd(lab, ns_s, cpus)
    sw = unique_name("sw")
    d.api.create_switch(SwitchSpec(sw, SwitchType.EXTERNAL, nic=nic, datapath=DatapathMode(datapath)))
    name = "vswitch-external" if datapath == "kernel" else "vswitch-external-python"
    return Pair(name, ns_s, ns_b, ("vs-" + sw)[:15], if_b, switch_pids=[d.pid], ns_sw=ns_s)


def vswitch_external_python(lab: Lab, cpus: str | None) -> Pair:
    return vswitch_external(lab, cpus, datapath="python")


def vswitch_mixed(lab: Lab, cpus: str | None) -> Pair:
    """A mixed switch on the kernel datapath: A behind a veth link port (the fast path), B behind a TAP
    port moved into B (served by Python), so every frame between them crosses the upcall path (A's
    frames go up the upcall TAP to Python, B's go down it to the veth)."""
    ns_a, ns_b, ns_s = _endpoints(lab)
    if_a, sa, if_b = unique_name("ia"), unique_name("sa"), unique_name("tb")
    lab.veth(if_a, ns_a, sa, ns_s)
    d = Vswitchd(lab, ns_s, cpus)
    sw = unique_name("sw")
    d.create_private(sw, "kernel")
    d.add_port(sw, "a", "link", sa)
    d.add_port(sw, "b", "tap", if_b)
    move_link(if_b, ns_s, ns_b)
    _address(ns_a, if_a, ns_b, if_b)
    return Pair("vswitch-mixed", ns_a, ns_b, if_a, if_b, switch_pids=[d.pid], ns_sw=ns_s)


# -- (d) peers: VDE2 and Open vSwitch's userspace datapath ----------------------------------------

PEER_PACKAGES = {"vde_switch": "vde2", "ovs-vswitchd": "openvswitch-switch"}


def ensure_peer_packages() -> None:
    """Install VDE2 and Open vSwitch from Debian when their programs are missing (root)."""
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    missing = sorted({pkg for cmd, pkg in PEER_PACKAGES.items() if shutil.which(cmd, path=path) is None})
    if not missing:
        return
    print(f"installing {' '.join(missing)} (apt-get) for --peers", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env,
                   stdout=subprocess.DEVNULL)


def vde2(lab: Lab, cpus: str | None) -> Pair:
    """``vde_switch -t tapA -t tapB`` in S (foreground, its console on a pipe); TAPs moved to A, B."""
    ns_a, ns_b, ns_s = _endpoints(lab)
    tmp = tempfile.TemporaryDirectory(prefix="pbvde-")
    lab.callback(tmp.cleanup)
    if_a, if_b = unique_name("va"), unique_name("vb")
    proc = lab.popen(ns_s, ["vde_switch", "-s", os.path.join(tmp.name, "ctl"), "-t", if_a, "-t", if_b],
                     cpus=cpus, stdin=subprocess.PIPE)
    _wait_links(ns_s, [if_a, if_b], proc)
    move_link(if_a, ns_s, ns_a)
    move_link(if_b, ns_s, ns_b)
    _address(ns_a, if_a, ns_b, if_b)
    return Pair("vde2", ns_a, ns_b, if_a, if_b, switch_pids=[proc.pid], ns_sw=ns_s)


def ovs_netdev(lab: Lab, cpus: str | None) -> Pair:
    """ovsdb-server + ovs-vswitchd started by hand in S (private run dir, no systemd), a bridge with
    ``datapath_type=netdev`` and two ``type=tap`` ports, TAPs moved into A and B."""
    ns_a, ns_b, ns_s = _endpoints(lab)
    tmp = tempfile.TemporaryDirectory(prefix="pbovs-")
    lab.callback(tmp.cleanup)
    d = tmp.name
    env = dict(os.environ, OVS_RUNDIR=d, OVS_LOGDIR=d, OVS_DBDIR=d, OVS_SYSCONFDIR=d, OVS_PKGDATADIR=d)
    db, sock = os.path.join(d, "conf.db"), os.path.join(d, "db.sock")
    run(None, ["ovsdb-tool", "create", db, "/usr/share/openvswitch/vswitch.ovsschema"])
    lab.popen(ns_s, ["ovsdb-server", db, f"--remote=punix:{sock}", f"--unixctl={d}/ovsdb.ctl",
                     f"--pidfile={d}/ovsdb.pid", f"--log-file={d}/ovsdb.log"], env=env)
    _wait_path(sock)
    vsctl = ["ovs-vsctl", f"--db=unix:{sock}", "--timeout=20"]
    run(ns_s, [*vsctl, "--no-wait", "init"], env=env)
    vswitchd = lab.popen(ns_s, ["ovs-vswitchd", f"unix:{sock}", f"--unixctl={d}/vswitchd.ctl",
                                f"--pidfile={d}/vswitchd.pid", f"--log-file={d}/vswitchd.log"],
                         cpus=cpus, env=env)
    br, if_a, if_b = unique_name("ob"), unique_name("oa"), unique_name("oc")
    run(ns_s, [*vsctl, "add-br", br, "--", "set", "bridge", br, "datapath_type=netdev"], env=env)
    for tap in (if_a, if_b):
        run(ns_s, [*vsctl, "add-port", br, tap, "--", "set", "Interface", tap, "type=tap"], env=env)
    _wait_links(ns_s, [if_a, if_b], vswitchd)
    move_link(if_a, ns_s, ns_a)
    move_link(if_b, ns_s, ns_b)
    _address(ns_a, if_a, ns_b, if_b)
    return Pair("ovs-netdev", ns_a, ns_b, if_a, if_b, switch_pids=[vswitchd.pid], ns_sw=ns_s)


def _wait_path(path: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{path} did not appear in {timeout_s} s")
        time.sleep(0.05)


def _wait_links(ns: str, names: list[str], proc: subprocess.Popen[str], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        have = run(ns, ["ip", "-o", "link"]).stdout
        if all(f" {n}:" in have or f" {n}@" in have for n in names):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[-1]!r} exited with {proc.returncode} before creating {names}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"links {names} did not appear in {ns}")
        time.sleep(0.05)


SETUPS: dict[str, Callable[[Lab, str | None], Pair]] = {
    "kernel-bridge": kernel_bridge,
    "kernel-bridge-2": kernel_bridge_2,
    "vswitch-tap": vswitch_tap,
    "vswitch-link": vswitch_link,
    "vswitch-kernel": vswitch_kernel,
    "vswitch-tap-base": vswitch_tap_base,
    "vswitch-link-base": vswitch_link_base,
    "bridge-external": bridge_external,
    "vswitch-external": vswitch_external,
    "vswitch-external-python": vswitch_external_python,
    "vswitch-mixed": vswitch_mixed,
    "vde2": vde2,
    "ovs-netdev": ovs_netdev,
}
PEERS = ("vde2", "ovs-netdev")
