"""TCP works between every pair of port kinds, in both directions (ping alone is not enough).

Kinds: `tap` (virtio-net header + TSO), `link` (AF_PACKET on a veth, with a vnet header),
`qemu-stream` and `qemu-dgram` (a stand-in QEMU without offloads). Between a TSO-capable port and a
QEMU socket the switch must complete checksums and segment super-frames itself. Each pair runs on
both datapaths: `auto` (link ↔ link on the kernel fast path; a link first, then another kind, moves
the switch to Python live) and `python`.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Callable

import pytest
from fakeqemu import FakeQemu
from switchlab import address_in, delete_link, move_and_address, veth_pair

import netns as ns_helpers
from vswitch.control.manager import SwitchManager
from vswitch.control.model import DatapathMode, PortKind, PortSpec, SwitchSpec, SwitchType
from vswitch.datapath.fastpath import KERNEL_LABEL
from vswitch.datapath.kernel import unavailable_reason

pytestmark = pytest.mark.root

KINDS = ["tap", "link", "qemu-stream", "qemu-dgram"]
TCP_BYTES = 4_000_000


@pytest.fixture(params=[DatapathMode.AUTO, DatapathMode.PYTHON])
def attach(netns, request):
    """attach(kind, name, cidr) → the namespace of a new endpoint plugged into the switch by `kind`;
    `attach.datapath()` says which datapath the switch runs on."""
    m = SwitchManager()
    tmp = tempfile.TemporaryDirectory(prefix="vsm-")
    sw = ns_helpers.unique_name("sm")
    m.create_switch(SwitchSpec(sw, SwitchType.PRIVATE, datapath=request.param))
    undo: list[Callable[[], None]] = []

    def plug(kind: str, name: str, cidr: str) -> str:
        ns = netns(name)
        dev = ns_helpers.unique_name(name)
        if kind == "tap":
            m.add_port(sw, PortSpec(name, PortKind.TAP, dev))
            move_and_address(dev, ns, cidr)
        elif kind == "link":
            host_end = ns_helpers.unique_name("h" + name)
            veth_pair(host_end, dev, None, ns)
            undo.append(lambda: delete_link(host_end))
            ns_helpers.run(None, ["ip", "link", "set", host_end, "up"])
            m.add_port(sw, PortSpec(name, PortKind.LINK, host_end))
            address_in(ns, dev, cidr)
        else:
            path = os.path.join(tmp.name, f"{name}.sock")
            m.add_port(sw, PortSpec(name, PortKind(kind), path))
            guest = FakeQemu(dev, path, dgram=kind == "qemu-dgram").connect()
            undo.append(guest.close)
            move_and_address(dev, ns, cidr)
        return ns

    plug.datapath = lambda: m.get_switch(sw).datapath  # type: ignore[attr-defined]
    plug.mode = request.param  # type: ignore[attr-defined]
    try:
        yield plug
    finally:
        for fn in reversed(undo):
            fn()
        m.shutdown()
        tmp.cleanup()


@pytest.mark.parametrize("kind_a,kind_b", list(itertools.combinations_with_replacement(KINDS, 2)))
def test_tcp_between_port_kinds(attach, kind_a, kind_b):
    a = attach(kind_a, "pa", "10.81.0.1/24")
    b = attach(kind_b, "pb", "10.81.0.2/24")
    assert ns_helpers.ping(a, "10.81.0.2"), f"{kind_a} → {kind_b}: ping must work"
    on_kernel = attach.mode == DatapathMode.AUTO and kind_a == kind_b == "link" and unavailable_reason() is None
    assert (attach.datapath() == KERNEL_LABEL) == on_kernel, attach.datapath()
    # every byte, both ways (super-frames one way, segments the other); no rate floor
    ns_helpers.tcp_transfer(a, b, "10.81.0.2", TCP_BYTES)
    ns_helpers.tcp_transfer(b, a, "10.81.0.1", TCP_BYTES)
