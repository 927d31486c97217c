"""Configuration files: the document's parser (control/config_file.py), the plan and all-or-nothing
apply (control/config_plan.py).

No root: the manager runs on the in-memory kernel (tests/unit/memkernel.py) with memory and TAP ports
(MemTapPort); the plan is pure. What needs a kernel (frames through real TAP/veth after an apply)
is in tests/integration/test_config_apply.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from socket import AF_INET
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from fake_api import FakeApi
from memkernel import MemKernel

from vswitch.control import config_plan
from vswitch.control.config_file import ConfigDocument, SwitchConfig, dump_yaml, parse_yaml
from vswitch.control.config_plan import plan
from vswitch.control.manager import SwitchManager
from vswitch.control.model import (
    Conflict,
    InvalidRequest,
    NotFound,
    PortKind,
    PortSettings,
    PortSpec,
    StaticEntry,
    SwitchSettings,
    SwitchSpec,
    SwitchType,
)
from vswitch.control.netlink import Address, Route
from vswitch.frontends.cli import cli

MAC1, MAC2 = "02:00:00:00:00:01", "02:00:00:00:00:02"

BASE = """\
version: 1
switches:
- switch: {name: lan, type: internal, ageing_s: 120}
  ports:
  - {name: vm1, kind: tap, target: vm1tap, vlan: 10}
  - {name: vm2, kind: memory, target: vm2, trunk: "10,20-22", native: 10, learning: false}
  static:
  - {mac: "02:00:00:00:00:01", port: vm1}
  - {mac: "02:00:00:00:00:02", port: vm2, vlan: 21}
- switch: {name: lab, type: private, max_entries: 1024}
  ports:
  - {name: a, kind: memory, target: a}
"""


def problems(text: str) -> list[str]:
    """The problems of a refused document, each as ``path: message``."""
    with pytest.raises(InvalidRequest) as e:
        parse_yaml(text, "test.yaml")
    return [str(p) for p in e.value.problems]


def base(**changes: Any) -> dict[str, Any]:
    data = yaml.safe_load(BASE)
    for path, value in changes.items():
        *parents, last = path.split(".")
        node: Any = data
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value
    return data


def refused(data: Any) -> list[str]:
    with pytest.raises(InvalidRequest) as e:
        ConfigDocument.parse(data)
    return [str(p) for p in e.value.problems]


# ---- the parser: every problem named by its path -------------------------------------------------

def test_the_base_document_parses_into_the_specs() -> None:
    doc = parse_yaml(BASE, "test.yaml")
    lan = doc.switches[0]
    assert lan.switch == SwitchSpec("lan", SwitchType.INTERNAL, ageing_s=120)
    assert lan.ports is not None and lan.ports[1] == PortSpec("vm2", PortKind.MEMORY, "vm2", trunk=(10, 20, 21, 22),
                                                              native=10, learning=False)
    assert lan.static_keys() == {(MAC1, 10): "vm1", (MAC2, 21): "vm2"}, "a static entry's VLAN is its port's own"


def test_a_bad_port_vlan_is_named_by_its_path() -> None:
    assert refused(base(**{"switches.1.ports.0.vlan": 5000})) == [
        "switches[1].ports[0].vlan: 5000 is not a VLAN ID (1-4094)"]


def test_every_problem_of_the_file_is_listed_at_once() -> None:
    found = refused(base(**{"switches.0.switch.ageing_s": 1, "switches.0.ports.1.trunk": "30-20",
                            "switches.1.ports.0.kind": "tapp"}))
    assert [p.split(":")[0] for p in found] == ["switches[0].switch.ageing_s", "switches[0].ports[1].trunk",
                                                 "switches[1].ports[0].kind"], found


def test_an_unknown_field_is_named_with_what_is_expected() -> None:
    data = base()
    data["switches"][0]["colour"] = "blue"
    data["switches"][1]["ports"][0]["vlna"] = 3
    assert refused(data) == [
        "switches[0].colour: unknown switch entry field (expected switch, ports, static)",
        f"switches[1].ports[0].vlna: unknown port field (expected {', '.join(f.name for f in fields(PortSpec))})"]


def test_the_version_is_required_and_must_be_one_this_vswitch_reads() -> None:
    data = base()
    del data["version"]
    assert refused(data) == ["version: required (this vswitch reads version 1)"]
    assert refused(base(version=2)) == ["version: 2 is not a configuration version this vswitch reads (1)"]


def test_a_switch_listed_twice_is_refused() -> None:
    assert refused(base(**{"switches.1.switch.name": "lan"})) == [
        "switches[1].switch.name: switch 'lan' is listed twice (also switches[0])"]


def test_a_port_listed_twice_is_refused() -> None:
    assert refused(base(**{"switches.0.ports.1.name": "vm1"})) == [
        "switches[0].ports[1].name: port 'vm1' is listed twice (also ports[0])",
        "switches[0].static[1].port: switch 'lan' has no port 'vm2' in this file"]


def test_a_target_two_ports_would_hold_is_refused_with_its_owner() -> None:
    assert refused(base(**{"switches.1.ports.0.target": "vm2"})) == [
        "switches[1].ports[0].target: memory port id 'vm2' is already memory port 'vm2' of switch 'lan'; "
        "it cannot also be memory port 'a' of switch 'lab'"]


def test_a_static_entry_on_a_port_the_switch_does_not_have_is_refused() -> None:
    assert refused(base(**{"switches.0.static.0.port": "vm9"})) == [
        "switches[0].static[0].port: switch 'lan' has no port 'vm9' in this file"]


def test_a_static_entry_outside_its_ports_vlans_is_refused() -> None:
    assert refused(base(**{"switches.0.static.1.vlan": 30})) == [
        "switches[0].static[1].vlan: port 'vm2' is not in VLAN 30 (trunk 10,20-22 native 10)"]


def test_a_static_entry_on_a_trunk_without_native_vlan_needs_its_vlan() -> None:
    data = base()
    del data["switches"][0]["ports"][1]["native"]
    del data["switches"][0]["static"][1]["vlan"]
    assert refused(data) == ["switches[0].static[1].vlan: port 'vm2' is a trunk without a native VLAN "
                             "(trunk 10,20-22): give the VLAN"]


def test_an_unquoted_mac_that_yaml_reads_as_a_number_says_to_quote_it() -> None:
    found = problems(BASE.replace('"02:00:00:00:00:01"', "52:54:00:12:34:56"))
    assert len(found) == 1 and found[0].startswith("switches[0].static[0].mac: ") and "in quotes" in found[0]


def test_text_that_is_not_yaml_or_repeats_a_key_names_the_file() -> None:
    assert problems("switches: [") [0].startswith("test.yaml is not valid YAML")
    assert "duplicate name 'name'" in problems("version: 1\nswitches:\n- switch: {name: a, name: b}\n")[0]
    assert problems("") == ["a configuration must be a mapping with 'version' and 'switches', got None"]


def test_a_document_is_valid_by_construction() -> None:
    with pytest.raises(InvalidRequest, match=r"ports\[1\].name: port 'a' is listed twice"):
        SwitchConfig(SwitchSpec("s", SwitchType.PRIVATE), [PortSpec("a", PortKind.MEMORY, "a")] * 2)
    with pytest.raises(InvalidRequest, match="version"):
        ConfigDocument([], version=7)


def test_export_writes_macs_yaml_would_misread_in_quotes_and_reads_them_back() -> None:
    sw = SwitchConfig(SwitchSpec("s", SwitchType.PRIVATE), [PortSpec("a", PortKind.MEMORY, "a")],
                      [StaticEntry("52:54:00:12:34:56", "a", 1)])
    doc = ConfigDocument([sw])
    text = dump_yaml(doc, ["a header"])
    assert text.startswith("# a header\n") and "'52:54:00:12:34:56'" in text
    assert parse_yaml(text, "x") == doc


def test_the_readmes_example_file_is_a_valid_document() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    example = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    (lan,) = parse_yaml(example, "README.md").switches
    assert lan.ports is not None and lan.ports[1].trunk == tuple([10, *range(20, 31)])


# ---- the plan (pure) ------------------------------------------------------------------------------

def doc(text: str) -> ConfigDocument:
    return parse_yaml(text, "test.yaml")


def texts(want: ConfigDocument, have: ConfigDocument, **kw: Any) -> list[str]:
    steps, _ = plan(want, have, **kw)
    return [s.info.text for s in steps]


EMPTY = ConfigDocument([])


def test_the_plan_of_a_new_host_creates_everything_in_order() -> None:
    assert texts(doc(BASE), EMPTY) == [
        "create switch lan (internal)", "create switch lab (private)",
        "add port lan/vm1 (tap vm1tap, vlan 10)",
        "add port lan/vm2 (memory vm2, trunk 10,20-22 native 10, learning off)",
        "add port lab/a (memory a, vlan 1)",
        f"static lan {MAC1} vlan 10: add (port vm1)", f"static lan {MAC2} vlan 21: add (port vm2)"]


def test_the_same_state_plans_nothing() -> None:
    assert texts(doc(BASE), doc(BASE)) == []


def test_changes_are_settings_changes_in_words() -> None:
    want = doc(BASE.replace("vlan: 10}", "vlan: 20}").replace("ageing_s: 120", "ageing_s: 60")
               .replace("learning: false", "learning: true, admin_up: false")
               .replace('{mac: "02:00:00:00:00:01", port: vm1}', '{mac: "02:00:00:00:00:01", port: vm1, vlan: 20}'))
    assert texts(want, doc(BASE)) == [
        "switch lan: ageing 120 s → 60 s",
        f"static lan {MAC1} vlan 10: remove (port vm1)",
        "port lan/vm1: vlan 10 → vlan 20",
        "port lan/vm2: admin up → down, learning off → on",
        f"static lan {MAC1} vlan 20: add (port vm1)"]


def test_a_port_whose_kind_or_target_changes_is_replaced_with_its_static_entries() -> None:
    want = doc(BASE.replace("kind: tap, target: vm1tap", "kind: link, target: veth1"))
    assert texts(want, doc(BASE)) == [
        f"static lan {MAC1} vlan 10: remove (port vm1)",
        "replace port lan/vm1: tap vm1tap → link veth1 (removed, then added)",
        "add port lan/vm1 (link veth1, vlan 10)",
        f"static lan {MAC1} vlan 10: add (port vm1)"]


def test_a_port_left_out_of_a_listed_switch_is_removed_and_its_static_entries_first() -> None:
    want = doc(BASE.replace('  - {name: vm1, kind: tap, target: vm1tap, vlan: 10}\n', "")
               .replace('  - {mac: "02:00:00:00:00:01", port: vm1}\n', ""))
    assert texts(want, doc(BASE)) == [f"static lan {MAC1} vlan 10: remove (port vm1)",
                                      "remove port lan/vm1 (tap vm1tap, vlan 10)"]


def test_a_switch_without_ports_or_static_keys_keeps_its_own() -> None:
    want = doc("version: 1\nswitches:\n- switch: {name: lan, type: internal, ageing_s: 30}\n"
               "- switch: {name: lab, type: private, max_entries: 1024}\n")
    assert texts(want, doc(BASE)) == ["switch lan: ageing 120 s → 30 s"]


def test_a_switch_the_file_does_not_list_is_kept_unless_pruned() -> None:
    want = doc("version: 1\nswitches:\n- switch: {name: lab, type: private, max_entries: 1024}\n")
    steps, notes = plan(want, doc(BASE))
    assert steps == [] and notes == ["switch lan is not in the file: kept (--prune deletes it)"]
    assert texts(want, doc(BASE), prune=True) == ["delete switch lan (internal; not in the file, --prune)"]


def test_a_socket_port_given_by_plain_name_is_the_same_as_its_resolved_path() -> None:
    have = doc("version: 1\nswitches:\n- switch: {name: s, type: private}\n  ports:\n"
               "  - {name: vm, kind: qemu-stream, target: /run/ports/vm.sock}\n")
    want = doc("version: 1\nswitches:\n- switch: {name: s, type: private}\n  ports:\n"
               "  - {name: vm, kind: qemu-stream, target: vm}\n")
    assert texts(want, have, port_socket_dir="/run/ports") == []
    assert texts(want, have, port_socket_dir="/elsewhere")[0].startswith("replace port s/vm")


def test_a_connection_type_change_is_planned_as_switch_set_and_applied() -> None:
    api = FakeApi()
    api.create_switch(SwitchSpec("lan", SwitchType.INTERNAL))
    want = doc("version: 1\nswitches:\n- switch: {name: lan, type: external, nic: eth0, ageing_s: 60}\n"
               "- switch: {name: new, type: private}\n")
    steps, _ = plan(want, api.config_export())
    assert [s.info.action for s in steps] == ["create-switch", "change-connection", "set-switch"]
    assert steps[1].info.text == "switch lan: connection internal → external on eth0"
    api.config_apply(want)
    sets = [args[1] for call, args in api.calls if call == "set_switch"]
    assert sets[0] == SwitchSettings(type=SwitchType.EXTERNAL, nic="eth0", allow_management_os=True), \
        "the change is `switch set --external eth0`"
    info = api.get_switch("lan")
    assert (info.type, info.nic, info.ageing_s) == ("external", "eth0", 60)
    back = doc("version: 1\nswitches:\n- switch: {name: lan, type: private, ageing_s: 60}\n")
    assert [s.info.text for s in plan(back, api.config_export())[0]] == [
        "switch lan: connection external on eth0 → private"]
    api.config_apply(back)
    assert (api.get_switch("lan").type, api.get_switch("lan").nic) == ("private", None)


# ---- the manager: idempotence, round trip, rollback (in-memory kernel) -------------------------------

@pytest.fixture
def manager(tmp_path: Path) -> Iterator[SwitchManager]:
    yield from _managers(tmp_path, "a")


def _managers(tmp_path: Path, tag: str) -> Iterator[SwitchManager]:
    kernel = MemKernel()
    m = SwitchManager(netlink=kernel, port_kinds=kernel.port_kinds, port_socket_dir=str(tmp_path / tag))
    try:
        yield m
    finally:
        m.shutdown()


def test_applying_twice_changes_nothing_the_second_time(manager: SwitchManager) -> None:
    first = manager.config_apply(doc(BASE))
    assert len(first.steps) == 7 and not first.dry_run
    assert manager.config_apply(doc(BASE)).steps == []
    assert manager.get_port("lan", "vm2").vlan_mode == "trunk 10,20-22 native 10"
    assert sorted((e.mac, e.vlan, e.port) for e in manager.fdb_show("lan")) == [(MAC1, 10, "vm1"), (MAC2, 21, "vm2")]


def test_a_dry_run_changes_nothing(manager: SwitchManager) -> None:
    result = manager.config_apply(doc(BASE), dry_run=True)
    assert result.dry_run and len(result.steps) == 7
    assert manager.list_switches() == []


def test_the_export_applied_again_changes_nothing_and_reproduces_the_state_on_a_fresh_manager(
        manager: SwitchManager, tmp_path: Path) -> None:
    manager.config_apply(doc(BASE))
    manager.set_port("lab", "a", PortSettings(flooding=False))
    exported = manager.config_export()
    text = dump_yaml(exported)
    assert manager.config_apply(parse_yaml(text, "export")).steps == []
    for fresh in _managers(tmp_path, "b"):
        assert len(fresh.config_apply(parse_yaml(text, "export")).steps) == 7
        assert fresh.config_export() == exported
        assert [(s.name, s.type, s.ageing_s, s.max_entries, [(p.name, p.vlan_mode, p.flooding) for p in s.ports])
                for s in fresh.list_switches()] == \
               [(s.name, s.type, s.ageing_s, s.max_entries, [(p.name, p.vlan_mode, p.flooding) for p in s.ports])
                for s in sorted(manager.list_switches(), key=lambda s: s.name)]


CHANGED = """\
version: 1
switches:
- switch: {name: lan, type: internal, ageing_s: 60}
  ports:
  - {name: vm2, kind: memory, target: vm2, vlan: 21, admin_up: false}
  - {name: vm3, kind: memory, target: vm3, vlan: 10}
  - {name: vm1, kind: memory, target: vm1mem, vlan: 10}
  static:
  - {mac: "02:00:00:00:00:01", port: vm3}
  - {mac: "02:00:00:00:00:02", port: vm2}
- switch: {name: lab, type: private, max_entries: 2048}
- switch: {name: new, type: internal}
  ports:
  - {name: n1, kind: tap, target: n1tap}
  static:
  - {mac: "02:00:00:00:00:03", port: host}
"""


class FailAt:
    """A SwitchApi that is `api` except that its `n`-th change (counting from 0) is refused."""

    CHANGES = ("create_switch", "delete_switch", "set_switch", "add_port", "remove_port", "set_port",
               "fdb_add", "fdb_del")

    def __init__(self, api: Any, n: int) -> None:
        self.api, self.n, self.count = api, n, 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.api, name)
        if name not in self.CHANGES:
            return method

        def change(*args: Any, **kw: Any) -> Any:
            self.count += 1
            if self.count - 1 == self.n:
                raise Conflict(f"injected refusal of {name}")
            return method(*args, **kw)
        return change


def _state(m: SwitchManager) -> Any:
    # a port removed and added back is listed last: `port list` order is not part of the state
    kernel = m._netlink.state()  # type: ignore[attr-defined]
    links = sorted((ns, link["name"], link["kind"], link["up"])
                   for ns, k in kernel.items() for link in k["links"].values())
    # a TAP removed and added back is a new TAP (its ifindex and MAC are new): the names are compared
    return (m.config_export(), links, sorted((s.name, s.host_vnic, sorted((p.name, p.up, p.vlan_mode) for p in s.ports))
                                      for s in m.list_switches()))


def test_a_step_failing_anywhere_undoes_every_step_before_it(manager: SwitchManager) -> None:
    manager.config_apply(doc(BASE))
    manager.config_apply(doc(BASE), prune=True)
    manager.create_switch(SwitchSpec("old", SwitchType.PRIVATE))
    manager.add_port("old", PortSpec("o", PortKind.MEMORY, "o"))
    before = _state(manager)
    steps, _ = plan(doc(CHANGED), manager.config_export(), prune=True)
    assert {s.info.action for s in steps} == {"create-switch", "delete-switch", "set-switch", "add-port",
                                              "remove-port", "set-port", "add-static", "del-static"}
    for n in range(len(steps)):
        with pytest.raises(Conflict) as e:
            config_plan.apply(FailAt(manager, n), doc(CHANGED), prune=True)
        assert e.value.message.startswith(f"step {n + 1} of {len(steps)} ({steps[n].info.text}) failed: "
                                          "injected refusal"), e.value.message
        assert "nothing changed" in e.value.message
        assert _state(manager) == before, f"a failure at step {n + 1} ({steps[n].info.text}) left changes"
    manager.config_apply(doc(CHANGED), prune=True)
    assert manager.config_apply(doc(CHANGED), prune=True).steps == []
    assert [s.name for s in manager.list_switches()] == ["lan", "lab", "new"]
    assert {(e.mac, e.vlan, e.port) for e in manager.fdb_show("lan")} == {(MAC1, 10, "vm3"), (MAC2, 21, "vm2")}


def test_a_step_the_manager_refuses_undoes_the_others_and_names_the_step(manager: SwitchManager) -> None:
    manager.config_apply(doc(BASE))
    before = _state(manager)
    bad = CHANGED.replace("{name: n1, kind: tap, target: n1tap}", "{name: n1, kind: link, target: nosuch0}")
    with pytest.raises(Conflict, match=r"\(add port new/n1 \(link nosuch0, vlan 1\)\) failed: interface "
                                             r"'nosuch0' does not exist; nothing changed"):
        manager.config_apply(doc(bad))
    assert _state(manager) == before


def test_an_external_switch_is_created_with_its_confirm_timeout_and_a_reminder(tmp_path: Path) -> None:
    kernel = MemKernel()
    kernel.add_link("eth1", mac="52:54:00:12:34:56", up=True)
    m = SwitchManager(netlink=kernel, port_kinds=kernel.port_kinds, port_socket_dir=str(tmp_path / "p"))
    try:
        want = doc("version: 1\nswitches:\n- switch: {name: wan, type: external, nic: eth1, confirm_timeout_s: 600}\n")
        result = m.config_apply(want)
        assert result.notes == ["switch wan takes eth1 over and awaits confirmation: run `vswitch switch confirm "
                                "wan` within 600 s, or it is undone"]
        assert m.get_switch("wan").state == "awaiting-confirm"
        assert m.config_apply(want).steps == [], "an external switch awaiting confirmation is not changed again"
        m.confirm_switch("wan")
    finally:
        m.shutdown()


def test_an_external_switch_created_by_a_failing_apply_gives_its_nic_back(tmp_path: Path) -> None:
    kernel = MemKernel()
    kernel.add_link("eth1", mac="52:54:00:12:34:56", up=True)
    with kernel() as nl:
        nl.add_address("eth1", Address(AF_INET, "192.0.2.10", 24))
        nl.add_route("eth1", Route(AF_INET, None, 0, gateway="192.0.2.1"))
    before = kernel.state()
    m = SwitchManager(netlink=kernel, port_kinds=kernel.port_kinds, port_socket_dir=str(tmp_path / "p"))
    try:
        want = doc("version: 1\nswitches:\n- switch: {name: wan, type: external, nic: eth1}\n  ports:\n"
                   "  - {name: vm, kind: link, target: nosuch0}\n")
        with pytest.raises(Conflict, match=r"^step 2 of 2 \(add port wan/vm .* nothing changed \(the 1 step "
                                                 r"before it were undone\)$"):
            m.config_apply(want)
        assert m.list_switches() == [] and kernel.state() == before, "eth1 has its address and route back"
        m.config_apply(doc("version: 1\nswitches:\n- switch: {name: wan, type: external, nic: eth1, "
                           "confirm_timeout_s: 600}\n"))
        m.confirm_switch("wan")
        # pruned, then put back by the undo of a later failure: kept, not awaiting a confirmation again
        steps, _ = plan(doc("version: 1\nswitches: []\n"), m.config_export(), prune=True)
        (delete,) = steps
        delete.do(m)
        delete.undo(m)
        assert m.get_switch("wan").state == "up"
    finally:
        m.shutdown()


# ---- the CLI ------------------------------------------------------------------------------------------

def cli_run(api: Any, *args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(cli, list(args), obj=api, input=input)


def test_cli_export_writes_a_commented_versioned_file_atomically(manager: SwitchManager, tmp_path: Path) -> None:
    manager.config_apply(doc(BASE))
    out = tmp_path / "host.yaml"
    out.write_text("old\n")
    out.chmod(0o600)
    r = cli_run(manager, "config", "export", "--output", str(out))
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert text.startswith("# vswitch configuration, exported by vswitch ") and " UTC\n" in text
    assert parse_yaml(text, "x") == manager.config_export()
    assert (out.stat().st_mode & 0o777) == 0o600, "an edited file keeps its mode"
    assert not list(tmp_path.glob(".host.yaml.*")), "no temporary file is left behind"
    stdout = cli_run(manager, "config", "export").stdout
    assert stdout.split("\n", 4)[4] == text.split("\n", 4)[4], "stdout holds the same document"
    data = json.loads(cli_run(manager, "config", "export", "--json").stdout)
    assert ConfigDocument.parse(data) == manager.config_export()


def test_cli_apply_prints_the_plan_then_nothing_to_change(manager: SwitchManager, tmp_path: Path) -> None:
    f = tmp_path / "want.yaml"
    f.write_text(BASE)
    r = cli_run(manager, "config", "apply", str(f), "--dry-run")
    assert r.exit_code == 0 and r.stdout.splitlines()[:2] == [f"dry run: applying {f} would",
                                                              "  1. create switch lan (internal)"]
    assert r.stdout.splitlines()[-1] == "nothing was changed (dry run)" and manager.list_switches() == []
    assert json.loads(cli_run(manager, "config", "apply", str(f), "--dry-run", "--json").stdout)["dry_run"] is True
    r = cli_run(manager, "config", "apply", str(f))
    assert r.exit_code == 0 and r.stdout.startswith(f"applied {f}:\n  1. create switch lan")
    r = cli_run(manager, "config", "apply", "-", input=BASE)
    assert (r.exit_code, r.stdout) == (0, "nothing to change\n")


def test_cli_apply_refuses_a_bad_file_listing_every_problem_exit_1(manager: SwitchManager, tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(BASE.replace("vlan: 10}", "vlan: 0}").replace("ageing_s: 120", "ageing_s: 5"))
    r = cli_run(manager, "config", "apply", str(f))
    assert r.exit_code == 1 and manager.list_switches() == []
    assert r.stderr.splitlines() == [f"Error: {f} is refused, nothing changed:",
                                     "  switches[0].switch.ageing_s: 5 is not an ageing time in seconds (10-3600)",
                                     "  switches[0].ports[0].vlan: 0 is not a VLAN ID (1-4094)"]
    assert cli_run(manager, "config", "apply", str(tmp_path / "missing.yaml")).exit_code == 2


def test_cli_apply_of_a_step_the_switch_refuses_exits_1_naming_the_step(manager: SwitchManager,
                                                                         tmp_path: Path) -> None:
    f = tmp_path / "want.yaml"
    f.write_text(BASE.replace("kind: tap, target: vm1tap", "kind: link, target: nosuch0"))
    r = cli_run(manager, "config", "apply", str(f))
    assert r.exit_code == 1 and "add port lan/vm1 (link nosuch0, vlan 10)) failed" in r.stderr
    assert manager.list_switches() == []


def test_not_found_from_a_failing_step_keeps_its_class() -> None:
    api = FakeApi()
    api.create_switch(SwitchSpec("lan", SwitchType.PRIVATE))
    api.add_port("lan", PortSpec("a", PortKind.MEMORY, "a"))
    # the document leaves the ports as they are, so the static entry's port is checked by the switch
    want = doc("version: 1\nswitches:\n- switch: {name: lan, type: private, ageing_s: 60}\n"
               "  static:\n  - {mac: '02:00:00:00:00:01', port: zz, vlan: 1}\n")
    with pytest.raises(NotFound, match=r"step 2 of 2 .* failed: switch 'lan' has no port 'zz'"):
        api.config_apply(want)
    assert api.get_switch("lan").ageing_s == 300, "the first step was undone"
