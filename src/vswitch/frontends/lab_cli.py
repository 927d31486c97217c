"""`vswitch lab …`: bring topologies up and down, run commands in their nodes, show their bindings.

    vswitch lab up (FILE.yaml | --builtin NAME) [--name N] [--network-only] [--json]
    vswitch lab create-switches NAME          (after --network-only: the second phase)
    vswitch lab down NAME
    vswitch lab list [--json]
    vswitch lab show NAME [--json]            nodes, switches, capture points
    vswitch lab exec NAME NODE -- CMD…        CMD in NODE's namespace (a QEMU vm: in its shell); its exit code is ours
    vswitch lab bindings NAME NODE [--json]   which link holds the addresses/routes, which only the switch
    vswitch lab trace …                       (frontends/lab_trace_cli.py)

Owns argument parsing and presentation only; the work is `vswitch.lab`'s. The lab reaches each
host's vswitchd through `RestSwitchApi` on the daemon's unix socket (the lab itself does not import
front ends: it takes this factory). A `LabError` (unknown lab, node, built-in, bad file, not root)
exits 1 with ``Error: <message>``, never a traceback.
Must not touch: the kernel or namespaces directly.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from dataclasses import asdict
from typing import Any

import click
from rich.table import Table

from vswitch.control.api import SwitchApi
from vswitch.control.model import DatapathMode
from vswitch.frontends.client import RestSwitchApi
from vswitch.frontends.console import console as _console
from vswitch.frontends.lab_trace_cli import lab_trace
from vswitch.lab import (
    Lab,
    LabError,
    build_network,
    builtin_names,
    builtin_topology,
    create_switches,
    down,
    list_labs,
    load_topology,
    up,
)
from vswitch.lab.guest import QemuGuest

#: a command in a QEMU guest runs until it ends or this long (there is no Ctrl-C across the console)
GUEST_EXEC_TIMEOUT_S = 600


def api_factory(socket_path: str) -> SwitchApi:
    """How the lab talks to a host's vswitchd."""
    return RestSwitchApi(socket_path=socket_path)


class LabGroup(click.Group):
    """Turns `LabError` into ``Error: message`` and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LabError as e:
            raise click.ClickException(str(e)) from None


@click.group("lab", cls=LabGroup)
def lab() -> None:
    """Labs: namespaces wired as hosts, VMs, a physical switch and servers, running real vswitchd."""


def _print_lab(lab_: Lab) -> None:
    c = _console()
    t = Table(title=f"lab {lab_.name} (topology {lab_.state['topology']['name']}, id {lab_.id}, {lab_.phase})",
              title_justify="left")
    for col in ("node", "kind", "namespace", "address"):
        t.add_column(col)
    for node in lab_.nodes:
        try:
            addr = lab_.address(node)
        except LabError:
            addr = "-"
        kind = lab_.node_kind(node)
        vm = lab_.guest(node)
        if vm is not None:
            kind += f" (QEMU guest, pid {vm['pid']}, console {vm['console']})"
        t.add_row(node, kind, lab_.netns(node), addr)
    c.print(t)
    sws = lab_.switches()
    if sws:
        st = Table(title="switches", title_justify="left")
        for col in ("switch", "type", "host", "daemon socket"):
            st.add_column(col)
        for s in sws:
            st.add_row(s.name, s.type, s.node, s.socket)
        c.print(st)


def _lab_json(lab_: Lab) -> dict[str, Any]:
    d = lab_.summary_dict()
    d["switches"] = [asdict(s) for s in lab_.switches()]
    d["capture_points"] = [asdict(p) for p in lab_.capture_points()]
    addrs = {}
    for node in lab_.nodes:
        try:
            addrs[node] = lab_.address(node)
        except LabError:
            addrs[node] = None
    d["addresses"] = addrs
    return d


@lab.command("up")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--builtin", metavar="NAME", help=f"A shipped topology: {', '.join(builtin_names())}.")
@click.option("--name", metavar="N", help="Lab name (default: the topology's name, made unique).")
@click.option("--network-only", is_flag=True,
              help="Build the network and start the daemons, but create no switch yet "
                   "(then `vswitch lab create-switches NAME`).")
@click.option("--datapath", type=click.Choice([m.value for m in DatapathMode]),
              help="Put every switch of the lab on this datapath (default: what each switch says, else auto).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def lab_up(file: str | None, builtin: str | None, name: str | None, network_only: bool, datapath: str | None,
           as_json: bool) -> None:
    """Bring up a lab from FILE.yaml or a built-in topology."""
    if (file is None) == (builtin is None):
        raise click.UsageError("give a topology FILE or --builtin NAME (one of them)")
    if builtin is not None:
        topology, source = builtin_topology(builtin), f"builtin:{builtin}"
    else:
        assert file is not None
        topology, source = load_topology(file), os.path.abspath(file)
    if datapath is not None:
        topology = topology.with_datapath(DatapathMode(datapath))
    if network_only:
        made = build_network(topology, name, source=source)
    else:
        made = up(topology, name, api_factory=api_factory, source=source)
    if as_json:
        click.echo(json.dumps(_lab_json(made), indent=2))
        return
    _print_lab(made)
    c = _console()
    first = next((n for n in made.nodes if made.node_kind(n) in ("vm", "host")), made.nodes[0])
    c.print(f"\n[bold]{made.name}[/] is {'built (no switches yet)' if network_only else 'up'}. Try:")
    if network_only:
        c.print(f"  vswitch lab create-switches {made.name}")
    c.print(f"  vswitch lab exec {made.name} {first} -- ip -br addr")
    c.print(f"  vswitch lab bindings {made.name} host")
    c.print(f"  vswitch lab down {made.name}")


@lab.command("create-switches")
@click.argument("name")
def lab_create_switches(name: str) -> None:
    """Create the switches and VM NICs of a lab brought up with --network-only."""
    made = create_switches(Lab.load(name), api_factory)
    _print_lab(made)


@lab.command("down")
@click.argument("name")
def lab_down(name: str) -> None:
    """Take lab NAME down: daemons stopped (NICs given back), namespaces and links deleted, files removed."""
    down(name)
    click.echo(f"lab {name} is down")


@lab.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def lab_list(as_json: bool) -> None:
    """The labs that are up (or half-built)."""
    labs = list_labs()
    if as_json:
        click.echo(json.dumps([asdict(s) for s in labs], indent=2))
        return
    if not labs:
        click.echo("no labs (start one: vswitch lab up --builtin one-nic)")
        return
    t = Table(title="labs", title_justify="left")
    for col in ("name", "topology", "id", "phase", "nodes", "vswitchd pids"):
        t.add_column(col)
    for s in labs:
        phase = s.phase if not s.problems else f"{s.phase} [red]({'; '.join(s.problems)})[/]"
        t.add_row(s.name, s.topology, s.id, phase, ", ".join(s.nodes), ", ".join(map(str, s.daemons)) or "-")
    _console().print(t)


@lab.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def lab_show(name: str, as_json: bool) -> None:
    """Nodes, addresses, switches and every capture point (link) of lab NAME."""
    lab_ = Lab.load(name)
    if as_json:
        click.echo(json.dumps(_lab_json(lab_), indent=2))
        return
    _print_lab(lab_)
    t = Table(title="links (capture points)", title_justify="left")
    for col in ("node", "namespace", "link", "kind", "what it is"):
        t.add_column(col)
    for p in lab_.capture_points():
        t.add_row(p.node, p.netns, p.ifname, p.kind, p.label)
    _console().print(t)


@lab.command("exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("name")
@click.argument("node")
@click.argument("cmd", nargs=-1, required=True, type=click.UNPROCESSED)
def lab_exec(name: str, node: str, cmd: tuple[str, ...]) -> None:
    """Run CMD inside NODE's namespace of lab NAME; exits with CMD's exit code.

    Example: vswitch lab exec one-nic vm1 -- ping -c 3 10.0.0.1
    """
    if cmd[:1] == ("--",):  # click keeps the separator when unknown options pass through
        cmd = cmd[1:]
    if not cmd:
        raise click.UsageError("give a command to run after --")
    lab_ = Lab.load(name)
    ns = lab_.netns(node)
    if os.geteuid() != 0:
        raise LabError("entering a lab namespace needs root (run it with sudo)")
    vm = lab_.guest(node)
    if vm is not None:  # a QEMU guest: the command runs in its shell, over its serial console
        handle = QemuGuest.attach(vm["console"])
        try:
            rc, out = handle.exec(shlex.join(cmd), timeout=GUEST_EXEC_TIMEOUT_S)
        finally:
            handle.stop()
        sys.stdout.write(out.replace("\r\n", "\n"))
        raise SystemExit(rc)
    # Ctrl-C belongs to CMD (same terminal, same process group); we only wait for it
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        proc = subprocess.run(["ip", "netns", "exec", ns, *cmd], check=False)
    finally:
        signal.signal(signal.SIGINT, previous)
    rc = proc.returncode
    raise SystemExit(128 - rc if rc < 0 else rc)


@lab.command("bindings")
@click.argument("name")
@click.argument("node")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def lab_bindings(name: str, node: str, as_json: bool) -> None:
    """Per link of NODE: MAC, addresses, routes, and what it carries (host protocols, or only the switch)."""
    rows = Lab.load(name).bindings(node)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    t = Table(title=f"bindings of {node} in lab {name}", title_justify="left")
    for col in ("link", "MAC", "state", "addresses", "routes", "role"):
        t.add_column(col)
    for b in rows:
        t.add_row(b["name"], b["mac"] or "-", "up" if b["up"] else "down", "\n".join(b["addresses"]) or "-",
                  "\n".join(b["routes"]) or "-", b["role"])
    _console().print(t)


lab.add_command(lab_trace, "trace")
