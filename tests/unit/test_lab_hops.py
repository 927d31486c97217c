"""lab trace's pure part: synthetic capture records + switch events → ordered, merged, worded hops."""

from __future__ import annotations

from dataclasses import dataclass, replace

from vswitch.control.model import FrameEvent, IcmpEcho
from vswitch.lab.capture import parse_arp
from vswitch.lab.hops import ArpRecord, CaptureRecord, SwitchPortMap, build_arp, build_echoes

ID = 4242
HOST_MAC, SRV_MAC = "02:00:00:00:00:0a", "02:00:00:00:00:01"


@dataclass(frozen=True)
class P:
    node: str
    netns: str
    ifname: str
    label: str
    kind: str


POINTS = [P("host", "h", "vs-ext", "vs-ext (host vNIC)", "host-vnic"),
          P("host", "h", "eth1", "eth1 (physical NIC)", "physical-nic"),
          P("vm1", "v", "eth0", "eth0 (VM NIC)", "vm-nic"),
          P("psw", "p", "p1", "psw port to host", "physical-switch-port"),
          P("psw", "p", "p2", "psw port to server", "physical-switch-port"),
          P("server", "s", "eth0", "eth0 (server NIC)", "server-nic")]
PORTS = [SwitchPortMap("ext", "host", {"host": "vs-ext", "uplink": "eth1", "vm1": "eth0"})]


def rec(t: float, ifname: str, node: str, direction: str, icmp_type: int = 8, seq: int = 1, icmp_id: int = ID,
        pkttype: str | None = None) -> CaptureRecord:
    p = next(p for p in POINTS if p.ifname == ifname and p.node == node)
    src, dst = (HOST_MAC, SRV_MAC) if icmp_type == 8 else (SRV_MAC, HOST_MAC)
    return CaptureRecord(t, node, p.netns, ifname, p.label, p.kind, direction,
                         pkttype or ("outgoing" if direction == "out" else "host"), src, dst,
                         "10.0.0.10", "10.0.0.1", icmp_type, icmp_id, seq)


def ev(t: float, in_port: str, out_ports: list[str], reason: str, icmp_type: int = 8, seq: int = 1) -> FrameEvent:
    src, dst = (HOST_MAC, SRV_MAC) if icmp_type == 8 else (SRV_MAC, HOST_MAC)
    return FrameEvent(t=t, switch="ext", in_port=in_port, src=src, dst=dst, vid=None, vlan=1, ethertype=0x0800,
                      length=98, reason=reason, out_ports=out_ports, icmp=IcmpEcho(icmp_type, ID, seq))


def test_hops_are_in_time_order_request_before_reply_whatever_order_they_arrive_in() -> None:
    records = [
        rec(1.006, "eth0", "server", "in"),
        rec(1.000, "vs-ext", "host", "out"),
        rec(1.004, "p2", "psw", "out"), rec(1.003, "p1", "psw", "in"),
        rec(1.002, "eth1", "host", "out"),
        rec(1.010, "eth0", "server", "out", 0), rec(1.011, "p2", "psw", "in", 0), rec(1.012, "p1", "psw", "out", 0),
        rec(1.013, "eth1", "host", "in", 0), rec(1.020, "vs-ext", "host", "in", 0),
        rec(1.001, "vs-ext", "host", "out", icmp_id=ID + 1),  # somebody else's ping: ignored
    ]
    events = [ev(1.015, "uplink", ["host"], "FORWARD_LEARNED", 0), ev(1.001, "host", ["uplink"], "FORWARD_LEARNED")]
    (echo,) = build_echoes(records, events, icmp_id=ID, seqs=[1], ports=PORTS, points=POINTS, watched=["ext"])
    texts = [h["text"] for h in echo["request"] + echo["reply"]]
    assert texts == [
        "host stack → vs-ext (host vNIC): echo request sent",
        "vs-ext → switch ext port host",
        "switch ext (python): known unicast → port uplink (FORWARD_LEARNED)",
        "switch ext port uplink → eth1 (physical NIC): sent on the wire",
        "physical switch psw: in port p1 → out port p2",
        "eth0 (server NIC) → server stack: echo request received",
        "server stack → eth0 (server NIC): echo reply sent",
        "physical switch psw: in port p2 → out port p1",
        "wire → eth1 (physical NIC): arrived",
        "eth1 → switch ext port uplink",
        "switch ext (python): known unicast → port host (FORWARD_LEARNED)",
        "vs-ext (host vNIC) → host stack: echo reply received",
    ]
    assert [h["n"] for h in echo["request"] + echo["reply"]] == list(range(1, 13))
    assert echo["request"][0]["dt_ms"] == 0.0 and echo["reply"][-1]["dt_ms"] == 20.0
    assert [p["link"] for p in echo["not_seen_at"]] == ["eth0"] and echo["not_seen_at"][0]["node"] == "vm1"
    assert echo["switches_without_decision"] == []


def test_a_flood_names_every_out_port_and_the_copy_that_was_not_for_its_receiver() -> None:
    p3 = CaptureRecord(1.0052, "psw", "p", "p3", "psw port to x", "physical-switch-port", "out", "outgoing",
                       HOST_MAC, SRV_MAC, "10.0.0.10", "10.0.0.1", 8, ID, 1)
    records = [rec(1.0, "vs-ext", "host", "out"), rec(1.002, "eth1", "host", "out"),
               rec(1.003, "eth0", "vm1", "in", pkttype="otherhost"),
               rec(1.004, "p1", "psw", "in"), rec(1.005, "p2", "psw", "out"), p3]
    events = [ev(1.001, "host", ["uplink", "vm1"], "FLOOD_UNKNOWN")]
    (echo,) = build_echoes(records, events, icmp_id=ID, seqs=[1], ports=PORTS, points=POINTS)
    texts = [h["text"] for h in echo["request"]]
    assert "switch ext (python): unknown unicast → flooded to ports uplink, vm1 (FLOOD_UNKNOWN)" in texts
    assert "eth0 (VM NIC) on vm1: a flooded copy arrived, not addressed to vm1 (its stack drops it)" in texts
    assert "physical switch psw: in port p1 → flooded out ports p2, p3" in texts
    assert echo["reply"] == [] and not echo["reply_observed"]


def test_nothing_observed_is_said_and_repeated_paths_are_folded() -> None:
    records = [rec(1.0 + s, "vs-ext", "host", "out", seq=s) for s in (1, 2)] + \
              [rec(1.001 + s, "vs-ext", "host", "in", 0, seq=s) for s in (1, 2)]
    events = [e for s in (1, 2) for e in (ev(1.0005 + s, "host", [], "DROP_SAME_PORT", seq=s),)]
    echoes = build_echoes(records, events, icmp_id=ID, seqs=[1, 2, 3], ports=PORTS, points=POINTS,
                          watched=["ext"])
    assert echoes[0]["same_path_as"] is None and echoes[1]["same_path_as"] == 1
    assert "dropped" in echoes[0]["request"][2]["text"] and "DROP_SAME_PORT" in echoes[0]["request"][2]["text"]
    third = echoes[2]
    assert third["request"] == [] and third["reply"] == [] and third["same_path_as"] is None
    assert len(third["not_seen_at"]) == len(POINTS) and third["switches_without_decision"] == ["ext"]


def test_a_frame_from_a_qemu_guest_socket_port_says_so() -> None:
    ports = [SwitchPortMap("ext", "host", {"host": "vs-ext", "uplink": "eth1", "vm1": "/run/vswitch/labs/x/vm1.sock"})]
    events = [ev(1.0, "vm1", ["uplink"], "FORWARD_LEARNED")]
    (echo,) = build_echoes([], events, icmp_id=ID, seqs=[1], ports=ports, points=POINTS, watched=["ext"])
    texts = [h["text"] for h in echo["request"]]
    assert texts[0] == "frame in at switch ext port vm1 (from the QEMU guest on socket /run/vswitch/labs/x/vm1.sock)"
    assert texts[1] == "switch ext (python): known unicast → port uplink (FORWARD_LEARNED)"


def test_a_decision_of_the_kernel_fast_path_says_which_path_decided() -> None:
    e = ev(1.0, "host", ["uplink"], "FORWARD_LEARNED")
    kernel = replace(e, path="kernel fast path")
    (echo,) = build_echoes([], [kernel], icmp_id=ID, seqs=[1], ports=PORTS, points=POINTS, watched=["ext"])
    decide = echo["request"][1]
    assert decide["text"] == "switch ext (kernel fast path): known unicast → port uplink (FORWARD_LEARNED)"
    assert decide["path"] == "kernel fast path"


def test_hops_are_numbered_in_time_order_across_request_reply_and_switches_whatever_order_they_arrive_in() -> None:
    """The request's flooded copy reaches vm1 after the reply has left the server, and a second switch
    decides too: numbers follow time, not request-then-reply, nor the order captures/watches delivered."""
    ports = PORTS + [SwitchPortMap("core", "host", {"a": "eth9", "b": "eth8"})]
    other = FrameEvent(t=1.0025, switch="core", in_port="a", src=HOST_MAC, dst=SRV_MAC, vid=None, vlan=1,
                       ethertype=0x0800, length=98, reason="FORWARD_LEARNED", out_ports=["b"],
                       icmp=IcmpEcho(8, ID, 1))
    records = [rec(1.013, "eth1", "host", "in", 0),
               rec(1.012, "eth0", "vm1", "in", pkttype="otherhost"),   # the late flooded copy
               rec(1.010, "eth0", "server", "out", 0),
               rec(1.006, "eth0", "server", "in"),
               rec(1.002, "eth1", "host", "out"),
               rec(1.000, "vs-ext", "host", "out")]
    events = [ev(1.015, "uplink", ["host"], "FORWARD_LEARNED", 0), other,
              ev(1.001, "host", ["uplink", "vm1"], "FLOOD_UNKNOWN")]
    (echo,) = build_echoes(records, events, icmp_id=ID, seqs=[1], ports=ports, points=POINTS, watched=["ext"])
    by_number = sorted(echo["request"] + echo["reply"], key=lambda h: h["n"])
    assert [h["n"] for h in by_number] == list(range(1, 13))
    times = [h["t"] for h in by_number]
    assert times == sorted(times), f"hop numbers must follow time: {[(h['n'], h['t']) for h in by_number]}"
    assert echo["hops"] == by_number
    assert [(h["message"], h.get("switch") or h["node"]) for h in echo["hops"]] == [
        ("request", "host"), ("request", "ext"), ("request", "ext"), ("request", "host"),
        ("request", "core"), ("request", "core"), ("request", "server"), ("reply", "server"),
        ("request", "vm1"), ("reply", "host"), ("reply", "ext"), ("reply", "ext")]
    assert echo["hops"][-1]["dt_ms"] == 15.0


LAN = [SwitchPortMap("lan", "host", {"vma": "t0", "vmb": "t1", "vmc": "t2"},
                     {"vma": "access 10", "vmb": "access 10", "vmc": "access 20"})]
VMA_MAC, BCAST = "02:00:00:00:0a:01", "ff:ff:ff:ff:ff:ff"


def arp(t: float, node: str, direction: str, op: int = 1) -> ArpRecord:
    src, dst = (VMA_MAC, BCAST) if op == 1 else ("02:00:00:00:0c:01", VMA_MAC)
    return ArpRecord(t, node, node, "eth0", f"eth0 of {node}", "vm-nic", direction,
                     "outgoing" if direction == "out" else "broadcast", src, dst, op,
                     "10.2.0.1" if op == 1 else "10.2.0.3", "10.2.0.3" if op == 1 else "10.2.0.1")


def arp_ev(t: float, out_ports: list[str], reason: str = "FLOOD_BROADCAST", vlan: int | None = 10) -> FrameEvent:
    return FrameEvent(t=t, switch="lan", in_port="vma", src=VMA_MAC, dst=BCAST, vid=None, vlan=vlan,
                      ethertype=0x0806, length=42, reason=reason, out_ports=out_ports)


def test_an_unanswered_arp_request_says_which_switch_stopped_it_in_which_vlan() -> None:
    records = [arp(2.0, "vma", "out"), arp(1.0, "vma", "out"),   # the kernel's retry comes first in the list
               arp(1.0002, "vmb", "in")]
    events = [arp_ev(2.0001, ["vmb"]), arp_ev(1.0001, ["vmb"])]
    got = build_arp(records, events, src="vma", dst="vmc", dst_ip="10.2.0.3", ports=LAN, dst_port=("lan", "vmc"))
    assert got["requests_sent"] == 2 and not got["answered"]
    assert got["stopped"] == ("switch lan flooded the ARP request from vma — VLAN 10, no member port reaches vmc "
                              "in VLAN 20 (sent to port vmb)")
    assert [(h["n"], h["t"]) for h in got["hops"]] == [(1, 1.0), (2, 1.0001), (3, 1.0001), (4, 1.0002)], \
        "only the first request's journey, numbered in time order"
    alone = build_arp([arp(1.0, "vma", "out")], [arp_ev(1.0001, [])], src="vma", dst="vmc", dst_ip="10.2.0.3",
                      ports=LAN, dst_port=("lan", "vmc"))
    assert alone["stopped"] == ("switch lan dropped the ARP request from vma — VLAN 10, no member port reaches vmc "
                                "in VLAN 20")
    ingress = build_arp([arp(1.0, "vma", "out")], [arp_ev(1.0001, [], "DROP_VLAN_INGRESS", None)], src="vma",
                        dst="vmc", dst_ip="10.2.0.3", ports=LAN, dst_port=("lan", "vmc"))
    assert ingress["stopped"] == ("switch lan dropped the ARP request from vma — VLAN not admitted on the ingress "
                                  "port (DROP_VLAN_INGRESS)")
    answered = build_arp([arp(1.0, "vma", "out"), arp(1.001, "vma", "in", op=2)], [arp_ev(1.0001, ["vmc"])],
                         src="vma", dst="vmc", dst_ip="10.2.0.3", ports=LAN, dst_port=("lan", "vmc"))
    assert answered["answered"] and answered["stopped"] is None
    assert [h["message"] for h in answered["hops"]] == ["request", "request", "request", "reply"]


def test_capture_reads_an_arp_request_and_nothing_else() -> None:
    frame = (bytes.fromhex("ffffffffffff" "020000000a01" "0806" "0001" "0800" "06" "04" "0001" "020000000a01")
             + bytes([10, 2, 0, 1]) + bytes(6) + bytes([10, 2, 0, 3]) + bytes(18))
    assert parse_arp(frame) == ("02:00:00:00:0a:01", "ff:ff:ff:ff:ff:ff", 1, "10.2.0.1", "10.2.0.3")
    assert parse_arp(frame[:41]) is None, "cut short"
    assert parse_arp(frame[:12] + b"\x08\x00" + frame[14:]) is None, "not ARP"
