"""ConfigStore.port_runtime: facts about a stored port (where its TAP went) live and die with the port."""

from __future__ import annotations

from pathlib import Path

from vswitch.control.model import PortKind, PortSpec, SwitchSpec, SwitchType
from vswitch.control.store import ConfigStore


def _store(tmp_path: Path) -> ConfigStore:
    store = ConfigStore(tmp_path / "config.sqlite")
    store.save_switch(SwitchSpec("s", SwitchType.PRIVATE))
    store.save_port("s", PortSpec("vm1", PortKind.TAP, "tap1"))
    return store


def test_runtime_facts_survive_a_reopen_and_are_replaced(tmp_path: Path) -> None:
    with _store(tmp_path) as store:
        assert store.get_port_runtime("s", "vm1") is None
        assert store.put_port_runtime("s", "vm1", {"netns": {"name": "a", "ino": 1}})
        assert store.put_port_runtime("s", "vm1", {"netns": {"name": "b", "ino": 2}})
    with ConfigStore(tmp_path / "config.sqlite") as store:
        assert store.get_port_runtime("s", "vm1") == {"netns": {"name": "b", "ino": 2}}


def test_no_facts_for_a_port_the_store_does_not_hold(tmp_path: Path) -> None:
    with _store(tmp_path) as store:
        assert not store.put_port_runtime("s", "ghost", {"netns": {"ino": 3}}), "nothing to attach the facts to"
        assert not store.put_port_runtime("nope", "vm1", {"netns": {"ino": 3}})
        assert store.get_port_runtime("s", "ghost") is None


def test_facts_go_with_their_port_and_with_their_switch(tmp_path: Path) -> None:
    with _store(tmp_path) as store:
        store.put_port_runtime("s", "vm1", {"netns": {"ino": 1}})
        store.delete_port("s", "vm1")
        store.save_port("s", PortSpec("vm1", PortKind.TAP, "tap1"))
        assert store.get_port_runtime("s", "vm1") is None, "a re-added port starts without the old port's facts"
        store.put_port_runtime("s", "vm1", {"netns": {"ino": 1}})
        store.save_port("s", PortSpec("vm1", PortKind.TAP, "tap1", vlan=5))
        assert store.get_port_runtime("s", "vm1") is not None, "changing the port's spec keeps its facts"
        store.delete_switch("s")
        assert store.get_port_runtime("s", "vm1") is None
