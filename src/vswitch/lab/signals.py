"""The lab's one stop sequence for processes: SIGTERM, a grace period, then SIGKILL — by PID only.

Used for the lab's vswitchd daemons (`daemons.terminate`) and for whatever still runs inside a
namespace being removed (`netns.remove`).
Invariant: a signal goes only to a PID the caller's `running` lists at that moment; never by name or
pattern (PIDs are recycled: `running` must check each one is still the process it means).
Must not touch: namespaces, sockets, files.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Sequence

POLL_S = 0.05


def escalate(running: Callable[[], Sequence[int]], term_wait_s: float, kill_wait_s: float) -> None:
    """SIGTERM every PID `running()` lists, wait up to `term_wait_s` until it lists none, then SIGKILL
    those it still lists and wait up to `kill_wait_s`. A PID gone meanwhile is no error. Returns when
    none is left or the waits are over; a caller that must know checks `running()` again."""
    for sig, wait_s in ((signal.SIGTERM, term_wait_s), (signal.SIGKILL, kill_wait_s)):
        pids = running()
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and running():
            time.sleep(POLL_S)  # a process's exit has no descriptor to wait on unless it is our child
