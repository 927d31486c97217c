"""A switch on in-memory ports, driven Switchyard-style: frames in, expected frames out, each
expectation with the sentence that explains it (the sentence is the assertion message).

    sw = MemSwitch({"A": None, "B": None, "C": None})
    sw.expect(frame(BROADCAST, "a"), on="A", arrives_on=["B", "C"], not_on=["A"],
              why="a broadcast from A must reach B and C but not A")

The real Datapath runs on its thread with MemoryPorts attached, so these tests cover the same
loop, egress edits and counters as a daemon. `settle` makes each step deterministic: once the
ingress port's frame has been taken by the datapath thread, one `call` round-trip runs after that
batch completed, so every output of the frame has been written. No sleeps in assertions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from vswitch.core.policy import PortPolicy
from vswitch.core.switch import SwitchCore
from vswitch.datapath.loop import Datapath
from vswitch.ports.memory import MemoryPort

SETTLE_TIMEOUT_S = 5.0


class FakeClock:
    """The datapath's clock, moved by the test (`advance`) so ageing takes no wall time."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class MemSwitch:
    """A started Datapath over MemoryPorts named after the keys of `ports` (value: policy or None)."""

    #: a frame shorter than an Ethernet header can be injected (not on a veth: linkswitch.py)
    carries_runts = True

    def __init__(self, ports: Mapping[str, PortPolicy | None], *, ageing_s: float = 300,
                 clock: Callable[[], float] | None = None) -> None:
        self.core = SwitchCore(ageing_s=ageing_s)
        self.dp = Datapath("scenario", self.core, clock=clock) if clock else Datapath("scenario", self.core)
        self._events: list[Any] = []  # what the datapath handed over (on its thread)
        self.dp.on_events = lambda events, dropped: self._events.extend(events)
        self.ports: dict[str, MemoryPort] = {}
        try:
            for name, policy in ports.items():
                port = MemoryPort(name)
                port.open()
                self.ports[name] = port
                self.dp.attach(name, port, policy)
            self.dp.start()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.dp.stop()

    def __enter__(self) -> MemSwitch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- driving --------------------------------------------------------------------------------------
    def send(self, frame: bytes, *, on: str) -> dict[str, list[bytes]]:
        """Inject `frame` on port `on`, wait until the switch has handled it; return what each port got."""
        for port in self.ports.values():
            port.take()
        self.ports[on].inject(frame)
        self.settle(on)
        return {name: port.take() for name, port in self.ports.items()}

    def settle(self, on: str) -> None:
        port = self.ports[on]
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while port.pending:
            if time.monotonic() > deadline:
                raise AssertionError(f"the switch did not read the frame injected on {on} within {SETTLE_TIMEOUT_S} s")
            time.sleep(0.0002)
        self.dp.call(lambda: None)  # runs after the batch that read the frame has been delivered

    def expect(self, frame: bytes, *, on: str, arrives_on: Iterable[str] | Mapping[str, bytes],
               not_on: Iterable[str] = (), why: str) -> dict[str, list[bytes]]:
        """Send `frame` on `on`; exactly the ports in `arrives_on` must get it (once each, unchanged,
        or — for a mapping — as the given bytes), and no other port, `not_on` included, gets anything."""
        expected = dict(arrives_on) if isinstance(arrives_on, Mapping) else {p: frame for p in arrives_on}
        not_on = list(not_on)
        overlap = set(expected) & set(not_on)
        assert not overlap, f"test bug: {sorted(overlap)} both in arrives_on and not_on"
        got = self.send(frame, on=on)
        seen = {p: frames for p, frames in got.items() if frames}
        detail = f"\n  sent on {on}: {_show(frame)}\n  arrived: " + (
            ", ".join(f"{p}: {[_show(f) for f in fs]}" for p, fs in sorted(seen.items())) or "nowhere")
        for p in not_on:
            assert not got[p], f"{why}{detail}\n  ({p} must see nothing)"
        for p, want in expected.items():
            assert got[p] == [want], f"{why}{detail}\n  ({p} must get {_show(want)} once)"
        extra = sorted(set(seen) - set(expected))
        assert not extra, f"{why}{detail}\n  (unexpected output on {extra})"
        return got

    def later(self) -> None:
        """Let the story's time pass between two steps where it matters to what is recorded (a VM
        that migrates speaks from its new port seconds later): nothing to wait for here."""

    # -- inspecting (on the datapath thread) --------------------------------------------------------------
    def counters(self, port: str) -> dict[str, Any]:
        return self.dp.call(lambda: self.core.counters[port].snapshot())

    def fdb_port(self, mac: bytes, vlan: int = 1) -> Any:
        return self.dp.call(lambda: self.core.fdb.lookup(mac, vlan, self.dp.now))

    def events(self) -> list[Any]:
        def take() -> list[Any]:  # on the datapath thread, like the hand-over
            self._events += self.core.events.drain()[0]
            out, self._events[:] = list(self._events), []
            return out
        return self.dp.call(take)


def _show(frame: bytes) -> str:
    if len(frame) < 14:
        return f"<{len(frame)}-byte runt>"
    tag = ""
    if frame[12:14] in (b"\x81\x00", b"\x88\xa8"):
        tag = f" vid {int.from_bytes(frame[14:16], 'big') & 0xFFF}"
    return f"{frame[6:12].hex(':')} → {frame[0:6].hex(':')}{tag} ({len(frame)} B)"


#: what a story's `switch` fixture (conftest.py) gives: ports (names or policies) → a started switch
Factory = Callable[..., MemSwitch]
