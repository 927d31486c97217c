"""The pure forwarding core: frames in, decisions out.

Nothing here does I/O or reads a clock: time is the `now` parameter, ports are opaque ids.
Allowed imports: the standard library's pure modules (collections, dataclasses, enum, struct, typing).
"""

from vswitch.core.events import CoreEvent, EventRecorder
from vswitch.core.fdb import FdbEntry, MacTable
from vswitch.core.frame import FrameHeader, parse_header, pop_vlan, push_vlan
from vswitch.core.policy import PortPolicy, VlanMode
from vswitch.core.reasons import Reason
from vswitch.core.switch import Decision, SwitchCore

__all__ = [
    "CoreEvent", "Decision", "EventRecorder", "FdbEntry", "FrameHeader", "MacTable", "PortPolicy", "Reason",
    "SwitchCore",
    "VlanMode", "parse_header", "pop_vlan", "push_vlan",
]
