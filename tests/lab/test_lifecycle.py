"""Labs come up and go down cleanly: two labs of one topology coexist, `down` leaves nothing behind
(no namespace, link, vswitchd or socket), and a build that fails midway undoes everything it made.

Run once, on `auto`: up and down are the lab's and the daemons' steps, the ping only a sanity check;
the stories that test forwarding (test_one_nic, test_two_nics, test_internal_private) run on both
datapaths."""

from __future__ import annotations

import os

import pytest
from labkit import api_factory, lab_name, leftovers, ping

import netns as ns_helpers
from vswitch.lab import LabError, builtin_topology, down, list_labs, up
from vswitch.lab import builder as lab_builder
from vswitch.lab import netns as labnetns
from vswitch.lab.state import state_path

pytestmark = pytest.mark.root

#: a pair of nodes that must reach each other in each built-in lab
TALKERS = {"one-nic": ("vm1", "server"), "two-nics": ("vm1", "server"), "internal-private": ("vm1", "host")}


@pytest.mark.parametrize("builtin", ["internal-private", "two-nics"])
def test_down_leaves_nothing_behind(builtin):
    src, dst = TALKERS[builtin]
    lab = up(builtin_topology(builtin), lab_name(builtin), api_factory=api_factory)
    try:
        assert ping(lab, src, dst)
    finally:
        state = lab.state
        down(lab.name)
    assert leftovers(state) == [], f"lab {lab.name} left things behind"


def test_two_labs_of_one_topology_coexist_and_down_leaves_nothing_behind():
    topo = builtin_topology("one-nic")
    src, dst = TALKERS["one-nic"]
    a = up(topo, lab_name("a-one-nic"), api_factory=api_factory)
    try:
        b = up(topo, lab_name("b-one-nic"), api_factory=api_factory)
        try:
            assert a.id != b.id and not set(a.state["namespaces"].values()) & set(b.state["namespaces"].values())
            assert {a.name, b.name} <= {s.name for s in list_labs()}
            assert ping(a, src, dst) and ping(b, src, dst), "both labs work side by side"
            state_a = a.state
            down(a.name)
            assert leftovers(state_a) == [], f"lab {a.name} left things behind"
            assert ping(b, src, dst), "taking one lab down leaves the other working"
        finally:
            state_b = b.state
            down(b.name)
        assert leftovers(state_b) == [], f"lab {b.name} left things behind"
    finally:
        if state_path(a.name).exists():
            down(a.name)


class _Injected(RuntimeError):
    pass


@pytest.mark.parametrize("fail_in", ["wait for vswitchd", "move the 2nd VM NIC"])
def test_a_build_that_fails_midway_undoes_everything(monkeypatch, fail_in):
    made: dict[str, object] = {"pids": []}
    real_new_id, real_start = lab_builder._new_id, lab_builder.daemons.start

    def new_id() -> str:
        made["id"] = real_new_id()
        return made["id"]  # type: ignore[return-value]

    def start(*args, **kw) -> int:
        pid = real_start(*args, **kw)
        made["pids"].append(pid)  # type: ignore[union-attr]
        return pid

    monkeypatch.setattr(lab_builder, "_new_id", new_id)
    monkeypatch.setattr(lab_builder.daemons, "start", start)
    if fail_in == "wait for vswitchd":
        def wait_ready(*args, **kw):
            raise _Injected("injected: the daemon never answers")
        monkeypatch.setattr(lab_builder.daemons, "wait_ready", wait_ready)
    else:
        real_move, calls = lab_builder.nsops.move_link, []

        def move_link(*args, **kw):
            calls.append(args)
            if len(calls) == 2:
                raise _Injected("injected: the 2nd VM NIC cannot move")
            return real_move(*args, **kw)
        monkeypatch.setattr(lab_builder.nsops, "move_link", move_link)

    name = lab_name("fail")
    with pytest.raises(LabError, match="injected"):
        up(builtin_topology("internal-private"), name, api_factory=api_factory)
    lab_id = made["id"]
    assert made["pids"], "the failure must come after vswitchd was started"
    assert not state_path(name).exists(), "a failed lab leaves no state file"
    assert [ns for ns in os.listdir("/run/netns") if ns.startswith(f"vl{lab_id}-")] == []
    for pid in made["pids"]:  # type: ignore[union-attr]
        assert not os.path.exists(f"/proc/{pid}"), f"vswitchd {pid} of the failed lab still runs"
    with pytest.raises(LabError, match="no lab named"):
        down(name)


def test_a_misspelt_namespace_is_refused_not_created():
    missing = ns_helpers.unique_name("nsx")
    with pytest.raises(labnetns.NetnsError, match=f"no network namespace '{missing}'"):
        labnetns.set_up(missing, "lo")
    assert not labnetns.exists(missing), "asking about a namespace never creates it"
