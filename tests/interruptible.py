"""Child processes a test interrupts with SIGINT, as Ctrl-C in a terminal would.

A test run started in the background of a non-interactive shell (`nohup … &`, some CI runners)
inherits SIGINT ignored, and an ignored disposition survives exec: Python then installs no
KeyboardInterrupt handler and the child never sees the test's Ctrl-C. The child here starts with
SIGINT at its default whatever the test run inherited.
"""

from __future__ import annotations

import signal
import subprocess
from typing import Any


def popen(argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """`subprocess.Popen(argv, **kwargs)` with SIGINT at its default in the child."""
    # default_int_handler in the parent is SIG_DFL in the child (a Python handler does not survive exec)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(argv, **kwargs)
    finally:
        signal.signal(signal.SIGINT, previous)
