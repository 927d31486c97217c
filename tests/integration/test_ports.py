"""Port back-ends against real kernel devices (root): TAP and AF_PACKET on veth, in fresh namespaces.

The test plays the switch: it writes frames crafted with scapy through a port and expects the
namespace's kernel to answer (ARP, ICMP echo); it sends 802.1Q-tagged frames from inside a
namespace and expects them back from a link port with the tag in place; and it forwards a real TCP
transfer between two namespaces through two ports (with and without vnet headers on one side),
checking the bytes end to end. Every link is uniquely named and removed even on failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import select
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from pyroute2 import IPRoute, NetNS
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.packet import Packet, Raw

from netns import popen, run, unique_name
from vswitch.control.netlink import Netlink
from vswitch.ports import EgressDropped, FrameRejected, LinkDown, LinkPort, Port, TapPort, adapt

pytestmark = pytest.mark.root

OUR_MAC = "02:00:00:77:00:02"
OUR_IP = "10.77.0.2"
THEIR_IP = "10.77.0.1"


# -- helpers ---------------------------------------------------------------------------------


def link_exists(ifname: str) -> bool:
    return os.path.exists(f"/sys/class/net/{ifname}")


@pytest.fixture
def root_links() -> Iterator[list[str]]:
    """Names of links created in the root namespace; deleted at teardown if still there."""
    names: list[str] = []
    try:
        yield names
    finally:
        with IPRoute() as ipr:
            for name in reversed(names):
                for idx in ipr.link_lookup(ifname=name):
                    with contextlib.suppress(Exception):
                        ipr.link("del", index=idx)


def configure_in_ns(ns: str, ifname: str, cidr: str) -> None:
    """Give ``ifname`` (already in ``ns``) the address ``cidr`` and bring it up."""
    addr, plen = cidr.split("/")
    with NetNS(ns) as n:
        idx = n.link_lookup(ifname=ifname)[0]
        n.addr("add", index=idx, address=addr, prefixlen=int(plen))
        n.link("set", index=idx, state="up")


def move_and_configure(ifname: str, ns: str, cidr: str) -> None:
    """Move ``ifname`` into ``ns``, give it ``cidr`` and bring it up."""
    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0], net_ns_fd=ns)
    configure_in_ns(ns, ifname, cidr)


def make_veth(root_links: list[str]) -> tuple[str, str]:
    a, b = unique_name("va"), unique_name("vb")
    with Netlink() as nl:
        nl.create_veth(a, b)
        root_links.append(a)
        nl.set_up(a, True)
    return a, b


def send_frame(port: Port, pkt: Packet) -> None:
    assert port.write(bytes(port.vnet_hdr_len) + bytes(pkt))


def wait_for(port: Port, match: Callable[[Ether], bool], timeout: float = 5.0) -> tuple[bytes, Ether]:
    """Receive until a frame satisfies ``match``; returns (raw frame without vnet header, parsed)."""
    deadline = time.monotonic() + timeout
    hdr = port.vnet_hdr_len
    while time.monotonic() < deadline:
        ready, _, _ = select.select([port.fileno(), *port.extra_fds()], [], [], 0.2)
        for fd in ready:
            if fd != port.fileno():
                port.service(fd)  # e.g. a link port's VLAN-tagged frames wait on their own socket
        while (buf := port.recv()) is not None:
            raw = bytes(buf[hdr:])
            pkt = Ether(raw)
            assert pkt.src != OUR_MAC, "the port never reads back its own transmissions"
            if match(pkt):
                return raw, pkt
    raise AssertionError("expected frame did not arrive")


def arp_request() -> Packet:
    return Ether(dst="ff:ff:ff:ff:ff:ff", src=OUR_MAC) / ARP(op=1, hwsrc=OUR_MAC, psrc=OUR_IP, pdst=THEIR_IP)


def arp_then_ping(port: Port) -> None:
    # Resend: right after "up" the link may still drop frames until its carrier settles.
    for attempt in range(10):
        send_frame(port, arp_request())
        try:
            _, reply = wait_for(port, lambda p: ARP in p and p[ARP].op == 2 and p[ARP].psrc == THEIR_IP,
                                timeout=0.5)
            break
        except AssertionError:
            if attempt == 9:
                raise
    their_mac = reply[ARP].hwsrc
    echo = (Ether(dst=their_mac, src=OUR_MAC) / IP(src=OUR_IP, dst=THEIR_IP)
            / ICMP(type=8, id=0x4242, seq=1) / Raw(b"vswitch-port-test" * 10))
    send_frame(port, echo)
    _, pong = wait_for(port, lambda p: ICMP in p and p[ICMP].type == 0 and p[ICMP].id == 0x4242)
    assert pong[Raw].load == b"vswitch-port-test" * 10
    assert pong.dst == OUR_MAC


# -- TAP -------------------------------------------------------------------------------------


def test_tap_port_talks_to_a_namespace(netns) -> None:
    ns = netns("tap")
    ifname = unique_name("tap")
    port = TapPort("host", ifname)
    port.open()
    try:
        assert port.ifname == ifname and port.vnet_hdr_len == 10 and link_exists(ifname)
        with IPRoute() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname=ifname)[0], net_ns_fd=ns)
        with pytest.raises(LinkDown):
            send_frame(port, arp_request())  # down in its new namespace: EIO, not death
        configure_in_ns(ns, ifname, f"{THEIR_IP}/24")
        arp_then_ping(port)
        features = run(ns, ["ethtool", "-k", ifname], check=False).stdout
        if features:
            assert "tcp-segmentation-offload: on" in features, "TUNSETOFFLOAD advertised TSO"
    finally:
        port.close()
    assert run(ns, ["ip", "link", "show", ifname], check=False).returncode != 0, \
        "a non-persistent TAP vanishes with its descriptor"



def test_tap_persistence(root_links: list[str]) -> None:
    ifname = unique_name("tp")
    root_links.append(ifname)
    port = TapPort("p", ifname, persist=True)
    port.open()
    port.close()
    assert link_exists(ifname), "a persistent TAP survives its descriptor (daemon crash)"
    again = TapPort("p", ifname)
    again.open()  # attach to the existing TAP
    assert again.ifname == ifname
    again.close(remove=True)
    assert not link_exists(ifname), "close(remove=True) clears persistence"

    port = TapPort("p", ifname, persist=True)
    port.open()
    port.close()
    port.destroy()
    assert not link_exists(ifname), "destroy() removes a persistent TAP left behind"
    port.destroy()  # idempotent, and never creates one

    plain = TapPort("q", ifname)
    plain.open()
    assert link_exists(ifname)
    plain.close()
    plain.close()
    assert not link_exists(ifname)


# -- AF_PACKET -------------------------------------------------------------------------------


SEND_RAW = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    s.bind((sys.argv[1], 0))
    s.send(bytes.fromhex(sys.argv[2]))
""")


@pytest.mark.parametrize("vnet", [True, False], ids=["vnet", "plain"])
def test_link_port_on_veth(netns, root_links: list[str], vnet: bool) -> None:
    ns = netns("lnk")
    a, b = make_veth(root_links)
    move_and_configure(b, ns, f"{THEIR_IP}/24")
    port = LinkPort("uplink", a, vnet=vnet)
    port.open()
    try:
        assert port.vnet_hdr_len == (10 if vnet else 0)
        arp_then_ping(port)

        with NetNS(ns) as n:
            their_mac = n.get_links(ifname=b)[0].get_attr("IFLA_ADDRESS")
        for tpid, vid, prio in ((0x8100, 100, 5), (0x88A8, 200, 0), (0x8100, 0, 3)):
            marker = f"vlan-{tpid:x}-{vid}".encode()
            inner = IP(src=THEIR_IP, dst="10.77.0.9") / UDP(sport=1, dport=2) / Raw(marker * 4)
            tagged = bytes(Ether(dst="02:00:00:77:00:99", src=their_mac, type=tpid)
                           / Dot1Q(vlan=vid, prio=prio) / inner)
            run(ns, [sys.executable, "-c", SEND_RAW, b, tagged.hex()])
            raw, _ = wait_for(port, lambda p, m=marker: Raw in p and m in bytes(p[Raw].load))
            assert raw == tagged, f"tag {tpid:#x}/{vid} re-inserted exactly where it was"
        assert port.rx_vlan_reinserted == 3, "only the tagged frames took the tagged path"
        # One more tagged frame, sent after the others arrived: once it is in, a second copy of any
        # earlier one (the kernel hands a frame to both sockets as it receives it) is queued too.
        extra: list[bytes] = []

        def last_or_extra(p: Ether) -> bool:
            if Raw in p and b"vlan-last" in bytes(p[Raw].load):
                return True
            if b"vlan-" in bytes(p):
                extra.append(bytes(p))
            return False
        last = bytes(Ether(dst="02:00:00:77:00:99", src=their_mac, type=0x8100) / Dot1Q(vlan=100)
                     / IP(src=THEIR_IP, dst="10.77.0.9") / UDP(sport=1, dport=2) / Raw(b"vlan-last" * 4))
        run(ns, [sys.executable, "-c", SEND_RAW, b, last.hex()])
        wait_for(port, last_or_extra)
        for fd in port.extra_fds():
            port.service(fd)
        while (buf := port.recv()) is not None:
            if b"vlan-" in bytes(buf):
                extra.append(bytes(buf))
        assert not extra, f"each tagged frame arrives once, not on both sockets: {len(extra)} copies more"

        with pytest.raises(FrameRejected):
            port.write(bytes(port.vnet_hdr_len) + b"\x01" * 5)  # under 14 bytes: EINVAL
        with pytest.raises(FrameRejected):
            port.write(bytes(port.vnet_hdr_len) + bytes(Ether(src=OUR_MAC) / Raw(bytes(3000))))
        arp_then_ping(port)  # still usable after rejected frames
    finally:
        port.close()


# -- TCP through two ports -------------------------------------------------------------------


SERVER = textwrap.dedent("""
    import hashlib, socket, sys
    ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((sys.argv[1], 5555)); ls.listen(1); ls.settimeout(20)
    c, _ = ls.accept(); c.settimeout(20)
    h = hashlib.sha256()
    while chunk := c.recv(1 << 16):
        h.update(chunk)
    back = bytes(range(256)) * 16384
    c.sendall(back); c.close()
    print(h.hexdigest(), hashlib.sha256(back).hexdigest())
""")

CLIENT = textwrap.dedent("""
    import hashlib, socket, sys, time
    data = bytes((i * 31) & 0xff for i in range(1 << 16)) * 64
    for _ in range(600):  # up to a minute for the server to listen
        try:
            c = socket.create_connection((sys.argv[1], 5555), timeout=20); break
        except OSError:
            time.sleep(0.1)
    c.sendall(data); c.shutdown(socket.SHUT_WR)
    h = hashlib.sha256()
    while chunk := c.recv(1 << 16):
        h.update(chunk)
    print(hashlib.sha256(data).hexdigest(), h.hexdigest())
""")


class Forwarder(threading.Thread):
    """A two-port switch in miniature: drain each ready port, convert formats, write to the other."""

    def __init__(self, p1: Port, p2: Port) -> None:
        super().__init__(daemon=True)
        self.ports = {p1.fileno(): (p1, p2), p2.fileno(): (p2, p1)}
        self.stop = threading.Event()
        self.largest = {p1.name: 0, p2.name: 0}
        self.segmented = 0
        self.errors: list[BaseException] = []

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                ready, _, _ = select.select(list(self.ports), [], [], 0.1)
                for fd in ready:
                    src, dst = self.ports[fd]
                    for _ in range(64):
                        buf = src.recv()
                        if buf is None:
                            break
                        self.largest[src.name] = max(self.largest[src.name], len(buf) - src.vnet_hdr_len)
                        out = adapt(buf, src.vnet_hdr_len, dst.vnet_hdr_len)
                        if len(out) > 1:
                            self.segmented += 1
                        for f in out:
                            self._write(dst, f)
        except BaseException as e:  # surfaced by the test
            self.errors.append(e)

    @staticmethod
    def _write(dst: Port, f) -> None:
        for _ in range(2000):
            try:
                if dst.write(f):
                    return
            except LinkDown:
                return
            time.sleep(0.0005)


def test_link_port_on_a_shaped_link_reports_drops_not_would_block(root_links: list[str]) -> None:
    # A tbf qdisc that is full drops the frame and send() says ENOBUFS; the socket stays writable.
    # Reporting that as "would block" made the datapath retry on EPOLLOUT forever (100% CPU).
    a, b = make_veth(root_links)
    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname=b)[0], state="up")
        ipr.tc("add", "tbf", index=ipr.link_lookup(ifname=a)[0], handle="1:", rate="8kbit",
               burst=4096, latency="20ms")
    port = LinkPort("slow", a, vnet=False)
    port.open()
    try:
        frame = bytes(Ether(dst="02:00:00:77:00:09", src=OUR_MAC) / IP(src=OUR_IP, dst=THEIR_IP)
                      / UDP(dport=9) / Raw(bytes(1000)))
        sent = dropped = 0
        for _ in range(100):
            try:
                assert port.write(frame), "a dropping qdisc is not a full socket buffer"
                sent += 1
            except EgressDropped as exc:
                assert a in str(exc)
                dropped += 1
        assert sent >= 1, "the burst allowance lets the first frames through"
        assert dropped >= 80, f"8 kbit/s cannot take 100 kB at once: only {dropped} drops reported"
    finally:
        port.close()


@pytest.mark.parametrize("tap_vnet", [True, False], ids=["vnet-both", "software-gso"])
def test_tcp_through_tap_and_link_ports(netns, root_links: list[str], tap_vnet: bool) -> None:
    ns1, ns2 = netns("tcp1"), netns("tcp2")
    tap_name = unique_name("tt")
    tap = TapPort("vm", tap_name, vnet=tap_vnet)
    tap.open()
    a, b = make_veth(root_links)
    link = LinkPort("uplink", a, vnet=True)
    link.open()
    fwd = Forwarder(tap, link)
    server = None
    try:
        with IPRoute() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname=tap_name)[0], net_ns_fd=ns1)
        configure_in_ns(ns1, tap_name, "10.78.0.1/24")
        move_and_configure(b, ns2, "10.78.0.2/24")
        fwd.start()
        server = popen(ns1, [sys.executable, "-c", SERVER, "10.78.0.1"], stdout=-1, stderr=-1)
        client = run(ns2, [sys.executable, "-c", CLIENT, "10.78.0.1"], timeout=40)
        out, err = server.communicate(timeout=20)
        assert server.returncode == 0, err
        sent_up, got_back = client.stdout.split()
        got_up, sent_back = out.split()
        assert got_up == sent_up, "4 MiB from the veth side arrive byte-exact"
        assert got_back == sent_back, "4 MiB from the TAP side arrive byte-exact"
        assert sent_up == hashlib.sha256(bytes((i * 31) & 0xFF for i in range(1 << 16)) * 64).hexdigest()
        assert fwd.largest["uplink"] > 1514, "the veth hands over GSO super-frames with vnet headers"
        if tap_vnet:
            assert fwd.largest["vm"] > 1514, "TUNSETOFFLOAD makes the TAP hand over super-frames"
        else:
            assert fwd.segmented > 0, "super-frames for the plain TAP were segmented in software"
            assert fwd.largest["vm"] <= 1514
        assert not fwd.errors, fwd.errors
    finally:
        fwd.stop.set()
        if fwd.is_alive():
            fwd.join(2)
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
        link.close()
        tap.close()
