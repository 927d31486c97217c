"""Named crash points: where a change to the kernel or the store can be interrupted.

Every step of a change that touches the kernel or the store (an intent written, a link created, a
netlink step of the takeover, a commit) calls :func:`crashpoint` with a stable name. In normal
operation that is one dictionary lookup and nothing happens. The kill-at-every-step tests start
`vswitchd` with

- ``VSWITCH_CRASHPOINTS_LOG=FILE``: every crash point reached is appended to FILE (one name a line),
  so a test learns the steps of an operation without hard-coding them;
- ``VSWITCH_CRASH_AT=NAME[#N]``: the process SIGKILLs itself on reaching NAME (the N-th time,
  default the first) — exactly what a power cut or `kill -9` does there, no cleanup, no atexit;
- ``VSWITCH_CRASH_AT_FILE=FILE``: the same, armed at run time: FILE holds ``NAME[#N]`` (or nothing:
  disarmed) and is read at each crash point; a new content counts from 0 again, so a daemon that
  came back from one kill can be armed for the next without a restart of its own.

Must not touch: anything but the environment, the log file, the arming file and the process's own signal.
"""

from __future__ import annotations

import os
import signal

_LOG = os.environ.get("VSWITCH_CRASHPOINTS_LOG")
_ARM_FILE = os.environ.get("VSWITCH_CRASH_AT_FILE")
_armed = os.environ.get("VSWITCH_CRASH_AT", "")
_seen: dict[str, int] = {}


def _arming() -> str:
    """The arming file's ``NAME[#N]``; a change starts the counts again."""
    global _armed
    try:
        with open(_ARM_FILE) as f:  # type: ignore[arg-type]
            text = f.read().strip()
    except FileNotFoundError:
        text = ""
    if text != _armed:
        _armed = text
        _seen.clear()
    return text


def crashpoint(name: str) -> None:
    """Mark step `name`; log it and/or die here when the environment asks for it (tests only)."""
    if not _LOG and not _armed and not _ARM_FILE:
        return
    at, _, nth = (_arming() if _ARM_FILE else _armed).partition("#")
    count = _seen[name] = _seen.get(name, 0) + 1
    if _LOG:
        with open(_LOG, "a") as f:
            f.write(f"{name}#{count}\n")
            f.flush()
            os.fsync(f.fileno())
    if name == at and count == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
