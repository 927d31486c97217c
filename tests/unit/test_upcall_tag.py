"""The upcall path's pure parts: the S-tag that names a slot (and the cause on the way up), the
virtio-net header moved past it, a frame read from the upcall TAP split back into (slot, cause,
frame), `switch show`'s label of a mixed switch, and why a port's settings send it up."""

from __future__ import annotations

import pytest

from vswitch.core.policy import PortPolicy
from vswitch.datapath.fastpath import KERNEL_LABEL, mixed_label
from vswitch.datapath.kernel import layout as L
from vswitch.datapath.kernel.layout import upcall_reasons
from vswitch.datapath.upcall import (
    CAUSE_TABLE_FULL,
    CAUSES,
    UPCALL_HDR,
    decode_tci,
    encode_tci,
    shift_header,
    split_upcall,
    stag,
    upcall_ifname,
)
from vswitch.ports.offload import F_NEEDS_CSUM, GSO_TCPV4, VNET_HDR

MACS = bytes.fromhex("020000000002" "020000000001")
IPV4 = b"\x08\x00" + bytes(range(46))


@pytest.mark.parametrize("slot", [0, 1, 7, 1023])
@pytest.mark.parametrize("cause", [0, 1, 4, 7])
def test_tci_round_trips(slot: int, cause: int) -> None:
    assert decode_tci(encode_tci(slot, cause)) == (slot, cause)
    assert encode_tci(slot, cause) & 0x0FFF == slot + 1, "VID 0 (priority tag) never names a slot"


def test_tci_refuses_what_does_not_fit() -> None:
    for slot, cause in ((-1, 0), (4094, 0), (0, 8)):
        with pytest.raises(ValueError, match="do not fit"):
            encode_tci(slot, cause)


def test_the_causes_are_the_programs_counters_in_order() -> None:
    # the program puts (cause counter - VS_C_UPCALL) in the PCP
    for pcp, name in enumerate(CAUSES[1:], start=1):
        assert L.COUNTERS[L.C["upcall"] + pcp] == name
    assert CAUSES[CAUSE_TABLE_FULL] == "upcall_table_full"
    assert tuple(L.C[n] for n in CAUSES[1:]) == L.UPCALL_CAUSES


def test_stag_is_tpid_then_tci() -> None:
    assert stag(0) == bytes.fromhex("88a80001")
    assert stag(1023) == bytes.fromhex("88a80400")


def test_a_partial_checksum_header_moves_with_the_tag() -> None:
    hdr = VNET_HDR.pack(F_NEEDS_CSUM, GSO_TCPV4, 54, 1448, 34, 16)
    assert VNET_HDR.unpack(shift_header(hdr, 4)) == (F_NEEDS_CSUM, GSO_TCPV4, 58, 1448, 38, 16)
    assert shift_header(shift_header(hdr, 4), -4) == hdr
    plain = bytes(UPCALL_HDR)
    assert shift_header(plain, 4) == plain, "no partial checksum, no header length: nothing moves"


@pytest.mark.parametrize("payload", [46, 9000, 65000])
def test_a_frame_read_from_the_upcall_tap_loses_its_s_tag_and_keeps_its_own(payload: int) -> None:
    ctag = bytes.fromhex("8100000a")
    ipv4 = b"\x08\x00" + bytes(i & 0xFF for i in range(payload))
    hdr = VNET_HDR.pack(F_NEEDS_CSUM, GSO_TCPV4, 0, 1448, 38 + 4, 16)  # the kernel counted the S-tag in
    tci = encode_tci(5, CAUSE_TABLE_FULL)
    wire = hdr + MACS + bytes.fromhex("88a8") + tci.to_bytes(2, "big") + ctag + ipv4
    buf = bytearray(wire + b"junk past the read")
    got = split_upcall(buf, len(wire))
    assert got is not None
    slot, cause, frame = got
    assert (slot, cause) == (5, CAUSE_TABLE_FULL)
    assert frame == VNET_HDR.pack(F_NEEDS_CSUM, GSO_TCPV4, 0, 1448, 38, 16) + MACS + ctag + ipv4
    assert isinstance(frame, bytes), "a copy: the read buffer is reused"


def test_a_frame_without_our_s_tag_is_not_ours() -> None:
    frame = bytes(UPCALL_HDR) + MACS + IPV4
    assert split_upcall(frame, len(frame)) is None
    assert split_upcall(bytes(UPCALL_HDR) + MACS + b"\x88", UPCALL_HDR + 13) is None, "a runt"


def test_upcall_tap_names_are_unique_per_switch_and_fit_a_link_name() -> None:
    names = {upcall_ifname(f"sw{i}") for i in range(1000)}
    assert len(names) == 1000 and all(len(n.encode()) <= 15 for n in names)
    assert upcall_ifname("ext") == upcall_ifname("ext"), "the same on every start: a restart finds it"


def test_the_mixed_label_names_both_datapaths() -> None:
    assert mixed_label(3, []) == KERNEL_LABEL
    assert mixed_label(3, ["qemu-stream"]) == "kernel (tc-bpf), 3 ports; python: 1 port (qemu-stream)"
    assert mixed_label(1, ["tap", "qemu-stream", "tap"]) == \
        "kernel (tc-bpf), 1 port; python: 3 ports (qemu-stream, tap)"
    assert mixed_label(3, [], 1) == "kernel (tc-bpf), 3 ports; 1 sent up by its settings (see port show)"
    assert mixed_label(3, ["tap"], 2) == \
        "kernel (tc-bpf), 3 ports; python: 1 port (tap); 2 sent up by their settings (see port show)"


def test_the_settings_the_program_does_not_run_send_a_port_up_saying_why() -> None:
    assert upcall_reasons(PortPolicy()) == ()
    assert upcall_reasons(PortPolicy(mac_spoofing=False, mac=b"\x02" * 6)) == (), "locked in the program"
    assert upcall_reasons(PortPolicy(mac_spoofing=False, mac_limit=3)) == (
        "MAC spoofing off and no MAC yet (Python adopts its first source)",
        "a MAC limit (the program keeps no count of MACs per port)")
    for policy in (PortPolicy(), PortPolicy(mac_limit=1), PortPolicy(mac_spoofing=False)):
        flags = L.PORT.unpack(L.pack_port(policy, ifindex=7, oper_up=True, kernel=True))[1]
        assert bool(flags & L.PF_UPCALL) == bool(upcall_reasons(policy)), policy


@pytest.mark.parametrize("payload", [46, 9000, 65000])
@pytest.mark.parametrize("as_view", [False, True])
def test_a_frame_sent_down_carries_the_s_tag_and_its_header_moved_past_it(payload: int, as_view: bool) -> None:
    """What `UpcallChannel.send` writes, read back from a pipe in its place: the S-tag after the MAC
    addresses, `csum_start`/`hdr_len` 4 further; `split_upcall` undoes it exactly."""
    import os

    from vswitch.datapath.upcall import UpcallChannel

    ipv4 = b"\x08\x00" + bytes(i & 0xFF for i in range(payload))
    frame = VNET_HDR.pack(F_NEEDS_CSUM, GSO_TCPV4, 54, 1448, 34, 16) + MACS + ipv4
    ch = UpcallChannel("unit")
    r, w = os.pipe()
    try:
        ch.tap._fd = w  # the TAP's descriptor, a pipe here: no root, no device
        ch.send(7, memoryview(frame) if as_view else frame)
        wire = bytearray(70000)
        n = os.readv(r, (wire,))
    finally:
        ch.tap._fd = None
        os.close(r)
        os.close(w)
    assert bytes(wire[:n]) == VNET_HDR.pack(F_NEEDS_CSUM, GSO_TCPV4, 58, 1448, 38, 16) + MACS + stag(7) + ipv4
    wire[24] |= 2 << 5  # as if it came up with a cause
    assert split_upcall(wire, n) == (7, 2, frame)
