"""`SwitchManager.capture` (control/capture.py) on memory ports: pcapng with one interface block for
the port, each packet the frame as it crossed the port with the decision as its comment, bounded by
count, filtered by libpcap; parameters refused naming what is wrong, before any frame is observed."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.l2 import Dot1Q, Ether
from scapy.utils import PcapNgReader

from l2frames import BROADCAST, frame, mac
from vswitch.control.manager import SwitchManager
from vswitch.control.model import InvalidRequest, NotFound, PortKind, PortSettings, PortSpec, SwitchSpec, SwitchType
from waiting import wait_until


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[SwitchManager]:
    m = SwitchManager(port_socket_dir=str(tmp_path / "ports"))
    m.create_switch(SwitchSpec("cap", SwitchType.PRIVATE))
    for p in ("vm1", "vm2", "vm3"):
        m.add_port("cap", PortSpec(p, PortKind.MEMORY, p))
    yield m
    m.shutdown()


def _run(m: SwitchManager, port: str, frames: list[tuple[str, bytes]], **kw: object) -> list[Ether]:
    cap = m.capture("cap", port, **kw)  # type: ignore[arg-type]
    out = bytearray()
    reader = threading.Thread(target=lambda: [out.extend(c) for c in cap])
    reader.start()
    try:
        for in_port, f in frames:
            m.port_object("cap", in_port).inject(f)  # type: ignore[attr-defined]
        reader.join(timeout=30)
    finally:
        cap.close()
        reader.join(timeout=30)
    assert not reader.is_alive()
    return list(PcapNgReader(io.BytesIO(bytes(out))))


def test_both_directions_with_the_decision_as_each_packets_comment(manager: SwitchManager) -> None:
    m = manager
    m.set_port("cap", "vm2", PortSettings(trunk=(1,)))
    got = _run(m, "vm2", [("vm1", frame(BROADCAST, "a")), ("vm2", frame("a", "b", vlan=1))], count=2)
    assert len(got) == 2
    flood, reply = got
    assert flood[Ether].src == "02:00:00:00:00:61" and flood.haslayer(Dot1Q) and flood[Dot1Q].vlan == 1, \
        "out of a trunk: the frame as it left, tagged"
    assert b"FLOOD_BROADCAST" in flood.comment and b"out vm2" in flood.comment
    assert reply[Ether].dst == "02:00:00:00:00:61"
    assert b"in vm2" in reply.comment and b"FORWARD_LEARNED" in reply.comment and b"vm1" in reply.comment


def test_count_direction_and_filter_bound_what_is_written(manager: SwitchManager) -> None:
    m = manager
    def arp(src: str) -> bytes:
        return frame(BROADCAST, src, ethertype=0x0806)

    frames = [("vm1", frame(BROADCAST, "a")), ("vm1", arp("c")), ("vm3", arp("e")), ("vm1", arp("d")),
              ("vm1", arp("f"))]
    got = _run(m, "vm1", frames, direction="in", count=2, filter="arp")
    assert [bytes(p)[6:12] for p in got] == [mac("c"), mac("d")], \
        "the IPv4 frame filtered out, vm3's ARP (out of vm1) not in, the count reached before f"
    assert all(b"in vm1" in p.comment for p in got)


@pytest.mark.parametrize(("kw", "named"), [
    ({"direction": "sideways"}, "direction"), ({"count": 0}, "count"), ({"seconds": -1}, "seconds"),
    ({"max_bytes": 2**40}, "max_bytes"), ({"filter": "icmp and and"}, "filter")])
def test_bad_parameters_are_refused_naming_them(manager: SwitchManager, kw: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidRequest, match=named.replace("_", ".")):
        manager.capture("cap", "vm1", **kw)  # type: ignore[arg-type]
    assert manager.datapath("cap").frame_observers == [], "nothing observed"


def test_unknown_switch_or_port_is_not_found(manager: SwitchManager) -> None:
    with pytest.raises(NotFound):
        manager.capture("nope", "vm1")
    with pytest.raises(NotFound, match="vm9"):
        manager.capture("cap", "vm9")


def test_a_capture_ends_when_its_port_goes(manager: SwitchManager) -> None:
    m = manager
    cap = m.capture("cap", "vm3")
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.extend(cap))
    reader.start()
    wait_until(lambda: len(chunks) >= 1, what="the file's header to be written at once")
    m.remove_port("cap", "vm3")
    reader.join(timeout=30)
    assert not reader.is_alive() and m.datapath("cap").frame_observers == []


def test_blocks_are_read_back_whole_and_the_statistics_with_them() -> None:
    from vswitch.control import pcapng
    stream = (pcapng.section_header("x") + pcapng.interface_description("p", 128)
              + pcapng.enhanced_packet(0, 1, b"\1" * 61, 61, comment="c", flags=pcapng.INBOUND)
              + pcapng.interface_statistics(0, 2, dropped=7, comment="3 frames"))
    blocks, used = pcapng.split_blocks(stream[:-5])
    assert used < len(stream) and [pcapng.block_type(b) for b in blocks] == \
        [pcapng.SHB_TYPE, pcapng.IDB_TYPE, pcapng.EPB_TYPE], "the ISB still arriving is not a block yet"
    blocks, used = pcapng.split_blocks(stream)
    assert used == len(stream) and pcapng.statistics(blocks[-1]) == (7, "3 frames")
    with pytest.raises(ValueError, match="total length 5"):
        pcapng.split_blocks(b"\0\0\0\0\5\0\0\0")


class _Wire:
    """The frames a test says the link carried (as ports/packet_tap.PacketTap hands them over)."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, bool, bytes]] = []
        self.dropped, self.closed = 3, False
        self._lock = threading.Lock()

    def carry(self, outgoing: bool, f: bytes) -> None:
        with self._lock:
            self.frames.append((time.time(), outgoing, f))

    def read(self, timeout: float) -> list[tuple[float, bool, bytes]]:
        with self._lock:
            got, self.frames = self.frames, []
        if not got:
            threading.Event().wait(timeout)  # as the socket's poll: nothing came within it
        return got

    def close(self) -> None:
        self.closed = True


def test_frames_read_from_the_link_get_the_decision_observed_for_them(manager: SwitchManager) -> None:
    """The kernel fast path's capture of a link port: the frame from the link (whole), the decision
    from the observer (whose record may carry only its head), paired by direction, length and head."""
    from vswitch.control import capture as captures
    from vswitch.core.switch import EDIT_KEEP

    m = manager
    wire = _Wire()
    dp = m.datapath("cap")
    cap = captures.Capture("cap", "vm1", captures.CaptureRequest.parse(count=2), dp, lambda: True,
                           lambda *_: EDIT_KEEP, wire=wire)
    out = bytearray()
    reader = threading.Thread(target=lambda: [out.extend(c) for c in cap])
    reader.start()
    try:
        lonely = frame("b", "a", ethertype=0x0806)  # on the link, but no decision will be observed for it
        flooded = frame(BROADCAST, "a") + b"\x55" * 200  # longer than a kernel event's 128-byte head
        wire.carry(False, lonely)
        wire.carry(False, flooded)  # the packet taps see it before the switch decides
        m.port_object("cap", "vm1").inject(flooded)  # type: ignore[attr-defined]
        reader.join(timeout=30)
    finally:
        cap.close()
        reader.join(timeout=30)
    first, second = list(PcapNgReader(io.BytesIO(bytes(out))))
    assert bytes(first) == lonely and first.comment == b"in vm1: no decision seen (the switch's event lost)"
    assert bytes(second) == flooded, "the frame as the link carried it, whole"
    assert second.comment.startswith(b"in vm1 vlan 1: FLOOD_BROADCAST \xe2\x86\x92 ")
    assert wire.closed and cap.dropped == 3, "the link socket's drops are the capture's"


def test_a_tag_on_one_side_only_still_pairs_a_frame_with_its_decision() -> None:
    from vswitch.control.capture import match_key
    from vswitch.control.pcapng import OUTBOUND

    untagged = frame("b", "a") + b"\x01" * 300
    tagged = frame("b", "a", vlan=10) + b"\x01" * 300
    assert match_key(OUTBOUND, tagged, len(tagged)) == match_key(OUTBOUND, untagged[:128], len(untagged))
    assert match_key(OUTBOUND, untagged, len(untagged)) != match_key(OUTBOUND, untagged, len(untagged) + 1)
