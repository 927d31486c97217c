"""`vswitch switch set`: a running switch changes its connection on a real kernel (root).

Topology: the one of test_external_switch (host ns with a veth "NIC" carrying the host's address,
default route and a gateway route → Linux bridge "physical switch" → server). What only a kernel
proves: after External → Internal the NIC carries the host's addresses and routes again and the
host pings the server through it; after Internal → External the host pings through vNIC → switch →
uplink again; an unconfirmed change goes back to Internal by itself; a rename keeps the vNIC's
addresses on the renamed link. The rules of every transition are tests/unit/test_switch_set_rules.py.
The External → Internal → External test runs on both datapaths (the one that forwards after each change);
the revert and the rename stay on `auto` (the kernel datapath where it loads).
"""

from __future__ import annotations

import json

import pytest
from test_external_switch import _link_state, _runs_on, daemon_factory, lab  # noqa: F401  (fixtures)

import netns as ns_helpers
from waiting import wait_until

pytestmark = pytest.mark.root


def _switch(d, name: str) -> dict:
    return json.loads(d.cli("switch", "show", name, "--json").stdout)


def test_external_to_internal_gives_the_nic_back_and_back_to_external_the_host_pings_through_the_switch(
        lab, daemon_factory, datapath):  # noqa: F811
    before = _link_state(lab.host, lab.nic)
    d = daemon_factory(lab.host)
    sw = ns_helpers.unique_name("x")
    vnic = ("vs-" + sw)[:15]
    d.cli("switch", "create", sw, "--external", lab.nic, "--datapath", datapath)
    d.cli("port", "add", sw, "vm1", "--memory", "vm1")
    _runs_on(d, sw, datapath)
    assert ns_helpers.ping(lab.host, lab.server_ip), "through the switch before the change"

    out = d.cli("switch", "set", sw, "--internal").stdout
    assert f"internal, host vNIC {vnic}" in out, out
    assert _link_state(lab.host, lab.nic) == before, "the NIC is given back exactly (addresses, routes, MAC)"
    assert _link_state(lab.host, vnic)["addrs"] == [] and _link_state(lab.host, vnic)["up"]
    tc = ns_helpers.run(lab.host, ["tc", "qdisc", "show", "dev", lab.nic]).stdout
    assert "ingress" not in tc and "clsact" not in tc, tc
    assert ns_helpers.ping(lab.host, lab.server_ip), "the host reaches the server through its NIC again"
    assert [p["name"] for p in _switch(d, sw)["ports"] if p["role"] == "vm"] == ["vm1"], "ports stay"

    out = d.cli("switch", "set", sw, "--external", lab.nic).stdout
    assert f"external on {lab.nic}, host vNIC {vnic}" in out, out
    on_vnic = _link_state(lab.host, vnic)
    assert (on_vnic["addrs"], on_vnic["routes"], on_vnic["mac"]) == (before["addrs"], before["routes"], before["mac"])
    assert ns_helpers.ping(lab.host, lab.server_ip), "the host reaches the server through the switch again"
    stats = {s["port"]: s for s in json.loads(d.cli("stats", sw, "--json").stdout)}
    assert stats["host"]["rx_frames"] > 0 and stats["uplink"]["tx_frames"] > 0, stats
    _runs_on(d, sw, datapath)
    d.cli("switch", "delete", sw)
    assert _link_state(lab.host, lab.nic) == before


def test_an_unconfirmed_change_to_external_goes_back_to_internal(lab, daemon_factory):  # noqa: F811
    before = _link_state(lab.host, lab.nic)
    d = daemon_factory(lab.host)
    sw = ns_helpers.unique_name("c")
    vnic = ("vs-" + sw)[:15]
    d.cli("switch", "create", sw, "--internal")
    out = d.cli("switch", "set", sw, "--external", lab.nic, "--dry-run").stdout
    assert f"{lab.host_ip}/24" in out and _switch(d, sw)["type"] == "internal", out
    out = d.cli("switch", "set", sw, "--external", lab.nic, "--confirm-timeout", "2").stdout
    assert "vswitch switch confirm" in out and _link_state(lab.host, vnic)["addrs"] == before["addrs"], out
    assert ns_helpers.ping(lab.host, lab.server_ip), "through the switch while it waits"
    wait_until(lambda: _switch(d, sw)["type"] == "internal", timeout=30, what="the revert to internal")
    assert _switch(d, sw)["state"] == "up" and _link_state(lab.host, lab.nic) == before
    assert ns_helpers.ping(lab.host, lab.server_ip), "through the NIC after the revert"
    d.cli("switch", "delete", sw)


def test_renaming_an_external_switch_renames_its_vnic_with_the_hosts_addresses(lab, daemon_factory):  # noqa: F811
    before = _link_state(lab.host, lab.nic)
    d = daemon_factory(lab.host)
    sw, new = ns_helpers.unique_name("r"), ns_helpers.unique_name("n")
    d.cli("switch", "create", sw, "--external", lab.nic)
    d.cli("switch", "set", sw, "--name", new)
    renamed = _link_state(lab.host, ("vs-" + new)[:15])
    assert (renamed["addrs"], renamed["routes"]) == (before["addrs"], before["routes"])
    assert ns_helpers.ping(lab.host, lab.server_ip), "the host reaches the server through the renamed vNIC"
    d.cli("switch", "delete", new)
    assert _link_state(lab.host, lab.nic) == before, "the stored snapshot gives the NIC back from the renamed vNIC"
