"""Frame header parsing and 802.1Q tag push/pop: what the switch reads from the wire."""

from __future__ import annotations

import pytest

from l2frames import BROADCAST, PAYLOAD, frame, mac
from vswitch.core.frame import TPID_8021AD, TPID_8021Q, is_tagged, parse_header, pop_vlan, push_vlan, set_vid


def test_untagged_frame() -> None:
    h = parse_header(frame("b", "a", ethertype=0x0806))
    assert h is not None
    assert (h.dst, h.src, h.ethertype) == (mac("b"), mac("a"), 0x0806)
    assert not h.tagged and h.tpid == 0 and h.vid == 0
    assert h.l3_offset == 14


def test_8021q_tagged_frame() -> None:
    h = parse_header(frame(BROADCAST, "a", vlan=123, pcp=5, ethertype=0x86DD))
    assert h is not None and h.tagged
    assert (h.tpid, h.vid, h.pcp, h.ethertype, h.l3_offset) == (TPID_8021Q, 123, 5, 0x86DD, 18)
    assert h.dst == b"\xff" * 6


def test_8021ad_outer_tag_is_recognised() -> None:
    h = parse_header(frame("b", "a", vlan=300, tpid=TPID_8021AD, ethertype=0x8100))
    assert h is not None and h.tpid == TPID_8021AD and h.vid == 300
    assert h.ethertype == 0x8100, "only the outer tag is interpreted; an inner tag stays payload"


def test_vid_keeps_only_12_bits_and_dei_is_ignored() -> None:
    h = parse_header(frame("b", "a", vlan=0x1FFF, pcp=7))  # DEI bit set, VID 4095
    assert h is not None and h.vid == 0xFFF and h.pcp == 7


@pytest.mark.parametrize("n", range(14))
def test_shorter_than_14_bytes_is_malformed(n: int) -> None:
    assert parse_header(frame("b", "a")[:n]) is None


def test_exactly_14_bytes_untagged_is_a_frame() -> None:
    h = parse_header(frame("b", "a")[:14])
    assert h is not None and h.l3_offset == 14


@pytest.mark.parametrize("tpid", [TPID_8021Q, TPID_8021AD])
@pytest.mark.parametrize("n", [14, 15, 16, 17])
def test_truncated_tag_is_malformed(tpid: int, n: int) -> None:
    assert parse_header(frame("b", "a", vlan=10, tpid=tpid)[:n]) is None


def test_exactly_18_bytes_tagged_is_a_frame() -> None:
    h = parse_header(frame("b", "a", vlan=10)[:18])
    assert h is not None and h.vid == 10


def test_offset_skips_a_vnet_header() -> None:
    vnet = bytes(range(10))
    h = parse_header(vnet + frame("b", "a", vlan=7), offset=10)
    assert h is not None and h.src == mac("a") and h.vid == 7 and h.l3_offset == 28
    assert parse_header(vnet + frame("b", "a")[:13], offset=10) is None


def test_memoryview_and_bytearray_are_accepted() -> None:
    f = frame("b", "a", vlan=9)
    assert parse_header(memoryview(f)) == parse_header(bytearray(f)) == parse_header(f)


def test_push_then_pop_round_trips() -> None:
    plain = frame("b", "a", ethertype=0x0806)
    tagged = push_vlan(plain, 42, pcp=3)
    assert tagged == frame("b", "a", vlan=42, pcp=3, ethertype=0x0806)
    assert is_tagged(tagged) and not is_tagged(plain)
    h = parse_header(tagged)
    assert h is not None and (h.vid, h.pcp, h.ethertype) == (42, 3, 0x0806)
    assert pop_vlan(tagged) == plain


def test_pop_then_push_round_trips() -> None:
    tagged = frame("b", "a", vlan=4094, pcp=1)
    assert push_vlan(pop_vlan(tagged), 4094, pcp=1) == tagged


def test_push_8021ad_tag() -> None:
    out = push_vlan(frame("b", "a"), 100, tpid=TPID_8021AD)
    h = parse_header(out)
    assert h is not None and h.tpid == TPID_8021AD and h.vid == 100 and is_tagged(out)


def test_push_and_pop_keep_the_bytes_before_offset() -> None:
    vnet = b"V" * 10
    plain = vnet + frame("b", "a")
    tagged = push_vlan(plain, 5, offset=10)
    assert tagged == vnet + frame("b", "a", vlan=5)
    assert pop_vlan(tagged, offset=10) == plain


def test_push_keeps_the_payload_intact() -> None:
    out = push_vlan(memoryview(frame("b", "a")), 1)
    assert out.endswith(PAYLOAD) and len(out) == 14 + 4 + len(PAYLOAD)


def test_set_vid_rewrites_only_the_vid() -> None:
    prio = frame("b", "a", vlan=0, pcp=6)
    out = set_vid(prio, 77)
    assert out == frame("b", "a", vlan=77, pcp=6)
