"""Shared fixtures: root detection, namespaces that are always removed, both datapaths."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import datapaths  # noqa: E402
import netns as ns_helpers  # noqa: E402


def _root_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, TAP and AF_PACKET); run `sudo make test`"
    if not os.path.exists("/dev/net/tun"):
        return "needs /dev/net/tun for TAP devices"
    if shutil.which("ip") is None:
        return "needs iproute2 (`ip`); `make test` as root installs it"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _root_skip_reason()
    if reason is None:
        return
    for item in items:
        if "root" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def netns() -> Iterator[object]:
    """Factory: ``netns("tag")`` creates a uniquely named namespace; all are removed at teardown."""
    created: list[str] = []

    def make(tag: str = "ns") -> str:
        name = ns_helpers.unique_name(tag)
        ns_helpers.create(name)
        created.append(name)
        return name

    try:
        yield make
    finally:
        for name in reversed(created):
            ns_helpers.remove(name)


@pytest.fixture(params=datapaths.DATAPATHS)
def datapath(request: pytest.FixtureRequest) -> str:
    """Parametrizes a test of real links over both datapaths (the kernel one skipped, saying why, where
    the fast path cannot load)."""
    datapaths.require(request.param)
    return str(request.param)


def require_tool(name: str) -> None:
    if shutil.which(name) is None:
        pytest.skip(f"needs `{name}`; `make test` as root installs it")


@pytest.fixture(scope="session")
def guest_image():
    """The QEMU guest image (vswitch.lab.guest), built once; the test is skipped, saying why, without it."""
    from vswitch.lab.guest import GuestError, ensure_image

    try:
        return ensure_image()
    except GuestError as e:
        pytest.skip(f"no QEMU guest here: {e}")
