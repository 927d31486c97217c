"""Frames for the DHCP and router guards' tests: the messages they drop, their near misses, and random
mixes of both (with tags, IPv6 extension headers, fragments, packets cut short) for the differential
test. Built by hand with struct (checksums left zero: the switch reads none), fast enough for 20,000
random frames."""

from __future__ import annotations

import random
import struct

ETH_IPV4, ETH_IPV6 = b"\x08\x00", b"\x86\xdd"
SRC4, DST4 = bytes((10, 0, 0, 66)), bytes((255, 255, 255, 255))
SRC6 = bytes.fromhex("fe800000000000000000000000000066")
DST6 = bytes.fromhex("ff020000000000000000000000000001")


def ipv4(proto: int, payload: bytes, *, frag: int = 0, mf: bool = False, tot_len: int | None = None,
         src: bytes = SRC4) -> bytes:
    """An IPv4 header (no options) + `payload`; `frag` the fragment offset in 8-byte units."""
    length = 20 + len(payload) if tot_len is None else tot_len
    flags = (0x2000 if mf else 0) | frag
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, length, 1, flags, 64, proto, 0, src, DST4) + payload


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def bootp(op: int, msg_type: int | None) -> bytes:
    """A BOOTP message (236 bytes + cookie) with DHCP option 53 = `msg_type` (None: no options)."""
    body = bytes((op, 1, 6, 0)) + bytes(232)
    if msg_type is None:
        return body
    return body + b"\x63\x82\x53\x63" + bytes((53, 1, msg_type, 255))


def dhcp4(op: int, msg_type: int | None = None, sport: int | None = None) -> bytes:
    """An IPv4 DHCP message: op 2 (BOOTREPLY, from 67 to 68) or 1 (BOOTREQUEST, from 68 unless `sport`)."""
    if sport is None:
        sport = 67 if op == 2 else 68
    return ipv4(17, udp(sport, 68 if op == 2 else 67, bootp(op, msg_type)))


def icmp4(icmp_type: int) -> bytes:
    return ipv4(1, bytes((icmp_type, 0, 0, 0)) + bytes(24))


#: not a header number: a fragment header with offset 8 (a non-first fragment), in `ipv6`'s `exts`
LATER_FRAGMENT = 1044


def ext(next_header: int, kind: int, body_words: int = 0) -> bytes:
    """One IPv6 extension header of `kind` (0, 43, 60: 8-byte units; 51: AH; 44: fragment, first;
    LATER_FRAGMENT: fragment, offset 8)."""
    if kind == 44:
        return bytes((next_header, 0, 0, 1)) + bytes(4)  # offset 0, M=1: a first fragment
    if kind == LATER_FRAGMENT:
        return bytes((next_header, 0, 0, 8 | 1)) + bytes(4)
    if kind == 51:  # AH: (length + 2) * 4 bytes, a multiple of 8 in IPv6
        length = 2 + 2 * body_words
        return bytes((next_header, length)) + bytes((length + 2) * 4 - 2)
    return bytes((next_header, body_words)) + bytes(6 + 8 * body_words)


def ipv6(next_header: int, payload: bytes, exts: tuple[int, ...] = (), *, plen: int | None = None,
         src: bytes = SRC6) -> bytes:
    """An IPv6 header, the extension headers `exts` (their kinds, in order), then `payload` of
    protocol `next_header`."""
    chain = b""
    kinds = list(exts)
    for i, kind in enumerate(kinds):
        nh = kinds[i + 1] if i + 1 < len(kinds) else next_header
        chain += ext(44 if nh == LATER_FRAGMENT else nh, kind)
    first = kinds[0] if kinds else next_header
    first = 44 if first == LATER_FRAGMENT else first
    body = chain + payload
    length = len(body) if plen is None else plen
    return struct.pack("!IHBB16s16s", 0x60000000, length, first, 255, src, DST6) + body


def icmp6(icmp_type: int, exts: tuple[int, ...] = ()) -> bytes:
    return ipv6(58, bytes((icmp_type, 0, 0, 0)) + bytes(12), exts)


def dhcp6(msg_type: int, sport: int = 547, exts: tuple[int, ...] = ()) -> bytes:
    return ipv6(17, udp(sport, 546 if sport == 547 else 547, bytes((msg_type, 0, 0, 1)) + bytes(8)), exts)


def eth(dst: bytes, src: bytes, l3: bytes, *, tag: bytes = b"", ethertype: bytes | None = None) -> bytes:
    """An Ethernet frame (tag: 4 bytes of 802.1Q/802.1ad tag, or none) of `l3`, IPv4 or IPv6 by its
    version nibble unless `ethertype` says."""
    if ethertype is None:
        ethertype = ETH_IPV6 if l3[:1] and l3[0] >> 4 == 6 else ETH_IPV4
    return dst + src + tag + ethertype + l3


#: what the guards drop (the guard: dhcp, router or any of the two; the L3 packet; what it is)
GUARDED = [
    ("dhcp", dhcp4(2, 2), "DHCPOFFER"),
    ("dhcp", dhcp4(2, 5), "DHCPACK"),
    ("dhcp", dhcp4(2, 6), "DHCPNAK"),
    ("dhcp", dhcp4(2, None), "a BOOTREPLY without options"),
    ("dhcp", dhcp6(2), "DHCPv6 ADVERTISE"),
    ("dhcp", dhcp6(7), "DHCPv6 REPLY"),
    ("dhcp", dhcp6(10), "DHCPv6 RECONFIGURE"),
    ("dhcp", dhcp6(7, exts=(60,)), "DHCPv6 REPLY behind a destination-options header"),
    ("router", icmp6(134), "an ICMPv6 Router Advertisement"),
    ("router", icmp6(137), "an ICMPv6 Redirect"),
    ("router", icmp4(5), "an ICMPv4 Redirect"),
    ("router", icmp6(134, (0,)), "an RA behind a hop-by-hop header (RFC 7113)"),
    ("router", icmp6(134, (60,)), "an RA behind a destination-options header"),
    ("router", icmp6(134, (0, 60, 44)), "an RA behind hop-by-hop, destination options and a first fragment"),
    ("router", icmp6(134, (0, 43, 60, 51, 60, 60, 60, 60)), "an RA behind 8 extension headers (the bound)"),
    ("any", icmp6(128, (0, 43, 60, 51, 60, 60, 60, 60, 60)), "9 extension headers: beyond the bound"),
    ("any", ipv6(58, bytes((134, 0, 0, 0)) + bytes(12), (0,), plen=4), "an IPv6 header chain cut short"),
]
#: near misses: what the guards let through (a client, a relay's request, a solicitation, an echo)
PASSING = [
    (dhcp4(1, 1), "DHCPDISCOVER from a client"),
    (dhcp4(1, 3), "DHCPREQUEST from a client"),
    (dhcp4(1, 1, sport=67), "a relay's BOOTREQUEST from port 67"),
    (ipv4(17, udp(68, 67, bootp(2, 2))), "a BOOTREPLY from port 68, not 67"),
    (dhcp6(1, sport=546), "DHCPv6 SOLICIT from a client"),
    (dhcp6(12), "DHCPv6 RELAY-FORW from port 547"),
    (dhcp6(7, sport=546), "a DHCPv6 REPLY type from port 546"),
    (icmp6(133), "an ICMPv6 Router Solicitation"),
    (icmp6(128), "an ICMPv6 echo request"),
    (icmp6(136), "an ICMPv6 Neighbor Advertisement"),
    (icmp4(8), "an ICMPv4 echo request"),
    (icmp4(3), "an ICMPv4 destination unreachable"),
    (ipv4(1, icmp4(5)[20:], frag=3), "a non-first IPv4 fragment starting like a redirect"),
    (ipv4(17, udp(67, 68, bootp(2, 2)), frag=1), "a non-first IPv4 fragment starting like an OFFER"),
    (icmp6(134, (LATER_FRAGMENT,)), "a non-first IPv6 fragment starting like an RA"),
    (ipv6(6, bytes(20)), "IPv6 TCP"),
]


def random_l3(rng: random.Random) -> tuple[bytes, bytes]:
    """(ethertype, packet): an IPv4/IPv6 packet the guards care about, a near miss, or one of them
    bent: cut short (by the frame, or by its own length field), with a random extension-header chain,
    fragmented, or with a wrong version nibble."""
    x = rng.random()
    if x < 0.35:
        pkt = rng.choice(GUARDED)[1]
    elif x < 0.65:
        pkt = rng.choice(PASSING)[0]
    elif x < 0.8:
        exts = tuple(rng.choice((0, 43, 44, 51, 60, 60, LATER_FRAGMENT)) for _ in range(rng.randrange(0, 11)))
        pkt = rng.choice((icmp6(rng.choice((128, 133, 134, 137)), exts),
                          dhcp6(rng.choice((1, 2, 7, 12)), rng.choice((546, 547)), exts)))
    else:
        pkt = rng.choice([p for _g, p, _w in GUARDED] + [p for p, _w in PASSING])
    ethertype = ETH_IPV6 if pkt[0] >> 4 == 6 else ETH_IPV4
    y = rng.random()
    if y < 0.15:  # the frame cut short anywhere (IPv6: maybe inside the fixed header)
        pkt = pkt[:rng.randrange(1, len(pkt))]
    elif y < 0.25 and pkt[0] >> 4 == 4:  # an IPv4 first fragment whose length stops early
        cut = rng.randrange(20, len(pkt))
        pkt = pkt[:2] + struct.pack("!HH", cut, 0x2000) + pkt[6:]
    elif y < 0.3 and pkt[0] >> 4 == 6:  # an IPv6 payload length short of the packet
        pkt = pkt[:4] + struct.pack("!H", rng.randrange(0, len(pkt) - 40 + 1)) + pkt[6:]
    elif y < 0.33:  # a wrong version nibble
        pkt = bytes((pkt[0] ^ 0x20,)) + pkt[1:]
    return ethertype, pkt
