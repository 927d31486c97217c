"""Topology files: the built-in ones are valid, and a bad file is refused with every problem named."""

from __future__ import annotations

import textwrap

import pytest
from click.testing import CliRunner

from vswitch.control.model import DatapathMode
from vswitch.lab import LabError, TopologyError, builtin_names, builtin_topology, load_topology
from vswitch.lab.topology import Topology, parse_topology

GOOD = """
name: small
nodes:
  host: {kind: host, interfaces: {eth1: {address: 10.0.0.10/24, gateway: 10.0.0.1}}}
  psw: {kind: physical-switch}
  server: {kind: server, interfaces: {eth0: {address: 10.0.0.1/24}}}
  vm1: {kind: vm, interfaces: {eth0: {address: 10.0.0.21/24}}}
links:
  - [host:eth1, psw:p1]
  - [server:eth0, psw:p2]
switches:
  ext: {host: host, type: external, nic: eth1}
attachments:
  - {vm: vm1, switch: ext, vlan: 10}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(TopologyError) as exc:
        parse_topology(textwrap.dedent(text), "t.yaml")
    assert str(exc.value).startswith("t.yaml: invalid topology"), "the error names the file"
    return exc.value.problems


def edit(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new)


def test_builtins_are_the_three_stories_and_valid():
    assert builtin_names() == ["internal-private", "one-nic", "two-nics"]
    one = builtin_topology("one-nic")
    assert one.switches["ext"].type == "external" and one.switches["ext"].allow_management_os
    assert one.switches["ext"].vnic == "vs-ext"
    two = builtin_topology("two-nics")
    assert two.switches["ext"].nic == "eth2" and not two.switches["ext"].allow_management_os
    assert two.switches["ext"].vnic is None, "no management OS: no host vNIC"
    ip = builtin_topology("internal-private")
    assert {s.type for s in ip.switches.values()} == {"internal", "private"}
    assert [a.port for a in ip.attachments] == ["vm1", "vm2", "vm3", "vm4"]


@pytest.mark.parametrize("name", ["internal-private", "one-nic", "two-nics"])
def test_to_dict_round_trips(name):
    topo = builtin_topology(name)
    assert Topology.from_dict(topo.to_dict()) == topo


def test_a_switch_names_its_datapath_and_lab_up_can_put_every_switch_on_one():
    topo = parse_topology(GOOD)
    assert topo.switches["ext"].datapath == "auto", "the default is the model's: auto"
    assert "datapath" not in topo.to_dict()["switches"]["ext"], "the default is not written out"
    on_python = parse_topology(edit("nic: eth1}", "nic: eth1, datapath: python}"))
    assert on_python.switches["ext"].datapath == "python"
    assert Topology.from_dict(on_python.to_dict()) == on_python
    forced = builtin_topology("internal-private").with_datapath(DatapathMode.KERNEL)
    assert {s.datapath for s in forced.switches.values()} == {"kernel"}


def test_a_good_file_parses_with_defaults():
    topo = parse_topology(GOOD)
    att = topo.attachments[0]
    assert (att.vm, att.switch, att.ifname, att.vlan, att.port) == ("vm1", "ext", "eth0", 10, "vm1")
    assert topo.nodes["host"].interfaces["eth1"].gateway == "10.0.0.1"
    assert topo.links[0].a.node == "host" and topo.links[0].b.ifname == "p1"


@pytest.mark.parametrize("old,new,words", [
    ("kind: physical-switch", "kind: router", "node 'psw': unknown node kind 'router'"),
    ("[host:eth1, psw:p1]", "[host:eth1, nosuch:p1]", "names unknown node 'nosuch'"),
    ("10.0.0.1/24}", "10.0.0.300/24}", "bad CIDR '10.0.0.300/24'"),
    ("address: 10.0.0.21/24", "address: 10.0.0.21", "must be an IPv4 CIDR"),
    ("address: 10.0.0.21/24", "address: 'fd00::1/64'", "not IPv4"),
    ("gateway: 10.0.0.1", "gateway: 192.168.1.1", "gateway 192.168.1.1 is not in any subnet"),
    ("[server:eth0, psw:p2]", "[server:eth0, psw:p1]", "psw:p1 is already the end of link 1"),
    ("[server:eth0, psw:p2]", "[server:eth0, server:eth1]", "connects node 'server' to itself"),
    ("[server:eth0, psw:p2]", "[server:eth0, psw:averyveryverylongname]", "is too long (21 bytes, max 15)"),
    ("nic: eth1", "nic: eth9", "nic: 'eth9' is not a cabled interface of 'host'"),
    ("type: external", "type: bridged", "type: 'bridged' is not a switch type (external, internal, private)"),
    ("host: host, type", "host: server, type", "'host' must name a node of kind host"),
    ("switch: ext, vlan: 10", "switch: nope", "attached to unknown switch 'nope'"),
    ("vlan: 10", "vlan: 5000", "vlan: 5000 is not a VLAN ID (1-4094)"),
    ("10.0.0.21/24", "10.0.0.1/24", "address 10.0.0.1 is used twice"),
    ("  - {vm: vm1, switch: ext, vlan: 10}\n", "", "vm 'vm1' is attached to no switch"),
    ("  - [host:eth1, psw:p1]\n", "  - [vm1:eth0, psw:p1]\n", "gets its NIC from a switch"),
    ("name: small", "name: Small!", "topology name"),
    ("links:", "linkz:", "unknown top-level key(s): linkz"),
    ("kind: server,", "kind: server, qemu: true,", "only a vm can be a QEMU guest"),
    ("vm1: {kind: vm,", "vm1: {kind: vm, qemu: yes please,", "qemu must be true or false"),
    ("vm1: {kind: vm,", "vm1: {kind: vm, qemu: true,", None),
    ("nic: eth1}", "nic: eth1, datapath: fast}", "datapath: 'fast' is not a datapath (auto, kernel, python)"),
    ("nic: eth1}", "nic: eth1, datapath: kernel}", None),
])
def test_each_mistake_is_named(old, new, words):
    if words is None:  # the control case: the edit is fine
        assert parse_topology(edit(old, new))
        return
    found = problems(edit(old, new))
    assert any(words in p for p in found), f"{words!r} not in {found}"


# ---- one mistake, one problem: what is declared but wrong is still declared -------------------------

def test_a_misspelt_node_kind_is_not_also_an_unknown_node():
    # was: also "endpoint 'host:eth1' names unknown node 'host'", "(none declared)" for the switch's
    # host, "(no switches declared)", "vm1 is attached to no switch"
    assert problems(edit("host: {kind: host,", "host: {kind: hots,")) == [
        "node 'host': unknown node kind 'hots' (expected one of host, vm, physical-switch, server)"]


def test_a_misspelt_switch_type_is_reported_with_a_wrong_host():
    # was: only the host was reported; the type was never looked at
    assert problems(edit("ext: {host: host, type: external", "ext: {host: hots, type: externl")) == [
        "switch 'ext': 'host' must name a node of kind host (host), got 'hots'",
        "switch 'ext': type: 'externl' is not a switch type (external, internal, private)"]


def test_a_switch_with_a_problem_is_still_declared():
    # was: "vm 'vm1' is attached to unknown switch 'ext' (no switches declared)"
    bad_type = edit("type: external", "type: bridged")
    assert problems(bad_type) == [
        "switch 'ext': type: 'bridged' is not a switch type (external, internal, private)"]
    also = bad_type + "  - {vm: vm1, switch: nope, ifname: eth1}\n"
    assert "attachment 2: vm 'vm1' is attached to unknown switch 'nope' (switches: ext)" in problems(also)


def test_a_vm_whose_attachment_has_a_problem_is_still_attached():
    # was: also "vm 'vm1' is attached to no switch" and "interface 'eth0' is declared but no attachment creates it"
    assert problems(edit("vlan: 10", "vlan: 5000")) == ["attachment 1: vlan: 5000 is not a VLAN ID (1-4094)"]


def test_a_qemu_vm_has_one_nic_named_eth0_and_round_trips():
    topo = parse_topology(edit("vm1: {kind: vm,", "vm1: {kind: vm, qemu: true,"))
    assert topo.nodes["vm1"].qemu and not topo.nodes["host"].qemu
    assert Topology.from_dict(topo.to_dict()) == topo
    two = edit("vm1: {kind: vm,", "vm1: {kind: vm, qemu: true,") + "  - {vm: vm1, switch: ext, ifname: eth1}\n"
    assert any("a QEMU guest has one NIC" in p for p in problems(two))
    other = edit("vm1: {kind: vm,", "vm1: {kind: vm, qemu: true,").replace(
        "{vm: vm1, switch: ext, vlan: 10}", "{vm: vm1, switch: ext, ifname: ens3}").replace(
        "interfaces: {eth0: {address: 10.0.0.21/24}}", "interfaces: {ens3: {address: 10.0.0.21/24}}")
    assert any("a QEMU guest's NIC is eth0, not 'ens3'" in p for p in problems(other))


def test_duplicate_node_names_are_refused():
    text = GOOD.replace("  psw: {kind: physical-switch}\n", "  psw: {kind: physical-switch}\n  psw: {kind: server}\n")
    assert any("duplicate name 'psw'" in p for p in problems(text))


def test_every_problem_is_reported_at_once():
    text = edit("kind: physical-switch", "kind: router").replace("10.0.0.1/24}", "10.0.0.999/24}")
    found = problems(text)
    assert any("unknown node kind" in p for p in found) and any("bad CIDR" in p for p in found), found


def test_not_yaml_and_not_a_mapping():
    assert "not valid YAML" in problems("nodes: [unclosed")[0]
    assert "must be a mapping" in problems("- just a list")[0]


def test_an_internal_switch_may_address_its_vnic_others_may_not():
    ext = "ext: {host: host, type: external, nic: eth1}"
    text = edit(ext, "ext: {host: host, type: private, address: 10.0.0.9/24}")
    assert any("only an internal switch takes an 'address'" in p for p in problems(text))
    ok = edit(ext, "ext: {host: host, type: internal, address: 10.0.0.9/24}")
    assert parse_topology(ok).switches["ext"].address == "10.0.0.9/24"


def test_load_topology_reads_a_file_and_names_a_missing_one(tmp_path):
    f = tmp_path / "lab.yaml"
    f.write_text(GOOD)
    assert load_topology(f).name == "small"
    with pytest.raises(LabError, match="cannot read topology file"):
        load_topology(tmp_path / "missing.yaml")
    f.write_text(edit("kind: physical-switch", "kind: router"))
    with pytest.raises(TopologyError, match=str(f)):
        load_topology(f)


def test_unknown_builtin_lists_the_known_ones():
    with pytest.raises(LabError, match="built-in: internal-private, one-nic, two-nics"):
        builtin_topology("three-nics")


# ---- the CLI's refusals (no root needed: nothing is built) ---------------------------------------

@pytest.fixture
def lab_cli(tmp_path, monkeypatch):
    from vswitch.frontends.cli import cli
    from vswitch.lab import state

    monkeypatch.setattr(state, "LAB_ROOT", tmp_path)
    runner = CliRunner()
    return lambda *args: runner.invoke(cli, ["lab", *args])


def test_cli_refuses_clearly(lab_cli, tmp_path):
    r = lab_cli("up")
    assert r.exit_code == 2 and "give a topology FILE or --builtin NAME" in r.output
    r = lab_cli("up", "--builtin", "nope")
    assert r.exit_code == 1 and "no built-in topology 'nope'" in r.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(edit("kind: physical-switch", "kind: router"))
    r = lab_cli("up", str(bad))
    assert r.exit_code == 1 and "unknown node kind 'router'" in r.output
    for args in (("down", "ghost"), ("exec", "ghost", "vm1", "--", "true"), ("bindings", "ghost", "host")):
        r = lab_cli(*args)
        assert r.exit_code == 1 and "no lab named 'ghost' (no lab is running)" in r.output, (args, r.output)
    r = lab_cli("list", "--json")
    assert r.exit_code == 0 and r.output.strip() == "[]"
