"""The QEMU guest image's pure parts: initramfs archive, module order, -netdev arguments, ELF check."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vswitch.lab.guest import GuestError, _cpio, _is_static, _module_order, netdev_args


def _parse_newc(blob: bytes) -> list[tuple[str, int, bytes]]:
    out, i = [], 0
    while True:
        assert blob[i:i + 6] == b"070701", "every entry starts with the newc magic"
        fields = [int(blob[i + 6 + 8 * k:i + 14 + 8 * k], 16) for k in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_at = i + 110
        name = blob[name_at:name_at + namesize - 1].decode()
        data_at = name_at + namesize + (-(110 + namesize) % 4)
        data = blob[data_at:data_at + size]
        i = data_at + size + (-size % 4)
        assert i % 4 == 0
        if name == "TRAILER!!!":
            return out
        out.append((name, mode, data))


def test_initramfs_archive_round_trips_in_order():
    entries = [("bin", 0o040755, b""), ("init", 0o100755, b"#!/bin/sh\n"), ("lib/x.ko", 0o100644, b"\x00" * 7)]
    assert _parse_newc(_cpio(entries)) == entries


def _ko(d: Path, name: str, depends: str) -> None:
    (d / f"{name}.ko").write_bytes(b"\x7fELF...license=GPL\x00depends=" + depends.encode() + b"\x00vermagic=x\x00")


def test_modules_come_after_their_dependencies(tmp_path):
    _ko(tmp_path, "virtio_ring", "")
    _ko(tmp_path, "virtio", "virtio_ring")
    _ko(tmp_path, "failover", "")
    _ko(tmp_path, "net_failover", "failover")
    _ko(tmp_path, "virtio_net", "virtio_ring,virtio,net_failover")
    order = [p.name[:-3] for p in _module_order(tmp_path, ("virtio_net",))]
    assert order.index("virtio_ring") < order.index("virtio") < order.index("virtio_net")
    assert order.index("failover") < order.index("net_failover") < order.index("virtio_net")
    assert len(order) == len(set(order)) == 5


def test_a_missing_module_is_named(tmp_path):
    _ko(tmp_path, "virtio_net", "virtio")
    with pytest.raises(GuestError, match="virtio is not in"):
        _module_order(tmp_path, ("virtio_net",))


def test_netdev_argument_of_a_port_becomes_a_nic():
    args = netdev_args("-netdev stream,id=vm1,server=off,addr.type=unix,addr.path=/run/a.sock", "52:54:00:00:00:01")
    assert args == ["-netdev", "stream,id=vm1,server=off,addr.type=unix,addr.path=/run/a.sock",
                    "-device", "virtio-net-pci,netdev=vm1,mac=52:54:00:00:00:01"]
    with pytest.raises(GuestError):
        netdev_args("-device e1000", "52:54:00:00:00:01")


def test_static_elf_check(tmp_path):
    assert not _is_static(Path(sys.executable).resolve()), "the Python interpreter is dynamically linked"
    (tmp_path / "script").write_text("#!/bin/sh\n")
    assert not _is_static(tmp_path / "script")
