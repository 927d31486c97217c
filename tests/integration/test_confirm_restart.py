"""An External switch's confirm survives restarts, and its deadline is absolute.

Before: a confirmed switch came back `awaiting-confirm` after a clean restart, then reverted and was
deleted from the store — a rebooted server lost its External switch; a restart also restarted the
countdown from the full timeout.

Run once, on `auto` (the kernel datapath where it loads): the confirm and its deadline are the control
plane's; the closing ping checks only that the switch is there. test_kernel_external.py has the host's
traffic through an External switch on both datapaths.
"""

from __future__ import annotations

import signal
import time

import pytest
from switchlab import Daemon
from test_external_switch import _link_state, lab  # noqa: F401  (fixture)

import netns as ns_helpers
from vswitch.control.model import SwitchSpec, SwitchType
from waiting import wait_until

pytestmark = pytest.mark.root


def _wait_past(deadline_epoch: float) -> None:
    # the behaviour under test is what happens once this wall-clock time has passed
    wait_until(lambda: time.time() >= deadline_epoch, what="the confirm deadline to pass")


def _restart(d: Daemon, sig: signal.Signals | None, kept: list[Daemon]) -> Daemon:
    """Stop `d` with `sig` (None: already stopped) and start a daemon on its state directory."""
    if sig is not None:
        d.stop(sig=sig)
    kept.append(Daemon(d.ns, state_dir=d.state_dir).start())
    return kept[-1]


def test_a_confirmed_switch_stays_across_sigterm_and_sigkill_restarts(lab):  # noqa: F811
    d = Daemon(lab.host).start()
    kept = [d]  # a Daemon's temporary directory holds the state directory: keep each until the end
    try:
        with d.api() as api:
            api.create_switch(SwitchSpec("cf", SwitchType.EXTERNAL, nic=lab.nic, confirm_timeout_s=3.0))
            deadline = time.time() + 3.0
            assert api.confirm_switch("cf").state == "up"
        for sig in (signal.SIGTERM, signal.SIGKILL):
            d = _restart(d, sig, kept)
            with d.api() as api:
                assert api.get_switch("cf").state == "up", f"after a {sig.name} restart the confirm must hold"
        _wait_past(deadline + 1.0)
        with d.api() as api:
            assert [s.name for s in api.list_switches()] == ["cf"], "a confirmed switch must never revert"
            assert api.get_switch("cf").state == "up"
        assert ns_helpers.ping(lab.host, lab.server_ip), "the host reaches the server through the switch"
    finally:
        for old in reversed(kept):
            old.cleanup()


def test_the_confirm_deadline_is_absolute_across_restarts(lab):  # noqa: F811
    before = _link_state(lab.host, lab.nic)
    d = Daemon(lab.host).start()
    kept = [d]  # a Daemon's temporary directory holds the state directory: keep each until the end
    try:
        with d.api() as api:
            api.create_switch(SwitchSpec("cd", SwitchType.EXTERNAL, nic=lab.nic, confirm_timeout_s=600.0))
        created = time.monotonic()
        d = _restart(d, signal.SIGKILL, kept)
        with d.api() as api:
            info = api.get_switch("cd")
        assert info.state == "awaiting-confirm"
        assert info.confirm_deadline_s is not None
        assert info.confirm_deadline_s <= 600.0 - (time.monotonic() - created) + 0.5, \
            f"a restart must not restart the countdown: {info.confirm_deadline_s} s left"

        # unconfirmed, and the deadline passes while no daemon runs: the next start reverts it
        with d.api() as api:
            api.delete_switch("cd")
            api.create_switch(SwitchSpec("cd", SwitchType.EXTERNAL, nic=lab.nic, confirm_timeout_s=2.0))
            deadline = time.time() + 2.0
        d.stop(sig=signal.SIGKILL)
        _wait_past(deadline + 0.5)
        d = _restart(d, None, kept)
        with d.api() as api:
            assert api.list_switches() == [], "a switch whose deadline passed while vswitchd was down is reverted"
        assert _link_state(lab.host, lab.nic) == before, "the revert gives the NIC back exactly"
        assert "vs-cd" not in ns_helpers.run(lab.host, ["ip", "-o", "link"]).stdout
        assert ns_helpers.ping(lab.host, lab.server_ip)
    finally:
        for old in reversed(kept):
            old.cleanup()
