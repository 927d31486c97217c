"""Kill -9 at every step: create/delete of each switch type, port add/remove, `switch set` (a change
of connection, a rename), then restart.

For each operation the test first runs it once with ``VSWITCH_CRASHPOINTS_LOG`` to learn its steps
(every intent, link, netlink step of the takeover, store commit: see vswitch.control.crashpoint),
then, for each step, arms a `vswitchd` with no switch (``VSWITCH_CRASH_AT_FILE`` holding the step) —
it SIGKILLs itself there —, restarts it on the same state directory and checks what the user relies
on (the restarted daemon, its switches deleted, is the next step's):
- the configuration is the acknowledged one: the old state before the change's commit, the new one
  from its commit on — never a half;
- the host reaches the server (through the switch when it exists, through its NIC when not);
- once the switch is deleted, nothing is left behind: the host namespace's links, addresses, routes
  and qdiscs are as before, no socket file remains; and none once the last daemon has stopped.

Topology: the one of test_external_switch (host ns with a veth "NIC" → Linux bridge → server).

Run once, on `auto` (the kernel datapath where it loads): what it tests is the control plane's steps
and state across a crash, the ping only that the switch came back; forwarding through an External
switch on both datapaths is test_kernel_external.py's (and the kernel's own crash points are in
tests/unit/test_manager_kernel.py and test_kernel_switch.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from switchlab import Daemon
from test_external_switch import _link_state, lab  # noqa: F401  (the fixture: host ns, NIC, physical switch, server)

import netns as ns_helpers
from vswitch.control.model import PortKind, PortSpec, SwitchInfo, SwitchSettings, SwitchSpec, SwitchType
from vswitch.frontends.client import DaemonUnreachable, RestSwitchApi

pytestmark = pytest.mark.root


def _host_state(ns: str) -> dict[str, list[str]]:
    """Links, addresses, routes and qdiscs of the host namespace, comparable before/after."""
    links = json.loads(ns_helpers.run(ns, ["ip", "-j", "link"]).stdout)
    addrs = json.loads(ns_helpers.run(ns, ["ip", "-j", "addr"]).stdout)
    routes = json.loads(ns_helpers.run(ns, ["ip", "-j", "route", "show", "table", "all"]).stdout)
    qdiscs = ns_helpers.run(ns, ["tc", "qdisc", "show"]).stdout.splitlines()
    return {
        "links": sorted(f"{li['ifname']} {li['address']} {'UP' in li['flags']} {'PROMISC' in li['flags']}"
                        for li in links),
        "addrs": sorted(f"{a['ifname']} {i['local']}/{i['prefixlen']}" for a in addrs
                        for i in a.get("addr_info", [])),
        "routes": sorted(f"{r.get('table', 'main')} {r['dst']} {r.get('gateway', '')} {r.get('dev', '')}"
                         for r in routes if r.get("table") != "local"),
        "qdiscs": sorted(q for q in qdiscs if "ingress" in q or "clsact" in q),
    }


Call = Callable[[RestSwitchApi], object]


def _ext(nic: str, **kw: object) -> Call:
    return lambda api: api.create_switch(SwitchSpec("cx", SwitchType.EXTERNAL, nic=nic, **kw))  # type: ignore[arg-type]


def _new(name: str, kind: SwitchType) -> Call:
    return lambda api: api.create_switch(SwitchSpec(name, kind))


def _set(switch: str, **settings: object) -> Call:
    return lambda api: api.set_switch(switch, SwitchSettings(**settings))  # type: ignore[arg-type]


def _port(name: str, kind: PortKind, target: str) -> Call:
    return lambda api: api.add_port("cp", PortSpec(name, kind, target))


@dataclass
class Op:
    """One change: `setup` brings the switch to the old state, `action` makes the change.

    `rolls_forward`: a crash after the intent is finished at restart (delete, remove), so the new
    state holds from the first step; otherwise (create, add) the old state holds until the commit."""

    name: str
    switch: str
    setup: list[Call]
    action: Call
    port: str | None = None
    #: `switch set`: the switch's type (or, for a rename, its name) before the change and after it
    change: tuple[str, str] | None = None

    @property
    def rolls_forward(self) -> bool:
        return self.name in ("delete-switch", "remove-port")

    def exists_after(self, step: str) -> bool:
        """Whether the switch (the port) exists once the daemon killed at `step` has restarted."""
        creates = self.name in ("create-switch", "add-port", "confirm-switch")
        new_state = self.rolls_forward or step.startswith(f"{self.name}.committed")
        return creates if new_state else not creates


def _ops(nic: str, sock: str) -> dict[str, Op]:
    private, tap = _new("cp", SwitchType.PRIVATE), _port("p1", PortKind.TAP, "cktap0")
    return {
        "create-external": Op("create-switch", "cx", [], _ext(nic)),
        "delete-external": Op("delete-switch", "cx", [_ext(nic)], lambda api: api.delete_switch("cx")),
        "confirm-external": Op("confirm-switch", "cx", [_ext(nic, confirm_timeout_s=600.0)],
                               lambda api: api.confirm_switch("cx")),
        "create-internal": Op("create-switch", "ci", [], _new("ci", SwitchType.INTERNAL)),
        "delete-internal": Op("delete-switch", "ci", [_new("ci", SwitchType.INTERNAL)],
                              lambda api: api.delete_switch("ci")),
        "create-private": Op("create-switch", "cp", [], private),
        "add-tap-port": Op("add-port", "cp", [private], tap, port="p1"),
        "add-qemu-port": Op("add-port", "cp", [private], _port("q1", PortKind.QEMU_STREAM, sock), port="q1"),
        "remove-tap-port": Op("remove-port", "cp", [private, tap], lambda api: api.remove_port("cp", "p1"),
                              port="p1"),
        "delete-private-with-port": Op("delete-switch", "cp", [private, tap], lambda api: api.delete_switch("cp")),
        "set-external-to-internal": Op("set-switch", "cx", [_ext(nic)], _set("cx", type=SwitchType.INTERNAL),
                                       change=("external", "internal")),
        "set-internal-to-external": Op("set-switch", "ci", [_new("ci", SwitchType.INTERNAL)],
                                       _set("ci", type=SwitchType.EXTERNAL, nic=nic), change=("internal", "external")),
        "rename-external": Op("rename-switch", "cx", [_ext(nic)], _set("cx", name="cx2"), change=("cx", "cx2")),
    }


OPS = list(_ops("", ""))


def _switches(d: Daemon) -> dict[str, SwitchInfo]:
    with d.api() as api:
        return {s.name: s for s in api.list_switches()}


def _steps_of(lab_host: str, op: Op) -> list[str]:
    """The crash points `op.action` passes, in order (learned by running it once)."""
    with tempfile.NamedTemporaryFile("r", prefix="crashpoints-") as log:
        d = Daemon(lab_host, env={"VSWITCH_CRASHPOINTS_LOG": log.name}).start()
        try:
            with d.api() as api:
                for call in op.setup:
                    call(api)
                mark = len(open(log.name).read().splitlines())
                op.action(api)
                steps = open(log.name).read().splitlines()[mark:]
                for s in api.list_switches():
                    api.delete_switch(s.name)
        finally:
            d.cleanup()
    assert steps, f"{op.name} of {op.switch} passed no crash point"
    return steps


def _crash_and_check(lab, op: Op, step: str, baseline: dict[str, list[str]], sock: str, d: Daemon,  # noqa: F811
                     arm: str) -> Daemon:
    """Kill `d` (a daemon with no switch, armed through the file `arm`) at `step` of `op`, restart it
    on its state and check; the restarted daemon, its switches deleted and disarmed, is the next
    step's `d` (one start per step: a start is most of a step's time)."""
    Path(arm).write_text(step)
    with d.api() as api:
        for call in op.setup:
            call(api)
        with contextlib.suppress(DaemonUnreachable):
            op.action(api)
    assert d.proc is not None
    d.proc.wait(timeout=30)
    assert d.proc.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), \
        f"vswitchd did not die at {step} (rc {d.proc.returncode}):\n{d.log()}"
    d.stop()

    Path(arm).write_text("")
    d2 = Daemon(lab.host, state_dir=d.state_dir, env={"VSWITCH_CRASH_AT_FILE": arm}).start()
    switches = _switches(d2)
    where = f"after a kill at {step} of {op.name} {op.switch} and a restart"
    if op.change is not None:
        # finished at restart once its one kernel step (renaming the link) was done
        new_state = step.startswith(f"{op.name}.committed") or step.startswith("rename-switch.vnic")
        want = op.change[1] if new_state else op.change[0]
        got = [s.type for s in switches.values()] if op.name == "set-switch" else list(switches)
        assert got == [want], f"{where}: {got}, want {want}\n{d2.log()}"
    elif op.name == "confirm-switch":
        want = "up" if step.startswith("confirm-switch.stored") else "awaiting-confirm"
        assert switches[op.switch].state == want, f"{where}: {switches[op.switch].state}, want {want}\n{d2.log()}"
    elif op.port is None:
        assert (op.switch in switches) == op.exists_after(step), f"{where}: {list(switches)}\n{d2.log()}"
    else:
        ports = [p.name for p in switches[op.switch].ports]
        assert (op.port in ports) == op.exists_after(step), f"{where}: ports {ports}\n{d2.log()}"
    assert "could not" not in d2.log(), f"{where}, vswitchd reported a problem:\n{d2.log()}"
    assert ns_helpers.ping(lab.host, lab.server_ip, count=1, deadline=5), \
        f"{where}, the host must reach the server\n{d2.log()}"
    with d2.api() as api:
        for name in switches:
            api.delete_switch(name)
    assert _host_state(lab.host) == baseline, f"{where}, something was left behind once the switch was deleted"
    assert not os.path.exists(sock), f"{where}, the port's socket file {sock} was left behind"
    return d2


# ~25 kill points of an External create, one daemon start each: under 40 s on an idle machine, but
# minutes when the machine is shared; the default 300 s would fail it for the machine's speed
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("which", OPS)
def test_kill_at_every_step_leaves_the_old_or_the_new_state_and_nothing_behind(lab, which, tmp_path):  # noqa: F811
    baseline = _host_state(lab.host)
    sock = os.path.join(tempfile.gettempdir(), f"{ns_helpers.unique_name('ck')}.sock")
    op = _ops(lab.nic, sock)[which]
    steps = _steps_of(lab.host, op)
    arm = str(tmp_path / "crash-at")
    Path(arm).write_text("")
    # a Daemon's temporary directory holds the state directory every restart goes on with: keep each
    kept = [Daemon(lab.host, env={"VSWITCH_CRASH_AT_FILE": arm}).start()]
    try:
        for step in steps:
            kept.append(_crash_and_check(lab, op, step, baseline, sock, kept[-1], arm))
        assert kept[-1].stop() == 0, f"vswitchd did not stop cleanly after the last restart:\n{kept[-1].log()}"
        assert _host_state(lab.host) == baseline, "something was left behind once vswitchd stopped"
        assert not os.path.exists(sock)
    finally:
        for d in reversed(kept):
            d.cleanup()
    print(f"{which}: killed and restarted at {len(steps)} steps:", *steps)


def test_internal_vnic_keeps_its_address_across_sigkill_and_sigterm_restarts(lab):  # noqa: F811
    d = Daemon(lab.host).start()
    kept = [d]  # a Daemon's temporary directory holds the state directory: keep each until the end
    try:
        d.cli("switch", "create", "ka", "--internal")
        ns_helpers.run(lab.host, ["ip", "addr", "add", "192.0.2.7/24", "dev", "vs-ka"])
        for sig in (signal.SIGKILL, signal.SIGTERM):
            d.stop(sig=sig)
            d = Daemon(lab.host, state_dir=d.state_dir).start()
            kept.append(d)
            out = ns_helpers.run(lab.host, ["ip", "-j", "addr", "show", "dev", "vs-ka"]).stdout
            addrs = [i["local"] for a in json.loads(out) for i in a["addr_info"]]
            assert "192.0.2.7" in addrs, f"after a {sig.name} restart the Internal vNIC lost its address: {addrs}"
            assert _switches(d)["ka"].host_vnic == "vs-ka"
        d.cli("switch", "delete", "ka")
        assert "vs-ka" not in ns_helpers.run(lab.host, ["ip", "-o", "link"]).stdout
    finally:
        for old in reversed(kept):
            old.cleanup()


def test_a_takeover_that_cannot_be_adopted_after_a_crash_gives_the_nic_back(lab):  # noqa: F811
    """After a SIGKILL the takeover is adopted; if the switch then cannot come back (here: another
    process holds its vNIC), the host gets its NIC back instead of staying cut off."""
    before = _link_state(lab.host, lab.nic)
    d = Daemon(lab.host).start()
    kept = [d]
    holder = None
    try:
        with d.api() as api:
            api.create_switch(SwitchSpec("ho", SwitchType.EXTERNAL, nic=lab.nic))
        d.stop(sig=signal.SIGKILL)
        holder = ns_helpers.popen(lab.host, [sys.executable, "-c", (
            "from vswitch.ports.tap import TapPort\n"
            "t = TapPort('x', 'vs-ho', persist=True); t.open(); print('held', flush=True); input()")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        d = Daemon(lab.host, state_dir=d.state_dir).start()
        kept.append(d)
        assert "could not be restored" in d.log(), d.log()
        assert _link_state(lab.host, lab.nic) == before, "the NIC must get its addresses and routes back"
        assert ns_helpers.ping(lab.host, lab.server_ip), "the host must reach the server through its NIC"
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
        for old in reversed(kept):
            old.cleanup()
        ns_helpers.run(lab.host, ["ip", "link", "del", "vs-ho"], check=False)
