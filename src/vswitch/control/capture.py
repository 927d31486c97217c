"""`vswitch capture`: one port's frames as a pcapng stream, each packet carrying the switch's decision.

Owns `CaptureRequest` (the parameters and their bounds, checked in one place: `CaptureRequest.parse`)
and `Capture`, the running capture: a frame observer on the switch's datapath (`dp.frame_observers`,
as `watch` uses) and the iterator of pcapng chunks (control/pcapng.py) the REST route streams and
the in-process api returns.

How a frame gets in: the observer runs on the datapath thread for every decided frame; it keeps
those whose in-port is the port ("in") or whose output ports include it ("out") as one tuple in a
bounded deque — a full deque drops the frame from the capture and counts it (`dropped`, written at
the end as the ISB's isb_ifdrop), so a slow reader never slows the switch. Everything else — the
egress tag edit, the filter (libpcap, control/pcapfilter.py), the comment, the encoding — happens on
the thread iterating the capture.

The frame "out" is the frame as the switch handed it to the port: the in-frame with the port's tag
edit (core.switch.egress_frame, the function the datapath applies; on the kernel fast path, whose
events carry no edits, the edit is the core's rule `SwitchCore.egress_edit`), before a GSO
super-frame is cut up for a port without offloads.

Kernel fast path: its decision events carry a frame's first `layout.EV_HEAD` (128) bytes and its
length. A capture of a port the program serves (a link port) therefore reads the frames themselves
from the port's link (`wire`: ports/packet_tap.py, an AF_PACKET socket that sees what arrives before
tc ingress and what leaves) and takes only the decisions from the observer: each frame is paired
with the decision of the same direction, length and first bytes (`match_key`), observed within
`MATCH_WAIT_S`; one whose decision never came (the event ring was full) is written saying so. The
frames of a port only Python serves are Python's, whole. A record that still carries a head only
is written as what it is (captured length < original length in its EPB).

Invariants: the observer is removed whatever ends the capture (count, seconds, bytes, the port or
switch gone, the reader gone: `close`); the chunks are, in order, SHB + IDB (at once, so `wireshark
-k -i -` starts), EPBs as frames arrive, an ISB last.
Must not touch: the datapath's state beyond adding and removing its observer (on its thread, `dp.call`).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from vswitch.control import pcapng
from vswitch.control.model import InvalidRequest, clip
from vswitch.control.pcapfilter import PcapFilter
from vswitch.core.switch import EDIT_KEEP, EDIT_POP, EDIT_PUSH, Decision, egress_frame
from vswitch.datapath.loop import PYTHON_PATH

DIRECTIONS = ("in", "out", "both")
COUNT_DEFAULT, COUNT_MAX = 1000, 1_000_000
SECONDS_DEFAULT, SECONDS_MAX = 60.0, 3600.0
#: bytes of packet blocks a capture writes at most (about the file's size)
BYTES_DEFAULT, BYTES_MAX = 64 * 2**20, 2**30
FILTER_MAX_CHARS = 1000
#: frames waiting between the datapath thread and the reader; beyond, dropped and counted
QUEUE_FRAMES = 2048
#: the snaplen of a capture of the Python datapath: the largest frame a vnet header lets in (64 KB GSO)
SNAPLEN_FULL = 262144
#: packet blocks per chunk at most (64 KB GSO frames: a few MB), so a chunk in flight stays small
CHUNK_FRAMES = 32
#: bytes of frames read from a link waiting for their decision; beyond, dropped and counted
PENDING_BYTES = 16 * 2**20
#: how often the reader looks for frames (and at its bounds): a capture's latency, not the switch's
POLL_S = 0.05


#: how long a frame read from the link waits for its decision before it is written without one
MATCH_WAIT_S = 0.5
#: the bytes a decision and a frame from the link are matched by: a kernel event's head (layout.EV_HEAD)
#: less a tag, which one side may carry in the frame and the other in metadata
MATCH_HEAD = 128 - 4


def match_key(flags: int, frame: bytes, length: int) -> tuple[int, int, bytes]:
    """What pairs a frame read from the link with the decision observed for it: its direction, its
    length and its first bytes, both without an 802.1Q/802.1ad tag."""
    if len(frame) >= 16 and frame[12:14] in (b"\x81\x00", b"\x88\xa8"):
        frame, length = frame[:12] + frame[16:], length - 4
    return flags, length, bytes(frame[:MATCH_HEAD])


class WireTap(Protocol):
    """Frames read from a port's link, both directions (ports/packet_tap.PacketTap)."""

    dropped: int

    def read(self, timeout: float) -> list[tuple[float, bool, bytes]]:
        """(time, outgoing, frame) of what came within `timeout`."""
        ...

    def close(self) -> None:
        """Stop reading; `dropped` is then final."""
        ...


class CaptureStream(Protocol):
    """What `capture` answers: pcapng chunks to iterate (from one thread), and `close` to end early."""

    def __iter__(self) -> Iterator[bytes]:
        ...

    def stop(self, why: str = "reader gone") -> None:
        """Ask the capture to end, saying `why`, without waiting (an event loop may call it)."""
        ...

    def close(self) -> None:
        """End the capture; idempotent."""
        ...


@dataclass(frozen=True, slots=True)
class CaptureRequest:
    """A capture's parameters, valid (build with `parse`)."""

    direction: str = "both"
    count: int = COUNT_DEFAULT
    seconds: float = SECONDS_DEFAULT
    max_bytes: int = BYTES_DEFAULT
    filter: str | None = None

    @classmethod
    def parse(cls, direction: object = "both", count: object = COUNT_DEFAULT, seconds: object = SECONDS_DEFAULT,
              max_bytes: object = BYTES_DEFAULT, filter: object = None) -> CaptureRequest:
        """The request, or InvalidRequest naming the first parameter out of its bounds."""
        if direction not in DIRECTIONS:
            raise InvalidRequest(f"capture direction must be in, out or both, got {clip(direction)}")
        if not (isinstance(count, int) and not isinstance(count, bool) and 1 <= count <= COUNT_MAX):
            raise InvalidRequest(f"capture count must be 1-{COUNT_MAX} frames, got {clip(count)}")
        if not (isinstance(seconds, int | float) and not isinstance(seconds, bool) and math.isfinite(seconds)
                and 0 < seconds <= SECONDS_MAX):
            raise InvalidRequest(f"capture seconds must be more than 0 and at most {SECONDS_MAX:.0f}, "
                                 f"got {clip(seconds)}")
        if not (isinstance(max_bytes, int) and not isinstance(max_bytes, bool) and 1 <= max_bytes <= BYTES_MAX):
            raise InvalidRequest(f"capture max_bytes must be 1-{BYTES_MAX} bytes, got {clip(max_bytes)}")
        if filter is not None and not isinstance(filter, str):
            raise InvalidRequest(f"capture filter must be a pcap filter expression, got {clip(filter)}")
        if isinstance(filter, str) and len(filter) > FILTER_MAX_CHARS:
            raise InvalidRequest(f"capture filter is {len(filter)} characters, at most {FILTER_MAX_CHARS}")
        return cls(direction, count, float(seconds), max_bytes, filter.strip() or None if filter else None)


def comment(direction: str, port: str, in_port: str, d: Decision, out_ports: list[str], *, mirror_copy: bool,
            kernel: bool) -> str:
    """A packet's comment: which way it crossed `port`, the VLAN, the decision's reason and where it went
    (e.g. ``in vm1 vlan 1: FORWARD_LEARNED → vm2``, ``out vm2 vlan 1: FORWARD_LEARNED from vm1``)."""
    where = f"{direction} {port}" + (f" vlan {d.vlan}" if d.vlan else "")
    if direction == "in":
        what = f"{d.reason.name} → {', '.join(out_ports)}" if out_ports else f"{d.reason.name} (dropped)"
    else:
        what = f"{d.reason.name} from {in_port}" + (" (mirror copy)" if mirror_copy else "")
    return f"{where}: {what}" + (" [kernel fast path]" if kernel else "")


class Capture:
    """A running capture of port `port` of switch `switch` on datapath `dp`; iterate it for pcapng chunks.

    `alive()` says whether the switch and port are still there (checked every poll); `egress_edit`
    the core's `SwitchCore.egress_edit` (for decisions that carry no edits); `snaplen` the most
    bytes kept of a frame. Construction compiles the filter (InvalidRequest) and installs the
    observer; `close` (or the end of the iteration) removes it. Iterate it from one thread."""

    def __init__(self, switch: str, port: str, request: CaptureRequest, dp: Any, alive: Callable[[], bool],
                 egress_edit: Callable[[Hashable, int, bytes, int], int], snaplen: int = SNAPLEN_FULL,
                 kernel_note: str | None = None, wire: WireTap | None = None) -> None:
        self.switch, self.port, self.request = switch, port, request
        self.snaplen = snaplen
        self.dropped = 0
        #: frames read from the port's link (ports/packet_tap.py); the observer then gives decisions only
        self._wire = wire
        self.decisions_lost = 0
        self._pending: deque[tuple[float, bool, bytes]] = deque()
        self._pending_bytes = 0
        self._decisions: dict[tuple[int, int, bytes], deque[tuple[float, str]]] = {}
        self._dp = dp
        self._alive = alive
        self._egress_edit = egress_edit
        self._kernel_note = kernel_note
        self._queue: deque[tuple[Any, ...]] = deque()
        self._closed = threading.Event()
        self._why_stopped = "reader gone"
        self._installed = False
        try:
            self._filter = PcapFilter(request.filter, snaplen) if request.filter else None
        except BaseException:
            if wire is not None:
                wire.close()
            raise
        self._observe = self._observer()
        try:
            dp.call(lambda: dp.frame_observers.append(self._observe))
        except BaseException:
            self._free()
            raise
        self._installed = True

    def _observer(self) -> Callable[..., None]:
        """The observer (on the datapath thread: a comparison, a length, one tuple)."""
        port, q, want_in, want_out = self.port, self._queue, self.request.direction != "out", \
            self.request.direction != "in"
        limit, wire = QUEUE_FRAMES, self._wire is not None

        def observe(pid: Any, buf: bytes, hdr: int, d: Decision, length: int | None = None,
                    t: float | None = None, path: str = PYTHON_PATH) -> None:
            if (want_in and pid == port) or (want_out and port in d.out_ports):
                if len(q) >= limit:
                    if wire:  # a decision lost: its frame is still written, saying so
                        self.decisions_lost += 1
                    else:
                        self.dropped += 1
                    return
                q.append((time.time() if t is None else t, pid, buf, hdr, d, length, path))
        return observe

    def stop(self, why: str = "reader gone") -> None:
        """Ask the iteration to end (within `POLL_S`; it then removes the observer itself and writes the
        ISB, whose comment says `why`). Never blocks, so an event loop may call it; from any thread."""
        self._why_stopped = why
        self._closed.set()

    def close(self) -> None:
        """End the capture (the reader is gone): the observer goes; idempotent, from any thread (it
        waits for the datapath thread: not from an event loop, use `stop` there)."""
        self._closed.set()
        self._remove()

    def _remove(self) -> None:
        if self._installed:
            self._installed = False
            dp, obs = self._dp, self._observe
            try:
                dp.call(lambda: obs in dp.frame_observers and dp.frame_observers.remove(obs))
            except Exception:  # a datapath stopped meanwhile has no observers to keep
                pass

    def _free(self) -> None:
        if self._filter is not None:
            self._filter.close()
        if self._wire is not None:
            self._wire.close()
            self.dropped += self._wire.dropped

    def _record(self, t: float, pid: Any, buf: bytes, hdr: int, d: Decision, length: int | None,
                path: str) -> tuple[int, bytes, int, str, int] | None:
        """(time in ns, captured bytes, original length, comment, epb flags) of one observed frame, or
        None when the filter refuses it."""
        rec = self._describe(t, pid, buf, hdr, d, length, path)
        if self._filter is not None and not self._filter.matches(rec[1], rec[2]):
            return None
        return rec

    def _describe(self, t: float, pid: Any, buf: bytes, hdr: int, d: Decision, length: int | None,
                  path: str) -> tuple[int, bytes, int, str, int]:
        """(time in ns, captured bytes, original length, comment, epb flags) of one observed frame."""
        port = self.port
        kernel = path != PYTHON_PATH
        frame = buf[hdr:] if hdr else buf
        wire_len = len(frame) if length is None else length
        outs = [str(p) for p in d.out_ports]
        if pid == port and self.request.direction != "out":
            direction, flags = "in", pcapng.INBOUND
            mirror_copy = False
        else:
            direction, flags = "out", pcapng.OUTBOUND
            i = d.out_ports.index(port)
            mirror_copy = d.mirror is not None and i >= len(d.out_ports) - len(d.mirror.copies)
            if d.edits is not None:
                edit = d.edits[i]
            elif kernel and len(frame) >= 14:
                try:
                    edit = self._egress_edit(port, d.vlan, frame, 0)
                except KeyError:  # the port left meanwhile
                    edit = EDIT_KEEP
            else:
                edit = EDIT_KEEP
            if edit != EDIT_KEEP and len(frame) >= 14:
                frame = bytes(egress_frame(frame, 0, edit, d.vlan))
                wire_len += 4 if edit == EDIT_PUSH else -4 if edit == EDIT_POP else 0
        data = bytes(frame[:self.snaplen])
        note = comment(direction, port, str(pid), d, outs, mirror_copy=mirror_copy, kernel=kernel)
        return int(t * 1e9), data, wire_len, note, flags

    def _take(self, n: int) -> list[tuple[int, bytes, int, str, int]]:
        """At most `n` records ready to write, in order, the filter applied."""
        q, out = self._queue, []
        if self._wire is None:
            while q and len(out) < n:
                rec = self._record(*q.popleft())
                if rec is not None:
                    out.append(rec)
            return out
        now = time.time()
        decisions = self._decisions
        while q:  # every decision observed: a key to find its frame by, and its comment
            t_ns, data, wire_len, note, flags = self._describe(*q.popleft())
            decisions.setdefault(match_key(flags, data, wire_len), deque()).append((now, note))
        pending = self._pending
        while pending and len(out) < n:
            t, outgoing, frame = pending[0]
            flags = pcapng.OUTBOUND if outgoing else pcapng.INBOUND
            key = match_key(flags, frame, len(frame))
            notes = decisions.get(key)
            if notes:
                note = notes.popleft()[1]
                if not notes:
                    del decisions[key]
            elif now - t < MATCH_WAIT_S:
                break  # its decision follows the frame (the program decides after the packet taps)
            else:
                note = f"{'out' if outgoing else 'in'} {self.port}: no decision seen (the switch's event lost)"
            pending.popleft()
            self._pending_bytes -= len(frame)
            data = frame[:self.snaplen]
            if self._filter is not None and not self._filter.matches(data, len(frame)):
                continue
            out.append((int(t * 1e9), data, len(frame), note, flags))
        if len(decisions) > QUEUE_FRAMES:  # decisions whose frame the link socket never got
            for key in [k for k, v in decisions.items() if now - v[-1][0] > 2 * MATCH_WAIT_S]:
                del decisions[key]
        return out

    def _wait(self) -> bool:
        """Wait a poll for frames (from the link in wire mode); True when asked to stop."""
        if self._wire is None:
            return self._closed.wait(POLL_S)
        want_in, want_out = self.request.direction != "out", self.request.direction != "in"
        for t, outgoing, frame in self._wire.read(POLL_S):
            if not (want_out if outgoing else want_in):
                continue
            if len(self._pending) < QUEUE_FRAMES and self._pending_bytes + len(frame) <= PENDING_BYTES:
                self._pending.append((t, outgoing, frame))
                self._pending_bytes += len(frame)
            else:
                self.dropped += 1
        return self._closed.is_set()

    def __iter__(self) -> Iterator[bytes]:
        return self.chunks()

    def chunks(self) -> Iterator[bytes]:
        """SHB + IDB at once, then the packet blocks of each poll as one chunk, then the ISB. Ends at
        the request's count, seconds or max_bytes, when the switch or port goes, or at `close`."""
        req = self.request
        start = time.time()
        end = time.monotonic() + req.seconds
        desc = f"vswitch switch {self.switch} port {self.port}, direction {req.direction}"
        if req.filter:
            desc += f", filter {req.filter}"
        if self._kernel_note:
            desc += f"; {self._kernel_note}"
        written = frames = 0
        why = "seconds reached"
        try:
            yield (pcapng.section_header(f"vswitch capture {self.switch} {self.port}")
                   + pcapng.interface_description(self.port, self.snaplen, desc))
            while True:
                out: list[bytes] = []
                taken = self._take(min(req.count - frames, CHUNK_FRAMES))
                for t_ns, data, wire_len, note, flags in taken:
                    block = pcapng.enhanced_packet(0, t_ns, data, wire_len, comment=note, flags=flags)
                    if written + len(block) > req.max_bytes:
                        why = "max_bytes reached"
                        break
                    out.append(block)
                    written += len(block)
                    frames += 1
                if out:
                    yield b"".join(out)
                if frames >= req.count:
                    why = "count reached"
                    break
                if why == "max_bytes reached":
                    break
                if len(taken) == CHUNK_FRAMES and not self._closed.is_set():
                    continue  # more may be ready: the next chunk before the next wait
                if self._wait():
                    why = self._why_stopped
                    break
                if time.monotonic() >= end:
                    break
                if not self._alive():
                    why = "port or switch gone"
                    break
        finally:
            self._remove()
            self._free()
        now = time.time()
        yield pcapng.interface_statistics(0, int(now * 1e9), dropped=self.dropped,
                                          start_ns=int(start * 1e9),
                                          comment=f"{frames} frames, {self.dropped} dropped (queue full); "
                                                  f"ended: {why}")
