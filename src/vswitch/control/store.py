"""Persistent configuration: the switches and ports a user asked for, in SQLite.

Owns one SQLite database file (``<state-dir>/config.sqlite``) holding
- ``switches``: one row per switch (its :class:`SwitchSpec` as JSON), in creation order;
- ``ports``: one row per port (switch, name, :class:`PortSpec` as JSON, position), in insertion order;
- ``snapshots``: a key/value table of uplink-takeover snapshots (what a NIC looked like before a
  switch took it), so a daemon restarted after a crash can still give the NIC back;
- ``intents``: changes begun but not finished (create/delete a switch, add/remove a port). An
  intent is written in its own transaction before the kernel is touched and removed in the same
  transaction that records the result; one still present at start-up is a change a crash
  interrupted, which the manager then finishes or undoes;
- ``switches.confirm_deadline``: the wall-clock time (epoch seconds) by which an External switch must
  be confirmed, NULL once confirmed — absolute, so a restart neither forgets nor restarts it;
- ``port_runtime``: what the kernel did to a stored port since it was added (e.g. the namespace a
  TAP was moved into), as JSON — facts to find it again, not intent; a row goes with its port
  (foreign key, ON DELETE CASCADE);
- ``static_fdb``: the static MAC table entries (switch, MAC, VLAN → port); a row goes with its switch
  (foreign key) and with its port (`delete_port`), not with a port of the switch itself (uplink, host);
- ``schema_version``: the schema version, checked at open (version 1 and 2 files are upgraded in place:
  version 2 → 3 only adds ``static_fdb``).

Invariants:
- A write that cannot get the database (locked by another process past ``BUSY_TIMEOUT_S``, disk
  full, read-only) raises :class:`StoreError` (HTTP 503) and has changed nothing.
- Every write is one transaction (``BEGIN IMMEDIATE`` … ``COMMIT``, ``ROLLBACK`` on any exception):
  after a crash or kill the file holds either the old or the new state, never a mix. WAL journal,
  ``synchronous=FULL`` so a committed write survives a power cut.
- ``delete_switch`` removes the switch's ports and snapshot in the same transaction.
- Safe from several threads: one connection (``check_same_thread=False``) behind a re-entrant lock.
  :meth:`ConfigStore.transaction` groups several writes into one atomic unit.
- Specs are stored as written by ``to_dict`` and parsed again by ``parse`` on load; a row that
  no longer validates is reported in the log and skipped, never silently "repaired".

Must not touch: the datapath, netlink, the kernel; it records intent, it does not act on it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from vswitch.control.model import NotFound, PortSpec, SwitchSpec, VswitchError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 3
BUSY_TIMEOUT_S = 2.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS switches (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    spec TEXT NOT NULL,
    confirm_deadline REAL
);
CREATE TABLE IF NOT EXISTS ports (
    switch   TEXT NOT NULL REFERENCES switches(name) ON DELETE CASCADE,
    name     TEXT NOT NULL,
    spec     TEXT NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (switch, name)
);
CREATE INDEX IF NOT EXISTS ports_by_position ON ports (switch, position);
CREATE TABLE IF NOT EXISTS snapshots (
    switch TEXT PRIMARY KEY,
    data   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS intents (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    op     TEXT NOT NULL,
    switch TEXT NOT NULL,
    port   TEXT,
    data   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS port_runtime (
    switch TEXT NOT NULL,
    port   TEXT NOT NULL,
    data   TEXT NOT NULL,
    PRIMARY KEY (switch, port),
    FOREIGN KEY (switch, port) REFERENCES ports(switch, name) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS static_fdb (
    switch TEXT NOT NULL REFERENCES switches(name) ON DELETE CASCADE,
    mac    TEXT NOT NULL,
    vlan   INTEGER NOT NULL,
    port   TEXT NOT NULL,
    PRIMARY KEY (switch, mac, vlan)
);
"""


class StoreError(VswitchError):
    """The configuration database cannot be used (locked, unreadable, newer schema, corrupt).

    A request refused with it changed nothing: HTTP 503, try again later."""

    status = 503


@dataclass(frozen=True)
class Intent:
    """A change begun and not finished: ``op`` on ``switch`` (and ``port``), with its ``data``."""

    id: int
    op: str
    switch: str
    port: str | None
    data: dict[str, Any]


class ConfigStore:
    """Switch and port configuration in one SQLite file; every write is atomic and durable."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open (creating if needed) the database at `path` and bring its schema up to date."""
        self.path = os.fspath(path)
        self._lock = threading.RLock()
        self._depth = 0  # nesting of transaction() on the owning thread
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so there is no implicit
            # transaction left open between calls.
            self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                         timeout=BUSY_TIMEOUT_S)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as e:
            raise StoreError(f"cannot open configuration database {self.path}: {e}") from e

    # ---- plumbing -------------------------------------------------------------------------

    def _migrate(self) -> None:
        with self.transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._conn.execute(statement)
            row = self._conn.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                self._conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif row[0] > SCHEMA_VERSION:
                raise StoreError(f"configuration database {self.path} has schema version {row[0]}, "
                                 f"newer than this vswitch understands ({SCHEMA_VERSION})")
            elif row[0] < SCHEMA_VERSION:
                columns = {r[1] for r in self._conn.execute("PRAGMA table_info(switches)")}
                if "confirm_deadline" not in columns:  # version 1 → 2
                    self._conn.execute("ALTER TABLE switches ADD COLUMN confirm_deadline REAL")
                self._conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes into one atomic unit: all of them are committed, or none (on any exception).

        Re-entrant: a nested ``transaction()`` (or a write method called inside one) joins the
        outer transaction. Other threads wait until the outermost one ends.
        """
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                raise StoreError(f"configuration store {self.path} is unavailable ({e}); nothing was changed, "
                                 "try again") from None
            self._depth = 1
            try:
                yield
            except sqlite3.OperationalError as e:
                self._rollback_quietly()
                raise StoreError(f"configuration store {self.path} could not be written ({e}); nothing was "
                                 "changed, try again") from None
            except BaseException:
                self._rollback_quietly()
                raise
            else:
                try:
                    self._conn.execute("COMMIT")
                except sqlite3.OperationalError as e:
                    self._rollback_quietly()
                    raise StoreError(f"configuration store {self.path} could not commit ({e}); nothing was "
                                     "changed, try again") from None
            finally:
                self._depth = 0

    def _rollback_quietly(self) -> None:
        try:
            self._conn.execute("ROLLBACK")
        except sqlite3.OperationalError:
            pass  # no transaction left to roll back (SQLite already did)

    def close(self) -> None:
        """Close the database; further calls fail."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ConfigStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- switches and ports -----------------------------------------------------------------

    def save_switch(self, spec: SwitchSpec, *, confirm_deadline: float | None = None) -> None:
        """Insert or replace a switch's spec (and its confirm deadline, epoch seconds or None);
        an existing switch keeps its place and its ports."""
        data = json.dumps(spec.to_dict(), sort_keys=True)
        with self.transaction():
            self._conn.execute(
                "INSERT INTO switches (name, spec, confirm_deadline) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET spec = excluded.spec, confirm_deadline = excluded.confirm_deadline",
                (spec.name, data, confirm_deadline),
            )

    def confirm_deadline(self, name: str) -> float | None:
        """When switch `name` must be confirmed by (epoch seconds), or None (confirmed, or none asked)."""
        with self._lock:
            row = self._conn.execute("SELECT confirm_deadline FROM switches WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    def set_confirmed(self, name: str) -> None:
        """Record that switch `name` was confirmed: it no longer reverts, across restarts too."""
        with self.transaction():
            self._conn.execute("UPDATE switches SET confirm_deadline = NULL WHERE name = ?", (name,))

    def rename_switch(self, old: str, spec: SwitchSpec) -> None:
        """Store switch `old` as `spec` (its new name) with everything that hangs on it (ports, their
        runtime facts, static entries, its takeover snapshot), in one transaction. Raises NotFound
        when `old` is not stored."""
        data = json.dumps(spec.to_dict(), sort_keys=True)
        with self.transaction():
            # the children follow the key in the same transaction; checked at its commit
            self._conn.execute("PRAGMA defer_foreign_keys = ON")
            cur = self._conn.execute("UPDATE switches SET name = ?, spec = ? WHERE name = ?", (spec.name, data, old))
            if cur.rowcount == 0:
                raise NotFound(f"switch {old!r} is not in the configuration store")
            for table in ("ports", "port_runtime", "static_fdb", "snapshots"):
                self._conn.execute(f"UPDATE {table} SET switch = ? WHERE switch = ?", (spec.name, old))  # noqa: S608

    def delete_switch(self, name: str) -> bool:
        """Forget a switch, its ports and its takeover snapshot. Return whether it was stored."""
        with self.transaction():
            self._conn.execute("DELETE FROM ports WHERE switch = ?", (name,))
            self._conn.execute("DELETE FROM static_fdb WHERE switch = ?", (name,))
            self._conn.execute("DELETE FROM snapshots WHERE switch = ?", (name,))
            cur = self._conn.execute("DELETE FROM switches WHERE name = ?", (name,))
            return cur.rowcount > 0

    def save_port(self, switch: str, spec: PortSpec) -> None:
        """Insert or replace a port of a stored switch; a new port goes last, an existing one keeps its place.

        Raises NotFound when the switch is not stored.
        """
        data = json.dumps(spec.to_dict(), sort_keys=True)
        with self.transaction():
            if self._conn.execute("SELECT 1 FROM switches WHERE name = ?", (switch,)).fetchone() is None:
                raise NotFound(f"switch {switch!r} is not in the configuration store")
            self._conn.execute(
                "INSERT INTO ports (switch, name, spec, position) VALUES (?, ?, ?, "
                "  (SELECT COALESCE(MAX(position), 0) + 1 FROM ports WHERE switch = ?)) "
                "ON CONFLICT(switch, name) DO UPDATE SET spec = excluded.spec",
                (switch, spec.name, data, switch),
            )

    def delete_port(self, switch: str, name: str) -> bool:
        """Forget one port and its static entries. Return whether it was stored."""
        with self.transaction():
            self._conn.execute("DELETE FROM static_fdb WHERE switch = ? AND port = ?", (switch, name))
            cur = self._conn.execute("DELETE FROM ports WHERE switch = ? AND name = ?", (switch, name))
            return cur.rowcount > 0

    def load(self) -> list[tuple[SwitchSpec, list[PortSpec]]]:
        """Every stored switch (creation order) with its ports (insertion order).

        Rows that no longer validate are logged and skipped.
        """
        with self._lock:
            switches = self._conn.execute("SELECT name, spec FROM switches ORDER BY seq").fetchall()
            ports = self._conn.execute("SELECT switch, name, spec FROM ports ORDER BY switch, position").fetchall()
        by_switch: dict[str, list[PortSpec]] = {}
        for switch, name, data in ports:
            try:
                by_switch.setdefault(switch, []).append(PortSpec.parse(json.loads(data)))
            except (ValueError, TypeError, VswitchError) as e:
                log.error("stored port %s/%s is invalid and is skipped: %s", switch, name, e)
        result: list[tuple[SwitchSpec, list[PortSpec]]] = []
        for name, data in switches:
            try:
                spec = SwitchSpec.parse(json.loads(data))
            except (ValueError, TypeError, VswitchError) as e:
                log.error("stored switch %s is invalid and is skipped (with its ports): %s", name, e)
                continue
            result.append((spec, by_switch.get(name, [])))
        return result

    # ---- static MAC table entries ---------------------------------------------------------------

    def save_static(self, switch: str, mac: str, vlan: int, port: str) -> None:
        """Insert or re-point the static entry (mac, vlan) of a stored switch. Raises NotFound when the
        switch is not stored."""
        with self.transaction():
            if self._conn.execute("SELECT 1 FROM switches WHERE name = ?", (switch,)).fetchone() is None:
                raise NotFound(f"switch {switch!r} is not in the configuration store")
            self._conn.execute(
                "INSERT INTO static_fdb (switch, mac, vlan, port) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(switch, mac, vlan) DO UPDATE SET port = excluded.port", (switch, mac, vlan, port))

    def delete_static(self, switch: str, mac: str, vlan: int) -> bool:
        """Forget one static entry. Return whether it was stored."""
        with self.transaction():
            cur = self._conn.execute("DELETE FROM static_fdb WHERE switch = ? AND mac = ? AND vlan = ?",
                                     (switch, mac, vlan))
            return cur.rowcount > 0

    def statics(self, switch: str) -> list[tuple[str, int, str]]:
        """The static entries of `switch` as (mac, vlan, port), by VLAN then MAC."""
        with self._lock:
            rows = self._conn.execute("SELECT mac, vlan, port FROM static_fdb WHERE switch = ? ORDER BY vlan, mac",
                                      (switch,)).fetchall()
        return [(mac, int(vlan), port) for mac, vlan, port in rows]

    # ---- takeover snapshots -------------------------------------------------------------------

    def put_snapshot(self, switch: str, data: dict[str, Any]) -> None:
        """Record (replace) the takeover snapshot of `switch`: what to restore to give its NIC back."""
        text = json.dumps(data, sort_keys=True)
        with self.transaction():
            self._conn.execute(
                "INSERT INTO snapshots (switch, data) VALUES (?, ?) "
                "ON CONFLICT(switch) DO UPDATE SET data = excluded.data",
                (switch, text),
            )

    def get_snapshot(self, switch: str) -> dict[str, Any] | None:
        """The takeover snapshot of `switch`, or None."""
        with self._lock:
            row = self._conn.execute("SELECT data FROM snapshots WHERE switch = ?", (switch,)).fetchone()
        return None if row is None else json.loads(row[0])

    def list_snapshots(self) -> dict[str, dict[str, Any]]:
        """All takeover snapshots by switch name: at start-up, one whose switch is not stored is an
        orphan of a crash and is replayed (the NIC given back)."""
        with self._lock:
            rows = self._conn.execute("SELECT switch, data FROM snapshots ORDER BY switch").fetchall()
        return {switch: json.loads(data) for switch, data in rows}

    def drop_snapshot(self, switch: str) -> bool:
        """Forget the takeover snapshot of `switch` (the NIC was given back). Return whether one existed."""
        with self.transaction():
            cur = self._conn.execute("DELETE FROM snapshots WHERE switch = ?", (switch,))
            return cur.rowcount > 0

    # ---- intents --------------------------------------------------------------------------------

    def begin_intent(self, op: str, switch: str, port: str | None = None, data: dict[str, Any] | None = None) -> int:
        """Record that `op` on `switch` (/`port`) is about to change the kernel; return its id.

        Written (and durable) before the first change, so a crash at any later step is seen at start-up."""
        text = json.dumps(data or {}, sort_keys=True)
        with self.transaction():
            cur = self._conn.execute("INSERT INTO intents (op, switch, port, data) VALUES (?, ?, ?, ?)",
                                     (op, switch, port, text))
            return int(cur.lastrowid or 0)

    def end_intent(self, intent_id: int) -> None:
        """The change is finished (or undone): forget its intent. Call inside the transaction that
        records the change's result, so the result and the intent's end are one atomic unit."""
        with self.transaction():
            self._conn.execute("DELETE FROM intents WHERE id = ?", (intent_id,))

    def intents(self) -> list[Intent]:
        """Every unfinished intent, oldest first."""
        with self._lock:
            rows = self._conn.execute("SELECT id, op, switch, port, data FROM intents ORDER BY id").fetchall()
        return [Intent(i, op, sw, port, json.loads(data)) for i, op, sw, port, data in rows]

    # ---- port runtime facts -------------------------------------------------------------------

    def put_port_runtime(self, switch: str, port: str, data: dict[str, Any]) -> bool:
        """Record (replace) the runtime facts of a stored port. False (nothing written) when the
        port is not stored: facts about a port the store does not know would outlive it."""
        text = json.dumps(data, sort_keys=True)
        with self.transaction():
            cur = self._conn.execute(
                "INSERT INTO port_runtime (switch, port, data) "
                "SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM ports WHERE switch = ? AND name = ?) "
                "ON CONFLICT(switch, port) DO UPDATE SET data = excluded.data",
                (switch, port, text, switch, port),
            )
            return cur.rowcount > 0

    def get_port_runtime(self, switch: str, port: str) -> dict[str, Any] | None:
        """The runtime facts of a port, or None."""
        with self._lock:
            row = self._conn.execute("SELECT data FROM port_runtime WHERE switch = ? AND port = ?",
                                     (switch, port)).fetchone()
        return None if row is None else json.loads(row[0])
