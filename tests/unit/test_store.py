"""ConfigStore: what is saved is loaded back, in order, and a write interrupted midway changes nothing."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from vswitch.control.model import NotFound, PortKind, PortSpec, SwitchSpec, SwitchType
from vswitch.control.store import SCHEMA_VERSION, ConfigStore, StoreError


def sw(name: str, **kw: object) -> SwitchSpec:
    return SwitchSpec(name=name, type=SwitchType.PRIVATE, **kw)  # type: ignore[arg-type]


def port(name: str, **kw: object) -> PortSpec:
    return PortSpec(name=name, kind=PortKind.MEMORY, target=name, **kw)  # type: ignore[arg-type]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "config.sqlite"


def test_roundtrip_keeps_order_and_fields(db: Path) -> None:
    with ConfigStore(db) as store:
        store.save_switch(sw("b", ageing_s=60))
        store.save_switch(SwitchSpec("a", SwitchType.EXTERNAL, nic="eth0", allow_management_os=False,
                                     confirm_timeout_s=30.0))
        for name in ("p3", "p1", "p2"):
            store.save_port("b", port(name))
        store.save_port("a", PortSpec("t", PortKind.LINK, "veth0", trunk=(10, 20), native=10))
    with ConfigStore(db) as store:
        loaded = store.load()
    assert [s.name for s, _ in loaded] == ["b", "a"], "switches come back in creation order"
    (b, b_ports), (a, a_ports) = loaded
    assert b.ageing_s == 60 and b.type == SwitchType.PRIVATE
    assert a.nic == "eth0" and a.allow_management_os is False and a.confirm_timeout_s == 30.0
    assert [p.name for p in b_ports] == ["p3", "p1", "p2"], "ports come back in insertion order"
    assert a_ports == [PortSpec("t", PortKind.LINK, "veth0", trunk=(10, 20), native=10)]


def test_update_keeps_position_and_delete_cascades(db: Path) -> None:
    store = ConfigStore(db)
    store.save_switch(sw("s"))
    store.save_port("s", port("p1"))
    store.save_port("s", port("p2"))
    store.save_port("s", port("p1", vlan=5))  # replace: keeps its place
    store.save_switch(sw("s", ageing_s=20))   # replace: keeps its ports
    [(spec, ports)] = store.load()
    assert spec.ageing_s == 20
    assert [(p.name, p.vlan) for p in ports] == [("p1", 5), ("p2", None)]
    assert store.delete_port("s", "p1") is True
    assert store.delete_port("s", "p1") is False
    store.put_snapshot("s", {"nic": "eth0"})
    assert store.delete_switch("s") is True
    assert store.load() == []
    assert store.get_snapshot("s") is None, "deleting a switch drops its snapshot"
    assert store._conn.execute("SELECT COUNT(*) FROM ports").fetchone()[0] == 0, "ports cascade"
    # a re-created switch with the same name starts with no ports
    store.save_switch(sw("s"))
    assert store.load()[0][1] == []


def test_port_of_unknown_switch_is_refused(db: Path) -> None:
    store = ConfigStore(db)
    with pytest.raises(NotFound, match="'nope'"):
        store.save_port("nope", port("p"))


def test_snapshots(db: Path) -> None:
    store = ConfigStore(db)
    assert store.get_snapshot("x") is None
    store.put_snapshot("x", {"nic": "eth0", "addrs": ["192.0.2.1/24"]})
    store.put_snapshot("x", {"nic": "eth1"})
    store.close()
    store = ConfigStore(db)
    assert store.get_snapshot("x") == {"nic": "eth1"}, "a snapshot survives a restart"
    assert store.list_snapshots() == {"x": {"nic": "eth1"}}
    assert store.drop_snapshot("x") is True
    assert store.drop_snapshot("x") is False
    assert store.get_snapshot("x") is None


def test_transaction_interrupted_by_exception_leaves_old_state(db: Path) -> None:
    store = ConfigStore(db)
    store.save_switch(sw("old"))
    store.save_port("old", port("p"))
    before = store.load()
    with pytest.raises(RuntimeError), store.transaction():
        store.save_switch(sw("new"))
        store.save_port("new", port("q"))
        store.delete_switch("old")
        raise RuntimeError("killed midway")
    assert store.load() == before, "an interrupted transaction changes nothing"
    store.close()
    assert ConfigStore(db).load() == before, "reopening loads the same config"


def test_failed_single_write_changes_nothing(db: Path) -> None:
    store = ConfigStore(db)
    store.save_switch(sw("s"))
    with pytest.raises(NotFound), store.transaction():
        store.save_switch(sw("t"))
        store.save_port("missing", port("p"))
    assert [s.name for s, _ in store.load()] == ["s"]


def test_process_killed_midway_through_a_write(db: Path) -> None:
    """SIGKILL inside an open transaction: the file holds the old state and opens cleanly."""
    child = textwrap.dedent(f"""
        import sys, time
        from vswitch.control.model import PortKind, PortSpec, SwitchSpec, SwitchType
        from vswitch.control.store import ConfigStore
        store = ConfigStore({str(db)!r})
        store.save_switch(SwitchSpec("old", SwitchType.PRIVATE))
        with store.transaction():
            store.save_switch(SwitchSpec("new", SwitchType.PRIVATE))
            store.save_port("new", PortSpec("p", PortKind.MEMORY, "p"))
            store.delete_switch("old")
            print("midway", flush=True)
            time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "midway"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    loaded = ConfigStore(db).load()
    assert [(s.name, ports) for s, ports in loaded] == [("old", [])], "only the committed state is visible"


def test_many_threads_write_safely(db: Path) -> None:
    store = ConfigStore(db)
    store.save_switch(sw("s"))
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for j in range(20):
                store.save_port("s", port(f"p{i}-{j}"))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    ports = store.load()[0][1]
    assert len(ports) == 160 and len({p.name for p in ports}) == 160


def test_durability_settings_and_schema_version(db: Path) -> None:
    store = ConfigStore(db)
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2, "synchronous=FULL"
    assert store._conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    store.close()
    ConfigStore(db).close()  # reopening does not add a second version row
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == 1


def test_newer_schema_is_refused(db: Path) -> None:
    ConfigStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer"):
        ConfigStore(db)


def test_invalid_row_is_skipped_not_fatal(db: Path) -> None:
    store = ConfigStore(db)
    store.save_switch(sw("good"))
    store.save_switch(sw("bad"))
    store._conn.execute("UPDATE switches SET spec = ? WHERE name = 'bad'", ('{"name": "bad", "type": "weird"}',))
    assert [s.name for s, _ in store.load()] == ["good"]


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "config.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="cannot open configuration database"):
        ConfigStore(path)


def test_static_entries_are_stored_and_go_with_their_port_and_switch(db: Path) -> None:
    with ConfigStore(db) as store:
        store.save_switch(sw("s"))
        store.save_port("s", port("p"))
        store.save_static("s", "02:00:00:00:00:01", 1, "p")
        store.save_static("s", "02:00:00:00:00:02", 10, "uplink")  # a port of the switch itself
        store.save_static("s", "02:00:00:00:00:01", 1, "uplink")  # re-pointed
        with pytest.raises(NotFound):
            store.save_static("nope", "02:00:00:00:00:01", 1, "p")
    with ConfigStore(db) as store:
        assert store.statics("s") == [("02:00:00:00:00:01", 1, "uplink"), ("02:00:00:00:00:02", 10, "uplink")]
        store.save_static("s", "02:00:00:00:00:03", 1, "p")
        store.delete_port("s", "p")
        assert [m for m, _, _ in store.statics("s")] == ["02:00:00:00:00:01", "02:00:00:00:00:02"]
        assert store.delete_static("s", "02:00:00:00:00:01", 1) and not store.delete_static("s", "02:00:00:00:00:01", 1)
        store.delete_switch("s")
        assert store.statics("s") == []


def test_a_version_2_store_opens_and_gains_the_static_table(db: Path) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript("""
        CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (2);
        CREATE TABLE switches (seq INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE, spec TEXT NOT NULL,
                               confirm_deadline REAL);
        CREATE TABLE ports (switch TEXT NOT NULL REFERENCES switches(name) ON DELETE CASCADE, name TEXT NOT NULL,
                            spec TEXT NOT NULL, position INTEGER NOT NULL, PRIMARY KEY (switch, name));
        INSERT INTO switches (name, spec) VALUES ('v2', '{"name": "v2", "type": "private"}');
        INSERT INTO ports VALUES ('v2', 'p', '{"name": "p", "kind": "memory", "target": "p", "vlan": 10}', 1);
    """)
    conn.close()
    with ConfigStore(db) as store:
        (spec, ports), = store.load()
        assert spec.name == "v2" and ports == [PortSpec("p", PortKind.MEMORY, "p", vlan=10)], \
            "a port stored before admin/learning/flooding existed loads with them on"
        assert ports[0].admin_up and ports[0].learning and ports[0].flooding
        assert store.statics("v2") == []
        store.save_static("v2", "02:00:00:00:00:01", 10, "p")
        assert store._conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    assert SCHEMA_VERSION == 3


def test_rename_switch_takes_everything_that_hangs_on_it_along(db: Path) -> None:
    with ConfigStore(db) as store:
        store.save_switch(sw("old"), confirm_deadline=None)
        store.save_port("old", port("p"))
        store.put_port_runtime("old", "p", {"netns": "x"})
        store.save_static("old", "02:00:00:00:00:01", 1, "p")
        store.put_snapshot("old", {"nic": "eth9"})
        store.rename_switch("old", sw("new", ageing_s=60))
        with pytest.raises(NotFound):
            store.rename_switch("old", sw("other"))
    with ConfigStore(db) as store:
        ((spec, ports),) = store.load()
        assert (spec.name, spec.ageing_s, [p.name for p in ports]) == ("new", 60, ["p"])
        assert store.get_port_runtime("new", "p") == {"netns": "x"}
        assert store.statics("new") == [("02:00:00:00:00:01", 1, "p")] and store.statics("old") == []
        assert store.get_snapshot("new") == {"nic": "eth9"} and store.get_snapshot("old") is None
