"""`vswitch demo` (what `make demo` runs): the one-nic story, live, observed, and cleaned up.

Owns the demo's script and presentation only; the lab builder (`vswitch.lab`) makes and removes
everything, `vswitch.lab.trace` observes the pings, the daemon's REST API answers the questions.

Steps: build the physical network of the built-in `one-nic` lab → the host's bindings BEFORE the
External switch → create the switch → bindings AFTER → learning (fdb flushed: the first echo to
the server is flooded, a VM NIC receives a copy; after the reply, unicast only) → observed path
VM → server → the MAC table → tear down.

Invariants:
- Not root: prints why root is needed and exits 1 (refused, as every `vswitch` command) before
  touching anything.
- The lab is torn down whatever happens (failure, Ctrl-C, SIGTERM); the exit code says whether the
  story held (0) or something failed (1).
Must not touch: the kernel directly (only through vswitch.lab).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vswitch.frontends.console import console

NEEDS_ROOT = ("vswitch demo needs root: it creates network namespaces, veth cables, TAP devices and a Linux bridge "
              "(the physical switch), and runs vswitchd, which takes over a NIC. Nothing was changed. "
              "Run it as root: sudo make demo")
TOPOLOGY = "one-nic"
#: where the demo's web UI listens (loopback only), as in the README's examples of --listen
UI_PORT = 8470
STEPS = 7


class DemoFailed(Exception):
    """The story did not hold (no replies, no switch); the message says which step."""


@contextmanager
def _interrupts_as_keyboard_interrupt() -> Iterator[None]:
    """SIGTERM/SIGHUP raise KeyboardInterrupt in the main thread, so the teardown in `finally` runs."""
    me = os.getpid()

    def raise_interrupt(signum: int, _frame: Any) -> None:
        if os.getpid() != me:  # a forked helper (pyroute2's NetNS) inherited the handler: die as usual
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise KeyboardInterrupt(signal.Signals(signum).name)
    old = {s: signal.signal(s, raise_interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class Demo:
    """The demo's script; `run()` returns the exit code."""

    def __init__(self, console: Console, *, ui_port: int | None = UI_PORT, pause: bool = False) -> None:
        self.c = console
        self.ui_port = ui_port
        self.pause = pause
        self.step_no = 0
        self.lab: Any = None
        self.lab_name: str | None = None

    # -- presentation helpers -------------------------------------------------------------------
    def step(self, title: str, explanation: str) -> None:
        self.step_no += 1
        self.c.print()
        self.c.rule(f"[bold cyan]Step {self.step_no}/{STEPS}: {escape(title)}", align="left")
        self.c.print(f"[italic]{escape(explanation)}[/]")

    def bindings_table(self, node: str, title: str) -> Table:
        table = Table(title=title, title_justify="left")
        for col in ("link", "MAC", "addresses", "routes", "what it does now"):
            table.add_column(col, no_wrap=col not in ("routes", "what it does now"))
        for b in self.lab.bindings(node):
            table.add_row(b["name"], b.get("mac") or "", ", ".join(b.get("addresses") or []) or "-",
                          ", ".join(b.get("routes") or []) or "-", b.get("role", ""))
        return table

    # -- the story ------------------------------------------------------------------------------
    def run(self) -> int:
        from vswitch.lab import LabError

        started = time.monotonic()
        self.c.print("[bold]vswitch demo[/]: a Hyper-V-style External switch on a computer with one NIC, "
                     "built in network namespaces, every packet path observed, then removed.")
        ok = False
        try:
            with _interrupts_as_keyboard_interrupt():
                self.story()
            ok = True
        except KeyboardInterrupt:
            self.c.print("\n[yellow]interrupted[/]")
        except (DemoFailed, LabError) as exc:
            self.c.print(f"\n[bold red]demo failed:[/] {escape(str(exc))}")
        finally:
            self.teardown()
        took = time.monotonic() - started
        if ok:
            self.c.print(f"\n[bold green]demo finished in {took:.1f} s[/] — everything it made is gone. "
                         "Try it yourself: `vswitch lab up --builtin one-nic`, "
                         "`vswitch lab trace NAME --from vm1 --to server`, `vswitch lab down NAME`.")
            return 0
        self.c.print(f"[red]demo did not complete ({took:.1f} s)[/]")
        return 1

    def story(self) -> None:
        from vswitch.frontends.client import RestSwitchApi
        from vswitch.lab import build_network, builtin_topology, create_switches

        def api_factory(sock: str) -> RestSwitchApi:
            return RestSwitchApi(socket_path=sock)

        topo = builtin_topology(TOPOLOGY)
        self.step("the physical network",
                  "A computer ('host') whose one physical NIC eth1 is cabled to a physical switch (a Linux bridge, "
                  "'psw') with a server behind it. Each box is a network namespace; each cable a veth pair.")
        self.lab = build_network(topo, ui_port=self.ui_port)
        self.lab_name = self.lab.name
        nodes = Table(title=f"lab {self.lab.name} ({TOPOLOGY})", title_justify="left")
        for col in ("node", "kind", "namespace", "address"):
            nodes.add_column(col, no_wrap=True)
        for node in self.lab.nodes:
            try:
                addr = self.lab.address(node)
            except Exception:
                addr = "-"
            nodes.add_row(node, self.lab.node_kind(node), self.lab.netns(node), addr)
        self.c.print(nodes)

        self.step("bindings BEFORE the switch",
                  "Today the host's protocols (its IP address and routes) are bound to the physical NIC itself.")
        self.c.print(self.bindings_table("host", "host bindings BEFORE the switch"))

        self.step("create the External switch 'ext' on eth1 (allow management OS)",
                  "The switch takes eth1 as its uplink; the host gets a virtual NIC (vs-ext) on the switch, which "
                  "takes eth1's MAC, address and routes. The VM vm1 gets a NIC on the switch too.")
        self.lab = create_switches(self.lab, api_factory)
        self.c.print(self.bindings_table("host", "host bindings AFTER the switch"))
        sw = self.lab.switches()[0]
        api = api_factory(sw.socket)
        link = self.lab.ui_link(sw.node, sw.name)
        if link:
            self.c.print(f"\n[bold]Watch it in your browser[/] (the switch drawn live, its decisions as they happen, "
                         f"a trace form):\n  [link={link}]{escape(link)}[/link]")
            self.wait_for_enter("open it, then press Enter to go on")

        self.step("learning, observed",
                  "The switch forgets every MAC (fdb flush). The host's first echo request to the server is then "
                  "an unknown unicast: the switch floods it to every other port, so vm1 receives a copy it did not "
                  "ask for. The server's reply teaches the switch where the server is: the second request goes "
                  "out of the uplink only. Every hop below was captured on a link or reported by the switch.")
        self.warm_up("host", "server")
        api.fdb_flush(sw.name)
        before = {s.port: s for s in api.stats(sw.name)}
        result = self.trace("host", "server", 2)
        after = {s.port: s for s in api.stats(sw.name)}
        self.c.print(self.stats_delta(sw.name, before, after))
        first = result["echoes"][0]
        decision = next((h for h in first["request"] if h.get("step") == "decide"), None)
        if decision is not None and decision.get("flooded"):
            copies = [h for h in first["request"] if h.get("pkttype") == "otherhost"]
            seen = ", ".join(f"{h['node']} {h['link']}" for h in copies) or "no other capture point"
            self.c.print(f"→ echo 1 was [yellow]flooded[/] to ports {', '.join(decision['out_ports'])} "
                         f"(copy captured on {escape(seen)}); echo 2 went to one port only.")
        else:
            self.c.print("→ note: the first echo was not flooded this time (the switch already knew the server, "
                         "e.g. from other traffic); the path above is what was observed.")

        lab_link = self.lab.ui_link(sw.node, lab_page=True)
        if lab_link:
            self.c.print(f"\n[bold]The observed path drawn on the lab[/] (request and reply numbered, the flood's "
                         f"copies nobody asked for marked):\n  [link={lab_link}]{escape(lab_link)}[/link]")
            self.wait_for_enter("look at it, then press Enter to go on")

        self.step("a VM's path to the server",
                  "vm1's pings enter the switch on its port, leave through the uplink and eth1, cross the physical "
                  "switch to the server, and the replies come back the same way.")
        self.trace("vm1", "server", 2)

        self.step("the MAC table (fdb show)",
                  "What the switch learned: each MAC and the port it lives behind.")
        table = Table(title=f"fdb of {sw.name}", title_justify="left")
        for col in ("MAC", "VLAN", "port", "age s"):
            table.add_column(col, no_wrap=True)
        for e in api.fdb_show(sw.name):
            table.add_row(e.mac, str(e.vlan), e.port, f"{e.age_s:.0f}")
        self.c.print(table)
        if link:
            self.wait_for_enter("the lab stays up while you look (ping from a node: `vswitch lab exec`, or trace "
                                "a frame on the page); press Enter to tear it down")

    def wait_for_enter(self, what: str) -> None:
        """With --pause (a terminal), wait for Enter; Ctrl-C still tears the lab down."""
        if self.pause:
            self.c.print(f"[bold yellow]▶ {escape(what)}[/]")
            input()

    def warm_up(self, src: str, dst: str) -> None:
        """One plain ping so ARP is resolved before the learning story (its frames are not part of it)."""
        from vswitch.lab.capture import run_in_netns

        proc = run_in_netns(self.lab.netns(src), ["ping", "-n", "-c", "1", "-W", "2", self.lab.address(dst)],
                            timeout=10)
        if proc.returncode != 0:
            raise DemoFailed(f"{src} cannot ping {dst} ({self.lab.address(dst)}):\n{proc.stdout}{proc.stderr}")

    def trace(self, src: str, dst: str, count: int) -> dict[str, Any]:
        from vswitch.frontends.client import RestSwitchApi
        from vswitch.frontends.lab_trace_cli import print_trace, record
        from vswitch.lab.trace import trace

        self.c.print(f"[dim]$ vswitch lab trace {self.lab.name} --from {src} --to {dst} --count {count}[/]")
        result = trace(self.lab, src, dst, count=count, api_for=lambda s: RestSwitchApi(socket_path=s))
        record(self.lab, result)
        print_trace(result, self.c)
        if result["received"] == 0:
            raise DemoFailed(f"no echo reply from {dst} to {src}")
        return result

    @staticmethod
    def stats_delta(switch: str, before: dict[str, Any], after: dict[str, Any]) -> Table:
        table = Table(title=f"counters of {switch} during those pings", title_justify="left")
        for col in ("port", "frames in", "frames out", "floods started here"):
            table.add_column(col, justify="left" if col == "port" else "right", no_wrap=True)
        for port, a in after.items():
            b = before.get(port)
            d_rx = a.rx_frames - (b.rx_frames if b else 0)
            d_tx = a.tx_frames - (b.tx_frames if b else 0)
            d_fl = a.floods - (b.floods if b else 0)
            table.add_row(port, str(d_rx), str(d_tx), f"[yellow]{d_fl}[/]" if d_fl else "0")
        return table

    def teardown(self) -> None:
        from vswitch.lab import Lab, down

        if self.lab_name is None:
            return
        self.step_no = STEPS - 1
        self.step("tear down", "Delete the switch (eth1 gets its address back), stop vswitchd, remove every "
                  "namespace and cable the lab made.")
        try:
            state = Lab.load(self.lab_name).state
        except Exception:
            state = self.lab.state if self.lab is not None else {}
        namespaces = sorted(state.get("namespaces", {}).values())
        pids = sorted(d["pid"] for d in state.get("daemons", {}).values() if d.get("pid"))
        try:
            try:
                down(self.lab_name)
            except KeyboardInterrupt:
                down(self.lab_name)  # a second Ctrl-C must not leave the lab half removed
        except Exception as exc:
            self.c.print(f"[bold red]teardown failed:[/] {escape(str(exc))} — run `vswitch lab down "
                         f"{self.lab_name}` to finish it")
            return
        left = [ns for ns in namespaces if os.path.exists(f"/run/netns/{ns}")]
        running = [pid for pid in pids if os.path.exists(f"/proc/{pid}")]
        self.c.print(f"lab {self.lab_name} removed")
        self.c.print(f"  namespaces removed: {' '.join(namespaces) or '-'}"
                     + (f" [red](still present: {' '.join(left)})[/]" if left else ""))
        self.c.print(f"  vswitchd stopped: PID {' '.join(map(str, pids)) or '-'}"
                     + (f" [red](still running: {' '.join(map(str, running))})[/]" if running else ""))


@click.command("demo")
@click.option("--ui-port", type=click.IntRange(0, 65535), default=UI_PORT, show_default=True,
              help="Serve the web UI of the lab's vswitchd on 127.0.0.1:PORT (any free port when taken or 0).")
@click.option("--no-ui", is_flag=True, help="No web UI (the story in the terminal only).")
@click.option("--pause/--no-pause", default=None,
              help="Wait for Enter after printing the UI's link and before tearing down (default: when stdin is a "
                   "terminal and the UI is on).")
def demo(ui_port: int, no_ui: bool, pause: bool | None) -> None:
    """Run the one-nic story end to end (needs root): lab up, bindings, learning, observed paths, teardown;
    with a link to watch it in the browser."""
    if os.geteuid() != 0:
        click.echo(NEEDS_ROOT, err=True)
        raise SystemExit(1)
    if pause is None:
        pause = not no_ui and sys.stdin.isatty()
    raise SystemExit(Demo(console(piped_width=150), ui_port=None if no_ui else ui_port, pause=pause).run())
