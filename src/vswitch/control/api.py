"""`SwitchApi`: the one protocol every front end (CLI, REST, lab builder) drives.

Served in-process by `SwitchManager` and over HTTP by `frontends.client.RestSwitchApi`, so the
same calls behave the same way whichever side of the socket they are made from. Every method
either does all of what it says or raises a `VswitchError` (InvalidRequest/NotFound/Conflict)
and changes nothing.
"""

from __future__ import annotations

from typing import Protocol

from vswitch.control.model import (
    FdbEntryInfo,
    FrameEvent,
    PortInfo,
    PortSpec,
    PortStatsInfo,
    SwitchInfo,
    SwitchSpec,
    TraceInfo,
)

#: Where vswitchd serves this protocol unless told otherwise (`vswitchd --socket`, `vswitch --socket`,
#: contrib/vswitchd.service): the daemon binds it, the CLI and the REST client connect to it.
DEFAULT_SOCKET = "/run/vswitch/vswitchd.sock"


class SwitchApi(Protocol):
    """Create, inspect and delete switches and their ports."""

    def create_switch(self, spec: SwitchSpec, *, dry_run: bool = False) -> SwitchInfo | list[str]:
        """Create a switch; with dry_run return the list of steps it would take instead."""
        ...

    def delete_switch(self, name: str) -> None: ...

    def confirm_switch(self, name: str) -> SwitchInfo:
        """Keep an external switch created with a confirm timeout (cancels the automatic revert)."""
        ...

    def list_switches(self) -> list[SwitchInfo]: ...

    def get_switch(self, name: str) -> SwitchInfo: ...

    def add_port(self, switch: str, spec: PortSpec) -> PortInfo: ...

    def remove_port(self, switch: str, port: str) -> None: ...

    def list_ports(self, switch: str) -> list[PortInfo]: ...

    def fdb_show(self, switch: str) -> list[FdbEntryInfo]: ...

    def fdb_flush(self, switch: str) -> int:
        """Remove the dynamic entries; return how many were removed."""
        ...

    def stats(self, switch: str) -> list[PortStatsInfo]: ...

    def trace(self, switch: str, in_port: str, src: str, dst: str, vlan: int | None = None) -> TraceInfo:
        """What the switch would do with such a frame now (its steps, the classified VLAN, the reason, the
        output ports); sends, learns and counts nothing."""
        ...

    def watch(self, switch: str, seconds: float, limit: int = 1000) -> list[FrameEvent]:
        """Record the switch's per-frame decisions for `seconds` (at most `limit` events) and return them,
        oldest first (see `FrameEvent`: time, ports, header, classified VLAN, reason, ICMP echo identity)."""
        ...
