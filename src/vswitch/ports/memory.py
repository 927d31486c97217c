"""In-memory port for tests and scenarios, like Open vSwitch's netdev-dummy.

Owns two queues and one eventfd: frames a test ``inject``s wait in the receive queue until the
switch ``recv``s them; frames the switch ``write``s land in ``sent`` for the test to ``take``.
No kernel device is involved, so it needs no root.

Invariants:
- ``fileno()`` is a real descriptor (an eventfd in semaphore mode) that is readable exactly while
  injected frames are waiting, so an epoll-driven datapath wakes up for it like for any port.
  ``inject`` may be called from another thread: the frame is queued before the count is raised.
- ``down=True`` makes ``write`` raise :class:`LinkDown`; ``error`` (an OSError) makes it raise
  that error; ``max_queue`` makes ``write`` return False once ``sent`` holds that many frames.
"""

from __future__ import annotations

import collections
import errno
import os
from typing import Any

from vswitch.ports.base import LinkDown, Port


class MemoryPort(Port):
    """``MemoryPort(name, vnet_hdr_len=0, max_queue=None)``: a port whose far end is the test."""

    kind = "memory"

    def __init__(self, name: str, vnet_hdr_len: int = 0, max_queue: int | None = None) -> None:
        super().__init__(name)
        self.vnet_hdr_len = vnet_hdr_len
        self.max_queue = max_queue
        #: Simulate a link that is down for now: ``write`` raises LinkDown.
        self.down = False
        #: Simulate a broken endpoint: ``write`` raises this error when set.
        self.error: OSError | None = None
        #: Frames the switch wrote, oldest first (as bytes).
        self.sent: list[bytes] = []
        self._rxq: collections.deque[bytes] = collections.deque()
        self._efd: int | None = None

    def open(self) -> None:
        """Create the eventfd. Idempotent."""
        if self._efd is None:
            self._efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_SEMAPHORE | os.EFD_CLOEXEC)
            self.generation += 1

    def close(self) -> None:
        """Close the eventfd and forget queued frames. Idempotent."""
        if self._efd is not None:
            os.close(self._efd)
            self._efd = None
            self._rxq.clear()
            self.generation += 1

    def fileno(self) -> int:
        """The eventfd, readable while injected frames wait; -1 when closed."""
        return -1 if self._efd is None else self._efd

    def inject(self, frame: bytes | bytearray | memoryview) -> None:
        """Queue ``frame`` (in this port's format) to be received by the switch."""
        if self._efd is None:
            raise OSError(errno.EBADF, f"memory port {self.name} is not open")
        self._rxq.append(bytes(frame))
        os.eventfd_write(self._efd, 1)

    def recv(self) -> bytes | None:
        """The oldest injected frame, or None when none is waiting."""
        if self._efd is None:
            raise OSError(errno.EBADF, f"memory port {self.name} is not open")
        try:
            os.eventfd_read(self._efd)  # semaphore mode: takes exactly one
        except BlockingIOError:
            return None
        return self._rxq.popleft()

    def write(self, buf: bytes | bytearray | memoryview) -> bool:
        """Record a frame the switch sent. False when ``max_queue`` frames are already waiting."""
        if self.error is not None:
            raise self.error
        if self.down:
            raise LinkDown(errno.ENETDOWN, f"memory port {self.name} is down")
        if self.max_queue is not None and len(self.sent) >= self.max_queue:
            return False
        self.sent.append(bytes(buf))
        return True

    def take(self) -> list[bytes]:
        """Return and clear the frames the switch wrote so far."""
        out, self.sent = self.sent, []
        return out

    @property
    def pending(self) -> int:
        """Injected frames not yet received by the switch."""
        return len(self._rxq)

    def describe(self) -> dict[str, Any]:
        """Kind, name, vnet header length and queue depths."""
        d = super().describe()
        d.update(pending=self.pending, sent=len(self.sent), down=self.down, max_queue=self.max_queue)
        return d
