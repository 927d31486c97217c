"""MAC address values: parsing/formatting and the address classes the switch acts on."""

from __future__ import annotations

import pytest

from vswitch.core.mac import (
    BROADCAST,
    ZERO,
    format_mac,
    is_broadcast,
    is_multicast,
    is_reserved_group,
    is_zero,
    parse_mac,
)


@pytest.mark.parametrize("text", ["52:54:00:12:34:56", "52-54-00-12-34-56", "525400123456", "5254.0012.3456"])
def test_parse_accepts_the_usual_spellings(text: str) -> None:
    assert parse_mac(text) == bytes.fromhex("525400123456")


@pytest.mark.parametrize("text", ["52:54:00:12:34", "52:54:00:12:34:56:78", "zz:54:00:12:34:56", ""])
def test_parse_refuses_bad_text_and_names_it(text: str) -> None:
    with pytest.raises(ValueError, match="MAC address"):
        parse_mac(text)


def test_parse_refuses_non_text() -> None:
    with pytest.raises(ValueError, match="must be text"):
        parse_mac(b"\x00" * 6)  # type: ignore[arg-type]


def test_format_round_trips() -> None:
    assert format_mac(parse_mac("02:AB:cd:00:00:01")) == "02:ab:cd:00:00:01"


def test_address_classes() -> None:
    assert is_broadcast(BROADCAST) and is_multicast(BROADCAST), "broadcast is also a group address"
    assert is_multicast(parse_mac("01:00:5e:00:00:01"))
    assert is_multicast(parse_mac("33:33:00:00:00:01"))
    assert not is_multicast(parse_mac("02:00:00:00:00:01"))
    assert is_zero(ZERO) and not is_zero(parse_mac("00:00:00:00:00:01"))


@pytest.mark.parametrize("last", range(16))
def test_reserved_group_is_01_80_c2_00_00_00_to_0f(last: int) -> None:
    assert is_reserved_group(bytes((1, 0x80, 0xC2, 0, 0, last)))


@pytest.mark.parametrize("text", ["01:80:c2:00:00:10", "01:80:c2:00:01:00", "01:00:5e:00:00:01", BROADCAST.hex(":")])
def test_other_group_addresses_are_not_reserved(text: str) -> None:
    assert not is_reserved_group(parse_mac(text))
