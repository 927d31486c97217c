"""Per-frame errors raised by port back-ends and by the offload helpers.

Owns the exceptions that mean "this one frame cannot go", as opposed to
:class:`vswitch.ports.base.LinkDown` ("the endpoint cannot take frames right now") and any other
``OSError`` ("the port is broken"). The datapath counts a per-frame error as a drop for that frame
and keeps the port up.
"""

from __future__ import annotations


class FrameRejected(OSError):
    """The endpoint refused this frame only (too short, larger than the MTU, bad vnet header).

    ``errno`` carries the kernel's reason (EINVAL, EMSGSIZE). The port stays usable.
    """


class EgressDropped(OSError):
    """The endpoint's kernel transmit queue dropped this frame (ENOBUFS from a full qdisc, e.g. a
    tbf shaper). The frame is gone: retrying it would only spin, since the socket stays writable.
    The datapath counts it as DROP_QUEUE_FULL; the port stays usable."""


class OffloadError(ValueError):
    """A vnet-header frame cannot be converted for the egress port (malformed, or an
    offload we do not implement such as UFO). Drop the frame; nothing is wrong with any port."""
