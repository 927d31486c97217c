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
  host vNIC or a VM's NIC alive across a daemon crash or restart; ``close(remove=True)`` /
  ``destroy()`` clear it again.
- TUNSETIFF finds (or creates) a TAP by name in the namespace of the /dev/net/tun *file*, which is
  the namespace of the thread that opened it. ``netns`` is where the netdev was last seen (a
  :mod:`vswitch.ports.netns` reference, updated by :meth:`TapPort.note_netns`); ``open`` attaches
  there. A TAP is only ever *created* in vswitchd's own namespace: elsewhere a missing TAP (or a
  namespace that is gone, taking its TAP with it) is :class:`TapGone`, never a new device.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
from typing import Any

from vswitch.ports import netns as _netns
from vswitch.ports.base import MAX_FRAME_BYTES, VNET_HDR_LEN, LinkDown, Port, link_mtu

# <linux/if_tun.h>: _IOW('T', nr, int) = 0x40045400 | nr
TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
TUNGETIFF = 0x800454D2      # _IOR('T', 210, unsigned int)
TUNGETDEVNETNS = 0x54E3     # _IO('T', 227): a new fd of the netdev's namespace

IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFF_PERSIST = 0x0800
IFF_VNET_HDR = 0x4000

TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08

#: What we ask the TAP to hand us: partial checksums and TCP super-frames (v4 and v6).
DEFAULT_OFFLOADS = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6

_IFREQ = struct.Struct("16sH22x")  # struct ifreq: name, flags, padding to 40 bytes
_IFREQ_HWADDR = struct.Struct("16sH6s16x")  # struct ifreq: name, sockaddr (family, 6 of sa_data), padding
SIOCSIFHWADDR = 0x8924
SIOCGIFHWADDR = 0x8927
ARPHRD_ETHER = 1
_INT = struct.Struct("i")


class TapGone(OSError):
    """The TAP is not where it was: its namespace is gone (the TAP went with it) or it was deleted
    there. Reopening never creates a new TAP in vswitchd's namespace in its place."""


class TapPort(Port):
    """A TAP device whose descriptor this port owns.

    ``TapPort(name, ifname, vnet=True, persist=False, offloads=DEFAULT_OFFLOADS, netns=None)``;
    ``ifname`` may be a pattern such as ``"vs%d"``: after :meth:`open` it holds the name the kernel
    chose. ``netns``: where the TAP was last seen (None: vswitchd's own namespace). ``mac``: the
    netdev's MAC, set on every open (None: whatever the kernel gave it).
    """

    kind = "tap"

    def __init__(self, name: str, ifname: str, vnet: bool = True, *, persist: bool = False,
                 offloads: int = DEFAULT_OFFLOADS, netns: _netns.NetnsRef | None = None,
                 mac: str | None = None) -> None:
        super().__init__(name)
        if not ifname or len(ifname.encode()) > 15:
            raise ValueError(f"TAP name must be 1-15 bytes, got {ifname!r}")
        self.ifname = ifname
        self.vnet = vnet
        self.persist = persist
        self.offloads = offloads if vnet else 0
        self.vnet_hdr_len = VNET_HDR_LEN if vnet else 0
        self._fd: int | None = None
        #: where the netdev was last seen; None or {"self": True, ...}: vswitchd's own namespace
        self.netns = netns
        self.mac = mac
        self._gone: TapGone | None = None  # its namespace is gone: nothing will ever bring it back
        self._may_create = True
        # A TSO super-frame (64 KiB + Ethernet/VLAN) plus the vnet header must fit one read,
        # or the kernel truncates it silently.
        self._read_size = MAX_FRAME_BYTES + self.vnet_hdr_len + 64

    def open(self) -> None:
        """Create or attach the TAP, set the vnet header size, offloads and persistence.

        Attaches in the namespace the TAP was last seen in (``netns``); creates one only in
        vswitchd's own. Raises TapGone when the TAP is not there any more, OSError otherwise.
        """
        if self._fd is not None:
            return
        fd = self._open_tun(create=self.netns is None or bool(self.netns.get("self")))
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
            if not self._may_create:
                # It vanished between the look-up and TUNSETIFF, which then made a new one: a fresh
                # TAP is not persistent yet. Closing the descriptor removes it again.
                _, got = _IFREQ.unpack(fcntl.ioctl(fd, TUNGETIFF, bytes(_IFREQ.size)))
                if not got & IFF_PERSIST:
                    raise TapGone(errno.ENODEV, f"TAP {self.ifname} is no longer in {_netns.label(self.netns)}")
            if self.vnet:
                fcntl.ioctl(fd, TUNSETVNETHDRSZ, _INT.pack(VNET_HDR_LEN))
            # Always set: attaching to an existing TAP must not inherit someone else's offloads
            # (a non-vnet reader that got TSO frames would see garbage).
            fcntl.ioctl(fd, TUNSETOFFLOAD, self.offloads)
            if self.persist:
                fcntl.ioctl(fd, TUNSETPERSIST, 1)
            if self.mac is not None:
                _set_hwaddr(fd, self.mac)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.mtu = link_mtu(None, self.ifname, self.mtu)  # the netdev is here while we attach it
        self.generation += 1

    def _open_tun(self, *, create: bool) -> int:
        """A /dev/net/tun descriptor in the TAP's namespace. With ``create=False`` the TAP must exist
        there already (TapGone otherwise)."""
        self._may_create = create
        if create:
            return _open_dev()
        if self._gone is not None:
            raise self._gone
        assert self.netns is not None
        try:
            ns_fd = _netns.open_ref(self.netns)
        except _netns.NamespaceGone as e:
            self._gone = TapGone(errno.ENODEV, f"{e.strerror}: TAP {self.ifname} went with it "
                                               "(remove and re-add the port to create a new TAP)")
            raise self._gone from None
        try:
            def attach_there() -> int:
                if not _exists_here(self.ifname):
                    raise TapGone(errno.ENODEV, f"TAP {self.ifname} is no longer in {_netns.label(self.netns)}")
                return _open_dev()
            return _netns.run_in(ns_fd, attach_there)
        finally:
            os.close(ns_fd)

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
        TAP still exists where it was last seen, so a persistent TAP left by a crash or a restart
        can be removed; never creates one to do so."""
        if self._fd is None:
            if (self.netns is None or self.netns.get("self")) and not _exists_here(self.ifname):
                return  # gone, or not ours to find in this namespace: never create one here
            try:
                self.open()
            except TapGone:
                return
        self.close(remove=True)

    def set_mac(self, mac: str) -> str | None:
        """Give the netdev MAC `mac` now (a TAP changes its address while up) and on every later
        open; returns the MAC it had, or None when the TAP is closed (the next open sets it).
        Raises OSError when the kernel refuses (e.g. EADDRNOTAVAIL for a group address)."""
        if self._fd is None:
            self.mac = mac
            return None
        _, _, raw = _IFREQ_HWADDR.unpack(fcntl.ioctl(self._fd, SIOCGIFHWADDR, bytes(_IFREQ_HWADDR.size)))
        _set_hwaddr(self._fd, mac)
        self.mac = mac
        return ":".join(f"{b:02x}" for b in raw)

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
        d.update(ifname=self.ifname, persist=self.persist, offloads=self.offloads, open=self._fd is not None,
                 netns=_netns.label(self.netns))
        return d

    def note_netns(self, ns_fd: int) -> bool:
        """Record that the netdev is now in the namespace of `ns_fd` (from :meth:`device_netns`).

        Cheap when nothing moved (one fstat); True when the location changed and ``netns`` was
        updated (then it is worth storing for the next start). The caller closes `ns_fd`.
        """
        ino = os.fstat(ns_fd).st_ino
        if self.netns is not None and self.netns.get("ino") == ino:
            return False
        if self.netns is None and ino == _netns.own_inode():
            self.netns = {"self": True, "ino": ino}
            return False  # where it was created; nothing new to remember
        self.netns = _netns.locate(ns_fd)
        return True

    def device_netns(self) -> int:
        """A new descriptor of the network namespace the TAP's netdev is in now (TUNGETDEVNETNS);
        the caller closes it. OSError when the port is closed or the netdev is gone (EBADFD)."""
        if self._fd is None:
            raise OSError(errno.EBADF, f"TAP port {self.name} is not open")
        return fcntl.ioctl(self._fd, TUNGETDEVNETNS)


def _set_hwaddr(fd: int, mac: str) -> None:
    # On the TAP's own descriptor: it reaches the netdev in whatever namespace it was moved to.
    fcntl.ioctl(fd, SIOCSIFHWADDR, _IFREQ_HWADDR.pack(b"", ARPHRD_ETHER, bytes.fromhex(mac.replace(":", ""))))


def _open_dev() -> int:
    return os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)


def _exists_here(ifname: str) -> bool:
    """Whether a link named `ifname` exists in the calling thread's namespace (SIOCGIFINDEX)."""
    try:
        socket.if_nametoindex(ifname)
    except OSError:
        return False
    return True
