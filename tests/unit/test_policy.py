"""Per-port policy: which VLAN a frame belongs to on ingress, and how it leaves on egress."""

from __future__ import annotations

import pytest

from vswitch.core.policy import PortPolicy, VlanMode


def test_default_is_access_vlan_1_up_learning_flooding() -> None:
    p = PortPolicy()
    assert (p.mode, p.access_vlan, p.admin_up, p.learning, p.flooding) == (VlanMode.ACCESS, 1, True, True, True)
    assert p.classify(None) == 1 and p.member_vlans() == {1}


def test_access_admits_untagged_and_priority_tagged_only() -> None:
    p = PortPolicy.access(10)
    assert p.classify(None) == 10
    assert p.classify(0) == 10, "a priority tag (VID 0) belongs to the access VLAN"
    assert p.classify(10) is None, "an access port carries its VLAN untagged: tagged frames are refused"
    assert p.classify(20) is None


def test_access_egress_is_untagged() -> None:
    p = PortPolicy.access(10)
    assert p.is_member(10) and not p.is_member(20)
    assert not p.egress_tagged(10)


def test_trunk_admits_allowed_vlans_tagged() -> None:
    p = PortPolicy.trunk({10, 20})
    assert p.classify(10) == 10 and p.classify(20) == 20
    assert p.classify(30) is None
    assert p.classify(None) is None and p.classify(0) is None, "no native VLAN: untagged frames are refused"
    assert p.member_vlans() == {10, 20}
    assert p.egress_tagged(10) and p.egress_tagged(20)


def test_trunk_native_vlan_is_untagged_both_ways() -> None:
    p = PortPolicy.trunk([10, 20], native=99)
    assert p.classify(None) == 99 and p.classify(0) == 99
    assert p.is_member(99) and p.member_vlans() == {10, 20, 99}
    assert not p.egress_tagged(99) and p.egress_tagged(10)


def test_trunk_native_may_also_be_allowed() -> None:
    p = PortPolicy.trunk([10, 20], native=10)
    assert p.classify(None) == 10 and p.classify(10) == 10
    assert not p.egress_tagged(10), "the native VLAN leaves untagged"


def test_flags_pass_through_the_constructors() -> None:
    p = PortPolicy.trunk([5], learning=False, flooding=False, admin_up=False)
    assert (p.learning, p.flooding, p.admin_up) == (False, False, False)


def test_policy_is_immutable() -> None:
    with pytest.raises(AttributeError):
        PortPolicy().access_vlan = 5  # type: ignore[misc]


def test_describe() -> None:
    assert PortPolicy.access(7).describe() == "access 7"
    assert PortPolicy.trunk([20, 10], native=1).describe() == "trunk 10,20 native 1"
