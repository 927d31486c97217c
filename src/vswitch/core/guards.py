"""The DHCP guard and the router guard (Hyper-V's -DhcpGuard / -RouterGuard): which frames from a
guarded port are a DHCP server's or a router's, and so dropped. Pure: bytes in, a Reason out.

`check(buf, l3, ethertype, guards)` is the one rule; `SwitchCore.process` calls it for a port with a
guard on (a port with none pays one test of its flag) and `describe` says what it found, for `trace`.
docs/port-features.md states the rules; switch.bpf.c (`guard_check`) carries the same ones, and the
differential test holds the two equal. In short, from a guarded port:

- DHCP guard: IPv4 UDP from source port 67 whose BOOTP op is 2 (BOOTREPLY: OFFER, ACK, NAK; a relay's
  BOOTREQUEST from 67 passes), and IPv6 UDP from source port 547 whose DHCPv6 message type is
  ADVERTISE (2), REPLY (7) or RECONFIGURE (10);
- router guard: ICMPv6 Router Advertisement (134) and Redirect (137), ICMPv4 Redirect (5).

How far a frame is read: the outer VLAN tag only (an inner tag is payload, as everywhere in the
core); an IPv4 or IPv6 header whose version nibble is wrong is not IP to any host and passes; the
packet ends where its own length field says (a first fragment padded with the rest of a message
must not hide it). IPv4 non-first fragments pass (no UDP/ICMP header: without the first fragment,
which is inspected, they are never a message). IPv6 extension headers (hop-by-hop, routing,
fragment, destination options, AH) are walked, at most `MAX_EXT_HEADERS` of them (RFC 7113: an RA
behind a hop-by-hop header is still an RA); a non-first IPv6 fragment passes. **Cut short**: a
packet that ends before the byte its rule reads (a first fragment cut before the UDP ports, the
BOOTP op or the ICMP type; a header chain cut short), or with more than `MAX_EXT_HEADERS` extension
headers, is dropped when a guard is on — no host accepts such a packet whole unless the rest comes in
later fragments, which is exactly how a message would be hidden. Its reason is the router guard's
when that guard is on (the RFC 7113 evasion is an RA's), else the DHCP guard's; where the protocol is
already known (UDP: DHCP; ICMP: router) only that guard drops it.
Must not touch: the MAC table, counters, anything outside the frame.
"""

from __future__ import annotations

import ipaddress

from vswitch.core.reasons import Reason

#: PortPolicy.guards bits (and the kernel's VS_PF_DHCP_GUARD / VS_PF_ROUTER_GUARD, shifted)
GUARD_DHCP = 1
GUARD_ROUTER = 2
#: IPv6 extension headers walked before the upper-layer header; more is "cut short"
MAX_EXT_HEADERS = 8

ETH_P_IPV4 = 0x0800
ETH_P_IPV6 = 0x86DD
_IPPROTO_ICMP, _IPPROTO_UDP, _IPPROTO_ICMPV6 = 1, 17, 58
_EXT_HBH, _EXT_ROUTING, _EXT_FRAGMENT, _EXT_AH, _EXT_DSTOPTS = 0, 43, 44, 51, 60
_DHCP6_SERVER_TYPES = frozenset((2, 7, 10))
_ICMP6_ROUTER_TYPES = frozenset((134, 137))

# What `_find` saw (kind, offset of the L4 header or 0): the rule is `_NEEDS` — which guard drops it.
K_NONE = 0
K_DHCP4 = 1         # a BOOTREPLY from UDP 67
K_DHCP6 = 2         # ADVERTISE / REPLY / RECONFIGURE from UDP 547
K_RA = 3            # ICMPv6 134
K_REDIRECT6 = 4     # ICMPv6 137
K_REDIRECT4 = 5     # ICMPv4 5
K_CUT_UDP = 6       # UDP cut before the bytes the DHCP rule reads
K_CUT_ICMP = 7      # ICMP / ICMPv6 cut before its type
K_CUT = 8           # cut before the upper-layer protocol is known, or too many extension headers
_NEEDS = (0, GUARD_DHCP, GUARD_DHCP, GUARD_ROUTER, GUARD_ROUTER, GUARD_ROUTER, GUARD_DHCP, GUARD_ROUTER,
          GUARD_DHCP | GUARD_ROUTER)


def _find(buf: bytes, l3: int, ethertype: int) -> tuple[int, int]:
    """What the packet at `l3` is, as far as the guards care: (K_*, offset of its L4 header)."""
    n = len(buf)
    if ethertype == ETH_P_IPV4:
        if n < l3 + 20:
            return (K_CUT, 0) if n > l3 and buf[l3] >> 4 == 4 else (K_NONE, 0)
        b0 = buf[l3]
        if b0 >> 4 != 4:
            return K_NONE, 0
        end = min(n, l3 + ((buf[l3 + 2] << 8) | buf[l3 + 3]))
        l4 = l3 + (b0 & 0x0F) * 4
        if ((buf[l3 + 6] & 0x1F) << 8) | buf[l3 + 7]:
            return K_NONE, 0                        # a non-first fragment: no L4 header
        proto = buf[l3 + 9]
        if proto == _IPPROTO_UDP:
            if l4 < l3 + 20 or end < l4 + 2:
                return K_CUT_UDP, l4
            if buf[l4] != 0 or buf[l4 + 1] != 67:
                return K_NONE, 0
            if end < l4 + 9:
                return K_CUT_UDP, l4
            return (K_DHCP4 if buf[l4 + 8] == 2 else K_NONE), l4
        if proto == _IPPROTO_ICMP:
            if l4 < l3 + 20 or end < l4 + 1:
                return K_CUT_ICMP, l4
            return (K_REDIRECT4 if buf[l4] == 5 else K_NONE), l4
        return K_NONE, 0
    if ethertype == ETH_P_IPV6:
        if n < l3 + 40:
            return (K_CUT, 0) if n > l3 and buf[l3] >> 4 == 6 else (K_NONE, 0)
        if buf[l3] >> 4 != 6:
            return K_NONE, 0
        end = min(n, l3 + 40 + ((buf[l3 + 4] << 8) | buf[l3 + 5]))
        nh = buf[l3 + 6]
        at = l3 + 40
        for _ in range(MAX_EXT_HEADERS + 1):
            if nh == _IPPROTO_UDP:
                if end < at + 2:
                    return K_CUT_UDP, at
                if buf[at] != 0x02 or buf[at + 1] != 0x23:    # 547
                    return K_NONE, 0
                if end < at + 9:
                    return K_CUT_UDP, at
                return (K_DHCP6 if buf[at + 8] in _DHCP6_SERVER_TYPES else K_NONE), at
            if nh == _IPPROTO_ICMPV6:
                if end < at + 1:
                    return K_CUT_ICMP, at
                t = buf[at]
                return (K_RA if t == 134 else K_REDIRECT6 if t == 137 else K_NONE), at
            if nh not in (_EXT_HBH, _EXT_ROUTING, _EXT_FRAGMENT, _EXT_DSTOPTS, _EXT_AH):
                return K_NONE, 0                    # another upper layer (TCP, ESP, no next header, ...)
            if end < at + 8:
                return K_CUT, at
            if nh == _EXT_FRAGMENT:
                if ((buf[at + 2] << 8) | buf[at + 3]) & 0xFFF8:
                    return K_NONE, 0                # a non-first fragment: no upper-layer header
                size = 8
            elif nh == _EXT_AH:
                size = (buf[at + 1] + 2) * 4
            else:
                size = (buf[at + 1] + 1) * 8
            nh = buf[at]
            at += size
        return K_CUT, at                            # more extension headers than MAX_EXT_HEADERS
    return K_NONE, 0


def _reason(kind: int, guards: int) -> Reason | None:
    hit = _NEEDS[kind] & guards
    if not hit:
        return None
    return Reason.DROP_ROUTER_GUARD if hit & GUARD_ROUTER else Reason.DROP_DHCP_GUARD


def check(buf: bytes, l3: int, ethertype: int, guards: int) -> Reason | None:
    """The guard's verdict on a frame from a port with `guards` (GUARD_* bits, not 0) whose L3 header
    (of `ethertype`, after the outer tag) starts at `l3`: DROP_DHCP_GUARD, DROP_ROUTER_GUARD or None
    (it passes). Never raises on arbitrary bytes."""
    return _reason(_find(buf, l3, ethertype)[0], guards)


_DHCP4_TYPES = {1: "DISCOVER", 2: "OFFER", 3: "REQUEST", 4: "DECLINE", 5: "ACK", 6: "NAK", 7: "RELEASE",
                8: "INFORM"}
_DHCP6_TYPES = {2: "ADVERTISE", 7: "REPLY", 10: "RECONFIGURE"}


def _dhcp4_type(buf: bytes, l4: int) -> str | None:
    """The DHCP message type (option 53) of the BOOTP message after the UDP header at `l4`."""
    at = l4 + 8 + 236
    if buf[at:at + 4] != b"\x63\x82\x53\x63":
        return None
    at += 4
    while at + 1 < len(buf):
        code = buf[at]
        if code == 255:
            return None
        if code == 0:
            at += 1
            continue
        if code == 53 and at + 2 < len(buf):
            return _DHCP4_TYPES.get(buf[at + 2], str(buf[at + 2]))
        at += 2 + buf[at + 1]
    return None


def _ip_source(buf: bytes, l3: int, ethertype: int) -> str | None:
    if ethertype == ETH_P_IPV4 and len(buf) >= l3 + 16:
        return str(ipaddress.IPv4Address(bytes(buf[l3 + 12:l3 + 16])))
    if ethertype == ETH_P_IPV6 and len(buf) >= l3 + 24:
        return str(ipaddress.IPv6Address(bytes(buf[l3 + 8:l3 + 24])))
    return None


def describe(buf: bytes, l3: int, ethertype: int) -> str:
    """What the guards found in the packet at `l3`, in words ("DHCPv4 BOOTREPLY (OFFER) from
    10.0.0.66"): for `trace`, after `check` dropped it."""
    kind, l4 = _find(buf, l3, ethertype)
    if kind == K_DHCP4:
        t = _dhcp4_type(buf, l4)
        what = "DHCPv4 BOOTREPLY" + (f" ({t})" if t else "")
    elif kind == K_DHCP6:
        what = f"DHCPv6 {_DHCP6_TYPES[buf[l4 + 8]]}"
    elif kind == K_RA:
        what = "ICMPv6 Router Advertisement"
    elif kind == K_REDIRECT6:
        what = "ICMPv6 Redirect"
    elif kind == K_REDIRECT4:
        what = "ICMPv4 Redirect"
    elif kind == K_CUT_UDP:
        what = "a UDP packet cut short before the bytes the DHCP guard reads"
    elif kind == K_CUT_ICMP:
        what = "an ICMP packet cut short before its type"
    elif kind == K_CUT:
        what = (f"an IP packet whose headers are cut short or chain more than {MAX_EXT_HEADERS} IPv6 "
                f"extension headers (not inspected further)")
    else:
        return "no DHCP server or router message"
    src = _ip_source(buf, l3, ethertype)
    return what + (f" from {src}" if src else "")
