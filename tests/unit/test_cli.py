"""The `vswitch` CLI over an in-process fake SwitchApi: tables, --json shapes, errors, qemu argument."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from typing import Any

import click
import pytest
from click.shell_completion import get_completion_class
from click.testing import CliRunner, Result
from fake_api import FakeApi, private

from vswitch.control.model import FdbEntryInfo, PortKind, PortSpec
from vswitch.frontends import cli as cli_module
from vswitch.frontends.cli import cli


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


def run(api: FakeApi, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), obj=api)


def ok(api: FakeApi, *args: str) -> str:
    result = run(api, *args)
    assert result.exit_code == 0, (result.output, result.stderr, result.exception)
    return result.stdout


def as_json(api: FakeApi, *args: str) -> Any:
    return json.loads(ok(api, *args, "--json"))


def test_switch_create_variants(api: FakeApi) -> None:
    out = ok(api, "switch", "create", "int", "--internal", "--ageing", "60", "--max-entries", "1024")
    assert "created internal switch 'int' (host vNIC vs-int)" in out
    spec = api.calls[-1][1][0]
    assert (spec.ageing_s, spec.max_entries) == (60, 1024)
    ok(api, "switch", "create", "priv", "--private")
    out = ok(api, "switch", "create", "ext", "--external", "eth0", "--no-allow-management-os",
             "--confirm-timeout", "30")
    assert "switch confirm ext" in out and "30 s" in out
    spec = api.calls[-1][1][0]
    assert spec.nic == "eth0" and spec.allow_management_os is False and spec.confirm_timeout_s == 30.0
    assert [s.name for s in api.switches.values()] == ["int", "priv", "ext"]
    assert "confirmed switch 'ext': up" in ok(api, "switch", "confirm", "ext")


def test_switch_create_dry_run(api: FakeApi) -> None:
    out = ok(api, "switch", "create", "ext", "--external", "eth0", "--dry-run")
    assert "dry run" in out and "1. create switch ext" in out and "2. move addresses" in out
    assert api.switches == {}
    data = as_json(api, "switch", "create", "ext", "--external", "eth0", "--dry-run")
    assert data["dry_run"] is True and len(data["steps"]) == 2


@pytest.mark.parametrize("args", [["s"], ["s", "--internal", "--private"], ["s", "--private", "--external", "e"]])
def test_switch_create_needs_exactly_one_type(api: FakeApi, args: list[str]) -> None:
    result = run(api, "switch", "create", *args)
    assert result.exit_code == 2 and "exactly one of" in result.stderr
    assert api.calls == []


def test_switch_list_and_show(api: FakeApi) -> None:
    ok(api, "switch", "create", "lab", "--internal")
    out = ok(api, "switch", "list")
    assert "lab" in out and "internal" in out and "vs-lab" in out
    data = as_json(api, "switch", "list")
    assert isinstance(data, list) and data[0]["name"] == "lab" and data[0]["ports"][0]["role"] == "host-vnic"
    out = ok(api, "switch", "show", "lab")
    assert "ports of lab" in out and "host-vnic" in out
    assert as_json(api, "switch", "show", "lab") == data[0]
    assert "deleted switch 'lab'" in ok(api, "switch", "delete", "lab")
    assert as_json(api, "switch", "list") == []


def test_errors_exit_1_with_message_on_stderr(api: FakeApi) -> None:
    result = run(api, "switch", "show", "nope")
    assert result.exit_code == 1
    assert "Error: no switch named 'nope'" in result.stderr
    assert "Traceback" not in result.output + result.stderr
    ok(api, "switch", "create", "a", "--private")
    result = run(api, "switch", "create", "a", "--private")
    assert result.exit_code == 1 and "already exists" in result.stderr
    result = run(api, "switch", "create", "b", "--private", "--ageing", "1")  # model validation
    assert result.exit_code == 1 and "ageing" in result.stderr
    result = run(api, "switch", "create", "c", "--private", "--confirm-timeout", "5")
    assert result.exit_code == 1 and "confirm_timeout_s: only an external switch has a confirm timeout" in result.stderr


def test_port_add_prints_qemu_argument(api: FakeApi, tmp_path: Any) -> None:
    api.create_switch(private("s"))
    sock = str(tmp_path / "vm1.sock")
    out = ok(api, "port", "add", "s", "vm1", "--qemu-stream", sock)
    assert f"-netdev stream,id=vm1,server=off,addr.type=unix,addr.path={sock}" in out
    out = ok(api, "port", "add", "s", "vm2", "--qemu-dgram", sock + "2", "--vlan", "10")
    assert "-netdev dgram,id=vm2" in out and "access 10" in out
    data = as_json(api, "port", "add", "s", "vm3", "--qemu-stream", sock + "3")
    assert data["details"]["qemu_arg"].startswith("-netdev stream,id=vm3")


def test_port_add_kinds_and_vlans(api: FakeApi) -> None:
    api.create_switch(private("s"))
    ok(api, "port", "add", "s", "t", "--tap", "tap0", "--trunk", "10,20-22", "--native", "10")
    spec = api.calls[-1][1][1]
    assert spec == PortSpec("t", PortKind.TAP, "tap0", trunk=(10, 20, 21, 22), native=10)
    ok(api, "port", "add", "s", "l", "--link", "veth0")
    assert api.calls[-1][1][1].kind == PortKind.LINK
    result = run(api, "port", "add", "s", "x", "--tap", "a", "--link", "b")
    assert result.exit_code == 2 and "exactly one of" in result.stderr
    # the rules between options are the model's (a refusal, exit 1), not a second copy in the CLI
    result = run(api, "port", "add", "s", "x", "--tap", "a", "--vlan", "5", "--trunk", "6")
    assert result.exit_code == 1 and "vlan: a port is either access (vlan) or trunk (trunk), not both" in result.stderr
    result = run(api, "port", "add", "s", "x", "--tap", "a", "--native", "5")
    assert result.exit_code == 1 and "native: only a trunk port has a native VLAN" in result.stderr
    result = run(api, "port", "add", "s", "x", "--tap", "a", "--trunk", "5-1")
    assert result.exit_code == 1 and "reversed" in result.stderr
    result = run(api, "port", "add", "s", "x", "--tap", "a", "--vlan", "4095")
    assert result.exit_code == 1 and "4094" in result.stderr
    out = ok(api, "port", "list", "s")
    assert "trunk 10,20-22 native 10" in out and "veth0" in out
    assert [p["name"] for p in as_json(api, "port", "list", "s")] == ["t", "l"]
    assert "removed port 't'" in ok(api, "port", "remove", "s", "t")
    result = run(api, "port", "remove", "s", "t")
    assert result.exit_code == 1 and "no port named 't'" in result.stderr


def test_fdb_show_and_flush(api: FakeApi) -> None:
    api.create_switch(private("s"))
    api.fdb["s"] = [FdbEntryInfo("02:00:00:00:00:01", 1, "vm1", 12.34, False),
                    FdbEntryInfo("02:00:00:00:00:02", 10, "vm2", 0.0, True)]
    out = ok(api, "fdb", "show", "s")
    assert "02:00:00:00:00:01" in out and "12.3" in out and "static" in out and "learned" in out
    data = as_json(api, "fdb", "show", "s")
    assert data[0] == {"mac": "02:00:00:00:00:01", "vlan": 1, "port": "vm1", "age_s": 12.34, "static": False,
                       "remote": None}
    assert set(data[1]) == {"mac", "vlan", "port", "age_s", "static", "remote"}
    assert "vtep" not in out  # no tunnel port: no column for one
    api.fdb["s"].append(FdbEntryInfo("02:00:00:00:00:03", 1, "vx", 1.0, False, "10.9.0.2"))
    out = ok(api, "fdb", "show", "s")
    assert "vtep" in out and "10.9.0.2" in out
    assert "flushed 2 learned entries" in ok(api, "fdb", "flush", "s")
    assert as_json(api, "fdb", "flush", "s") == {"removed": 0}


def test_stats(api: FakeApi) -> None:
    api.create_switch(private("s"))
    api.add_port("s", PortSpec("vm1", PortKind.MEMORY, "vm1"))
    out = ok(api, "stats", "s")
    assert "vm1" in out and "DROP_SAME_PORT=2" in out and "rx frames" in out
    data = as_json(api, "stats", "s")
    assert data == [{"port": "vm1", "rx_frames": 10, "rx_bytes": 1000, "tx_frames": 8, "tx_bytes": 800,
                     "floods": 3, "learned": 1, "moved": 0, "drops": {"DROP_SAME_PORT": 2},
                     "static_refused": 0, "mirrored": 0, "mirror_tx": 0}]


def test_trace(api: FakeApi) -> None:
    api.create_switch(private("s"))
    for name in ("a", "b", "c"):
        api.add_port("s", PortSpec(name, PortKind.MEMORY, name))
    args = ["trace", "s", "--in-port", "a", "--src", "02:00:00:00:00:01", "--dst", "ff:ff:ff:ff:ff:ff",
            "--vlan", "1"]
    out = ok(api, *args)
    assert "frame: switch=s in_port=a src=02:00:00:00:00:01 dst=ff:ff:ff:ff:ff:ff tagged VID 1" in out
    assert "2. ingress: admitted to VLAN 1\n3. learn: would learn" in out
    assert "4. decide: ff:ff:ff:ff:ff:ff is not in the MAC table [FLOOD_UNKNOWN]" in out
    assert "verdict: FLOOD_UNKNOWN (unknown unicast: flooded)" in out and "output ports: b, c" in out
    assert "VLAN: 1\n" in out
    assert api.calls[-1] == ("trace", ("s", "a", "02:00:00:00:00:01", "ff:ff:ff:ff:ff:ff", 1))
    data = as_json(api, *args)
    assert data["out_ports"] == ["b", "c"] and data["vlan"] == 1 and data["tag"] == 1
    assert [s["stage"] for s in data["steps"]] == ["parse", "ingress", "learn", "decide"]
    result = run(api, "trace", "s", "--in-port", "a", "--src", "x")
    assert result.exit_code == 2 and "--dst" in result.stderr


def test_make_api_factory_and_socket_env(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[Any, ...]] = []

    def factory(socket_path: str | None, url: str | None, token: str | None) -> FakeApi:
        seen.append((socket_path, url, token))
        return api

    monkeypatch.setattr(cli_module, "make_api", factory)
    result = CliRunner().invoke(cli, ["switch", "list", "--json"], env={"VSWITCH_SOCKET": "/tmp/x.sock"})
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    assert seen == [("/tmp/x.sock", None, None)]
    result = CliRunner().invoke(cli, ["--socket", "/tmp/y.sock", "switch", "list"])
    assert seen[-1] == ("/tmp/y.sock", None, None)


def test_unreachable_daemon_is_a_clean_error(tmp_path: Any) -> None:
    result = CliRunner().invoke(cli, ["--socket", str(tmp_path / "none.sock"), "switch", "list"])
    assert result.exit_code == 1
    assert "cannot reach vswitchd at" in result.stderr and "is it running?" in result.stderr
    assert "Traceback" not in result.stderr


def test_group_is_extensible() -> None:
    ctx = click.Context(cli)
    assert {"switch", "port", "fdb", "stats", "trace", "lab", "demo", "completion"} <= set(cli.list_commands(ctx))
    lab = cli.get_command(ctx, "lab")
    assert isinstance(lab, click.Group) and "trace" in lab.commands, "lab trace is registered, not discovered"
    assert callable(cli.add_command)


def test_a_command_that_is_not_the_labs_does_not_import_them() -> None:
    """The lab and the demo (namespaces, guests, netlink) load only when they run: every other
    command starts without them."""
    code = ("import sys\nfrom vswitch.frontends.cli import main\n"
            "sys.argv = ['vswitch', '--socket', '/nonexistent/vswitchd.sock', 'switch', 'list']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "lazy = ('vswitch.lab', 'pyroute2', 'vswitch.frontends.demo')\n"
            "print(sorted(m for m in sys.modules if m.startswith(lazy)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.strip().splitlines()[-1] == "[]", out


def test_version_comes_from_the_package_metadata(api: FakeApi) -> None:
    assert ok(api, "--version") == f"vswitch {metadata.version('vswitch')}\n"
    assert api.calls == [], "--version asks nothing of the daemon"


def test_help_documents_the_exit_status(api: FakeApi) -> None:
    out = ok(api, "--help")
    assert "Exit status:" in out
    assert "1  refused" in out and "2  usage error" in out
    assert "vswitch completion bash" in out


@pytest.mark.parametrize(("args", "status"), [
    (["switch", "show", "nope"], 1),                                  # NotFound from the daemon
    (["switch", "create", "s", "--private", "--ageing", "1"], 1),     # InvalidRequest from the model
    (["--socket", "/nonexistent/vswitchd.sock", "switch", "list"], 1),  # unreachable (a VswitchError too)
    (["switch", "create", "s"], 2),                                   # conflicting/missing options
    (["port", "add", "s", "p", "--tap", "t", "--vlan", "ten"], 2),    # a value of the wrong type
    (["switch", "frobnicate"], 2),                                    # unknown command
    (["stats"], 2),                                                   # missing argument
    (["--bogus"], 2),                                                 # unknown option
    (["completion", "tcsh"], 2),                                      # not a shell we complete
])
def test_exit_status_is_1_when_refused_and_2_for_usage(api: FakeApi, args: list[str], status: int) -> None:
    api.create_switch(private("s"))
    injected = None if args[0] == "--socket" else api
    result = CliRunner().invoke(cli, args, obj=injected)
    assert result.exit_code == status, (result.output, result.stderr, result.exception)
    assert "Traceback" not in result.output + result.stderr
    assert result.stderr.startswith("Error:" if status == 1 else "Usage:"), result.stderr


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_clicks_script(api: FakeApi, shell: str) -> None:
    out = ok(api, "completion", shell)
    assert "_VSWITCH_COMPLETE" in out and f"{shell}_complete" in out, out
    assert api.calls == []


def complete(api: FakeApi | None, line: str) -> list[str]:
    """What the shell would offer after `vswitch LINE` (an incomplete last word, or a new one after a space)."""
    words = line.split(" ")
    shell = get_completion_class("bash")(cli, {} if api is None else {"obj": api}, "vswitch", "_VSWITCH_COMPLETE")
    return [item.value for item in shell.get_completions(words[:-1], words[-1])]


def test_completes_switch_and_port_names(api: FakeApi) -> None:
    for name in ("lab", "lan", "dmz"):
        api.create_switch(private(name))
    for port in ("vm1", "vm2", "web"):
        api.add_port("lab", PortSpec(port, PortKind.MEMORY, port))
    assert complete(api, "switch show ") == ["lab", "lan", "dmz"]
    assert complete(api, "switch delete la") == ["lab", "lan"]
    assert complete(api, "fdb show d") == ["dmz"]
    assert complete(api, "port remove lab vm") == ["vm1", "vm2"]
    assert complete(api, "port list ") == ["lab", "lan", "dmz"]
    assert complete(api, "trace lab --in-port ") == ["vm1", "vm2", "web"], "an option shown as PORT"
    assert complete(api, "trace lab --src 02:00:00:00:00:01 --in-port w") == ["web"]
    assert complete(api, "port add lab ") == [], "a new port's name has nothing to complete"
    assert complete(api, "port remove nope ") == [], "an unknown switch: no candidates, no error"
    assert complete(api, "switch create ") == [], "a new switch's name neither"


def test_completion_asks_the_daemon_briefly_and_is_silent_when_it_does_not_answer(
        api: FakeApi, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    api.create_switch(private("lab"))
    seen: list[tuple[Any, ...]] = []

    def factory(socket_path: str | None, url: str | None, token: str | None, **options: Any) -> FakeApi:
        seen.append((socket_path, options))
        return api

    monkeypatch.setattr(cli_module, "make_api", factory)
    assert complete(None, "--socket /tmp/x.sock switch show ") == ["lab"]
    assert seen == [("/tmp/x.sock", {"timeout_s": cli_module.COMPLETION_TIMEOUT_S})], "a shell must not wait 60 s"
    monkeypatch.undo()
    assert complete(None, f"--socket {tmp_path / 'none.sock'} switch show ") == []
    # through the real entry point, as the shell's script calls it: nothing on stdout or stderr, status 0
    env = {**os.environ, "_VSWITCH_COMPLETE": "bash_complete", "COMP_CWORD": "5",
           "COMP_WORDS": f"vswitch --socket {tmp_path / 'none.sock'} switch show "}
    done = subprocess.run([sys.executable, "-m", "vswitch.frontends.cli"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "", "")


# ---- the everyday verbs: port set/show, fdb add/del, switch set, nic list ---------------------------

def test_port_set_maps_its_options_and_shows_trunks_as_ranges(api: FakeApi) -> None:
    api.create_switch(private("s"))
    api.add_port("s", PortSpec("vm1", PortKind.MEMORY, "vm1"))
    out = ok(api, "port", "set", "s", "vm1", "--trunk", "1-4094", "--native", "5", "--admin", "down",
             "--learning", "off")
    assert "trunk 1-4094 native 5, admin down, learning off, flooding on" in out
    settings = api.calls[-1][1][2]
    assert settings.trunk == tuple(range(1, 4095)) and settings.native == 5
    assert (settings.admin_up, settings.learning, settings.flooding) == (False, False, None)
    data = as_json(api, "port", "show", "s", "vm1")
    assert (data["vlan_mode"], data["admin_up"], data["learning"]) == ("trunk 1-4094 native 5", False, False)
    assert "trunk 1-4094 native 5" in ok(api, "port", "show", "s", "vm1")
    assert as_json(api, "port", "set", "s", "vm1", "--vlan", "7", "--admin", "up")["vlan_mode"] == "access 7"


def test_port_set_mac_on_a_tap_port_and_port_show_says_whose_mac_it_is(api: FakeApi) -> None:
    api.create_switch(private("s"))
    api.add_port("s", PortSpec("vm1", PortKind.TAP, "vmtap1"))
    assert "the kernel's" in ok(api, "port", "show", "s", "vm1"), "no MAC set: the kernel chose it"
    assert as_json(api, "port", "set", "s", "vm1", "--mac", "52:54:00:AB:CD:01")["mac"] == "52:54:00:ab:cd:01"
    assert "52:54:00:ab:cd:01" in ok(api, "port", "show", "s", "vm1")


@pytest.mark.parametrize(("args", "needle"), [
    (["--mac", "01:00:5e:00:00:01"], "mac: 01:00:5e:00:00:01 is a group address"),
    (["--mac", "52:54:00:00:00:01"], "mac: only a tap port's MAC is vswitch's to set"),
    (["--vlan", "3", "--trunk", "4"], "not both"),
    (["--native", "3"], "native: only a trunk port has a native VLAN"),
    ([], "nothing to change"),
    (["--trunk", "10-5"], "reversed"),
    (["--vlan", "4095"], "vlan: 4095 is not a VLAN ID (1-4094)"),
])
def test_port_set_refusals_name_the_problem(api: FakeApi, args: list[str], needle: str) -> None:
    api.create_switch(private("s"))
    api.add_port("s", PortSpec("vm1", PortKind.MEMORY, "vm1"))
    result = run(api, "port", "set", "s", "vm1", *args)
    assert result.exit_code == 1 and needle in result.stderr, result.output
    assert api.get_port("s", "vm1").vlan_mode == "access 1"


def test_fdb_add_del(api: FakeApi) -> None:
    api.create_switch(private("s"))
    api.add_port("s", PortSpec("vm1", PortKind.MEMORY, "vm1"))
    out = ok(api, "fdb", "add", "s", "02:00:00:00:00:AA", "--port", "vm1")
    assert "static entry 02:00:00:00:00:aa (VLAN 1)" in out
    assert as_json(api, "fdb", "show", "s") == [{"mac": "02:00:00:00:00:aa", "vlan": 1, "port": "vm1",
                                                 "age_s": 0.0, "static": True, "remote": None}]
    assert "static" in ok(api, "fdb", "show", "s")
    assert "removed static entry" in ok(api, "fdb", "del", "s", "02:00:00:00:00:aa")
    result = run(api, "fdb", "del", "s", "02:00:00:00:00:aa")
    assert result.exit_code == 1 and "no static entry" in result.stderr


def test_switch_set(api: FakeApi) -> None:
    api.create_switch(private("s"))
    assert "ageing 60 s, max entries 8192" in ok(api, "switch", "set", "s", "--ageing", "60")
    assert as_json(api, "switch", "set", "s", "--max-entries", "100")["max_entries"] == 100
    result = run(api, "switch", "set", "s")
    assert result.exit_code == 1 and "nothing to change" in result.stderr
    assert "switch 'lab2'" in ok(api, "switch", "set", "s", "--name", "lab2")
    assert list(api.switches) == ["lab2"]


def test_switch_set_datapath(api: FakeApi) -> None:
    api.create_switch(private("s"))
    assert "datapath: python (--datapath python)" in ok(api, "switch", "set", "s", "--datapath", "python")
    assert next(a for n, a in reversed(api.calls) if n == "set_switch")[1].datapath == "python"
    result = run(api, "switch", "set", "s", "--datapath", "fast")
    assert result.exit_code == 1 and "datapath" in result.stderr and "fast" in result.stderr, result.stderr


def test_switch_set_changes_the_connection(api: FakeApi) -> None:
    api.create_switch(private("s"))
    assert "internal, host vNIC vs-s" in ok(api, "switch", "set", "s", "--internal")
    out = ok(api, "switch", "set", "s", "--external", "eth0", "--dry-run")
    assert out.startswith("dry run: changing switch 's' would\n  1. ") and api.switches["s"].type == "internal"
    assert as_json(api, "switch", "set", "s", "--external", "eth0", "--dry-run")["dry_run"] is True
    out = ok(api, "switch", "set", "s", "--external", "eth0", "--confirm-timeout", "30")
    assert "external on eth0, host vNIC vs-s" in out and "vswitch switch confirm s" in out
    api.confirm_switch("s")
    result = run(api, "switch", "set", "s", "--allow-management-os", "off")
    assert result.exit_code == 0 and "no host vNIC" in result.stdout
    assert "the host no longer has an adapter on eth0" in result.stderr
    assert as_json(api, "switch", "set", "s", "--private")["nic"] is None
    for args, words in [(["--internal", "--private"], "at most one of"),
                        (["--internal", "--confirm-timeout", "5"], "confirm_timeout_s: only with a change to an "
                                                                 "external switch"),
                        (["--private", "--allow-management-os", "on"], "allow_management_os: only an external"),
                        (["--external", "eth9"], "NIC 'eth9' does not exist")]:
        result = run(api, "switch", "set", "s", *args)
        assert result.exit_code in (1, 2) and words in result.stderr, (args, result.stderr)
    assert api.switches["s"].type == "private", "refused: unchanged"


def test_nic_list_warns_about_the_default_route(api: FakeApi) -> None:
    out = ok(api, "nic", "list")
    assert "eth0" in out and "192.0.2.10/24" in out and "moves the host's default route" in out
    assert as_json(api, "nic", "list")[0]["default_route"] is True


def test_nic_list_shows_the_speed_the_driver_reports(api: FakeApi) -> None:
    rows = {line.split()[1]: line for line in ok(api, "nic", "list").splitlines() if "52:54:00" in line}
    assert "25 Gb/s" in rows["eth0"], "25000 Mb/s is shown as 25 Gb/s"
    assert "Gb/s" not in rows["eth1"] and "Mb/s" not in rows["eth1"], "no speed reported: none shown"
    assert [n["speed_mbps"] for n in as_json(api, "nic", "list")] == [25000, None]
