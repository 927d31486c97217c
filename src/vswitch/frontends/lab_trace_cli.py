"""`vswitch lab trace NAME --from NODE --to NODE [--count N] [--json]`: the observed path of pings.

Owns the presentation of a `vswitch.lab.trace` result (Rich for humans, JSON for machines) and
the command itself, `lab_trace`, which frontends/lab_cli.py adds to the `lab` group.
Every line printed comes from the trace result, which holds only what was captured or reported
by a switch; where nothing was observed it says so.
Must not touch: the kernel, namespaces, pyroute2 (all in vswitch.lab).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from vswitch.frontends.client import RestSwitchApi
from vswitch.frontends.console import console as _console
from vswitch.lab.hops import link_text


def _style(hop: Mapping[str, Any]) -> str:
    if hop.get("source") == "switch":
        if hop.get("step") == "decide":
            return "bold yellow" if hop.get("flooded") else ("bold red" if not hop.get("out_ports") else "bold green")
        return "green"
    if hop.get("flooded"):
        return "yellow"
    if hop.get("pkttype") == "otherhost":
        return "dim"
    return ""


def _print_hops(console: Console, hops: Sequence[Mapping[str, Any]], prefix: str) -> None:
    """Hops as numbered (time order), each with the message it belongs to ('request' or 'reply')."""
    for hop in hops:
        style = _style(hop)
        text = escape(hop["text"])
        console.print(f"    {hop['n']:>2}  [dim]+{hop['dt_ms']:7.3f} ms[/]  {prefix}{hop['message']:<7}  "
                      + (f"[{style}]{text}[/]" if style else text))


def print_trace(result: Mapping[str, Any], console: Console | None = None) -> None:
    """The human form of a trace: header, ping's own error, per echo its hops numbered in time order,
    what was not seen; when replies were lost, the ARP exchange and where its request stopped."""
    console = console or _console()
    console.print(f"[bold]lab {escape(result['lab'])}[/]: ping {escape(result['from'])} → {escape(result['to'])} "
                  f"({result['dst_ip']}), ICMP id {result['icmp_id']}: "
                  f"{result['received']}/{result['sent']} replies")
    for line in result.get("ping_error", []):
        console.print(f"  [red]ping:[/] {escape(line)}")
    for err in result.get("errors", []):
        console.print(f"  [yellow]not observed:[/] {escape(err)}")
    arp = result.get("arp")
    if arp and (arp["stopped"] or (arp["requests_sent"] and result["received"] < result["count"])):
        console.print(f"[bold]ARP: who has {arp['target_ip']}?[/] ({arp['requests_sent']} request(s) sent by "
                      f"{escape(result['from'])}, {'answered' if arp['answered'] else 'no answer observed'}; "
                      "the first one:)")
        _print_hops(console, arp["hops"], "ARP ")
        if arp["stopped"]:
            console.print(f"  [bold red]{escape(arp['stopped'])}[/]")
    for echo in result["echoes"]:
        if echo["same_path_as"] is not None:
            console.print(f"echo seq {echo['seq']}: same observed path as seq {echo['same_path_as']} "
                          f"({len(echo['hops'])} hops)")
            continue
        if not echo["hops"]:
            console.print(f"echo seq {echo['seq']}: [red]no echo request or reply observed at any capture point "
                          "or switch[/]")
            continue
        console.print(f"[bold]echo seq {echo['seq']}[/]")
        _print_hops(console, echo["hops"], "")
        for kind in ("request", "reply"):
            if not echo[kind]:
                console.print(f"    [red]no echo {kind} observed at any capture point or switch[/]")
        if echo["not_seen_at"]:
            console.print("  [dim]not observed at: " + escape(", ".join(
                f"{p['node']} {link_text(p['link'], p['label'], p['kind'])}" for p in echo["not_seen_at"])) + "[/]")
        if echo["switches_without_decision"]:
            console.print("  [dim]no decision observed on switch: "
                          + escape(", ".join(echo["switches_without_decision"])) + "[/]")


def run_trace(lab_name: str, src: str, dst: str, count: int) -> dict[str, Any]:
    """Load running lab `lab_name`, trace `count` pings from `src` to `dst` (click errors on refusal) and
    show the result on the lab's web UI page."""
    from vswitch.lab import Lab, LabError
    from vswitch.lab.trace import TraceError, trace

    try:
        lab = Lab.load(lab_name)
        result = trace(lab, src, dst, count=count, api_for=lambda s: RestSwitchApi(socket_path=s))
    except (LabError, TraceError) as exc:
        raise click.ClickException(str(exc)) from None
    record(lab, result)
    return result


def record(lab: Any, result: dict[str, Any]) -> None:
    """Put `result` on the lab's web UI page (`Lab.record_trace`); a failure to is said, not fatal."""
    try:
        lab.record_trace(result)
    except OSError as exc:
        click.echo(f"vswitch: the trace is not shown on the lab's web UI page: {exc}", err=True)


@click.command("trace")
@click.argument("name")
@click.option("--from", "src", required=True, metavar="NODE", help="Node that sends the pings.")
@click.option("--to", "dst", required=True, metavar="NODE", help="Node whose address is pinged.")
@click.option("--count", type=click.IntRange(1, 20), default=3, show_default=True, help="Pings to send.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (hops, capture records, switch ports).")
def lab_trace(name: str, src: str, dst: str, count: int, as_json: bool) -> None:
    """Ping NODE → NODE in lab NAME and print the path the frames were OBSERVED taking, hop by hop.

    Captures on every link of the lab and records the switches' own decisions while the pings run;
    nothing is inferred from the topology file. When pings go unanswered it shows ping's own error
    and where the ARP request stopped. --from and --to must be different nodes.
    """
    result = run_trace(name, src, dst, count)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        print_trace(result)
    if result["received"] == 0:
        raise SystemExit(1)

