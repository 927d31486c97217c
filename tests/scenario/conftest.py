"""The scenario switch every story is told on: in-memory ports on the Python datapath, and (root only)
real veth cables on each datapath (linkswitch.py)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest
from linkswitch import LinkSwitch
from memswitch import Factory, MemSwitch

import datapaths
from vswitch.core.policy import PortPolicy


@pytest.fixture(params=["memory", *(pytest.param(d, marks=pytest.mark.root) for d in datapaths.DATAPATHS)])
def switch(request: pytest.FixtureRequest) -> Iterator[Factory]:
    """The story's switch: in-memory ports on the Python datapath, then real veth cables on each
    datapath (linkswitch.py; root only)."""
    made: list[MemSwitch] = []
    on_links = request.param != "memory"
    if on_links:
        datapaths.require(request.param)

    def make(ports: Mapping[str, PortPolicy | None] | str = "ABC", **kw: object) -> MemSwitch:
        spec = {p: None for p in ports} if isinstance(ports, str) else ports
        if on_links:
            if "clock" in kw:
                pytest.skip("ageing on real links runs on the real clock: the in-memory story tells it")
            sw: MemSwitch = LinkSwitch(spec, datapath=request.param, **kw)  # type: ignore[arg-type]
        else:
            sw = MemSwitch(spec, **kw)  # type: ignore[arg-type]
        made.append(sw)
        return sw

    yield make
    for sw in reversed(made):
        sw.close()
