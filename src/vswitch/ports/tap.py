"""TAP port: the switch owns the file descriptor of a TAP device; the kernel netdev is the endpoint.

Owns one /dev/net/tun descriptor attached (TUNSETIFF) to a TAP named ``ifname`` — created when
missing, attached when it exists (a persistent TAP left by an earlier run). The netdev itself (its
addresses, its namespace, up/down) belongs to whoever configures it (control/, lab/, a test); this
module never touches netlink.

Invariants:
- With ``vnet=True`` every frame read or written starts with a 10-byte ``virtio_net_hdr`` and the
  TAP advertises checksum and TSO offload (TUNSETOFFLOAD), so TCP between two TAP ports moves
  64 KB super-frames per read instead of 1.5 KB frames.
- The descriptor is non-blocking: ``recv`` returns None and ``write`` False instead of waiting.
- Writing while the netdev is down (or moving to another namespace) fails with EIO in the kernel;
  that is :class:`LinkDown`, not a dead port. The descriptor stays valid across namespaces.
- A TAP dies with its last descriptor unless persistent (TUNSETPERSIST): ``persist=True`` keeps a
  host vNIC alive across a daemon crash; ``close(remove=True)`` / ``destroy()`` clear it again.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from typing import Any

from vswitch.ports.base import MAX_FRAME_BYTES, VNET_HDR_LEN, LinkDown, Port, link_mtu

# <linux/if_tun.h>: _IOW('T', nr, int) = 0x40045400 | nr
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
TUNGETDEVNETNS = 0x54E3  # _IO('T', 227): a new descriptor of the netdev's network namespace

IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000

TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08

#: What we ask the TAP to hand us: partial checksums and TCP super-frames (v4 and v6).
DEFAULT_OFFLOADS = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6

_IFREQ = struct.Struct("16sH22x")  # struct ifreq: name, flags, padding to 40 bytes
_INT = struct.Struct("i")


class TapPort(Port):
    """A TAP device whose descriptor this port owns.

    ``TapPort(name, ifname, vnet=True, persist=False, offloads=DEFAULT_OFFLOADS)``; ``ifname`` may
    be a pattern such as ``"vs%d"``: after :meth:`open` it holds the name the kernel chose.
    """

    kind = "tap"

    def __init__(self, name: str, ifname: str, vnet: bool = True, *, persist: bool = False,
                 offloads: int = DEFAULT_OFFLOADS) -> None:
        super().__init__(name)
        if not ifname or len(ifname.encode()) > 15:
            raise ValueError(f"TAP name must be 1-15 bytes, got {ifname!r}")
        self.ifname = ifname
        self.vnet = vnet
        self.persist = persist
        self.offloads = offloads if vnet else 0
        self.vnet_hdr_len = VNET_HDR_LEN if vnet else 0
        self._fd: int | None = None
        # A TSO super-frame (64 KiB + Ethernet/VLAN) plus the vnet header must fit one read,
        # or the kernel truncates it silently.
        self._read_size = MAX_FRAME_BYTES + self.vnet_hdr_len + 64

    def open(self) -> None:
        """Create or attach the TAP, set the vnet header size, offloads and persistence."""
        if self._fd is not None:
            return
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            flags = IFF_TAP | IFF_NO_PI | (IFF_VNET_HDR if self.vnet else 0)
            try:
                res = fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(self.ifname.encode(), flags))
            except OSError as e:
                if e.errno == errno.EBUSY:
                    raise OSError(e.errno, f"TAP {self.ifname} is already held by another process "
                                           "(a TAP descriptor has one owner)") from None
                if e.errno == errno.EINVAL:
                    raise OSError(e.errno, f"{self.ifname} exists and is not a TAP device, "
                                           "or the TAP was created with other flags") from None
                raise
            self.ifname = res[:16].split(b"\0", 1)[0].decode()
            if self.vnet:
                fcntl.ioctl(fd, TUNSETVNETHDRSZ, _INT.pack(VNET_HDR_LEN))
            # Always set: attaching to an existing TAP must not inherit someone else's offloads
            # (a non-vnet reader that got TSO frames would see garbage).
            fcntl.ioctl(fd, TUNSETOFFLOAD, self.offloads)
            if self.persist:
                fcntl.ioctl(fd, TUNSETPERSIST, 1)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.mtu = link_mtu(None, self.ifname, self.mtu)  # the netdev is here while we attach it
        self.generation += 1

    def close(self, remove: bool = False) -> None:
        """Close the descriptor. A non-persistent TAP vanishes now; ``remove=True`` also clears
        persistence so a persistent TAP vanishes too. Idempotent."""
        fd = self._fd
        if fd is None:
            return
        self._fd = None
        if remove:
            try:
                fcntl.ioctl(fd, TUNSETPERSIST, 0)
            except OSError:
                pass
        os.close(fd)
        self.generation += 1

    def destroy(self) -> None:
        """Remove the TAP for good (clear persistence, close). Re-attaches first if closed and the
        TAP still exists in this namespace, so a persistent TAP left by a crash can be removed."""
        if self._fd is None:
            if not os.path.exists(f"/sys/class/net/{self.ifname}/tun_flags"):
                return  # gone, or not ours to find in this namespace: never create one here
            self.open()
        self.close(remove=True)

    def fileno(self) -> int:
        """The TAP descriptor, or -1 when closed."""
        return -1 if self._fd is None else self._fd

    def recv(self) -> bytes | None:
        """One frame (vnet header first when ``vnet``), or None when the TAP has nothing queued."""
        try:
            return os.read(self._fd, self._read_size)  # type: ignore[arg-type]
        except BlockingIOError:
            return None
        except TypeError:
            raise OSError(errno.EBADF, f"TAP port {self.name} is not open") from None

    def write(self, buf: bytes | bytearray | memoryview) -> bool:
        """Send one frame to the kernel netdev. False: its queue is full. LinkDown: the netdev is down."""
        try:
            os.write(self._fd, buf)  # type: ignore[arg-type]
        except BlockingIOError:
            return False
        except OSError as e:
            if e.errno == errno.EIO:
                raise LinkDown(errno.EIO, f"TAP {self.ifname} is down") from None
            raise
        except TypeError:
            raise OSError(errno.EBADF, f"TAP port {self.name} is not open") from None
        return True

    def describe(self) -> dict[str, Any]:
        """Kind, name, the TAP's name, vnet header and persistence."""
        d = super().describe()
        d.update(ifname=self.ifname, persist=self.persist, offloads=self.offloads, open=self._fd is not None)
        return d

    def device_netns(self) -> int:
        """A new descriptor (the caller closes it) of the network namespace the TAP's netdev is in
        now, which may not be ours once someone moved it (TUNGETDEVNETNS, Linux 5.3+).
        Raises OSError when the port is closed or the kernel cannot say."""
        if self._fd is None:
            raise OSError(errno.EBADF, f"TAP port {self.name} is not open")
        return fcntl.ioctl(self._fd, TUNGETDEVNETNS)
