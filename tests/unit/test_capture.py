"""`SwitchManager.capture` (control/capture.py) on memory ports: pcapng with one interface block for
the port, each packet the frame as it crossed the port with the decision as its comment, bounded by
count, filtered by libpcap; parameters refused naming what is wrong, before any frame is observed."""

from __future__ import annotations

import io
import threading
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
