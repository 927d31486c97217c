"""Parse once, at the edge: a bad spec gets the model's message, word for word, through the model
itself, the REST API and the CLI; every problem of a request is named at once, each by its field."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner
from fake_api import FakeApi, private
from fastapi.testclient import TestClient

from vswitch.control.model import (
    InvalidRequest,
    PortKind,
    PortSpec,
    Problem,
    SwitchSpec,
    SwitchType,
    check_field,
)
from vswitch.frontends.cli import cli
from vswitch.frontends.rest import make_app

SWITCH_FIELDS = ("name, type, nic, allow_management_os, confirm_timeout_s, ageing_s, max_entries, datapath, "
                 "uplink_bandwidth")

#: (request body, the same request as `vswitch switch create` arguments or None, the message)
BAD_SWITCHES: list[tuple[dict[str, Any], list[str] | None, str]] = [
    ({"name": "a/b", "type": "private"}, ["a/b", "--private"],
     "name: 'a/b' must not contain '/', NUL or be '.'/'..'"),
    ({"name": "a" * 33, "type": "private"}, ["a" * 33, "--private"],
     f"name: {'a' * 33!r} is too long (33 bytes, max 32)"),
    ({"name": "-a", "type": "private"}, ["--private", "--", "-a"],
     "name: '-a' may only use letters, digits, '_', '.', '-' (and start with a letter or digit)"),
    ({"name": "a", "type": "private", "ageing_s": 5}, ["a", "--private", "--ageing", "5"],
     "ageing_s: 5 is not an ageing time in seconds (10-3600)"),
    ({"name": "a", "type": "private", "ageing_s": 3601}, ["a", "--private", "--ageing", "3601"],
     "ageing_s: 3601 is not an ageing time in seconds (10-3600)"),
    ({"name": "a", "type": "private", "max_entries": 15}, ["a", "--private", "--max-entries", "15"],
     "max_entries: 15 is not a MAC table capacity in entries (16-1000000)"),
    ({"name": "a", "type": "private", "confirm_timeout_s": 5}, ["a", "--private", "--confirm-timeout", "5"],
     "confirm_timeout_s: only an external switch has a confirm timeout"),
    ({"name": "e", "type": "external", "nic": "eth0", "confirm_timeout_s": 1e308},
     ["e", "--external", "eth0", "--confirm-timeout", "1e308"],
     "confirm_timeout_s: 1e+308 is not a number of seconds in (0, 3600]"),
    ({"name": "e", "type": "external", "nic": "lo"}, ["e", "--external", "lo"],
     "nic: 'lo' is the loopback device, not a physical NIC"),
    ({"name": "e", "type": "external", "nic": "averyveryverylongname"}, ["e", "--external", "averyveryverylongname"],
     "nic: 'averyveryverylongname' is too long (21 bytes, max 15)"),
    ({"name": "a", "type": "private", "datapath": "fast"}, ["a", "--private", "--datapath", "fast"],
     "datapath: 'fast' is not a datapath (auto, kernel, python)"),
    # every problem at once, in one message
    ({"name": "a/b", "type": "private", "ageing_s": 5, "max_entries": 15},
     ["a/b", "--private", "--ageing", "5", "--max-entries", "15"],
     "name: 'a/b' must not contain '/', NUL or be '.'/'..'; ageing_s: 5 is not an ageing time in seconds "
     "(10-3600); max_entries: 15 is not a MAC table capacity in entries (16-1000000)"),
    # what the CLI's own options cannot even say
    ({"name": "a", "type": "bogus"}, None, "type: 'bogus' is not a switch type (external, internal, private)"),
    ({"name": "a"}, None, "type: required"),
    ({}, None, "name: required; type: required"),
    ({"name": "a", "type": "private", "colour": "red"}, None,
     f"colour: unknown switch field (expected {SWITCH_FIELDS})"),
    ({"name": "a", "type": "private", "ageing_s": "ten"}, None,
     "ageing_s: 'ten' is not an ageing time in seconds (10-3600)"),
    ({"name": "a", "type": "private", "ageing_s": True}, None,
     "ageing_s: True is not an ageing time in seconds (10-3600)"),
    ({"name": "a", "type": "private", "allow_management_os": "yes"}, None,
     "allow_management_os: 'yes' is not true or false"),
    ({"name": "e", "type": "external"}, None, "nic: an external switch needs a physical NIC"),
    ({"name": "a", "type": "internal", "nic": "eth0"}, None,
     "nic: an internal switch has no physical NIC (got 'eth0')"),
]

#: (port body on switch "s", the same as `vswitch port add s` arguments or None, the message)
BAD_PORTS: list[tuple[dict[str, Any], list[str] | None, str]] = [
    ({"name": "p", "kind": "tap", "target": "tap0", "vlan": 5000}, ["p", "--tap", "tap0", "--vlan", "5000"],
     "vlan: 5000 is not a VLAN ID (1-4094)"),
    ({"name": "p", "kind": "tap", "target": "tap0", "vlan": 0}, ["p", "--tap", "tap0", "--vlan", "0"],
     "vlan: 0 is not a VLAN ID (1-4094)"),
    ({"name": "p", "kind": "tap", "target": "tap0", "trunk": "10,5000"}, ["p", "--tap", "tap0", "--trunk", "10,5000"],
     "trunk: bad VLAN list '10,5000': 5000 is not a VLAN ID (1-4094)"),
    ({"name": "p", "kind": "tap", "target": "tap0", "trunk": "5-1"}, ["p", "--tap", "tap0", "--trunk", "5-1"],
     "trunk: bad VLAN list '5-1': range '5-1' is reversed"),
    ({"name": "p", "kind": "tap", "target": "tap0", "trunk": "10", "native": 4095},
     ["p", "--tap", "tap0", "--trunk", "10", "--native", "4095"], "native: 4095 is not a VLAN ID (1-4094)"),
    ({"name": "p", "kind": "tap", "target": "tap0", "vlan": 5, "trunk": "6"},
     ["p", "--tap", "tap0", "--vlan", "5", "--trunk", "6"],
     "vlan: a port is either access (vlan) or trunk (trunk), not both"),
    ({"name": "p", "kind": "tap", "target": "tap0", "native": 5}, ["p", "--tap", "tap0", "--native", "5"],
     "native: only a trunk port has a native VLAN"),
    ({"name": "uplink", "kind": "tap", "target": "tap0"}, ["uplink", "--tap", "tap0"],
     "name: 'uplink' is reserved for the switch's own ports"),
    ({"name": "p", "kind": "tap", "target": "lo"}, ["p", "--tap", "lo"],
     "target: the loopback device 'lo' cannot be a port"),
    ({"name": "p", "kind": "link", "target": "averyveryverylongname"}, ["p", "--link", "averyveryverylongname"],
     "target: 'averyveryverylongname' is too long (21 bytes, max 15)"),
    ({"name": "p", "kind": "qemu-stream", "target": "/run/../x.sock"}, ["p", "--qemu-stream", "/run/../x.sock"],
     "target: socket path '/run/../x.sock' has a '..' component; give the path without it (it is refused, "
     "not resolved)"),
    ({"name": "host", "kind": "tap", "target": "tap0", "vlan": 0}, ["host", "--tap", "tap0", "--vlan", "0"],
     "name: 'host' is reserved for the switch's own ports; vlan: 0 is not a VLAN ID (1-4094)"),
    # what the CLI's own options cannot even say
    ({"name": "p", "kind": "tap", "target": "tap0", "trunk": [10, 5000]}, None,
     "trunk[1]: 5000 is not a VLAN ID (1-4094)"),
    ({"name": "p", "kind": "tap", "target": "tap0", "trunk": []}, None,
     "trunk: a trunk port needs at least one allowed VLAN"),
    ({"name": "p", "kind": "tap", "target": "tap0", "vlan": "10"}, None, "vlan: '10' is not a VLAN ID (1-4094)"),
    ({"name": "p", "kind": "nic", "target": "tap0"}, None,
     "kind: 'nic' is not a port kind (tap, link, qemu-stream, qemu-dgram, vxlan, memory)"),
    ({"name": "p", "kind": "tap"}, None, "target: required"),
    ({"name": "p", "kind": "tap", "target": ""}, None,
     "target: must be an interface name, a socket path or remote VTEP addresses, got ''"),
]


@pytest.fixture
def api() -> FakeApi:
    api = FakeApi()
    api.create_switch(private("s"))
    api.calls.clear()
    return api


def _refused_by_model(parse: Any, body: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        parse(body)
    assert exc.value.message == message
    assert "; ".join(map(str, exc.value.problems)) == message


def _refused_by_rest(api: FakeApi, path: str, body: dict[str, Any], message: str) -> None:
    r = TestClient(make_app(api)).post(path, json=body)
    assert r.status_code == 400, r.text
    assert r.json() == {"error": message}
    assert api.calls == [], "refused at the edge: the api is never asked"


def _refused_by_cli(api: FakeApi, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, args, obj=api)
    assert result.exit_code == 1, result.output
    assert result.stderr == f"Error: {message}\n"
    assert api.calls == [], "refused at the edge: the api is never asked"


#: each bad request with how the model, REST and the CLI take it: (parse, REST path, CLI command, row)
EDGES = {"switch": (SwitchSpec.parse, "/switches", ["switch", "create"], BAD_SWITCHES),
         "port": (PortSpec.parse, "/switches/s/ports", ["port", "add", "s"], BAD_PORTS)}
CASES = [pytest.param(what, body, args, message, id=f"{what}: {message[:50]}")
         for what, (*_, table) in EDGES.items() for body, args, message in table]


@pytest.mark.parametrize(("what", "body", "args", "message"), CASES)
def test_a_bad_spec_gets_the_same_message_everywhere(api: FakeApi, what: str, body: dict[str, Any],
                                                    args: list[str] | None, message: str) -> None:
    parse, path, command, _ = EDGES[what]
    _refused_by_model(parse, body, message)
    _refused_by_rest(api, path, body, message)
    if args is not None:
        _refused_by_cli(api, [*command, *args], message)


def test_rest_names_a_bad_dry_run_with_the_spec_problems() -> None:
    api = FakeApi()
    r = TestClient(make_app(api)).post("/switches", json={"name": "a", "type": "private", "ageing_s": 5,
                                                          "dry_run": "yes"})
    assert r.status_code == 400
    assert r.json() == {"error": "dry_run: 'yes' is not true or false; "
                                 "ageing_s: 5 is not an ageing time in seconds (10-3600)"}


def test_building_a_spec_directly_checks_it_too() -> None:
    with pytest.raises(InvalidRequest) as exc:
        PortSpec("p", PortKind.TAP, "tap0", vlan=5000)
    assert exc.value.problems == [Problem("vlan", "5000 is not a VLAN ID (1-4094)")]
    with pytest.raises(InvalidRequest, match="ageing_s: 9 is not"):
        SwitchSpec("a", SwitchType.PRIVATE, ageing_s=9)


def test_a_spec_holds_the_normal_form() -> None:
    spec = PortSpec.parse({"name": "p", "kind": "qemu-stream", "target": "//run/./x.sock", "trunk": "20,10-11",
                           "native": 10.0})
    assert (spec.kind, spec.target, spec.trunk, spec.native) == (PortKind.QEMU_STREAM, "/run/x.sock", (10, 11, 20), 10)
    assert type(spec.native) is int, "JSON's 10.0 is the integer 10"
    sw = SwitchSpec.parse({"name": "e", "type": "external", "nic": "eth0", "confirm_timeout_s": 30})
    assert sw.type is SwitchType.EXTERNAL and sw.confirm_timeout_s == 30.0
    assert SwitchSpec.parse(sw.to_dict()) == sw and PortSpec.parse(spec.to_dict()) == spec


def test_one_field_and_a_partial_update() -> None:
    """What `port set --vlan` / `switch set --ageing` use: one field's rule, then the whole spec again."""
    assert check_field(PortSpec, "vlan", 10) == 10
    assert check_field(PortSpec, "trunk", "10-12") == (10, 11, 12)
    with pytest.raises(InvalidRequest) as exc:
        check_field(PortSpec, "vlan", 5000)
    assert exc.value.message == "vlan: 5000 is not a VLAN ID (1-4094)"
    with pytest.raises(InvalidRequest, match="^colour: unknown field"):
        check_field(SwitchSpec, "colour", 1)
    port = PortSpec("p", PortKind.TAP, "tap0", vlan=10)
    assert port.updated({"vlan": 20}).vlan == 20
    assert port.updated({"vlan": None, "trunk": "10,20"}).trunk == (10, 20)
    with pytest.raises(InvalidRequest) as exc:
        port.updated({"trunk": "10,20"})  # still vlan 10: the rule between the fields runs again
    assert exc.value.message == "vlan: a port is either access (vlan) or trunk (trunk), not both"
    sw = SwitchSpec("a", SwitchType.PRIVATE)
    assert sw.updated({"ageing_s": 60}).ageing_s == 60
    with pytest.raises(InvalidRequest, match=r"^nic: a private switch has no physical NIC \(got 'eth0'\)$"):
        sw.updated({"nic": "eth0"})


def test_problems_inside_a_larger_document() -> None:
    """A config file of several ports names each problem by where it is (``ports[1].vlan``)."""
    ports = [{"name": "a", "kind": "tap", "target": "tap0"}, {"name": "b", "kind": "tap", "target": "tap1",
                                                              "vlan": 5000, "trunk": [1, 4095]}]
    problems: list[Problem] = []
    for i, body in enumerate(ports):
        try:
            PortSpec.parse(body)
        except InvalidRequest as exc:
            problems += exc.within(f"ports[{i}]").problems
    assert InvalidRequest(problems).message == ("ports[1].vlan: 5000 is not a VLAN ID (1-4094); "
                                                "ports[1].trunk[1]: 4095 is not a VLAN ID (1-4094)")


def test_not_a_mapping() -> None:
    with pytest.raises(InvalidRequest, match=r"^a port must be a mapping of field → value, got \[1, 2\]$"):
        PortSpec.parse([1, 2])
