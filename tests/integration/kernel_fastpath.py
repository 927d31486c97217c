"""Shared by the kernel fast path's tests: the skip reason, and a check that nothing leaked.

The program and SwitchCore are compared through the same port calls; `core_table` and
`program_table` give both MAC tables in one comparable shape."""

from __future__ import annotations

from collections.abc import Hashable

import datapaths
from vswitch.core.switch import SwitchCore
from vswitch.datapath.kernel.program import SwitchProgram

INF = float("inf")


def require_fastpath() -> None:
    """Skip, saying why, where the program cannot be loaded (not built, no libbpf, not root)."""
    datapaths.require("kernel")


def core_table(core: SwitchCore) -> dict[tuple[bytes, int], tuple[Hashable, bool, float]]:
    """Every entry, aged ones included: (mac, vlan) → (port, static, last seen; inf for statics)."""
    return {(e.mac, e.vlan): (e.port, e.static, e.seen) for t in core.fdb.by_vlan.values() for e in t.values()}


def program_table(prog: SwitchProgram) -> dict[tuple[bytes, int], tuple[Hashable, bool, float]]:
    return {(e.mac, e.vlan): (prog.port_at(e.slot), e.static, INF if e.static else e.seen_ns)
            for e in prog.tables.fdb_entries()}
