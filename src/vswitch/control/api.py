"""`SwitchApi`: the one protocol every front end (CLI, REST, lab builder) drives — and the command table.

Served in-process by `SwitchManager` and over HTTP by `frontends.client.RestSwitchApi`, so the
same calls behave the same way whichever side of the socket they are made from. Every method
either does all of what it says or raises a `VswitchError` (InvalidRequest/NotFound/Conflict)
and changes nothing.

Each method is a command declared once (`control.commands`): its signature is the typed request,
its return annotation the typed result, its `@command` the HTTP method and route. `COMMANDS` is
that table; the REST server and client are generated from it (docs/adding-a-command.md). One method
is not a command: `capture` streams pcapng, not JSON; its route and client method are written by hand
(frontends/capture_route.py, `RestSwitchApi.capture`).
"""

from __future__ import annotations

from typing import Protocol

from vswitch.control import capture as captures
from vswitch.control.commands import Command, collect, command
from vswitch.control.config_file import ConfigDocument
from vswitch.control.config_plan import ConfigPlan
from vswitch.control.model import (
    EVENTS_LIMIT_DEFAULT,
    AclRuleInfo,
    AclRuleSpec,
    EventsPage,
    FdbEntryInfo,
    FrameEvent,
    NicInfo,
    PortInfo,
    PortSettings,
    PortSpec,
    PortStatsInfo,
    StaticEntry,
    SwitchInfo,
    SwitchSettings,
    SwitchSpec,
    TraceInfo,
)

#: Where vswitchd serves this protocol unless told otherwise (`vswitchd --socket`, `vswitch --socket`,
#: contrib/vswitchd.service): the daemon binds it, the CLI and the REST client connect to it.
DEFAULT_SOCKET = "/run/vswitch/vswitchd.sock"


class SwitchApi(Protocol):
    """Create, inspect, change and delete switches and their ports."""

    # -- switches ---------------------------------------------------------------------------
    @command("GET", "/switches")
    def list_switches(self) -> list[SwitchInfo]:
        """Every switch with its ports."""
        ...

    @command("POST", "/switches", status=201)
    def create_switch(self, spec: SwitchSpec, *, dry_run: bool = False) -> SwitchInfo | list[str]:
        """Create a switch; with dry_run return the list of steps it would take instead."""
        ...

    @command("GET", "/switches/{name}")
    def get_switch(self, name: str) -> SwitchInfo:
        """One switch with its ports."""
        ...

    @command("PATCH", "/switches/{name}")
    def set_switch(self, name: str, settings: SwitchSettings, *, dry_run: bool = False) -> SwitchInfo | list[str]:
        """Rename a switch (and its host vNIC), change its MAC ageing time, table capacity or connection
        (internal, private, external on a NIC, management OS: the NIC given back or taken over with the
        same dry run, rollback and confirm as a creation); stored, live; with dry_run the steps instead."""
        ...

    @command("DELETE", "/switches/{name}")
    def delete_switch(self, name: str) -> None:
        """Delete a switch (an External switch gives its NIC back)."""
        ...

    @command("POST", "/switches/{name}/confirm")
    def confirm_switch(self, name: str) -> SwitchInfo:
        """Keep an external switch created with a confirm timeout (cancels the automatic revert)."""
        ...

    # -- ports ----------------------------------------------------------------------------------
    @command("GET", "/switches/{name}/ports")
    def list_ports(self, switch: str) -> list[PortInfo]:
        """The ports of a switch."""
        ...

    @command("POST", "/switches/{name}/ports", status=201)
    def add_port(self, switch: str, spec: PortSpec) -> PortInfo:
        """Attach a port."""
        ...

    @command("GET", "/switches/{name}/ports/{port}")
    def get_port(self, switch: str, port: str) -> PortInfo:
        """One port: its VLAN mode (trunks as ranges), admin state, learning, flooding, guards."""
        ...

    @command("PATCH", "/switches/{name}/ports/{port}")
    def set_port(self, switch: str, port: str, settings: PortSettings) -> PortInfo:
        """Change a port's VLAN mode, admin state, learning, flooding, MAC, DHCP guard or router guard,
        live and stored; the other ports forward on meanwhile."""
        ...

    @command("DELETE", "/switches/{name}/ports/{port}")
    def remove_port(self, switch: str, port: str) -> None:
        """Detach a port."""
        ...

    # -- the MAC table ------------------------------------------------------------------------
    @command("GET", "/switches/{name}/fdb")
    def fdb_show(self, switch: str) -> list[FdbEntryInfo]:
        """The MAC table, static entries included."""
        ...

    @command("POST", "/switches/{name}/fdb", status=201)
    def fdb_add(self, switch: str, entry: StaticEntry) -> FdbEntryInfo:
        """Add (or re-point) a static entry: it never ages and never moves; stored."""
        ...

    @command("DELETE", "/switches/{name}/fdb/{mac}")
    def fdb_del(self, switch: str, mac: str, vlan: int | None = None) -> None:
        """Remove a static entry (vlan may be left out when the MAC is static in one VLAN only)."""
        ...

    @command("POST", "/switches/{name}/fdb/flush", result_key="removed")
    def fdb_flush(self, switch: str) -> int:
        """Remove the dynamic entries; return how many were removed."""
        ...

    # -- port ACLs (Add-VMNetworkAdapterAcl / Add-VMNetworkAdapterExtendedAcl) ----------------------
    @command("POST", "/switches/{name}/ports/{port}/acls", status=201)
    def acl_add(self, switch: str, port: str, rule: AclRuleSpec) -> AclRuleInfo:
        """Add a port ACL (remote MAC or IP; allow, deny or meter; in, out or both) or, with a weight, an
        extended ACL (protocol, addresses, ports; maybe stateful) to a port: numbered, stored, live."""
        ...

    @command("GET", "/switches/{name}/acls")
    def acl_list(self, switch: str, port: str | None = None) -> list[AclRuleInfo]:
        """The ACL rules of the switch's ports (or of one), each with the frames and bytes it counted."""
        ...

    @command("DELETE", "/switches/{name}/ports/{port}/acls/{rule}")
    def acl_remove(self, switch: str, port: str, rule: str) -> None:
        """Remove ACL rule number `rule` of a port (stored, live)."""
        ...

    # -- counters and explanations ----------------------------------------------------------------
    @command("GET", "/switches/{name}/stats")
    def stats(self, switch: str) -> list[PortStatsInfo]:
        """Per-port counters."""
        ...

    @command("GET", "/switches/{name}/trace")
    def trace(self, switch: str, in_port: str, src: str, dst: str, vlan: int | None = None,
              payload: str | None = None) -> TraceInfo:
        """What the switch would do with such a frame now (its steps, the classified VLAN, the reason, the
        output ports); sends, learns and counts nothing. `payload`: the frame's bytes after the MAC
        addresses (and the tag), hex — the ethertype and what follows (default IPv4, 46 zero bytes)."""
        ...

    @command("GET", "/switches/{name}/watch", pooled=True)
    def watch(self, switch: str, seconds: float = 1.0, limit: int = 1000) -> list[FrameEvent]:
        """Record the switch's per-frame decisions for `seconds` (at most `limit` events) and return them,
        oldest first (see `FrameEvent`: time, ports, header, classified VLAN, reason, ICMP echo identity)."""
        ...

    @command("GET", "/events", pooled=True)
    def events(self, switch: str | None = None, since: int = 0, limit: int = EVENTS_LIMIT_DEFAULT,
               wait_s: float = 0.0) -> EventsPage:
        """What happened after event number `since` (0: everything still kept), oldest first: MACs
        learned, moved, aged, evicted or refused (static elsewhere), ports up or down and why,
        configuration changes, takeover steps, confirm and revert — of `switch`, or of every switch.
        At most `limit` events; with `wait_s` (at most 30 s), when there are none yet, wait for the next
        one (a long poll: `vswitch events --follow`). `missed` counts events that left the daemon's
        ring (the last 4096) before they were read."""
        ...

    # -- streamed: beside the table, not in it ----------------------------------------------------
    def capture(self, switch: str, port: str, direction: str = "both", count: int = captures.COUNT_DEFAULT,
                seconds: float = captures.SECONDS_DEFAULT, max_bytes: int = captures.BYTES_DEFAULT,
                filter: str | None = None) -> captures.CaptureStream:
        """Port `port`'s frames as pcapng chunks (control/capture.py: one interface block, each packet
        commented with the switch's decision), bounded by `count` frames, `seconds` and `max_bytes`, only
        those of `direction` (in, out, both) that libpcap `filter` accepts; iterate the answer from one
        thread and `close` it to end early. Not a command of the table (`COMMANDS` holds JSON commands):
        a stream, served by frontends/capture_route.py at ``GET /switches/{name}/ports/{port}/capture``
        and spoken by `RestSwitchApi.capture`. Raises InvalidRequest (a parameter out of bounds, a filter
        that does not compile), NotFound (unknown switch or port) before the first chunk."""
        ...

    # -- the host ---------------------------------------------------------------------------------
    @command("GET", "/nics")
    def list_nics(self) -> list[NicInfo]:
        """The links that could be an uplink: not a TAP, bridge or vNIC, not the peer of a veth port,
        not held by any switch; with MAC, state, addresses and whether they carry the default route."""
        ...


    # -- configuration files ----------------------------------------------------------------------
    @command("GET", "/config")
    def config_export(self) -> ConfigDocument:
        """Every switch with its settings, ports and static MAC entries, as one document (what
        `vswitch config export` writes as YAML)."""
        ...

    @command("POST", "/config/apply")
    def config_apply(self, document: ConfigDocument, *, dry_run: bool = False, prune: bool = False) -> ConfigPlan:
        """Make the switches what `document` states: create what is missing, change what differs (a
        switch it lists gets exactly its ports and static entries), delete switches it does not list
        only with `prune`. All or nothing: a failing step undoes the ones before it. With `dry_run`,
        only the plan. Applying the same document again changes nothing."""
        ...

#: every command, by API method name, in declaration order
COMMANDS: dict[str, Command] = collect(SwitchApi)
