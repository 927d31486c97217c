"""`GET /switches/{name}/decisions` over HTTP against a real vswitchd: server-sent events a reader's
token may read, 404 as JSON for an unknown switch, at most 16 streams at once (429 beyond, and a
its place is free again once its client has left), the stream ending with an `end` event when its switch is deleted and
when vswitchd stops."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
from test_daemon_socket import Daemon, daemons, free_port, needs_manager, paths, start  # noqa: F401

from vswitch.control.model import PortKind, PortSpec, SwitchSpec, SwitchType
from vswitch.frontends.client import RestSwitchApi
from vswitch.frontends.decision_route import MAX_STREAMS
from waiting import wait_until


def _events(response: httpx.Response) -> Iterator[tuple[str, dict]]:
    name = "message"
    for line in response.iter_lines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            yield name, json.loads(line[5:])


@needs_manager
def test_the_stream_over_http(paths: tuple[Path, Path], daemons: list[Daemon], tmp_path: Path) -> None:  # noqa: F811
    state, sock = paths
    tokens = tmp_path / "tokens"
    tokens.write_text("admin:adm-secret\nreader:rd-secret\n")
    tokens.chmod(0o600)
    port = free_port()
    d = start(daemons, state, sock, "--listen", f"127.0.0.1:{port}", "--token-file", str(tokens))
    url = f"http://127.0.0.1:{port}"
    reader = {"Authorization": "Bearer rd-secret"}
    with RestSwitchApi(url=url, token="adm-secret") as api:
        api.create_switch(SwitchSpec("dsh", SwitchType.PRIVATE))
        api.add_port("dsh", PortSpec("vm1", PortKind.MEMORY, "vm1"))
        r = httpx.get(f"{url}/switches/nope/decisions", headers=reader)
        assert r.status_code == 404 and "nope" in r.json()["error"]
        assert httpx.get(f"{url}/switches/dsh/decisions").status_code == 401

        def status_of_one_more() -> int:
            with httpx.stream("GET", f"{url}/switches/dsh/decisions", headers=reader, timeout=30) as one:
                return one.status_code

        with httpx.Client(timeout=30) as client, ExitStack() as streams:
            opened = [streams.enter_context(client.stream("GET", f"{url}/switches/dsh/decisions", headers=reader))
                      for _ in range(MAX_STREAMS)]
            assert all(s.status_code == 200 and s.headers["content-type"].startswith("text/event-stream")
                       for s in opened)
            # one event iterator per stream, kept: an httpx iterator dropped early closes its connection
            events = [_events(s) for s in opened]
            first = next(events[0])
            assert first[0] == "summary" and first[1]["frames"] == 0, "a summary each second, frames or not"
            r = httpx.get(f"{url}/switches/dsh/decisions", headers=reader)
            assert r.status_code == 429 and str(MAX_STREAMS) in r.json()["error"]
            api.delete_switch("dsh")
            for stream in (events[0], events[-1]):
                ends = [e for e in stream if e[0] == "end"]
                assert ends and "deleted" in ends[0][1]["reason"]
        # every stream closed: the places are free again (a client that left is noticed at the next
        # event the daemon sends it, within a second)
        api.create_switch(SwitchSpec("dsh", SwitchType.PRIVATE))
        wait_until(lambda: status_of_one_more() == 200, what="a stream admitted again")
        with httpx.stream("GET", f"{url}/switches/dsh/decisions", headers=reader, timeout=30) as open_one:
            assert open_one.status_code == 200
            d.proc.terminate()
            ends = [e for e in _events(open_one) if e[0] == "end"]
            assert ends and "stopping" in ends[0][1]["reason"]
    assert d.proc.wait(timeout=30) == 0, d.output()
