"""A vswitchd restart (SIGTERM or SIGKILL) keeps VMs connected: TAPs stay in their namespaces, and the
outage (RFC 6201 reset time, a paced ping's lost interval) is bounded.

The lab is bench/reset_time.py's (one rule in one place): namespaces A and B are the VMs, vswitchd
runs in namespace S. ``tap``: TAP ports created in S and moved into A and B; ``link``: veth ports.
The outage bound (10 s) is generous on purpose — it checks that traffic comes back by itself, not
the speed of the machine; bench/reset_time.py reports the figures.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from vswitch.ports.netns import run_in

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))

import reset_time as rt  # noqa: E402
from netlab import Lab  # noqa: E402

pytestmark = pytest.mark.root

OUTAGE_BOUND_S = 10.0


def _link(ns: str, ifname: str) -> dict | None:
    proc = subprocess.run(["ip", "-n", ns, "-j", "link", "show", "dev", ifname], capture_output=True, text=True)
    return json.loads(proc.stdout)[0] if proc.returncode == 0 else None


def _ports(setup: rt.Setup) -> dict:
    with setup.daemon.api() as api:
        return {p.name: p for p in api.list_ports(setup.switch)}


def _wait_port(setup: rt.Setup, port: str, pred, what: str, timeout_s: float = 15.0):
    deadline = time.monotonic() + timeout_s
    while True:
        p = _ports(setup)[port]
        if pred(p):
            return p
        if time.monotonic() > deadline:
            raise AssertionError(f"port {port}: {what} not seen within {timeout_s} s: {p}\n"
                                 f"{setup.daemon.log()[-3000:]}")
        time.sleep(0.05)


@pytest.fixture
def lab():
    with Lab() as lab:
        yield lab


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_tap_ports_stay_in_their_namespaces_across_a_restart(lab, sig):
    setup = rt.build(lab, "tap")
    rt.wait_netns_noted(setup)
    before = {ns: _link(ns, ifname) for ns, ifname in ((setup.ns_a, setup.if_a), (setup.ns_b, setup.if_b))}

    gap = rt.measure(lab, setup, sig)

    for (ns, ifname), old in zip(((setup.ns_a, setup.if_a), (setup.ns_b, setup.if_b)), before.values(), strict=True):
        now = _link(ns, ifname)
        assert now is not None, f"TAP {ifname} must still be in {ns} after the restart"
        assert now["address"] == old["address"], f"TAP {ifname} must keep its MAC"
        assert "UP" in now["flags"] and "LOWER_UP" in now["flags"], f"TAP {ifname} must be up and attached: {now}"
        assert _link(setup.ns_s, ifname) is None, f"no new TAP {ifname} may appear in vswitchd's namespace"
    ports = _ports(setup)
    assert ports["a"].up and ports["b"].up, ports
    assert repr(setup.ns_a) in ports["a"].details["netns"]
    assert gap < OUTAGE_BOUND_S, f"{signal.Signals(sig).name} restart stopped traffic for {gap:.2f} s"
    print(f"reset time, tap ports, {signal.Signals(sig).name}: {gap:.2f} s")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_link_ports_come_back_after_a_restart(lab, sig):
    setup = rt.build(lab, "link")
    gap = rt.measure(lab, setup, sig)
    ports = _ports(setup)
    assert ports["a"].up and ports["b"].up, ports
    assert gap < OUTAGE_BOUND_S, f"{signal.Signals(sig).name} restart stopped traffic for {gap:.2f} s"
    print(f"reset time, link ports, {signal.Signals(sig).name}: {gap:.2f} s")


def test_a_tap_whose_namespace_is_gone_comes_back_down_not_as_a_new_tap(lab):
    setup = rt.build(lab, "tap")
    rt.wait_netns_noted(setup)
    setup.daemon.stop(signal.SIGKILL)
    subprocess.run(["ip", "netns", "del", setup.ns_a], check=True)  # the VM is gone, its TAP with it

    setup.daemon.start()
    setup.daemon.wait_ready()
    a = _ports(setup)["a"]
    assert not a.up, a
    # the namespace is torn down asynchronously after `ip netns del`: the restart may find it gone, or
    # still there without the TAP (under load); either way the port says why it is down
    assert _gone_reason(setup, a.details.get("down_reason", "")), a.details
    assert _link(setup.ns_s, setup.if_a) is None, "the TAP must not be re-created in vswitchd's namespace"
    assert _ports(setup)["b"].up
    assert _link(setup.ns_b, setup.if_b) is not None

    with setup.daemon.api() as api:
        api.remove_port(setup.switch, "a")
        api.remove_port(setup.switch, "b")
    assert _link(setup.ns_b, setup.if_b) is None, "removing a port removes its TAP, in whatever namespace it is"


def _gone_reason(setup, reason: str) -> bool:
    """Whether `reason` says why port a is down once its namespace was deleted (gone, or still being
    torn down without the TAP)."""
    return "is gone" in reason or f"TAP {setup.if_a} is no longer in" in reason


def test_a_tap_that_vanishes_with_its_namespace_is_not_recreated_in_ours(lab):
    setup = rt.build(lab, "tap")
    rt.wait_netns_noted(setup)
    subprocess.run(["ip", "netns", "del", setup.ns_a], check=True)
    # the datapath sees the TAP's descriptor fail and retries opening it every few seconds; the
    # namespace is torn down asynchronously after `ip netns del`, so a retry may find it gone or still
    # there without the TAP (under load, for a while): either way the port says why it is down
    a = _wait_port(setup, "a", lambda p: _gone_reason(setup, p.details.get("down_reason", "")),
                   "'namespace is gone' or 'TAP … is no longer in namespace …'")
    assert not a.up
    assert _link(setup.ns_s, setup.if_a) is None, "the TAP must not be re-created in vswitchd's namespace"


def test_a_tap_in_a_namespace_only_a_process_holds_is_reattached_there(lab):
    """Like QEMU's or a container's: no /run/netns name, so vswitchd remembers the PID (and checks the
    namespace's identity, not just the PID, on the way back)."""
    setup = rt.build(lab, "tap")
    holder = lab.popen(None, ["unshare", "--net", "sleep", "600"])
    ns_file = f"/proc/{holder.pid}/ns/net"
    deadline = time.monotonic() + 10
    while os.stat(ns_file).st_ino == os.stat("/proc/self/ns/net").st_ino:  # unshare has not exec'd sleep yet
        assert time.monotonic() < deadline, "unshare --net did not start"
        time.sleep(0.02)
    subprocess.run(["ip", "-n", setup.ns_a, "link", "set", setup.if_a, "netns", str(holder.pid)], check=True)
    _wait_port(setup, "a", lambda p: f"pid {holder.pid}" in p.details.get("netns", ""), "the holder's namespace")

    def mac_there() -> str | None:
        proc = run_in(ns_file, lambda: subprocess.run(["ip", "-j", "link", "show", "dev", setup.if_a],
                                                      capture_output=True, text=True))
        return json.loads(proc.stdout)[0]["address"] if proc.returncode == 0 else None

    mac = mac_there()
    assert mac is not None
    setup.daemon.stop(signal.SIGKILL)
    setup.daemon.start()
    setup.daemon.wait_ready()
    a = _wait_port(setup, "a", lambda p: p.details.get("open"), "re-attached")
    assert f"pid {holder.pid}" in a.details["netns"], a.details
    assert mac_there() == mac, "the TAP must still be in the holder's namespace, with its MAC"
    assert _link(setup.ns_s, setup.if_a) is None, "no new TAP in vswitchd's namespace"
