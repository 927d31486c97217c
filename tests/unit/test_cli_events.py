"""`vswitch events` over the fake SwitchApi (which keeps a real EventLog): human lines, --json, --follow
as a loop of long polls that Ctrl-C ends with status 0, and the note about events the ring lost."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from click.testing import CliRunner, Result
from fake_api import FakeApi, private

from l2frames import mac
from vswitch.control.model import EventsPage, PortKind, PortSpec
from vswitch.core.events import MAC_MOVED, CoreEvent
from vswitch.frontends.cli import cli


def run(api: FakeApi, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), obj=api)


def lan(api: FakeApi) -> None:
    api.create_switch(private("lan"))
    api.add_port("lan", PortSpec("vm1", PortKind.MEMORY, "vm1"))


@pytest.fixture
def api_with_move() -> FakeApi:
    api = FakeApi()
    lan(api)
    api.event_log.sink(lambda: "lan")([CoreEvent(MAC_MOVED, 5.0, "vm2", mac("52:54:00:aa:bb:cc"), 10, "vm1", 37,
                                                 10.0)], 0)
    return api


def test_events_in_human_words(api_with_move: FakeApi) -> None:
    result = run(api_with_move, "events", "lan")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    t = [time.strftime("%H:%M:%S", time.localtime(e.t)) for e in api_with_move.event_log.read(None, 0, 10).events]
    assert lines == [f"{t[0]} lan  switch created  type=private",
                     f"{t[1]} lan  port added  vm1  kind=memory, target=vm1",
                     f"{t[2]} lan  mac moved  52:54:00:aa:bb:cc vlan 10  vm1 → vm2  (×37 in 10 s)"]
    assert run(api_with_move, "events", "lan", "--since", "2").stdout.splitlines() == lines[2:]
    assert run(FakeApi(), "events").stdout == "no events\n"


def test_events_json_is_the_page(api_with_move: FakeApi) -> None:
    result = run(api_with_move, "events", "--json")
    page = json.loads(result.stdout)
    assert (page["next_since"], page["latest"], page["missed"]) == (3, 3, 0)
    moved = page["events"][2]
    assert {k: moved[k] for k in ("seq", "switch", "kind", "mac", "vlan", "old_port", "port", "count")} == {
        "seq": 3, "switch": "lan", "kind": "mac-moved", "mac": "52:54:00:aa:bb:cc", "vlan": 10,
        "old_port": "vm1", "port": "vm2", "count": 37}


class Following(FakeApi):
    """A fake whose third read is interrupted (Ctrl-C while the long poll waits); a change arrives
    between the first and second read, as it would while a follower waits."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[dict[str, Any]] = []

    def events(self, switch: str | None = None, since: int = 0, limit: int = 1000,
               wait_s: float = 0.0) -> EventsPage:
        self.reads.append({"since": since, "wait_s": wait_s})
        if len(self.reads) == 2:
            self.add_port("lan", PortSpec("vm2", PortKind.MEMORY, "vm2"))
        if len(self.reads) == 3:
            raise KeyboardInterrupt
        return super().events(switch, since, limit, wait_s)


def test_follow_prints_one_json_object_per_line_until_ctrl_c() -> None:
    api = Following()
    lan(api)
    result = run(api, "events", "lan", "--follow", "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    objects = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(o["seq"], o["kind"], o["port"]) for o in objects] == [(1, "switch-created", None),
                                                                   (2, "port-added", "vm1"), (3, "port-added", "vm2")]
    assert [r["since"] for r in api.reads] == [0, 2, 3], "each read goes on after the last seen"
    assert all(r["wait_s"] > 0 for r in api.reads), "--follow long-polls"


def test_events_lost_by_the_ring_are_said_on_stderr() -> None:
    api = FakeApi()
    api.event_log = type(api.event_log)(capacity=2)
    lan(api)
    api.add_port("lan", PortSpec("vm2", PortKind.MEMORY, "vm2"))
    result = run(api, "events")
    assert result.exit_code == 0
    assert "(1 earlier event left vswitchd's ring before it was read)" in result.stderr
    assert len(result.stdout.splitlines()) == 2


def test_events_of_an_unknown_switch_is_refused() -> None:
    result = run(FakeApi(), "events", "nope")
    assert result.exit_code == 1 and "Error: no switch named 'nope'" in result.stderr

