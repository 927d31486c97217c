"""The `vswitch` command: switches, ports, fdb, NICs, stats and trace, for humans (Rich tables) and scripts (--json).

Owns argument parsing and presentation only. Every command turns its options into a model spec and
calls one `SwitchApi` method; validation, messages and behaviour live behind that protocol.

How the api is found: ``ctx.obj`` when the caller supplies one (tests: ``CliRunner().invoke(cli,
args, obj=api)``), otherwise the module-level factory `make_api(socket, url, token)` (tests may
replace it), which by default talks to vswitchd through `RestSwitchApi` on ``--socket`` /
``$VSWITCH_SOCKET`` (default ``/run/vswitch/vswitchd.sock``) or ``--url`` with ``--token-file``.

Invariants:
- every read command has a human table and ``--json`` (the `to_jsonable` shapes of the REST API);
- a refused request (`VswitchError`) exits 1 with ``Error: <message>`` on stderr, never a traceback;
- the group is extensible: ``cli.add_command(...)``; ``vswitch lab …`` and ``vswitch demo`` come from
  `vswitch.frontends.lab_cli` / `vswitch.frontends.demo` when those modules exist (a click command of
  that name, or a ``register(cli)`` function) — see `EXTENSIONS`.

Must not touch: the manager, the store, the datapath or the kernel directly.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from vswitch.control.api import SwitchApi
from vswitch.control.model import (
    PortInfo,
    PortKind,
    PortSettings,
    PortSpec,
    StaticEntry,
    SwitchInfo,
    SwitchSettings,
    SwitchSpec,
    SwitchType,
    VswitchError,
    parse_vlan_list,
    to_jsonable,
)

DEFAULT_SOCKET = "/run/vswitch/vswitchd.sock"


def default_make_api(socket_path: str | None, url: str | None, token: str | None,
                     ca_cert: str | None = None) -> SwitchApi:
    """The api the CLI uses when none is injected: vswitchd over its unix socket or a URL."""
    from vswitch.frontends.client import RestSwitchApi

    return RestSwitchApi(socket_path=socket_path, url=url, token=token, ca_cert=ca_cert)


#: Factory for the api (socket, url, token[, ca_cert=]); tests may replace it (or pass ``obj=`` to
#: CliRunner.invoke).
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


class VswitchGroup(click.Group):
    """A click group that turns `VswitchError` into ``Error: message`` on stderr and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VswitchError as e:
            raise click.ClickException(e.message) from None


#: Passes the CliState (``state.api`` is the SwitchApi) to a command; for extensions such as lab_cli.
pass_state = click.make_pass_decorator(CliState)

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def _console() -> Console:
    console = Console(highlight=False)
    if not console.is_terminal:  # piped or captured: do not squeeze tables into 80 columns
        console = Console(highlight=False, width=200)
    return console


def _print_json(obj: Any) -> None:
    click.echo(json.dumps(to_jsonable(obj), indent=2, sort_keys=False))


# ---- the group ----------------------------------------------------------------------------------

@click.group(cls=VswitchGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
    token = os.environ.get("VSWITCH_TOKEN") or None
    if token_file:
        from vswitch.frontends.tokens import TokenFileError, client_token

        try:
            token = client_token(token_file)
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
    for col in ("name", "type", "nic", "host vNIC", "state", "ports", "ageing s", "max entries"):
        table.add_column(col, no_wrap=True)
    for s in switches:
        state = s.state if s.confirm_deadline_s is None else f"{s.state} ({s.confirm_deadline_s:.0f} s left)"
        table.add_row(s.name, s.type, s.nic or "-", s.host_vnic or "-", state, str(len(s.ports)),
                      str(s.ageing_s), str(s.max_entries))
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
@json_option
@pass_state
def switch_create(state: CliState, name: str, nic: str | None, internal: bool, private: bool,
                  allow_management_os: bool, confirm_timeout: float | None, dry_run: bool,
                  ageing: int | None, max_entries: int | None, as_json: bool) -> None:
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
    spec = SwitchSpec.from_dict(fields)
    result = state.api.create_switch(spec, dry_run=dry_run)
    if dry_run:
        steps = list(result)  # type: ignore[arg-type]
        if as_json:
            _print_json({"dry_run": True, "steps": steps})
            return
        click.echo(f"dry run: creating {kind} switch {name!r} would")
        for i, step in enumerate(steps, 1):
            click.echo(f"  {i}. {step}")
        return
    assert isinstance(result, SwitchInfo)
    if as_json:
        _print_json(result)
        return
    click.echo(f"created {result.type} switch {result.name!r}" +
               (f" (host vNIC {result.host_vnic})" if result.host_vnic else ""))
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
@click.argument("name")
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
    console.print(_port_table(info.ports, f"ports of {info.name}"))


@switch.command("delete")
@click.argument("name")
@pass_state
def switch_delete(state: CliState, name: str) -> None:
    """Delete a switch (an external switch gives its NIC back)."""
    state.api.delete_switch(name)
    click.echo(f"deleted switch {name!r}")


@switch.command("confirm")
@click.argument("name")
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
@click.argument("name")
@click.option("--name", "new_name", metavar="NEW", default=None, help="Rename the switch (a private one).")
@click.option("--ageing", type=int, metavar="S", default=None, help="MAC ageing time in seconds (10-3600).")
@click.option("--max-entries", type=int, metavar="N", default=None, help="MAC table capacity (16-1000000).")
@json_option
@pass_state
def switch_set(state: CliState, name: str, new_name: str | None, ageing: int | None, max_entries: int | None,
               as_json: bool) -> None:
    """Rename a switch or change its MAC ageing time or table capacity (stored; applied live)."""
    fields = (("name", new_name), ("ageing_s", ageing), ("max_entries", max_entries))
    info = state.api.set_switch(name, SwitchSettings.from_dict({k: v for k, v in fields if v is not None}))
    if as_json:
        _print_json(info)
    else:
        click.echo(f"switch {info.name!r}: ageing {info.ageing_s} s, max entries {info.max_entries}")


# ---- port ---------------------------------------------------------------------------------------

@cli.group()
def port() -> None:
    """Attach and detach ports."""


_PORT_KINDS = (("tap", PortKind.TAP), ("link", PortKind.LINK), ("qemu_stream", PortKind.QEMU_STREAM),
               ("qemu_dgram", PortKind.QEMU_DGRAM), ("memory", PortKind.MEMORY))


@port.command("add")
@click.argument("switch_name", metavar="SWITCH")
@click.argument("name", metavar="PORT")
@click.option("--tap", metavar="IFNAME", help="A TAP device the switch creates and owns (e.g. a namespace's NIC).")
@click.option("--link", metavar="IFNAME", help="An existing kernel link (veth, a QEMU-owned TAP), via AF_PACKET.")
@click.option("--qemu-stream", metavar="PATH", help="A unix stream socket for `qemu -netdev stream` (rootless); "
              "a plain NAME puts it in vswitchd's port socket directory.")
@click.option("--qemu-dgram", metavar="PATH", help="A unix datagram socket for `qemu -netdev dgram` (rootless); "
              "a plain NAME puts it in vswitchd's port socket directory.")
@click.option("--memory", metavar="ID", hidden=True, help="An in-memory port (tests).")
@click.option("--vlan", type=int, metavar="N", default=None, help="Access port in VLAN N (default 1).")
@click.option("--trunk", metavar="LIST", default=None, help="Trunk port carrying these VLANs, e.g. 10,20,30-32.")
@click.option("--native", type=int, metavar="N", default=None, help="Trunk only: the untagged VLAN.")
@json_option
@pass_state
def port_add(state: CliState, switch_name: str, name: str, vlan: int | None, trunk: str | None,
             native: int | None, as_json: bool, **targets: str | None) -> None:
    """Add port PORT to SWITCH: exactly one of --tap, --link, --qemu-stream, --qemu-dgram."""
    chosen = [(kind, targets[opt]) for opt, kind in _PORT_KINDS if targets[opt] is not None]
    if len(chosen) != 1:
        raise click.UsageError("choose exactly one of --tap IFNAME, --link IFNAME, --qemu-stream PATH, "
                               "--qemu-dgram PATH")
    if vlan is not None and trunk is not None:
        raise click.UsageError("a port is either access (--vlan) or trunk (--trunk), not both")
    if native is not None and trunk is None:
        raise click.UsageError("--native only applies to trunk ports (--trunk)")
    kind, target = chosen[0]
    if kind in (PortKind.QEMU_STREAM, PortKind.QEMU_DGRAM) and target and "/" in target:
        # relative to where the command runs, not the daemon; joined, not normalised, so that the
        # daemon refuses a '..' instead of us guessing. A plain name goes as is: vswitchd places it.
        target = os.path.join(os.getcwd(), target)
    spec = PortSpec.from_dict({
        "name": name, "kind": kind, "target": target, "vlan": vlan,
        "trunk": parse_vlan_list(trunk) if trunk is not None else None, "native": native,
    })
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
@json_option
@pass_state
def port_set(state: CliState, switch_name: str, name: str, vlan: int | None, trunk: str | None,
             native: int | None, admin: str | None, learning: str | None, flooding: str | None,
             as_json: bool) -> None:
    """Change port PORT of SWITCH live (stored; the other ports keep forwarding)."""
    fields: dict[str, Any] = {"vlan": vlan, "trunk": trunk, "native": native,
                              "admin_up": None if admin is None else admin == "up",
                              "learning": None if learning is None else learning == "on",
                              "flooding": None if flooding is None else flooding == "on"}
    settings = PortSettings.from_dict({k: v for k, v in fields.items() if v is not None})
    info = state.api.set_port(switch_name, name, settings)
    if as_json:
        _print_json(info)
    else:
        click.echo(f"port {info.name!r} of switch {switch_name!r}: {_port_summary(info)}")


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def _port_summary(p: PortInfo) -> str:
    return (f"{p.vlan_mode}, admin {'up' if p.admin_up else 'down'}, learning {_on(p.learning)}, "
            f"flooding {_on(p.flooding)}")


@port.command("show")
@click.argument("switch_name", metavar="SWITCH")
@click.argument("name", metavar="PORT")
@json_option
@pass_state
def port_show(state: CliState, switch_name: str, name: str, as_json: bool) -> None:
    """Show port PORT of SWITCH: VLAN mode (trunks as ranges), admin state, learning, flooding."""
    p = state.api.get_port(switch_name, name)
    if as_json:
        _print_json(p)
        return
    table = Table(title=f"port {p.name} of {switch_name}", show_header=False)
    table.add_column("field", no_wrap=True)
    table.add_column("value")
    rows = [("kind", p.kind), ("target", p.target), ("role", p.role), ("vlan", p.vlan_mode),
            ("admin", "up" if p.admin_up else "down"), ("learning", _on(p.learning)),
            ("flooding", _on(p.flooding)),
            ("up", "yes" if p.up else f"no: {p.details.get('down_reason', 'down')}")]
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
    for e in entries:
        table.add_row(e.mac, str(e.vlan), e.port, f"{e.age_s:.1f}", "static" if e.static else "learned")
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
    e = state.api.fdb_add(switch_name, StaticEntry.from_dict({"mac": mac, "port": port_name, "vlan": vlan}))
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
    for col in ("nic", "kind", "mac", "state", "mtu", "addresses", "default route"):
        table.add_column(col, no_wrap=col != "addresses")
    for n in nics:
        table.add_row(n.name, n.kind, n.mac, "up" if n.up else "down", str(n.mtu), ", ".join(n.addresses) or "-",
                      "yes" if n.default_route else "-")
    console = _console()
    console.print(table)
    for n in nics:
        if n.default_route:
            console.print(f"warning: taking {n.name} over moves the host's default route to the switch's host vNIC")


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
    for col in ("port", "rx frames", "rx bytes", "tx frames", "tx bytes", "floods", "learned", "moved",
                "static refused", "drops"):
        table.add_column(col, justify="left" if col in ("port", "drops") else "right", no_wrap=col != "drops")
    for s in rows:
        drops = ", ".join(f"{reason}={n}" for reason, n in sorted(s.drops.items()) if n) or "-"
        table.add_row(s.port, str(s.rx_frames), str(s.rx_bytes), str(s.tx_frames), str(s.tx_bytes),
                      str(s.floods), str(s.learned), str(s.moved), str(s.static_refused), drops)
    _console().print(table)


def _fmt_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "(none)"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


_STAGE_NAME_KEYS = ("stage", "name")
_OUT_KEYS = ("out_ports", "output_ports", "outputs", "out")


def _print_trace(result: dict[str, Any]) -> None:
    """The frame, its stages in order (name: reason, result, detail), then the verdict and the output ports.

    Knows the manager's shape (``stages`` + ``decision`` {reason, explanation, out_ports, vlan}) and
    prints any other keys as they come, so a richer trace still shows everything.
    """
    head_keys = ("switch", "in_port", "src", "dst", "vlan")
    frame = [f"{k}={result[k]}" for k in head_keys if result.get(k) is not None]
    if frame:
        click.echo("frame: " + " ".join(frame))
    for i, stage in enumerate(result.get("stages") or [], 1):
        if not isinstance(stage, dict):
            click.echo(f"{i}. {stage}")
            continue
        label = next((str(stage[k]) for k in _STAGE_NAME_KEYS if k in stage), f"stage {i}")
        reason = stage.get("reason")
        click.echo(f"{i}. {label}" + (f": {reason}" if reason is not None else ""))
        for key, value in stage.items():
            if key in _STAGE_NAME_KEYS or key == "reason" or value is None:
                continue
            click.echo(f"     {key}: {_fmt_value(value)}")
    rest = {k: v for k, v in result.items() if k not in ("stages", *head_keys)}
    decision = rest.pop("decision", None)
    verdict = dict(decision) if isinstance(decision, dict) else {}
    if decision is not None and not verdict:
        verdict["reason"] = decision
    for key in ("reason", "explanation", *_OUT_KEYS):
        if key in rest and key not in verdict:
            verdict[key] = rest.pop(key)
    reason = verdict.pop("reason", None)
    explanation = verdict.pop("explanation", None)
    if reason is not None:
        click.echo(f"verdict: {_fmt_value(reason)}" + (f" ({explanation})" if explanation else ""))
    out_key = next((k for k in _OUT_KEYS if k in verdict), None)
    if out_key is not None:
        click.echo(f"output ports: {_fmt_value(verdict.pop(out_key))}")
    for key, value in {**verdict, **rest}.items():
        if value is not None:
            click.echo(f"{key}: {_fmt_value(value)}")


@cli.command("trace")
@click.argument("switch_name", metavar="SWITCH")
@click.option("--in-port", required=True, metavar="PORT", help="Port the frame arrives on.")
@click.option("--src", required=True, metavar="MAC", help="Source MAC.")
@click.option("--dst", required=True, metavar="MAC", help="Destination MAC.")
@click.option("--vlan", type=int, metavar="N", default=None, help="VLAN tag of the frame.")
@json_option
@pass_state
def trace(state: CliState, switch_name: str, in_port: str, src: str, dst: str, vlan: int | None,
          as_json: bool) -> None:
    """Explain what SWITCH would do with such a frame now (sends nothing)."""
    result = state.api.trace(switch_name, in_port, src, dst, vlan)
    if as_json:
        _print_json(result)
    else:
        _print_trace(result)


# ---- extensions ---------------------------------------------------------------------------------

#: optional command modules: (command name, module); each has a `register(cli)` or a command of that name
EXTENSIONS = (("lab", "vswitch.frontends.lab_cli"), ("demo", "vswitch.frontends.demo"))


def _load_extensions() -> None:
    """Add `vswitch lab …` and `vswitch demo` when their modules exist (a `register(cli)` or a command)."""
    for name, module in EXTENSIONS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:
                continue
            _broken_extension(name, e)
            continue
        except Exception as e:  # a broken extension must not take the whole CLI down
            _broken_extension(name, e)
            continue
        register = getattr(mod, "register", None)
        if callable(register):
            register(cli)
        elif isinstance(getattr(mod, name, None), click.Command):
            cli.add_command(getattr(mod, name), name)


def _broken_extension(name: str, error: BaseException) -> None:
    @cli.command(name, context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
                 add_help_option=False)
    def unavailable() -> None:
        raise click.ClickException(f"`vswitch {name}` is unavailable: {type(error).__name__}: {error}")


_load_extensions()


def main() -> None:
    """Entry point of the `vswitch` command."""
    cli(prog_name="vswitch")


if __name__ == "__main__":  # pragma: no cover
    main()
