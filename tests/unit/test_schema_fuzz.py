"""Schemathesis against the REST app's own OpenAPI (over the fake SwitchApi): no 5xx, and no request
valid per the schema refused with a 400 — the schema states what the server enforces.

Bounded for `make test`: a few examples per operation (the whole run takes some seconds), the same ones
every run (derandomized: a suite must not fail on a case one run happened to draw; CI once did, on a
schema-valid NIC name the host does not have). `make fuzz` (VSWITCH_FUZZ_EXAMPLES=N) draws new, many
more examples, to find what the fixed set misses. The api is
the in-memory fake, not a SwitchManager: generated requests would otherwise create TAPs and take
over NICs on the test host.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from fake_api import FakeApi, private
from hypothesis import HealthCheck, settings

from vswitch.control.model import PortKind, PortSpec, check_events_query
from vswitch.frontends.rest import make_app

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the test extras: pip install -e .[test]")
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)


class _NoWaitApi(FakeApi):
    """A watch and a long poll end at once: the fuzz checks what they answer, and a schema-valid
    30 s `wait_s` (or 10 s watch) would outlast the client's 10 s timeout, no failure of the api."""

    def watch(self, switch: str, seconds: float = 1.0, limit: int = 1000) -> list[Any]:
        return super().watch(switch, min(seconds, 0.01), limit)

    def events(self, switch: str | None = None, since: int = 0, limit: int = 1000, wait_s: float = 0.0) -> Any:
        check_events_query(since, limit, wait_s)  # refused as the api refuses it, before it is shortened
        return super().events(switch, since, limit, min(wait_s, 0.01))


def _app() -> object:
    api = _NoWaitApi()
    api.create_switch(private("s"))
    api.add_port("s", PortSpec("p", PortKind.MEMORY, "p"))
    return make_app(api)


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


_DRAWN = int(os.environ.get("VSWITCH_FUZZ_EXAMPLES", "0"))


@schema.parametrize()
@settings(max_examples=_DRAWN or 15, derandomize=not _DRAWN, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case: schemathesis.Case) -> None:
    checks = [not_a_server_error, positive_data_acceptance, status_code_conformance, response_schema_conformance]
    if case.operation.path == "/config/apply":
        # a document's rules between its parts (a name listed twice, a static entry's port) cannot be
        # stated in JSON Schema: its description states them, and a random document breaks them
        checks.remove(positive_data_acceptance)
    if case.operation.path.endswith("/acls") and case.operation.method.upper() == "POST":
        # an ACL rule's rules between its fields (a remote MAC or a remote IP; ports only with tcp/udp)
        # and what an IP prefix is cannot be stated in JSON Schema either: the model's messages state them
        checks.remove(positive_data_acceptance)
    if case.operation.path.endswith("/ports") and isinstance(case.body, dict) and case.body.get("kind") == "vxlan":
        # what a VTEP address is (unicast, the remotes' family) cannot be stated in JSON Schema either
        checks.remove(positive_data_acceptance)
    case.call_and_validate(checks=checks)
