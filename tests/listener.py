"""A unix stream socket served by another process: what a port must never take over.

Every client (a probe included) gets the greeting ``still mine``, so a test can show the socket
still works after vswitch refused it. The process's pid is what a refusal must name.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

GREETING = b"still mine"

_SCRIPT = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1]); s.listen(8)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    try:
        c.sendall(b"still mine")
    except OSError:
        pass
    c.close()
"""


@contextmanager
def other_process_listening(path: str) -> Iterator[subprocess.Popen[str]]:
    """Serve `path` from a child process until the block ends; yields the process once it listens."""
    proc = subprocess.Popen([sys.executable, "-c", _SCRIPT, path], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait()
