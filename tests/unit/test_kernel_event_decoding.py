"""The program's event records (struct vs_event, struct vs_fdb_event) decoded as a watch and the MAC table's
copy need them; no kernel."""

from __future__ import annotations

import pytest

from vswitch.core.reasons import Reason
from vswitch.datapath.kernel import layout as L
from vswitch.datapath.kernel.events import decode, decode_fdb, out_slots

FRAME = bytes.fromhex("020000000002" "020000000001" "0800") + bytes(range(200))


def _record(*, kind: int = L.EV_DECISION, slot: int = 3, reason: str = "forward_learned", vlan: int = 10,
            length: int = len(FRAME), head: bytes = FRAME[:L.EV_HEAD], present: int = 0, proto: bytes = b"\0\0",
            tci: int = 0, outs: tuple[int, ...] = (5,)) -> bytes:
    words = [0] * L.EV_OUT_WORDS
    for s in outs:
        words[s // 64] |= 1 << (s % 64)
    return L.EVENT.pack(kind, slot, L.C[reason], vlan, length, len(head), 123_456_789, present, proto, tci,
                        *words, head.ljust(L.EV_HEAD, b"\0"))


def test_a_forward_decodes_to_the_cores_reason_vlan_output_and_first_bytes() -> None:
    ev = decode(_record())
    assert (ev.in_slot, ev.reason, ev.vlan, ev.length, ev.ktime_ns) == (3, Reason.FORWARD_LEARNED, 10, 214,
                                                                        123_456_789)
    assert ev.out_slots == (5,) and ev.head == FRAME[:128]


def test_a_flood_lists_every_output_slot_in_order_up_to_the_last_slot() -> None:
    assert L.EV_OUT_WORDS * 64 == L.MAX_PORTS, "the bitmap holds every slot: no flood is cut short"
    outs = (0, 1, 63, 64, 500, L.MAX_PORTS - 1)
    ev = decode(_record(reason="flood_broadcast", outs=outs))
    assert ev.reason == Reason.FLOOD_BROADCAST and ev.out_slots == outs
    assert out_slots([0] * L.EV_OUT_WORDS) == ()


def test_a_short_frame_keeps_only_its_bytes_and_a_drop_has_no_output() -> None:
    ev = decode(_record(reason="drop_malformed", vlan=0, length=10, head=FRAME[:10], outs=()))
    assert (ev.reason, ev.vlan, ev.out_slots, ev.head, ev.length) == (Reason.DROP_MALFORMED, 0, (), FRAME[:10], 10)


def test_a_tag_kept_in_skb_metadata_is_put_back_after_the_mac_addresses() -> None:
    ev = decode(_record(present=1, proto=b"\x81\x00", tci=(5 << 13) | 20, length=len(FRAME) + 4))
    assert ev.head == FRAME[:12] + bytes.fromhex("8100a014") + FRAME[12:128]
    assert ev.length == len(FRAME) + 4


@pytest.mark.parametrize(("raw", "what"), [
    (_record()[:-1], "bytes"),
    (_record(kind=7), "kind 7"),
    (L.EVENT.pack(1, 0, L.C["upcall"], 0, 0, 0, 0, 0, b"\0\0", 0, *[0] * L.EV_OUT_WORDS, bytes(L.EV_HEAD)),
     "no decision counter"),
])
def test_a_record_that_is_no_decision_is_refused_saying_why(raw: bytes, what: str) -> None:
    with pytest.raises(ValueError, match=what):
        decode(raw)


def test_a_mac_table_event_tells_a_learn_or_a_move_with_both_slots() -> None:
    mac = bytes.fromhex("029500000001")
    learned = decode_fdb(L.FDB_EVENT.pack(mac, 10, L.FE_LEARNED, 4, 4, 0, 5_000))
    moved = decode_fdb(L.FDB_EVENT.pack(mac, 10, L.FE_MOVED, 7, 4, 0, 6_000))
    assert (learned.mac, learned.vlan, learned.slot, learned.moved, learned.ktime_ns) == (mac, 10, 4, False, 5_000)
    assert (moved.slot, moved.old_slot, moved.moved) == (7, 4, True)


@pytest.mark.parametrize(("raw", "what"), [
    (bytes(8), "of 8 bytes"),
    (L.FDB_EVENT.pack(bytes(6), 1, 9, 0, 0, 0, 0), "kind 9"),
])
def test_a_record_that_is_no_mac_table_event_is_refused_saying_why(raw: bytes, what: str) -> None:
    with pytest.raises(ValueError, match=what):
        decode_fdb(raw)
