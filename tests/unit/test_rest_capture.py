"""The capture route (frontends/capture_route.py), its client (`RestSwitchApi.capture`) and the CLI verb
over the fake SwitchApi: pcapng with the attachment header, refusals as JSON before any pcapng byte with
the model's own messages, the reader role, the pool's bound (429), and the schema documenting it all.
(Real frames, real ports, tshark and the daemon: tests/integration/test_capture_tshark.py.)"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from click.testing import CliRunner
from fake_api import FakeApi, private
from fastapi.testclient import TestClient
from scapy.utils import PcapNgReader

from vswitch.control.capture import COUNT_MAX, FILTER_MAX_CHARS, SECONDS_MAX
from vswitch.control.model import InvalidRequest, NotFound, PortKind, PortSpec
from vswitch.frontends import cli as cli_module
from vswitch.frontends.client import RestSwitchApi
from vswitch.frontends.rest import WatchPool, make_app
from vswitch.frontends.tokens import Role

ADMIN, READER = "adm-token", "rdr-token"
URL = "/switches/s/ports/p/capture"


@pytest.fixture
def api() -> FakeApi:
    a = FakeApi()
    a.create_switch(private("s"))
    a.add_port("s", PortSpec("p", PortKind.MEMORY, "p"))
    return a


@pytest.fixture
def client(api: FakeApi) -> TestClient:
    return TestClient(make_app(api, tokens={ADMIN: Role.ADMIN, READER: Role.READER}))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_reader_downloads_pcapng_named_after_switch_and_port(client: TestClient, api: FakeApi) -> None:
    r = client.get(URL, params={"count": 5, "direction": "in"}, headers=_bearer(READER))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-pcapng"
    assert r.headers["content-disposition"] == 'attachment; filename="s-p.pcapng"'
    (pkt,) = list(PcapNgReader(io.BytesIO(r.content)))
    assert bytes(pkt) == api.capture_frames[0] and pkt.comment == b"in p: FLOOD_BROADCAST"
    name, args = next(c for c in api.calls if c[0] == "capture")
    assert args == ("s", "p", "in", 5, 60.0, 64 * 2**20, None), "the defaults apply to what is left out"
    assert any(t.startswith("watch") for t in api.threads), "the capture ran on the WatchPool's threads"


@pytest.mark.parametrize(("params", "needle"), [
    ({"direction": "sideways"}, "capture direction must be in, out or both, got 'sideways'"),
    ({"count": 0}, f"capture count must be 1-{COUNT_MAX} frames, got 0"),
    ({"count": COUNT_MAX + 1}, f"capture count must be 1-{COUNT_MAX} frames"),
    ({"seconds": 0}, "capture seconds must be more than 0"),
    ({"seconds": SECONDS_MAX * 2}, f"at most {SECONDS_MAX:.0f}"),
    ({"max_bytes": 0}, "capture max_bytes must be"),
    ({"filter": "x" * (FILTER_MAX_CHARS + 1)}, f"at most {FILTER_MAX_CHARS}"),
    ({"count": "many"}, "query.count"),
])
def test_bad_parameters_are_400_with_the_models_message(client: TestClient, params: dict[str, Any],
                                                        needle: str) -> None:
    r = client.get(URL, params=params, headers=_bearer(READER))
    assert r.status_code == 400 and r.headers["content-type"] == "application/json", r.text
    assert needle in r.json()["error"], r.json()


@pytest.mark.parametrize("url", ["/switches/nope/ports/p/capture", "/switches/s/ports/nope/capture"])
def test_unknown_switch_or_port_is_404_json(client: TestClient, url: str) -> None:
    r = client.get(url, headers=_bearer(READER))
    assert r.status_code == 404 and "nope" in r.json()["error"]


def test_the_schema_documents_the_route_and_its_parameters(client: TestClient) -> None:
    op = client.get("/openapi.json", headers=_bearer(READER)).json()["paths"][
        "/switches/{name}/ports/{port}/capture"]["get"]
    params = {p["name"]: p for p in op["parameters"]}
    assert set(params) == {"name", "port", "direction", "count", "seconds", "max_bytes", "filter"}
    assert params["direction"]["schema"]["enum"] == ["in", "out", "both"]
    assert params["count"]["schema"]["maximum"] == COUNT_MAX and params["count"]["schema"]["minimum"] == 1
    assert params["seconds"]["schema"]["maximum"] == SECONDS_MAX
    assert all(p.get("description") for p in params.values()), "every parameter says what it means"
    assert "application/x-pcapng" in op["responses"]["200"]["content"]
    assert {"400", "404", "429"} <= set(op["responses"])


def test_captures_share_the_pools_bound(api: FakeApi) -> None:
    """With the pool's one slot held by a watch, a capture is 429 at once, saying what holds the pool."""
    api.watch_gate = threading.Event()
    pool = WatchPool(size=1)
    app = make_app(api, watches=pool)
    holder = threading.Thread(target=lambda: TestClient(app).get("/switches/s/watch", params={"seconds": 30}))
    holder.start()
    try:
        deadline = time.monotonic() + 10
        while not any(c[0] == "watch" for c in api.calls):
            assert time.monotonic() < deadline, "the watch did not start"
            time.sleep(0.01)
        r = TestClient(app).get(URL)
        assert r.status_code == 429 and "watches, event waits or captures" in r.json()["error"], r.text
    finally:
        api.watch_gate.set()
        holder.join(10)
    assert TestClient(app).get(URL).status_code == 200, "the slot is free again"
    pool.shutdown()


@pytest.fixture
def served(api: FakeApi, tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "api.sock")
    server = uvicorn.Server(uvicorn.Config(make_app(api), uds=path, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield path
    finally:
        server.should_exit = True
        thread.join(10)


def test_the_client_streams_it_and_refuses_as_the_api_does(served: str, api: FakeApi) -> None:
    with RestSwitchApi(socket_path=served) as remote:
        download = remote.capture("s", "p", count=1, filter="arp")
        assert download.filename == "s-p.pcapng"
        data = b"".join(download)
        (pkt,) = list(PcapNgReader(io.BytesIO(data)))
        assert bytes(pkt) == api.capture_frames[0]
        with pytest.raises(InvalidRequest, match="capture count must be"):
            remote.capture("s", "p", count=0)
        with pytest.raises(NotFound, match="nope"):
            remote.capture("s", "nope")


def test_the_cli_writes_the_file_and_says_so_on_stderr(served: str, api: FakeApi, tmp_path: Path) -> None:
    api.capture_frames = api.capture_frames * 3
    runner = CliRunner()
    out = tmp_path / "p.pcapng"
    r = runner.invoke(cli_module.cli, ["--socket", served, "capture", "s", "p", "--count", "2", "-w", str(out)])
    assert r.exit_code == 0, r.output
    assert len(list(PcapNgReader(io.BytesIO(out.read_bytes())))) == 2
    assert "2 frames written to" in r.stderr and "0 dropped" in r.stderr
    r = runner.invoke(cli_module.cli, ["--socket", served, "capture", "s", "p", "-w", "-"])
    assert r.exit_code == 0 and len(list(PcapNgReader(io.BytesIO(r.stdout_bytes)))) == 3
    assert b"frames written" not in r.stdout_bytes, "the summary never goes into the pcap stream"
    missing = tmp_path / "never.pcapng"
    r = runner.invoke(cli_module.cli, ["--socket", served, "capture", "s", "p", "--count", "0", "-w", str(missing)])
    assert r.exit_code == 1 and "Error: capture count must be" in r.stderr and not missing.exists()
