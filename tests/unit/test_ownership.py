"""One owner per target (control/ownership.py) and socket-target normalisation (control/model.py). Pure."""

from __future__ import annotations

import pytest

from vswitch.control import ownership
from vswitch.control.model import Conflict, InvalidRequest, PortKind, PortSpec, normalise_socket_path


@pytest.mark.parametrize(("given", "stored"), [
    ("/run/vm1.sock", "/run/vm1.sock"),
    ("/run//vswitch///vm1.sock", "/run/vswitch/vm1.sock"),
    ("//run/vm1.sock", "/run/vm1.sock"),
    ("/run/./vm1.sock", "/run/vm1.sock"),
    ("/run/vm1.sock/", "/run/vm1.sock"),
    ("vm1", "vm1"),                         # a plain name: the manager places it
])
def test_socket_paths_are_normalised(given: str, stored: str) -> None:
    assert normalise_socket_path(given) == stored
    assert PortSpec("p", PortKind.QEMU_STREAM, given).target == stored, "the spec stores the normal form"


@pytest.mark.parametrize(("given", "needle"), [
    ("/run/vswitch/../lib/x.sock", "'..' component"),
    ("/run/..", "'..' component"),
    ("run/vm1.sock", "must be absolute"),
    ("/", "names no file"),
    ("//", "names no file"),
    ("/" + "a" * 120, "too long"),
    ("..", "'..'"),
])
def test_bad_socket_paths_are_refused_not_rewritten(given: str, needle: str) -> None:
    for kind in (PortKind.QEMU_STREAM, PortKind.QEMU_DGRAM):
        with pytest.raises(InvalidRequest, match=needle):
            PortSpec("p", kind, given)


@pytest.mark.parametrize("kind", [PortKind.TAP, PortKind.LINK])
def test_loopback_is_never_a_port(kind: PortKind) -> None:
    with pytest.raises(InvalidRequest, match="loopback"):
        PortSpec("p", kind, "lo")


def _index() -> ownership.OwnerIndex:
    idx = ownership.OwnerIndex()
    idx.add_switch("A", "eth1", "vs-A")
    idx.add_port("A", PortSpec("vm1", PortKind.TAP, "tap1"))
    idx.add_port("B", PortSpec("s1", PortKind.QEMU_STREAM, "/run/s1.sock"))
    idx.add_port("B", PortSpec("d1", PortKind.QEMU_DGRAM, "/run/d1.sock"))
    return idx


@pytest.mark.parametrize(("spec", "owner"), [
    (PortSpec("x", PortKind.LINK, "tap1"), "tap port 'vm1' of switch 'A'"),   # across kinds
    (PortSpec("x", PortKind.TAP, "tap1"), "tap port 'vm1' of switch 'A'"),
    (PortSpec("x", PortKind.LINK, "eth1"), "the uplink of switch 'A'"),
    (PortSpec("x", PortKind.TAP, "vs-A"), "the host vNIC of switch 'A'"),
    (PortSpec("x", PortKind.QEMU_DGRAM, "/run/s1.sock"), "qemu-stream port 's1' of switch 'B'"),
    (PortSpec("x", PortKind.QEMU_STREAM, "/run/d1.sock.qemu"), "qemu-dgram port 'd1' of switch 'B'"),
    (PortSpec("x", PortKind.QEMU_DGRAM, "/run/d1.sock"), "qemu-dgram port 'd1' of switch 'B'"),
])
def test_a_held_target_is_refused_naming_its_owner(spec: PortSpec, owner: str) -> None:
    with pytest.raises(Conflict) as exc:
        _index().refuse_taken(ownership.port_targets(spec), "port x of switch C")
    assert exc.value.status == 409
    assert owner in exc.value.message and spec.target in exc.value.message and "port x of switch C" in exc.value.message


def test_a_dgram_port_holds_its_peer_path() -> None:
    """QEMU binds <path>.qemu and the port sends there: a stream port on it would get the frames."""
    idx = ownership.OwnerIndex()
    idx.add_port("B", PortSpec("s1", PortKind.QEMU_STREAM, "/run/x.sock.qemu"))
    with pytest.raises(Conflict, match="qemu-stream port 's1'"):
        idx.refuse_taken(ownership.port_targets(PortSpec("d", PortKind.QEMU_DGRAM, "/run/x.sock")), "d")


def test_free_targets_pass() -> None:
    idx = _index()
    for spec in (PortSpec("x", PortKind.LINK, "tap2"), PortSpec("x", PortKind.QEMU_STREAM, "/run/s2.sock"),
                 PortSpec("x", PortKind.MEMORY, "tap1")):   # memory ids are a namespace of their own
        idx.refuse_taken(ownership.port_targets(spec), "x")
    assert idx.owner((ownership.LINK, "eth1")) == ownership.Owner("A", "uplink")


@pytest.mark.parametrize(("ifname", "error", "needle"), [
    ("vs-lab", Conflict, "host vNIC"),
])
def test_reserved_links(ifname: str, error: type[Exception], needle: str) -> None:
    with pytest.raises(error, match=needle):
        ownership.refuse_reserved_link(ifname, "the uplink of switch 'x'")
    ownership.refuse_reserved_link("eth0", "the uplink of switch 'x'")


@pytest.mark.parametrize(("path", "refused"), [
    ("/run/vswitch/vswitchd.sock", True),
    ("/var/lib/vswitch", True),
    ("/var/lib/vswitch/config.sqlite", True),
    ("/var/lib/vswitch/sub/x.sock", True),
    ("/var/lib/vswitch2/x.sock", False),            # a shared prefix is not "under"
    ("/run/vswitch/vswitchd.sock2", False),
    ("/run/vswitch/ports/vm1.sock", False),
])
def test_reserved_paths(path: str, refused: bool) -> None:
    reserved = ["/run/vswitch/vswitchd.sock", "/var/lib/vswitch/"]
    if refused:
        with pytest.raises(Conflict, match="reserved for vswitchd itself"):
            ownership.refuse_reserved_path(path, reserved, "port p")
    else:
        ownership.refuse_reserved_path(path, reserved, "port p")


def test_plain_names_resolve_under_the_port_socket_dir() -> None:
    assert ownership.resolve_socket_name("vm2", "/run/vswitch/ports") == "/run/vswitch/ports/vm2.sock"
    assert ownership.resolve_socket_name("/srv/vm2.sock", "/run/vswitch/ports") == "/srv/vm2.sock"


def test_a_vxlan_port_holds_its_udp_port() -> None:
    """Two VXLAN ports on one UDP port would share datagrams they cannot tell apart: refused, naming
    the owner; another --dstport is free."""
    idx = ownership.OwnerIndex()
    idx.add_port("A", PortSpec("vx", PortKind.VXLAN, "10.0.0.2", vni=100))
    other = PortSpec("vy", PortKind.VXLAN, "10.0.0.3", vni=200, local_ip="10.0.0.1")
    with pytest.raises(Conflict, match="UDP port 4789 is already vxlan port 'vx' of switch 'A'"):
        idx.refuse_taken(ownership.port_targets(other), "vy")
    idx.refuse_taken(ownership.port_targets(PortSpec("vy", PortKind.VXLAN, "10.0.0.3", vni=200, dstport=4790)), "vy")
