"""One ICMPv4 echo reader (`IcmpEcho.from_frame`) for `watch` and lab capture: it finds the echo
behind any IPv4 header length and a VLAN tag, and says None for everything else, never raising."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import Dot1Q, Ether

from vswitch.control.model import IcmpEcho
from vswitch.lab.capture import parse_icmp_echo

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


@pytest.mark.parametrize(("frame", "l3", "expected"), [
    (ETH / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=8, id=0x1234, seq=7), 14, IcmpEcho(8, 0x1234, 7)),
    (ETH / IP(options=b"\x01\x01\x01\x00") / ICMP(type=0, id=9, seq=65535), 14, IcmpEcho(0, 9, 65535)),
    (ETH / Dot1Q(vlan=10) / IP() / ICMP(type=8, id=1, seq=2), 18, IcmpEcho(8, 1, 2)),
    (ETH / IP() / ICMP(type=3), 14, None),     # unreachable: not an echo
    (ETH / IP() / TCP(), 14, None),
], ids=["request", "reply-with-ip-options", "tagged", "not-an-echo", "tcp"])
def test_echo_identity(frame: Ether, l3: int, expected: IcmpEcho | None) -> None:
    raw = bytes(frame)
    assert IcmpEcho.from_frame(raw, l3) == expected
    assert IcmpEcho.from_frame(raw[:l3 + 27], l3) is None, "an echo cut short is not an echo"
    if l3 == 14:
        parsed = parse_icmp_echo(raw)
        assert (parsed and parsed[4:]) == (expected and (expected.type, expected.id, expected.seq)), \
            "lab capture reads echoes with the same reader"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.integers(0, 30))
def test_never_raises(buf: bytes, l3: int) -> None:
    IcmpEcho.from_frame(buf, l3)
