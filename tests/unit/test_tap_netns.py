"""TapPort's memory of where its TAP lives: noting a move, and refusing to create a TAP elsewhere."""

from __future__ import annotations

import os

import pytest

from vswitch.ports import netns, tap
from vswitch.ports.tap import TapGone, TapPort


@pytest.fixture
def own_ns_fd():
    fd = os.open("/proc/self/ns/net", os.O_RDONLY)
    yield fd
    os.close(fd)


def test_a_tap_that_stays_home_is_not_worth_storing(own_ns_fd):
    port = TapPort("vm", "tap0")
    assert not port.note_netns(own_ns_fd)
    assert port.netns is not None and port.netns["self"]
    assert not port.note_netns(own_ns_fd), "unchanged: one fstat, nothing to store"


def test_coming_back_home_is_a_move(own_ns_fd):
    port = TapPort("vm", "tap0", netns={"name": "vm1", "ino": 1})
    assert port.note_netns(own_ns_fd)
    assert port.netns == {"self": True, "ino": os.fstat(own_ns_fd).st_ino}
    assert port.describe()["netns"] == "vswitchd's own namespace"


def test_a_gone_namespace_is_tapgone_and_no_tap_is_created(monkeypatch):
    opened = []
    monkeypatch.setattr(tap, "_open_dev", lambda: opened.append(1) or -1)
    port = TapPort("vm", "tap0", netns={"name": "no-such-ns-here", "ino": 1})
    with pytest.raises(TapGone, match="namespace 'no-such-ns-here' is gone: TAP tap0 went with it"):
        port.open()
    with pytest.raises(TapGone):
        port.open()  # sticky: a namespace never comes back, so no second scan
    assert not opened, "/dev/net/tun must not be opened (that would create a TAP in our namespace)"
    port.destroy()  # nothing to remove: silent
    assert not opened


def test_labels_say_where():
    assert netns.label(None) == "vswitchd's own namespace"
    assert netns.label({"name": "vm1", "ino": 5}) == "namespace 'vm1'"
    assert netns.label({"pid": 42, "ino": 5}) == "the namespace of pid 42 (net:[5])"
    assert netns.label({"ino": 5}) == "namespace net:[5]"
