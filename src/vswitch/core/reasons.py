"""Why the switch did what it did with a frame: one enumerated reason per outcome.

Reasons feed per-port counters, `trace`, logs and test messages; logic compares reasons,
never strings.
"""

from __future__ import annotations

import enum


class Reason(enum.Enum):
    """Outcome of one forwarding decision."""

    FORWARD_LEARNED = "known unicast: destination learned on one port"
    FLOOD_UNKNOWN = "unknown unicast: destination not learned, flooding"
    FLOOD_BROADCAST = "broadcast: flooding"
    FLOOD_MULTICAST = "multicast: flooding"
    DROP_SAME_PORT = "destination learned on the ingress port"
    DROP_RESERVED_GROUP = "IEEE 802.1D reserved group address (01:80:C2:00:00:0X) is not forwarded"
    DROP_MALFORMED = "malformed frame (runt or truncated VLAN tag)"
    DROP_INVALID_SRC = "source MAC is multicast, broadcast or all-zero"
    DROP_VLAN_INGRESS = "VLAN not admitted on the ingress port"
    DROP_PORT_DOWN = "ingress port is administratively down"
    DROP_EGRESS_DOWN = "the destination's port is down"
    DROP_DHCP_GUARD = "a DHCP server's message from a port with the DHCP guard on"
    DROP_ROUTER_GUARD = "a router advertisement or redirect from a port with the router guard on"
    DROP_SPOOFED_MAC = "a source other than the port's MAC from a port with MAC spoofing off"
    DROP_MAC_LIMIT = "a new source from a port that owns as many MACs as its MAC limit"
    DROP_ACL = "an ACL of the port (in or out) denies it"
    DROP_ISOLATED = "the destination is isolated from the ingress port (both ports are isolated)"
    DROP_PRIVATE_VLAN = "private VLAN: the destination's port does not receive the frame's secondary VLAN"
    DROP_STORM_LIMIT = "a broadcast, multicast or unknown unicast over the port's storm limit (frames per second)"
    DROP_MAX_BANDWIDTH = "a frame over the port's maximum bandwidth (what it may send into the switch)"
    # Set by the datapath or a port back-end, not by the decision function:
    DROP_QUEUE_FULL = "egress queue full"
    DROP_LINK_DOWN = "egress link down"
    DROP_TX_ERROR = "egress write failed"
    DROP_OVERSIZE = "frame larger than the egress port's MTU + L2 headers (or than 65,535 + headers)"
    DROP_INTERNAL_ERROR = "the switch failed on this frame (a bug; the first traceback is logged)"
    # Counted by a port back-end on receive, before the frame reaches the core:
    DROP_RUNT = "received frame shorter than an Ethernet header (14 bytes)"
    DROP_BAD_LENGTH = "stream length prefix out of range (the connection is closed)"
    DROP_TRUNCATED = "frame cut short (stream ended mid-frame, or larger than the receive buffer)"
    # Counted by a VXLAN port on receive (ports/vxlan.py), the datagram never reaching the core:
    DROP_VXLAN_UNKNOWN_VTEP = "VXLAN datagram from an address that is not one of the port's remote VTEPs"
    DROP_VXLAN_VNI = "VXLAN datagram of another VNI than the port's"
    DROP_VXLAN_FLAGS = "VXLAN header without the VNI flag, or with a reserved bit set"
    DROP_VXLAN_TRUNCATED = "UDP datagram shorter than a VXLAN header (8 bytes)"

    @property
    def is_drop(self) -> bool:
        return self.name.startswith("DROP_")

    @property
    def is_flood(self) -> bool:
        return self.name.startswith("FLOOD_")

    @property
    def label(self) -> str:
        """Short lower-case name for counters and JSON: 'drop_same_port'."""
        return self.name.lower()


#: the drops of the port features (docs/port-features.md): each is also an event (`frame-dropped`,
#: rate-limited per port and reason), so an administrator hears of a rogue DHCP server or a VM
#: forging MACs without reading counters
PORT_FEATURE_DROPS = frozenset({Reason.DROP_DHCP_GUARD, Reason.DROP_ROUTER_GUARD, Reason.DROP_SPOOFED_MAC,
                                Reason.DROP_MAC_LIMIT, Reason.DROP_ACL, Reason.DROP_STORM_LIMIT,
                                Reason.DROP_MAX_BANDWIDTH})
