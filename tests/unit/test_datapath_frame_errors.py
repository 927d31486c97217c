"""The datapath never dies of a frame, and drops what it must drop with a reason.

A real Datapath thread over MemoryPorts (no root): a frame that makes the per-frame code raise is
counted as DROP_INTERNAL_ERROR on its ingress port and the next good frame is still forwarded;
frames over the egress port's MTU are DROP_OVERSIZE and never written; a port's receive-side
drops land in the core's counters (what `stats` shows); netlink's link state takes a port out
of forwarding and back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from vswitch.core.reasons import Reason
from vswitch.core.switch import SwitchCore
from vswitch.datapath.loop import Datapath
from vswitch.ports.memory import MemoryPort
from vswitch.ports.offload import GSO_TCPV4, VNET_HDR

A, B = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
BCAST = b"\xff" * 6


def eth(dst: bytes, src: bytes, size: int = 60, etype: bytes = b"\x08\x00") -> bytes:
    return dst + src + etype + bytes(size - 14)


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


@pytest.fixture
def dp() -> Iterator[tuple[Datapath, dict[str, MemoryPort]]]:
    core = SwitchCore()
    d = Datapath("t", core)
    ports = {"v": MemoryPort("v", vnet_hdr_len=10), "p": MemoryPort("p"), "q": MemoryPort("q")}
    try:
        for name, port in ports.items():
            port.open()
            d.attach(name, port)
        d.start()
        yield d, ports
    finally:
        d.stop()


def drops(d: Datapath, pid: str) -> dict[Reason, int]:
    return d.call(lambda: dict(d.core.counters[pid].drops))


def test_gso_header_on_a_14_byte_frame_does_not_kill_the_datapath(dp) -> None:
    d, ports = dp
    crasher = VNET_HDR.pack(0, GSO_TCPV4, 0, 1448, 0, 0) + BCAST + A + b"\x08\x00"
    ports["v"].inject(crasher)
    good = VNET_HDR.pack(0, 0, 0, 0, 0, 0) + eth(BCAST, A)
    ports["v"].inject(good)
    wait_for(lambda: len(ports["p"].sent) >= 1, "the good frame after the crasher to be forwarded")
    assert ports["p"].sent == [good[10:]], "only the good frame reaches the plain port, header stripped"
    assert d._thread is not None and d._thread.is_alive(), "the datapath thread is alive"
    assert d.call(lambda: d.core.counters["p"].tx_frames) == 1


def test_an_exception_on_a_frame_is_counted_and_logged_once(dp, caplog) -> None:
    d, ports = dp

    def boom(*_a: object) -> None:
        raise RuntimeError("observer bug")

    d.call(lambda: d.frame_observers.append(boom))
    with caplog.at_level("ERROR", logger="vswitch.datapath.loop"):
        for i in range(3):
            ports["p"].inject(eth(BCAST, A, 60 + i))
        wait_for(lambda: drops(d, "p").get(Reason.DROP_INTERNAL_ERROR, 0) == 3, "3 internal-error drops")
    assert sum("internal error" in r.message for r in caplog.records) == 1, "one traceback a minute"
    assert any(r.exc_info for r in caplog.records)
    d.call(lambda: d.frame_observers.remove(boom))
    ports["p"].inject(eth(BCAST, B))
    wait_for(lambda: len(ports["q"].sent) >= 1, "a frame after the errors to be forwarded")


def test_frames_over_the_egress_mtu_are_dropped_as_oversize(dp) -> None:
    d, ports = dp
    d.set_link_state("q", True, 1500)
    ports["p"].inject(eth(BCAST, A, 1515))          # 1501 bytes of payload: over 1500
    ports["p"].inject(eth(BCAST, A, 1518, b"\x81\x00"))  # priority-tagged: popped to 1514 for q
    ports["p"].inject(eth(BCAST, A, 1514))
    wait_for(lambda: len(ports["v"].sent) >= 3, "three frames on the MTU-65535 vnet port")
    wait_for(lambda: len(ports["q"].sent) >= 2, "the two legal frames on the MTU-1500 port")
    assert [len(f) for f in ports["q"].sent] == [1514, 1514]
    assert drops(d, "q") == {Reason.DROP_OVERSIZE: 1}


def test_gso_super_frames_are_not_oversize_for_a_vnet_port(dp) -> None:
    d, ports = dp
    other = MemoryPort("w", vnet_hdr_len=10)
    other.open()
    d.attach("w", other)
    d.set_link_state("w", True, 1500)
    sup = VNET_HDR.pack(1, GSO_TCPV4, 54, 1448, 34, 16) + eth(BCAST, A, 9000)
    ports["v"].inject(sup)
    wait_for(lambda: len(other.sent) >= 1, "the super-frame on the other vnet port")
    assert other.sent == [sup]


def test_receive_drops_of_a_port_reach_the_core_counters(dp) -> None:
    d, ports = dp
    ports["p"].count_rx_drop(Reason.DROP_RUNT)
    assert drops(d, "p") == {Reason.DROP_RUNT: 1}
    port = d.detach("p")
    port.count_rx_drop(Reason.DROP_RUNT)  # detached: nobody counts, nothing raises


def test_link_state_takes_a_port_out_of_forwarding_and_back(dp) -> None:
    d, ports = dp
    d.set_link_state("q", False, 1400)
    st = d.port_state("q")
    assert not st["up"] and st["link_down"] and st["mtu"] == 1400
    ports["p"].inject(eth(BCAST, A))
    wait_for(lambda: len(ports["v"].sent) >= 1, "the flood on v")
    assert ports["q"].sent == [], "a port netlink calls down is out of every flood"
    d.set_link_state("q", True, 1500)
    assert d.port_state("q")["up"]
    ports["p"].inject(eth(BCAST, A))
    wait_for(lambda: len(ports["q"].sent) >= 1, "the flood on q once it is up")


def test_a_queued_frame_meeting_a_down_link_is_judged_as_a_direct_send_would_be(dp) -> None:
    # the queue's drain and the direct send share one judgement of write errors: a link found down
    # takes the port's MAC entries with it (they would black-hole traffic), whichever path wrote
    d, ports = dp
    ports["q"].inject(eth(A, B))
    wait_for(lambda: d.call(lambda: d.core.fdb.get(B, 1) is not None), "B learned on q")

    def drain_into_a_down_link() -> tuple[bool, dict[Reason, int], bool]:
        ps = d._ports["q"]
        ps.queue.append(eth(B, A))
        ports["q"].down = True
        d._drain_queue(ps)
        return ps.link_down, dict(d.core.counters["q"].drops), d.core.fdb.get(B, 1) is None

    link_down, q_drops, forgotten = d.call(drain_into_a_down_link)
    assert q_drops == {Reason.DROP_LINK_DOWN: 1}
    assert link_down and forgotten, "a down link found by the queue's drain must flush the port's MACs"
