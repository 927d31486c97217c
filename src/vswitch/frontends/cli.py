"""The `vswitch` command: switches, ports, fdb, config files, NICs, stats, trace, events and capture, for
humans (Rich tables) and scripts (--json; capture writes pcapng).

Owns argument parsing and presentation only. Every command turns its options into a model spec
(`SwitchSpec.parse`/`PortSpec.parse`: the rules and their messages are control/model.py's) and calls
one `SwitchApi` method; behaviour lives behind that protocol.

How the api is found: ``ctx.obj`` when the caller supplies one (tests: ``CliRunner().invoke(cli,
args, obj=api)``), otherwise the module-level factory `make_api(socket, url, token)` (tests may
replace it), which by default talks to vswitchd through `RestSwitchApi` on ``--socket`` /
``$VSWITCH_SOCKET`` (default ``/run/vswitch/vswitchd.sock``) or ``--url`` with ``--token-file``.

Invariants:
- every read command has a human table and ``--json`` (the `to_jsonable` shapes of the REST API);
- exit status (`EXIT_STATUS`, also in ``vswitch --help``): 0 done; 1 refused — a `VswitchError`
  (vswitchd said no, or cannot be reached) or a `LabError`, printed as ``Error: <message>`` on
  stderr, never a traceback; 2 a usage error (click's: unknown option, missing or conflicting
  arguments); ``lab exec`` passes its command's status through;
- an argument or option shown as ``SWITCH`` completes switch names and one shown as ``PORT`` the
  ports of that switch, asked of vswitchd (`complete_names`); silently nothing when it does not
  answer. ``vswitch completion bash|zsh|fish`` prints click's script that drives it;
- ``vswitch lab …`` (`vswitch.frontends.lab_cli`) and ``vswitch demo`` (`vswitch.frontends.demo`) are
  added to the group like any other command.

Must not touch: the manager, the store, the datapath or the kernel directly.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import json
import os
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import click
from click.shell_completion import CompletionItem, get_completion_class
from rich.table import Table

import vswitch
from vswitch.control import capture as captures
from vswitch.control import config_file, pcapng
from vswitch.control.api import DEFAULT_SOCKET, SwitchApi
from vswitch.control.model import (
    EVENTS_LIMIT_MAX,
    AclRuleSpec,
    EventsPage,
    InvalidRequest,
    PortInfo,
    PortKind,
    PortSettings,
    PortSpec,
    StaticEntry,
    SwitchEvent,
    SwitchInfo,
    SwitchSettings,
    SwitchSpec,
    SwitchType,
    TraceInfo,
    VswitchError,
    to_jsonable,
)
from vswitch.core.policy import format_vlan_list
from vswitch.core.rates import format_rate, police_burst
from vswitch.frontends.console import console as _console

PROG = "vswitch"
#: the environment variable click's completion scripts set when they ask `vswitch` for candidates
COMPLETE_VAR = "_VSWITCH_COMPLETE"
#: a shell waits for completion: a daemon that does not answer within this gives no candidates
COMPLETION_TIMEOUT_S = 2.0

EXIT_STATUS = """\b
Exit status:
  0  done
  1  refused: vswitchd said no (the message names the problem) or cannot
     be reached; a lab that cannot be built or a lab trace without reply
  2  usage error: unknown option, missing or conflicting arguments
  `vswitch lab exec` exits with its command's status.
\b
Completion of commands, switch and port names:
  bash, zsh:  eval "$(vswitch completion bash)"   (or zsh)
  fish:       vswitch completion fish | source"""


def default_make_api(socket_path: str | None, url: str | None, token: str | None, **options: Any) -> SwitchApi:
    """The api the CLI uses when none is injected: vswitchd over its unix socket or a URL.

    `options` go to `RestSwitchApi` (``ca_cert``, ``timeout_s``); raises VswitchError when the CA
    certificate cannot be loaded."""
    from vswitch.frontends.client import RestSwitchApi

    return RestSwitchApi(socket_path=socket_path, url=url, token=token, **options)


#: Factory for the api (socket, url, token[, ca_cert=, timeout_s=]); tests may replace it (or pass
#: ``obj=`` to CliRunner.invoke).
make_api: Callable[..., SwitchApi] = default_make_api


class CliState:
    """What the group callback learned; builds the api on first use."""

    def __init__(self, socket_path: str | None, url: str | None, token: str | None,
                 api: SwitchApi | None = None, ca_cert: str | None = None) -> None:
        self.socket_path, self.url, self.token, self.ca_cert = socket_path, url, token, ca_cert
        self._api = api

    @property
    def api(self) -> SwitchApi:
        if self._api is None:
            extra = {"ca_cert": self.ca_cert} if self.ca_cert else {}
            self._api = make_api(self.socket_path, self.url, self.token, **extra)
        return self._api


#: commands whose modules are imported only when they run (or `--help` lists them): the lab and the
#: demo bring namespaces, guests and netlink, which every other command does without
LAZY_COMMANDS = {"lab": ("vswitch.frontends.lab_cli", "lab"), "demo": ("vswitch.frontends.demo", "demo")}


class VswitchGroup(click.Group):
    """A click group that turns `VswitchError` into ``Error: message`` on stderr and exit code 1,
    with `LAZY_COMMANDS` among its commands."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *(LAZY_COMMANDS if ctx.parent is None else ())})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and ctx.parent is None and cmd_name in LAZY_COMMANDS:
            module, attr = LAZY_COMMANDS[cmd_name]
            command = getattr(importlib.import_module(module), attr)
            self.add_command(command, cmd_name)
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VswitchError as e:
            raise click.ClickException(e.message) from None


#: Passes the CliState (``state.api`` is the SwitchApi) to a command.
pass_state = click.make_pass_decorator(CliState)

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def _print_json(obj: Any) -> None:
    click.echo(json.dumps(to_jsonable(obj), indent=2, sort_keys=False))


# ---- the group ----------------------------------------------------------------------------------

def _token(token_file: str | None) -> str | None:
    """The bearer token: from `token_file` when given, else ``$VSWITCH_TOKEN``; raises TokenFileError."""
    if token_file:
        from vswitch.frontends.tokens import client_token

        return client_token(token_file)
    return os.environ.get("VSWITCH_TOKEN") or None


def new_name(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """``shell_complete=`` of an argument that names something new (port add's PORT): no candidates,
    though it is shown as PORT (see `complete_names`)."""
    return []


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"{PROG} {vswitch.version()}")
        ctx.exit()


@click.group(cls=VswitchGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_STATUS)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Print the version and exit.")
@click.option("--socket", "socket_path", envvar="VSWITCH_SOCKET", default=DEFAULT_SOCKET, show_default=True,
              help="vswitchd's unix socket (env VSWITCH_SOCKET).")
@click.option("--url", envvar="VSWITCH_URL", default=None,
              help="Talk to vswitchd over TCP instead, e.g. http://127.0.0.1:8470 or https://host:8470 "
                   "(env VSWITCH_URL).")
@click.option("--token-file", type=click.Path(dir_okay=False), envvar="VSWITCH_TOKEN_FILE", default=None,
              help="File holding the bearer token for --url, bare or as ROLE:TOKEN (env VSWITCH_TOKEN_FILE; "
                   "or give the token itself in env VSWITCH_TOKEN).")
@click.option("--ca-cert", type=click.Path(dir_okay=False), envvar="VSWITCH_CA_CERT", default=None,
              help="CA certificate (PEM) to verify an https --url against (env VSWITCH_CA_CERT).")
@click.pass_context
def cli(ctx: click.Context, socket_path: str, url: str | None, token_file: str | None,
        ca_cert: str | None) -> None:
    """Hyper-V-style virtual switches for Linux: External, Internal and Private."""
    from vswitch.frontends.tokens import TokenFileError

    try:
        token = _token(token_file)
    except TokenFileError as e:
        raise click.ClickException(str(e)) from None
    injected = ctx.obj
    if isinstance(injected, CliState):
        return
    ctx.obj = CliState(socket_path, url, token, api=injected, ca_cert=ca_cert)


# ---- switch -------------------------------------------------------------------------------------

@cli.group()
def switch() -> None:
    """Create, inspect and delete switches."""


def _switch_table(switches: list[SwitchInfo]) -> Table:
    table = Table(title="switches")
    for col in ("name", "type", "nic", "host vNIC", "state", "ports", "ageing s", "max entries", "datapath"):
        table.add_column(col, no_wrap=col != "datapath")
    for s in switches:
        state = s.state if s.confirm_deadline_s is None else f"{s.state} ({s.confirm_deadline_s:.0f} s left)"
        table.add_row(s.name, s.type, s.nic or "-", s.host_vnic or "-", state, str(len(s.ports)),
                      str(s.ageing_s), str(s.max_entries), s.datapath)
    return table


def _port_table(ports: list[PortInfo], title: str) -> Table:
    table = Table(title=title)
    for col in ("port", "kind", "target", "vlan", "role", "up"):
        table.add_column(col, no_wrap=col != "target")
    for p in ports:
        table.add_row(p.name, p.kind, p.target, p.vlan_mode, p.role,
                      "yes" if p.up else f"no: {p.details.get('down_reason', 'down')}")
    return table


@switch.command("create")
@click.argument("name")
@click.option("--external", "nic", metavar="NIC", help="External switch with its uplink on this physical NIC.")
@click.option("--internal", is_flag=True, help="Internal switch: host vNIC and VMs, no physical NIC.")
@click.option("--private", is_flag=True, help="Private switch: VMs only.")
@click.option("--allow-management-os/--no-allow-management-os", default=True, show_default=True,
              help="External only: give the host a vNIC on the switch (it takes the NIC's addresses).")
@click.option("--confirm-timeout", type=float, metavar="S", default=None,
              help="External only: undo the takeover unless `vswitch switch confirm` comes within S seconds "
                   "(at most 3600).")
@click.option("--dry-run", is_flag=True, help="Print the steps it would take; change nothing.")
@click.option("--ageing", type=int, metavar="S", default=None, help="MAC ageing time in seconds (default 300).")
@click.option("--max-entries", type=int, metavar="N", default=None, help="MAC table capacity (default 8192).")
@click.option("--datapath", default=None, metavar="auto|kernel|python",
              help="auto (default: the kernel fast path when every port is a link, else Python), kernel "
                   "(refuse what the fast path cannot serve) or python.")
@json_option
@pass_state
def switch_create(state: CliState, name: str, nic: str | None, internal: bool, private: bool,
                  allow_management_os: bool, confirm_timeout: float | None, dry_run: bool,
                  ageing: int | None, max_entries: int | None, datapath: str | None, as_json: bool) -> None:
    """Create switch NAME: exactly one of --external NIC, --internal, --private."""
    chosen = [t for t, on in ((SwitchType.EXTERNAL, nic is not None), (SwitchType.INTERNAL, internal),
                              (SwitchType.PRIVATE, private)) if on]
    if len(chosen) != 1:
        raise click.UsageError("choose exactly one of --external NIC, --internal, --private")
    kind = chosen[0]
    fields: dict[str, Any] = {"name": name, "type": kind, "nic": nic, "allow_management_os": allow_management_os,
                              "confirm_timeout_s": confirm_timeout}
    if ageing is not None:
        fields["ageing_s"] = ageing
    if max_entries is not None:
        fields["max_entries"] = max_entries
    if datapath is not None:
        fields["datapath"] = datapath
    spec = SwitchSpec.parse(fields)
    result = state.api.create_switch(spec, dry_run=dry_run)
    if dry_run:
        _print_dry_run(result, f"creating {kind} switch {name!r}", as_json)  # type: ignore[arg-type]
        return
    assert isinstance(result, SwitchInfo)
    if as_json:
        _print_json(result)
        return
    click.echo(f"created {result.type} switch {result.name!r}" +
               (f" (host vNIC {result.host_vnic})" if result.host_vnic else "") + f"; datapath: {result.datapath}")
    if result.state == "awaiting-confirm":
        left = f" within {result.confirm_deadline_s:.0f} s" if result.confirm_deadline_s is not None else ""
        click.echo(f"run `vswitch switch confirm {result.name}`{left} to keep it, or it is undone automatically")


@switch.command("list")
@json_option
@pass_state
def switch_list(state: CliState, as_json: bool) -> None:
    """List switches."""
    switches = state.api.list_switches()
    if as_json:
        _print_json(switches)
    else:
        _console().print(_switch_table(switches))


@switch.command("show")
@click.argument("name", metavar="SWITCH")
@json_option
@pass_state
def switch_show(state: CliState, name: str, as_json: bool) -> None:
    """Show one switch and its ports."""
    info = state.api.get_switch(name)
    if as_json:
        _print_json(info)
        return
    console = _console()
    console.print(_switch_table([info]))
    if info.uplink_bandwidth:
        console.print(f"uplink bandwidth: {format_rate(info.uplink_bandwidth)}, shared by the ports' "
                      "--min-bandwidth-weight")
    if info.watch_events_lost:
        console.print(f"watch: {info.watch_events_lost} decisions not reported by the kernel fast path "
                      "(its event ring was full)")
    console.print(_port_table(info.ports, f"ports of {info.name}"))


@switch.command("delete")
@click.argument("name", metavar="SWITCH")
@pass_state
def switch_delete(state: CliState, name: str) -> None:
    """Delete a switch (an external switch gives its NIC back)."""
    state.api.delete_switch(name)
    click.echo(f"deleted switch {name!r}")


@switch.command("confirm")
@click.argument("name", metavar="SWITCH")
@json_option
@pass_state
def switch_confirm(state: CliState, name: str, as_json: bool) -> None:
    """Keep an external switch created with --confirm-timeout (cancels the automatic undo)."""
    info = state.api.confirm_switch(name)
    if as_json:
        _print_json(info)
    else:
        click.echo(f"confirmed switch {info.name!r}: {info.state}")


@switch.command("set")
@click.argument("name", metavar="SWITCH")
@click.option("--name", "new_name", metavar="NEW", default=None,
              help="Rename the switch (an internal or external switch's host vNIC vs-NEW with it).")
@click.option("--ageing", type=int, metavar="S", default=None, help="MAC ageing time in seconds (10-3600).")
@click.option("--max-entries", type=int, metavar="N", default=None, help="MAC table capacity (16-1000000).")
@click.option("--internal", is_flag=True, help="Make it internal: host vNIC and VMs (an external switch's NIC "
              "is given back as it was).")
@click.option("--private", is_flag=True, help="Make it private: VMs only (the host vNIC goes).")
@click.option("--external", "nic", metavar="NIC", default=None,
              help="Make it external on this NIC (taken over as `switch create --external` does).")
@click.option("--allow-management-os", type=click.Choice(["on", "off"]), default=None,
              help="External: give the host a vNIC on the switch (on) or remove it (off).")
@click.option("--confirm-timeout", type=float, metavar="S", default=None,
              help="With --external: go back to the previous connection unless `vswitch switch confirm` "
                   "comes within S seconds.")
@click.option("--datapath", default=None, metavar="auto|kernel|python",
              help="Move the running switch: auto (the kernel fast path when it can), kernel (refused, saying "
                   "why, when the fast path cannot serve it) or python.")
@click.option("--uplink-bandwidth", "uplink_bandwidth", default=None, metavar="RATE",
              help="External: the uplink's capacity (100M, 1G) its ports share by --min-bandwidth-weight "
                   "(0: no sharing).")
@click.option("--dry-run", is_flag=True, help="Print the steps it would take; change nothing.")
@json_option
@pass_state
def switch_set(state: CliState, name: str, new_name: str | None, ageing: int | None, max_entries: int | None,
               internal: bool, private: bool, nic: str | None, allow_management_os: str | None,
               confirm_timeout: float | None, datapath: str | None, uplink_bandwidth: str | None, dry_run: bool,
               as_json: bool) -> None:
    """Rename a switch, change its MAC ageing time, table capacity, connection or datapath (stored;
    applied live; ports and their settings stay)."""
    chosen = [t for t, on in ((SwitchType.EXTERNAL, nic is not None), (SwitchType.INTERNAL, internal),
                              (SwitchType.PRIVATE, private)) if on]
    if len(chosen) > 1:
        raise click.UsageError("choose at most one of --external NIC, --internal, --private")
    mgmt = None if allow_management_os is None else allow_management_os == "on"
    fields = (("name", new_name), ("ageing_s", ageing), ("max_entries", max_entries),
              ("type", chosen[0] if chosen else None), ("nic", nic), ("allow_management_os", mgmt),
              ("confirm_timeout_s", confirm_timeout), ("datapath", datapath), ("uplink_bandwidth", uplink_bandwidth))
    settings = SwitchSettings.parse({k: v for k, v in fields if v is not None})
    result = state.api.set_switch(name, settings, dry_run=dry_run)
    if dry_run:
        _print_dry_run(result, f"changing switch {name!r}", as_json)  # type: ignore[arg-type]
        return
    info = result
    assert isinstance(info, SwitchInfo)
    if as_json:
        _print_json(info)
        return
    where = f" on {info.nic}" if info.nic else ""
    vnic = f", host vNIC {info.host_vnic}" if info.host_vnic else ", no host vNIC"
    click.echo(f"switch {info.name!r}: {info.type}{where}{vnic}; ageing {info.ageing_s} s, "
               f"max entries {info.max_entries}; datapath: {info.datapath}"
               + (f"; uplink bandwidth {format_rate(info.uplink_bandwidth)}" if info.uplink_bandwidth else ""))
    if mgmt is False and info.type == SwitchType.EXTERNAL:
        click.echo(f"warning: the host no longer has an adapter on {info.nic}; it lost its addresses and routes "
                   f"there (`--allow-management-os on` gives them back)", err=True)
    if info.state == "awaiting-confirm":
        left = f" within {info.confirm_deadline_s:.0f} s" if info.confirm_deadline_s is not None else ""
        click.echo(f"run `vswitch switch confirm {info.name}`{left} to keep it, or it goes back automatically")


# ---- port ---------------------------------------------------------------------------------------

@cli.group()
def port() -> None:
    """Attach and detach ports."""


_PORT_KINDS = (("tap", PortKind.TAP), ("link", PortKind.LINK), ("qemu_stream", PortKind.QEMU_STREAM),
               ("qemu_dgram", PortKind.QEMU_DGRAM), ("vxlan", PortKind.VXLAN), ("memory", PortKind.MEMORY))


@port.command("add")
@click.argument("switch_name", metavar="SWITCH")
@click.argument("name", metavar="PORT", shell_complete=new_name)
@click.option("--tap", metavar="IFNAME", help="A TAP device the switch creates and owns (e.g. a namespace's NIC).")
@click.option("--link", metavar="IFNAME", help="An existing kernel link (veth, a QEMU-owned TAP), via AF_PACKET.")
@click.option("--qemu-stream", metavar="PATH", help="A unix stream socket for `qemu -netdev stream` (rootless); "
              "a plain NAME puts it in vswitchd's port socket directory.")
@click.option("--qemu-dgram", metavar="PATH", help="A unix datagram socket for `qemu -netdev dgram` (rootless); "
              "a plain NAME puts it in vswitchd's port socket directory.")
@click.option("--vxlan", metavar="REMOTE[,REMOTE…]", help="A VXLAN tunnel (RFC 7348) to these remote VTEPs' "
              "addresses, with --vni; floods go to each of them.")
@click.option("--memory", metavar="ID", hidden=True, help="An in-memory port (tests).")
@click.option("--vni", type=int, metavar="N", default=None, help="--vxlan: the VXLAN network identifier.")
@click.option("--local", "local_ip", metavar="IP", default=None,
              help="--vxlan: the local address to send from and receive on (default: any).")
@click.option("--dstport", type=int, metavar="PORT", default=None, help="--vxlan: the UDP port (default 4789).")
@click.option("--vlan", type=int, metavar="N", default=None, help="Access port in VLAN N (default 1).")
@click.option("--trunk", metavar="LIST", default=None, help="Trunk port carrying these VLANs, e.g. 10,20,30-32.")
@click.option("--native", type=int, metavar="N", default=None, help="Trunk only: the untagged VLAN.")
@json_option
@pass_state
def port_add(state: CliState, switch_name: str, name: str, vlan: int | None, trunk: str | None,
             native: int | None, vni: int | None, local_ip: str | None, dstport: int | None, as_json: bool,
             **targets: str | None) -> None:
    """Add port PORT to SWITCH: exactly one of --tap, --link, --qemu-stream, --qemu-dgram, --vxlan."""
    chosen = [(kind, targets[opt]) for opt, kind in _PORT_KINDS if targets[opt] is not None]
    if len(chosen) != 1:
        raise click.UsageError("choose exactly one of --tap IFNAME, --link IFNAME, --qemu-stream PATH, "
                               "--qemu-dgram PATH, --vxlan REMOTE[,REMOTE…]")
    kind, target = chosen[0]
    if kind in (PortKind.QEMU_STREAM, PortKind.QEMU_DGRAM) and target and "/" in target:
        # relative to where the command runs, not the daemon; joined, not normalised, so that the
        # daemon refuses a '..' instead of us guessing. A plain name goes as is: vswitchd places it.
        target = os.path.join(os.getcwd(), target)
    # the VLAN rules (access or trunk, the list's syntax) are the model's, with its messages
    tunnel = {"vni": vni, "local_ip": local_ip, "dstport": dstport}  # the model refuses them on other kinds
    spec = PortSpec.parse({"name": name, "kind": kind, "target": target, "vlan": vlan, "trunk": trunk,
                           "native": native, **{k: v for k, v in tunnel.items() if v is not None}})
    info = state.api.add_port(switch_name, spec)
    if as_json:
        _print_json(info)
        return
    click.echo(f"added {info.kind} port {info.name!r} ({info.target}, {info.vlan_mode}) to switch {switch_name!r}")
    qemu_arg = info.details.get("qemu_arg")
    if qemu_arg:
        click.echo("start the VM with:")
        click.echo(f"  {qemu_arg}")


@port.command("remove")
@click.argument("switch_name", metavar="SWITCH")
@click.argument("name", metavar="PORT")
@pass_state
def port_remove(state: CliState, switch_name: str, name: str) -> None:
    """Remove port PORT from SWITCH."""
    state.api.remove_port(switch_name, name)
    click.echo(f"removed port {name!r} from switch {switch_name!r}")


@port.command("list")
@click.argument("switch_name", metavar="SWITCH")
@json_option
@pass_state
def port_list(state: CliState, switch_name: str, as_json: bool) -> None:
    """List the ports of SWITCH."""
    ports = state.api.list_ports(switch_name)
    if as_json:
        _print_json(ports)
    else:
        _console().print(_port_table(ports, f"ports of {switch_name}"))


_ON_OFF = click.Choice(["on", "off"])


@port.command("set")
@click.argument("switch_name", metavar="SWITCH")
@click.argument("name", metavar="PORT")
@click.option("--vlan", type=int, metavar="N", default=None, help="Make it an access port in VLAN N.")
@click.option("--trunk", metavar="LIST", default=None, help="Make it a trunk carrying these VLANs, e.g. 10,20,30-32.")
@click.option("--native", type=int, metavar="N", default=None,
              help="With --trunk: the untagged VLAN (none if left out).")
@click.option("--admin", type=click.Choice(["up", "down"]), default=None,
              help="down: keep the port attached but drop its frames (and send it none).")
@click.option("--learning", type=_ON_OFF, default=None, help="Learn the source MACs of its frames.")
@click.option("--flooding", type=_ON_OFF, default=None,
              help="Send it floods (unknown unicast, broadcast, multicast).")
@click.option("--mac", metavar="MAC", default=None,
              help="A tap port: give its TAP (the VM's NIC) this MAC, now and after every restart.")
@click.option("--dhcp-guard", "dhcp_guard", type=_ON_OFF, default=None,
              help="Drop DHCP server messages (OFFER, ACK, NAK; DHCPv6 ADVERTISE, REPLY, RECONFIGURE) from it.")
@click.option("--router-guard", "router_guard", type=_ON_OFF, default=None,
              help="Drop router advertisements and redirects (ICMPv6 134, 137; ICMPv4 5) from it.")
@click.option("--mac-spoofing", "mac_spoofing", type=_ON_OFF, default=None,
              help="off: only the port's MAC (--mac, or the first source it sends) may be its source.")
@click.option("--mac-limit", "mac_limit", type=int, default=None, metavar="N",
              help="The most MACs it may own in the MAC table (0: no cap).")
@click.option("--port-mirroring", "port_mirroring", type=click.Choice(["none", "source", "destination"],
                                                                      case_sensitive=False), default=None,
              help="source: what it sends and receives is copied to every destination port of the switch; "
                   "destination: it gets those copies (Hyper-V -PortMirroring).")
@click.option("--isolated", type=_ON_OFF, default=None,
              help="on: never exchange frames with another isolated port (the Linux bridge's isolated flag).")
@click.option("--pvlan", type=click.Choice(["isolated", "community", "promiscuous", "none"]), default=None,
              help="Make it a private VLAN port (Hyper-V Set-VMNetworkAdapterVlan -Isolated/-Community/"
                   "-Promiscuous); none: back to a plain access port.")
@click.option("--primary", type=int, metavar="P", default=None, help="With --pvlan: the primary VLAN.")
@click.option("--secondary", type=int, metavar="S", default=None,
              help="With --pvlan isolated|community: its secondary VLAN.")
@click.option("--secondary-list", "secondary_list", metavar="LIST", default=None,
              help="With --pvlan promiscuous: the secondary VLANs it serves, e.g. 101-103.")
@click.option("--storm-limit", "storm_limit", type=int, default=None, metavar="PPS",
              help="Broadcast, multicast and unknown-unicast frames it may send per second; the excess is "
                   "dropped (0: no limit).")
@click.option("--max-bandwidth", "max_bandwidth", default=None, metavar="RATE",
              help="What it may send into the switch, bits per second (100M, 1G; 0: no limit): policed.")
@click.option("--burst", "bandwidth_burst", type=int, default=None, metavar="BYTES",
              help="The --max-bandwidth policer's bucket in bytes (0: 0.25 s of the rate, at least 128 KiB).")
@click.option("--max-bandwidth-in", "max_bandwidth_in", default=None, metavar="RATE",
              help="What the switch delivers to it, bits per second (a link port; 0: no limit): shaped.")
@click.option("--min-bandwidth-weight", "min_bandwidth_weight", type=int, default=None, metavar="0-100",
              help="Its share of an External switch's congested uplink, relative to the other ports' (0: none).")
@json_option
@pass_state
def port_set(state: CliState, switch_name: str, name: str, vlan: int | None, trunk: str | None,
             native: int | None, admin: str | None, learning: str | None, flooding: str | None,
             mac: str | None, dhcp_guard: str | None, router_guard: str | None, mac_spoofing: str | None,
             mac_limit: int | None, port_mirroring: str | None, isolated: str | None, pvlan: str | None,
             primary: int | None, secondary: int | None, secondary_list: str | None, storm_limit: int | None,
             max_bandwidth: str | None, bandwidth_burst: int | None, max_bandwidth_in: str | None,
             min_bandwidth_weight: int | None, as_json: bool) -> None:
    """Change port PORT of SWITCH live (stored; the other ports keep forwarding)."""
    def flag(value: str | None) -> bool | None:
        return None if value is None else value == "on"

    fields: dict[str, Any] = {"vlan": vlan, "trunk": trunk, "native": native,
                              "admin_up": None if admin is None else admin == "up",
                              "learning": flag(learning), "flooding": flag(flooding), "mac": mac,
                              "dhcp_guard": flag(dhcp_guard), "router_guard": flag(router_guard),
                              "mac_spoofing": flag(mac_spoofing), "mac_limit": mac_limit,
                              "port_mirroring": port_mirroring,
                              "isolated": flag(isolated), "pvlan": pvlan, "primary": primary,
                              "secondary": secondary, "secondary_list": secondary_list,
                              "storm_limit": storm_limit, "max_bandwidth": max_bandwidth,
                              "bandwidth_burst": bandwidth_burst, "max_bandwidth_in": max_bandwidth_in,
                              "min_bandwidth_weight": min_bandwidth_weight}
    settings = PortSettings.parse({k: v for k, v in fields.items() if v is not None})
    info = state.api.set_port(switch_name, name, settings)
    if as_json:
        _print_json(info)
    else:
        click.echo(f"port {info.name!r} of switch {switch_name!r}: {_port_summary(info)}")


def _print_dry_run(steps: list[str], doing: str, as_json: bool) -> None:
    """The steps a --dry-run would take, numbered (or as JSON)."""
    if as_json:
        _print_json({"dry_run": True, "steps": list(steps)})
        return
    click.echo(f"dry run: {doing} would")
    for i, step in enumerate(steps, 1):
        click.echo(f"  {i}. {step}")


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def _port_summary(p: PortInfo) -> str:
    return (f"{p.vlan_mode}, admin {'up' if p.admin_up else 'down'}, learning {_on(p.learning)}, "
            f"flooding {_on(p.flooding)}" + (f", mac {p.mac}" if p.mac else "")
            + (f", dhcp guard {_on(p.dhcp_guard)}, router guard {_on(p.router_guard)}"
               if p.dhcp_guard or p.router_guard else "")
            + ("" if p.mac_spoofing else f", mac spoofing off ({p.port_mac or 'its first source'})")
            + (f", mac limit {p.mac_limit}" if p.mac_limit else "")
            + (f", port mirroring {p.port_mirroring}" if p.port_mirroring != "none" else "")
            + (", isolated" if p.isolated else "")
            + (f", storm limit {p.storm_limit} pps" if p.storm_limit else "")
            + (f", max bandwidth {format_rate(p.max_bandwidth)}" if p.max_bandwidth else "")
            + (f", max bandwidth in {format_rate(p.max_bandwidth_in)}" if p.max_bandwidth_in else "")
            + (f", min bandwidth weight {p.min_bandwidth_weight}" if p.min_bandwidth_weight else ""))


@port.command("show")
@click.argument("switch_name", metavar="SWITCH")
@click.argument("name", metavar="PORT")
@json_option
@pass_state
def port_show(state: CliState, switch_name: str, name: str, as_json: bool) -> None:
    """Show port PORT of SWITCH: VLAN mode (trunks as ranges), admin state, learning, flooding, guards."""
    p = state.api.get_port(switch_name, name)
    if as_json:
        _print_json(p)
        return
    table = Table(title=f"port {p.name} of {switch_name}", show_header=False)
    table.add_column("field", no_wrap=True)
    table.add_column("value")
    rows = [("kind", p.kind), ("target", p.target), ("role", p.role), ("vlan", p.vlan_mode),
            ("admin", "up" if p.admin_up else "down"), ("learning", _on(p.learning)),
            ("flooding", _on(p.flooding)), ("dhcp guard", _on(p.dhcp_guard)),
            ("router guard", _on(p.router_guard)), ("mac spoofing", _on(p.mac_spoofing)),
            *([("port mac", p.port_mac or "its first source, when it sends")] if not p.mac_spoofing else []),
            ("mac limit", str(p.mac_limit) if p.mac_limit else "none"),
            ("port mirroring", p.port_mirroring),
            ("isolated", _on(p.isolated)),
            *([("private vlan", f"{p.pvlan}, primary {p.primary}, secondary "
                                f"{format_vlan_list(p.secondary)}")] if p.pvlan else []),
            ("storm limit", f"{p.storm_limit} pps" if p.storm_limit else "none"),
            ("max bandwidth", (f"{format_rate(p.max_bandwidth)}, burst "
                               f"{p.bandwidth_burst or police_burst(p.max_bandwidth):,} bytes") if p.max_bandwidth
             else "none"),
            ("max bandwidth in", format_rate(p.max_bandwidth_in) if p.max_bandwidth_in else "none"),
            ("min bandwidth weight", str(p.min_bandwidth_weight) if p.min_bandwidth_weight else "none"),
            *([("mac", p.mac or "the kernel's")] if p.kind == "tap" else []),
            ("up", "yes" if p.up else f"no: {p.details.get('down_reason', 'down')}"),
            ("datapath", p.datapath),
            ("acls", f"{p.acl_rules} rule{'' if p.acl_rules == 1 else 's'} (vswitch acl list)" if p.acl_rules
             else "none")]
    rows += [(k, str(v)) for k, v in p.details.items() if k not in ("down_reason", "kind", "name")]
    for row in rows:
        table.add_row(*row)
    _console().print(table)


# ---- fdb ----------------------------------------------------------------------------------------

@cli.group()
def fdb() -> None:
    """The MAC table (forwarding database)."""


@fdb.command("show")
@click.argument("switch_name", metavar="SWITCH")
@json_option
@pass_state
def fdb_show(state: CliState, switch_name: str, as_json: bool) -> None:
    """Show the MAC table of SWITCH."""
    entries = state.api.fdb_show(switch_name)
    if as_json:
        _print_json(entries)
        return
    table = Table(title=f"fdb of {switch_name} ({len(entries)} entries)")
    for col, justify in (("mac", "left"), ("vlan", "right"), ("port", "left"), ("age s", "right"),
                         ("type", "left")):
        table.add_column(col, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    tunnels = any(e.remote for e in entries)
    if tunnels:  # a VXLAN port's entries say behind which VTEP
        table.add_column("vtep", no_wrap=True)
    for e in entries:
        row = [e.mac, str(e.vlan), e.port, f"{e.age_s:.1f}", "static" if e.static else "learned"]
        table.add_row(*row, *((e.remote or "",) if tunnels else ()))
    _console().print(table)


@fdb.command("flush")
@click.argument("switch_name", metavar="SWITCH")
@json_option
@pass_state
def fdb_flush(state: CliState, switch_name: str, as_json: bool) -> None:
    """Remove the learned entries of SWITCH's MAC table."""
    removed = state.api.fdb_flush(switch_name)
    if as_json:
        _print_json({"removed": removed})
    else:
        click.echo(f"flushed {removed} learned entr{'y' if removed == 1 else 'ies'} from switch {switch_name!r}")


@fdb.command("add")
@click.argument("switch_name", metavar="SWITCH")
@click.argument("mac", metavar="MAC")
@click.option("--port", "port_name", required=True, metavar="PORT", help="The port the MAC lives behind.")
@click.option("--vlan", type=int, metavar="N", default=None, help="The VLAN (default: the port's own).")
@json_option
@pass_state
def fdb_add(state: CliState, switch_name: str, mac: str, port_name: str, vlan: int | None, as_json: bool) -> None:
    """Add a static entry: MAC always lives behind PORT (never ages, never moves; stored)."""
    e = state.api.fdb_add(switch_name, StaticEntry.parse({"mac": mac, "port": port_name, "vlan": vlan}))
    if as_json:
        _print_json(e)
    else:
        click.echo(f"static entry {e.mac} (VLAN {e.vlan}) → port {e.port!r} on switch {switch_name!r}")


@fdb.command("del")
@click.argument("switch_name", metavar="SWITCH")
@click.argument("mac", metavar="MAC")
@click.option("--vlan", type=int, metavar="N", default=None,
              help="The VLAN (needed only when the MAC is static in several).")
@pass_state
def fdb_del(state: CliState, switch_name: str, mac: str, vlan: int | None) -> None:
    """Remove a static entry."""
    state.api.fdb_del(switch_name, mac, vlan)
    click.echo(f"removed static entry {mac}" + (f" (VLAN {vlan})" if vlan is not None else "")
               + f" from switch {switch_name!r}")


# ---- port ACLs --------------------------------------------------------------------------------------

@cli.group()
def acl() -> None:
    """Port ACLs and extended ACLs (Hyper-V's Add-VMNetworkAdapterAcl / Add-VMNetworkAdapterExtendedAcl)."""


def _acl_options(fn: Any) -> Any:
    for opt in reversed((
        click.option("--direction", default=None, metavar="in|out|both",
                     help="in: what the switch delivers to the port (the VM's Inbound); out: what the port "
                          "sends (Outbound); both (port ACLs only)."),
        click.option("--action", default=None, metavar="allow|deny|meter",
                     help="meter (port ACLs, IP rules) only counts the bytes."),
        click.option("--remote-mac", default=None, metavar="MAC|any", help="A port ACL on the remote MAC."),
        click.option("--remote-ip", default=None, metavar="CIDR|any", help="The remote address or prefix."),
        click.option("--local-ip", default=None, metavar="CIDR|any", help="The local (the VM's) address or prefix."),
        click.option("--weight", type=int, default=None, metavar="N",
                     help="An extended ACL: the highest weight matching decides (1-65535)."),
        click.option("--protocol", default=None, metavar="tcp|udp|icmp|NUM", help="Extended: the IP protocol."),
        click.option("--remote-port", default=None, metavar="P|P-Q", help="Extended (tcp/udp): the remote port(s)."),
        click.option("--local-port", default=None, metavar="P|P-Q", help="Extended (tcp/udp): the local port(s)."),
        click.option("--stateful", is_flag=True, default=False,
                     help="Extended allow: admit the return traffic of the flows it admits."),
        click.option("--idle-timeout", type=int, default=None, metavar="S",
                     help="Stateful: forget a flow idle this many seconds (default 255)."),
    )):
        fn = opt(fn)
    return fn


def _acl_rule(opts: dict[str, Any]) -> AclRuleSpec:
    """The rule the options state (InvalidRequest naming a missing or bad one)."""
    return AclRuleSpec.parse({k: v for k, v in opts.items() if v is not None and v is not False})


_ACL_FIELDS = ("direction", "action", "remote_mac", "remote_ip", "local_ip", "weight", "protocol", "remote_port",
               "local_port", "stateful", "idle_timeout")


@acl.command("add")
@click.argument("switch_name", metavar="SWITCH")
@click.argument("port_name", metavar="PORT")
@_acl_options
@json_option
@pass_state
def acl_add(state: CliState, switch_name: str, port_name: str, as_json: bool, **opts: Any) -> None:
    """Add a rule to PORT's ACLs (stored, live): a port ACL (--remote-mac or --remote-ip) or, with
    --weight, an extended ACL."""
    r = state.api.acl_add(switch_name, port_name, _acl_rule(opts))
    if as_json:
        _print_json(r)
    else:
        click.echo(f"ACL #{r.id} on port {port_name!r} of switch {switch_name!r}: {r.rule}")


@acl.command("list")
@click.argument("switch_name", metavar="SWITCH")
@click.argument("port_name", metavar="PORT", required=False)
@json_option
@pass_state
def acl_list(state: CliState, switch_name: str, port_name: str | None, as_json: bool) -> None:
    """Every ACL rule of SWITCH's ports (or of PORT) with its hits and bytes."""
    rules = state.api.acl_list(switch_name, port_name)
    if as_json:
        _print_json(rules)
        return
    table = Table(title=f"ACLs of {switch_name}" + (f" port {port_name}" if port_name else "")
                  + f" ({len(rules)} rule{'' if len(rules) == 1 else 's'})")
    for col, justify in (("port", "left"), ("#", "right"), ("rule", "left"), ("hits", "right"),
                         ("bytes", "right")):
        table.add_column(col, justify=justify, no_wrap=col != "rule")  # type: ignore[arg-type]
    for r in rules:
        table.add_row(r.port, str(r.id), r.rule + (f" — {r.flows} flow{'' if r.flows == 1 else 's'} open"
                                                   if r.stateful else ""), str(r.hits), str(r.bytes))
    _console().print(table)


@acl.command("remove")
@click.argument("switch_name", metavar="SWITCH")
@click.argument("port_name", metavar="PORT")
@click.argument("rule_id", metavar="ID", required=False)
@_acl_options
@pass_state
def acl_remove(state: CliState, switch_name: str, port_name: str, rule_id: str | None, **opts: Any) -> None:
    """Remove rule ID of PORT, or the rule the same options name (an extended ACL: --weight and
    --direction, as Remove-VMNetworkAdapterExtendedAcl)."""
    given = {k: v for k, v in opts.items() if v is not None and v is not False}
    if (rule_id is None) == (not given):
        raise click.UsageError("give the rule's ID or the options that name it (not both)")
    if rule_id is None:
        if "weight" in given:  # an extended ACL is named by its weight and direction
            want = {"weight": given["weight"], "direction": given.get("direction")}
        else:
            want = _acl_rule(opts).selector()
        found = [r for r in state.api.acl_list(switch_name, port_name)
                 if _acl_rule({k: getattr(r, k) for k in _ACL_FIELDS}).selector() == want]
        if not found:
            raise click.ClickException(f"port {port_name!r} has no such ACL rule (vswitch acl list {switch_name} "
                                       f"{port_name})")
        rule_id = str(found[0].id)
    state.api.acl_remove(switch_name, port_name, rule_id)
    click.echo(f"removed ACL #{rule_id} from port {port_name!r} of switch {switch_name!r}")


# ---- config ---------------------------------------------------------------------------------------

@cli.group()
def config() -> None:
    """Export every switch to a file; apply a file (add and change what it states)."""


def _write_atomically(path: str, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same directory and a rename, so a reader
    sees the old file or the new one, never half of one. Raises OSError (the old file stays)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))  # an edited file keeps its mode
        except FileNotFoundError:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@config.command("export")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to FILE (atomically: temporary file + rename) instead of stdout.")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of YAML (also a body of POST /config/apply).")
@pass_state
def config_export(state: CliState, output: str | None, as_json: bool) -> None:
    """Every switch with its settings, ports and static MAC entries, as YAML to edit and re-apply."""
    doc = state.api.config_export()
    if as_json:
        text = json.dumps(doc.to_dict(), indent=2) + "\n"
    else:
        when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        text = config_file.dump_yaml(doc, [
            f"vswitch configuration, exported by vswitch {vswitch.version()} on {when}",
            "Edit it and apply it with `vswitch config apply FILE` (`--dry-run` first shows what would change;",
            "`--prune` also deletes the switches it does not list). A switch listed here gets exactly its",
            "ports and static entries; leave out `ports:` or `static:` to keep a switch's as they are."])
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        _write_atomically(output, text)
    except OSError as e:
        raise click.ClickException(f"cannot write {output}: {e.strerror or e}") from None
    click.echo(f"wrote {len(doc.switches)} switch{'es' if len(doc.switches) != 1 else ''} to {output}", err=True)


@config.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--dry-run", is_flag=True, help="Print what would change; change nothing.")
@click.option("--prune", is_flag=True,
              help="Also delete the switches FILE does not list (an External one gives its NIC back).")
@json_option
@pass_state
def config_apply(state: CliState, file: str, dry_run: bool, prune: bool, as_json: bool) -> None:
    """Make the switches what FILE states: all of it or, on any problem, nothing.

    Creates what is missing and changes what differs; a switch FILE lists gets exactly its ports and
    static entries; switches FILE does not list are kept unless --prune. Applying the same file
    again changes nothing. FILE may be - (stdin)."""
    try:
        with click.open_file(file) as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise click.ClickException(f"cannot read {file}: {getattr(e, 'strerror', None) or e}") from None
    try:
        doc = config_file.parse_yaml(text, file)
    except InvalidRequest as e:  # every problem on its own line, named by its path in the file
        lines = "\n".join(f"  {p}" for p in e.problems)
        raise click.ClickException(f"{file} is refused, nothing changed:\n{lines}") from None
    plan = state.api.config_apply(doc, dry_run=dry_run, prune=prune)
    if as_json:
        _print_json(plan)
        return
    if not plan.steps:
        click.echo("nothing to change")
    else:
        click.echo(f"dry run: applying {file} would" if dry_run else f"applied {file}:")
        for i, step in enumerate(plan.steps, 1):
            click.echo(f"  {i}. {step.text}")
        if dry_run:
            click.echo("nothing was changed (dry run)")
    for note in plan.notes:
        click.echo(f"note: {note}")


# ---- nic --------------------------------------------------------------------------------------------

@cli.group()
def nic() -> None:
    """The host's network links."""


@nic.command("list")
@json_option
@pass_state
def nic_list(state: CliState, as_json: bool) -> None:
    """The links that could be the uplink of an External switch (not a TAP, bridge, vNIC or port)."""
    nics = state.api.list_nics()
    if as_json:
        _print_json(nics)
        return
    table = Table(title="NICs that could be an uplink")
    for col in ("nic", "kind", "mac", "state", "speed", "mtu", "addresses", "default route"):
        table.add_column(col, no_wrap=col != "addresses")
    for n in nics:
        table.add_row(n.name, n.kind, n.mac, "up" if n.up else "down", _speed_text(n.speed_mbps), str(n.mtu),
                      ", ".join(n.addresses) or "-", "yes" if n.default_route else "-")
    console = _console()
    console.print(table)
    for n in nics:
        if n.default_route:
            console.print(f"warning: taking {n.name} over moves the host's default route to the switch's host vNIC")


def _speed_text(mbps: int | None) -> str:
    if mbps is None:
        return "-"
    return f"{mbps // 1000} Gb/s" if mbps >= 1000 and mbps % 1000 == 0 else f"{mbps} Mb/s"


# ---- stats and trace ------------------------------------------------------------------------------

@cli.command("stats")
@click.argument("switch_name", metavar="SWITCH")
@json_option
@pass_state
def stats(state: CliState, switch_name: str, as_json: bool) -> None:
    """Per-port counters of SWITCH: frames, bytes, floods, learning, drops by reason."""
    rows = state.api.stats(switch_name)
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"stats of {switch_name}")
    mirroring = any(s.mirrored or s.mirror_tx for s in rows)  # the columns only where port mirroring happened
    for col in ("port", "rx frames", "rx bytes", "tx frames", "tx bytes", "floods", "learned", "moved",
                "static refused", *(("mirrored", "mirror tx") if mirroring else ()), "drops"):
        table.add_column(col, justify="left" if col in ("port", "drops") else "right", no_wrap=col != "drops")
    for s in rows:
        drops = ", ".join(f"{reason}={n}" for reason, n in sorted(s.drops.items()) if n) or "-"
        table.add_row(s.port, str(s.rx_frames), str(s.rx_bytes), str(s.tx_frames), str(s.tx_bytes),
                      str(s.floods), str(s.learned), str(s.moved), str(s.static_refused),
                      *((str(s.mirrored), str(s.mirror_tx)) if mirroring else ()), drops)
    _console().print(table)


def _print_trace(t: TraceInfo) -> None:
    """The frame as asked, its steps in order (stage: result [REASON]), then the verdict, the VLAN the
    ingress port classified it to (also for a drop) and the output ports."""
    tag = "untagged" if t.tag is None else f"tagged VID {t.tag}"
    click.echo(f"frame: switch={t.switch} in_port={t.in_port} src={t.src} dst={t.dst} {tag}")
    for i, step in enumerate(t.steps, 1):
        click.echo(f"{i}. {step.stage}: {step.result}" + (f" [{step.reason}]" if step.reason else ""))
    click.echo(f"verdict: {t.reason} ({t.explanation})")
    click.echo(f"VLAN: {t.vlan}" if t.vlan is not None else "VLAN: none (dropped before VLAN classification)")
    click.echo(f"output ports: {', '.join(t.out_ports) or '(none)'}")


@cli.command("trace")
@click.argument("switch_name", metavar="SWITCH")
@click.option("--in-port", required=True, metavar="PORT", help="Port the frame arrives on.")
@click.option("--src", required=True, metavar="MAC", help="Source MAC.")
@click.option("--dst", required=True, metavar="MAC", help="Destination MAC.")
@click.option("--vlan", type=int, metavar="N", default=None, help="VLAN tag of the frame.")
@click.option("--payload", metavar="HEX", default=None,
              help="The frame after the MAC addresses (and tag): ethertype and what follows, in hex "
                   "(default: IPv4, 46 zero bytes), e.g. a DHCP offer to see the DHCP guard at work.")
@json_option
@pass_state
def trace(state: CliState, switch_name: str, in_port: str, src: str, dst: str, vlan: int | None,
          payload: str | None, as_json: bool) -> None:
    """Explain what SWITCH would do with such a frame now (sends nothing)."""
    result = state.api.trace(switch_name, in_port, src, dst, vlan, payload)
    if as_json:
        _print_json(result)
    else:
        _print_trace(result)


# ---- capture ----------------------------------------------------------------------------------------

class _Saved:
    """What a capture wrote: whole pcapng blocks only (a block still arriving waits), so the file is
    readable whenever the capture ends, Ctrl-C included; frames counted, the daemon's ISB read."""

    def __init__(self, out: Any) -> None:
        self.out, self.frames, self.dropped, self.ended = out, 0, None, None
        self._pending = bytearray()

    def write(self, chunk: bytes) -> None:
        self._pending += chunk
        blocks, used = pcapng.split_blocks(self._pending)
        if not used:
            return
        self.out.write(self._pending[:used])
        self.out.flush()  # per chunk: `-w - | wireshark -k -i -` shows frames as they pass
        del self._pending[:used]
        for block in blocks:
            kind = pcapng.block_type(block)
            if kind == pcapng.EPB_TYPE:
                self.frames += 1
            elif kind == pcapng.ISB_TYPE:
                self.dropped, note = pcapng.statistics(block)
                self.ended = (note or "").partition("ended: ")[2] or None


@cli.command("capture")
@click.argument("switch_name", metavar="SWITCH")
@click.argument("port_name", metavar="PORT")
@click.option("--direction", type=click.Choice(captures.DIRECTIONS), default="both", show_default=True,
              help="Frames the port received (in), was sent (out), or both.")
@click.option("--count", "-c", type=int, default=captures.COUNT_DEFAULT, show_default=True, metavar="N",
              help=f"Stop after N frames (at most {captures.COUNT_MAX}).")
@click.option("--seconds", type=float, default=captures.SECONDS_DEFAULT, show_default=True, metavar="S",
              help=f"Stop after S seconds (at most {captures.SECONDS_MAX:.0f}).")
@click.option("--max-bytes", "max_bytes", type=int, default=captures.BYTES_DEFAULT, show_default=True,
              metavar="B", help="Stop before the packet blocks exceed B bytes.")
@click.option("--filter", "filter_expr", metavar="EXPR", default=None,
              help="Only frames this libpcap filter accepts (as tcpdump's), e.g. 'icmp or arp'.")
@click.option("-w", "--write", "output", required=True, metavar="FILE|-",
              help="Write pcapng to FILE, or to standard output with -.")
@pass_state
def capture(state: CliState, switch_name: str, port_name: str, direction: str, count: int, seconds: float,
            max_bytes: int, filter_expr: str | None, output: str) -> None:
    """Capture the frames crossing PORT of SWITCH as pcapng, each packet commented with the switch's
    decision (e.g. "in vm1 vlan 1: FORWARD_LEARNED → vm2"); any port kind, QEMU sockets included.
    Ends at --count, --seconds or --max-bytes, or at Ctrl-C (the file stays readable). A summary goes
    to stderr, never into the pcapng.

    \b
    Live in Wireshark:  vswitch capture SW vm1 -w - | wireshark -k -i -
    """
    # refused (bad bounds, unknown port, filter that does not compile) before a file is created
    stream = state.api.capture(switch_name, port_name, direction, count, seconds, max_bytes, filter_expr)
    to_stdout = output == "-"
    ended = None
    try:
        with contextlib.ExitStack() as stack:
            stack.callback(stream.close)
            try:
                out = sys.stdout.buffer if to_stdout else stack.enter_context(open(output, "wb"))
            except OSError as e:
                raise click.ClickException(f"cannot write {output}: {e.strerror}") from None
            saved = _Saved(out)
            try:
                for chunk in stream:
                    saved.write(chunk)
                ended = saved.ended
            except KeyboardInterrupt:  # the way to end a capture early: not an error
                ended = "interrupted"
            except BrokenPipeError:  # the reader of -w - left (wireshark closed, `| head`)
                ended = "the reader of the output left"
                _quiet_stdout()
    except ValueError as e:  # the stream is not pcapng: not vswitchd's capture
        raise click.ClickException(f"the capture stream is not pcapng: {e}") from None
    # the daemon counts its drops in the last block: a capture cut short never got it
    dropped = ("dropped unknown" if saved.dropped is None
               else f"{saved.dropped} dropped by a full capture queue (the reader too slow)")
    click.echo(f"{saved.frames} frame{'s' if saved.frames != 1 else ''} written to "
               f"{'stdout' if to_stdout else output}, {dropped}" + (f"; ended: {ended}" if ended else ""), err=True)


def _quiet_stdout() -> None:
    """Point fd 1 at /dev/null: the interpreter's last flush of a closed pipe would print a traceback."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)


# ---- events -----------------------------------------------------------------------------------------

#: how long one read of ``events --follow`` waits for the next event (the daemon allows 30 s)
FOLLOW_WAIT_S = 25.0


def event_line(e: SwitchEvent) -> str:
    """One event for humans: local time, switch, then the event's own words (`SwitchEvent.summary`)."""
    return f"{time.strftime('%H:%M:%S', time.localtime(e.t))} {e.switch}  {e.summary()}"


def _say_missed(page: EventsPage) -> None:
    n = page.missed
    if n:
        click.echo(f"({n} earlier event{'s' if n > 1 else ''} left vswitchd's ring before "
                   f"{'they were' if n > 1 else 'it was'} read)", err=True)


@cli.command("events")
@click.argument("switch_name", metavar="SWITCH", required=False)
@click.option("--follow", "-f", is_flag=True, help="Go on printing events as they happen, until Ctrl-C.")
@click.option("--since", type=click.IntRange(min=0), default=0, metavar="SEQ",
              help="Only events after number SEQ (each event's seq is in --json).")
@json_option
@pass_state
def events(state: CliState, switch_name: str | None, follow: bool, since: int, as_json: bool) -> None:
    """What happened on SWITCH (or on every switch): MACs learned, moved, aged, evicted or refused, ports
    up/down and why, configuration changes, takeover steps, confirm and revert. vswitchd keeps the last
    4096; a MAC that keeps moving is one line per 10 s with its count.

    With --json: one JSON document ({"events": [...], "next_since", "latest", "missed"}), or with --follow
    one JSON object per event per line."""
    api = state.api
    if not follow:
        page = api.events(switch_name, since=since, limit=EVENTS_LIMIT_MAX)
        kept, missed = list(page.events), page.missed
        while page.next_since < page.latest:  # more than one page
            page = api.events(switch_name, since=page.next_since, limit=EVENTS_LIMIT_MAX)
            kept += page.events
        page = EventsPage(kept, page.next_since, page.latest, missed)
        if as_json:
            _print_json(page)
            return
        _say_missed(page)
        for e in page.events:
            click.echo(event_line(e))
        if not page.events:
            click.echo("no events" + (f" of switch {switch_name!r}" if switch_name else ""))
        return
    try:
        while True:
            page = api.events(switch_name, since=since, limit=EVENTS_LIMIT_MAX, wait_s=FOLLOW_WAIT_S)
            _say_missed(page)
            for e in page.events:
                click.echo(json.dumps(to_jsonable(e)) if as_json else event_line(e))
            since = page.next_since
    except KeyboardInterrupt:  # the way to end --follow: not an error
        return


# ---- completion (lab and demo: LAZY_COMMANDS) -----------------------------------------------------

@cli.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the completion script for SHELL (commands, options, switch and port names).

    \b
    bash: eval "$(vswitch completion bash)"     (e.g. in ~/.bashrc)
    zsh:  eval "$(vswitch completion zsh)"      (e.g. in ~/.zshrc)
    fish: vswitch completion fish | source      (e.g. in ~/.config/fish/config.fish)
    """
    script_class = get_completion_class(shell)
    assert script_class is not None  # click ships all three
    click.echo(script_class(cli, {}, PROG, COMPLETE_VAR).source())


def _completion_api(ctx: click.Context) -> SwitchApi:
    """The api as the command being completed would use it (the group's callback has not run)."""
    root = ctx.find_root()
    if isinstance(root.obj, CliState):
        return root.obj.api
    if root.obj is not None:  # injected, as in the tests
        return root.obj
    params = root.params
    extra = {"ca_cert": params["ca_cert"]} if params.get("ca_cert") else {}
    return make_api(params.get("socket_path"), params.get("url"), _token(params.get("token_file")),
                    timeout_s=COMPLETION_TIMEOUT_S, **extra)


def _switch_names(ctx: click.Context) -> list[str]:
    return [s.name for s in _completion_api(ctx).list_switches()]


def _switch_of(ctx: click.Context) -> str | None:
    """The SWITCH given so far to the command being completed."""
    arguments = [p for p in ctx.command.params if isinstance(p, click.Argument)]
    for i, param in enumerate(arguments):
        if param.type is SWITCH_NAME and param.name:
            if ctx.params.get(param.name):
                return str(ctx.params[param.name])
            # completing an option's value (`trace SW --in-port <TAB>`): click stopped parsing at the
            # option still waiting for it and left the positional words seen so far in ctx.args
            return ctx.args[i] if i < len(ctx.args) else None
    return None


def _port_names(ctx: click.Context) -> list[str]:
    switch_name = _switch_of(ctx)
    if switch_name is None:
        return []
    return [p.name for p in _completion_api(ctx).list_ports(switch_name)]


class NameType(click.types.StringParamType):
    """A switch or port name: converted like any string; completed from what vswitchd answers."""

    def __init__(self, name: str, names: Callable[[click.Context], list[str]]) -> None:
        self.name = name
        self._names = names

    def shell_complete(self, ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
        """The names starting with `incomplete`; none (never an error) when vswitchd does not answer."""
        try:
            names = self._names(ctx)
        except Exception:  # a shell asking for candidates must get none, not a traceback on its prompt
            return []
        return [CompletionItem(n) for n in names if n.startswith(incomplete)]


SWITCH_NAME = NameType("switch", _switch_names)
PORT_NAME = NameType("port", _port_names)


def complete_names(group: click.Group) -> None:
    """Make every string argument or option of `group` shown as SWITCH (PORT) complete switch (port) names.

    One rule for all commands, present and future: declare ``metavar="SWITCH"`` / ``"PORT"``.
    """
    for command in group.commands.values():
        if isinstance(command, click.Group):
            complete_names(command)
            continue
        for param in command.params:
            shown = param.metavar or (param.name or "").upper()
            if param.type is click.STRING and shown in ("SWITCH", "PORT"):
                param.type = SWITCH_NAME if shown == "SWITCH" else PORT_NAME


complete_names(cli)


def main() -> None:
    """Entry point of the `vswitch` command (also answers click's completion requests)."""
    cli.main(prog_name=PROG, complete_var=COMPLETE_VAR)


if __name__ == "__main__":  # pragma: no cover
    main()
