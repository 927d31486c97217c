"""The manager and its store fail together: a store that cannot be written refuses the change (503)
and nothing stays applied; intents left by a crash are undone (create, add) or finished (remove).

Runs without root: Private switches with memory ports touch no kernel object.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from vswitch.control.manager import SwitchManager
from vswitch.control.model import PortKind, PortSpec, SwitchSpec, SwitchType
from vswitch.control.store import BUSY_TIMEOUT_S, ConfigStore, StoreError
from vswitch.frontends.rest import make_app


@contextmanager
def locked(db: Path) -> Iterator[None]:
    """Another process's write transaction holds the database (as `sqlite3 config.sqlite` would)."""
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "config.sqlite"


@pytest.fixture
def manager(db: Path) -> Iterator[SwitchManager]:
    m = SwitchManager(ConfigStore(db))
    try:
        yield m
    finally:
        m.shutdown()


def _port(name: str) -> PortSpec:
    return PortSpec(name, PortKind.MEMORY, name)


def test_a_locked_store_refuses_port_add_with_503_and_the_port_is_not_live(manager: SwitchManager, db: Path) -> None:
    manager.create_switch(SwitchSpec("s", SwitchType.PRIVATE))
    client = TestClient(make_app(manager))
    with locked(db):
        started = time.monotonic()
        r = client.post("/switches/s/ports", json={"name": "p1", "kind": "memory", "target": "p1"})
        waited = time.monotonic() - started
    assert r.status_code == 503, r.text
    assert "unavailable" in r.json()["error"] and "nothing was changed" in r.json()["error"], r.json()
    assert waited < BUSY_TIMEOUT_S + 5, "a locked store is reported after the busy timeout, not 10 s later"
    assert [p.name for p in manager.list_ports("s")] == [], "a refused port must not be live"
    # the retry is not a 409, and what it adds survives a restart
    assert client.post("/switches/s/ports", json={"name": "p1", "kind": "memory", "target": "p1"}).status_code == 201
    manager.shutdown()
    again = SwitchManager(ConfigStore(db))
    again.restore()
    assert [p.name for p in again.list_ports("s")] == ["p1"]
    again.shutdown()


def test_a_locked_store_refuses_create_and_delete_and_changes_nothing(manager: SwitchManager, db: Path) -> None:
    manager.create_switch(SwitchSpec("keep", SwitchType.PRIVATE))
    with locked(db):
        with pytest.raises(StoreError):
            manager.create_switch(SwitchSpec("new", SwitchType.PRIVATE))
        with pytest.raises(StoreError):
            manager.delete_switch("keep")
    assert [s.name for s in manager.list_switches()] == ["keep"]
    assert ConfigStore(db).intents() == [], "a refused change leaves no intent behind"


def test_interrupted_intents_are_undone_or_finished_at_start(db: Path) -> None:
    store = ConfigStore(db)
    store.save_switch(SwitchSpec("s", SwitchType.PRIVATE))
    store.save_port("s", _port("old"))
    # what a daemon killed midway leaves: a create and an add begun, a remove begun
    store.begin_intent("create-switch", "half", data={"spec": SwitchSpec("half", SwitchType.PRIVATE).to_dict()})
    store.begin_intent("add-port", "s", "new", {"spec": _port("new").to_dict()})
    store.begin_intent("remove-port", "s", "old", {"spec": _port("old").to_dict()})
    store.close()

    m = SwitchManager(ConfigStore(db))
    m.restore()
    try:
        assert [s.name for s in m.list_switches()] == ["s"], "an uncommitted create is undone"
        assert [p.name for p in m.list_ports("s")] == [], "an uncommitted add is undone, a begun remove finished"
        assert m.restore_errors == []
        assert m.store is not None and m.store.intents() == []
    finally:
        m.shutdown()


def test_a_version_1_store_is_upgraded_in_place(db: Path) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript("""
        CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (1);
        CREATE TABLE switches (seq INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, spec TEXT NOT NULL);
        INSERT INTO switches (name, spec) VALUES ('v1', '{"name": "v1", "type": "private"}');
    """)
    conn.close()
    store = ConfigStore(db)
    assert [s.name for s, _ in store.load()] == ["v1"]
    assert store.confirm_deadline("v1") is None
    store.save_switch(SwitchSpec("v1", SwitchType.PRIVATE), confirm_deadline=None)
