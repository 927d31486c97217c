"""Network namespaces as a port back-end sees them: say where a netdev lives, find it again, act there.

Owns: a *reference* to a network namespace that can be stored and followed after a daemon restart
(:func:`locate` makes one from a namespace descriptor, :func:`open_ref` follows it back), and
:func:`run_in`, which runs one short function on a throw-away thread that joined a namespace —
the one way any layer enters a namespace (by descriptor, by name under /run/netns, or by path).

A reference is a small JSON-able dict:
- ``{"self": True, "ino": I}`` — the daemon's own namespace (followed without any ``setns``);
- ``{"name": N, "ino": I}`` — a named namespace, ``/run/netns/N`` (``ip netns``);
- ``{"pid": P, "ino": I}`` — a namespace held only by a process (QEMU, a container's init);
- ``{"ino": I}`` — one we could not name (held by a descriptor or a bind mount elsewhere).

Invariants:
- The inode of the namespace file (``st_ino`` on nsfs) is its identity while it exists; a name or a
  PID is only a way to reach it, so :func:`open_ref` accepts a path only when the inode matches (a
  re-created namespace of the same name, or a reused PID, is not the one the netdev went away with).
- The calling thread never changes namespace: ``setns`` only ever happens on :func:`run_in`'s own
  short-lived thread, which ends with the call.
Must not touch: netlink, the store, links themselves.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"

NetnsRef = dict[str, Any]


class NamespaceGone(OSError):
    """The namespace a reference names exists no more (nothing that held it is left)."""


def own_inode() -> int:
    """Inode of the daemon's network namespace (the process's, whatever thread asks)."""
    return os.stat("/proc/self/ns/net").st_ino


def label(ref: NetnsRef | None) -> str:
    """The reference in words, for messages and `port show`."""
    if ref is None or ref.get("self"):
        return "vswitchd's own namespace"
    if "name" in ref:
        return f"namespace {ref['name']!r}"
    if "pid" in ref:
        return f"the namespace of pid {ref['pid']} (net:[{ref.get('ino')}])"
    return f"namespace net:[{ref.get('ino')}]"


def locate(ns_fd: int) -> NetnsRef:
    """A reference to the namespace `ns_fd` refers to: ours, a named one, or one a process holds.

    Scans /run/netns, then /proc/*/ns/net (a few thousand stat calls at worst): call it when the
    namespace changed, not per frame.
    """
    ino = os.fstat(ns_fd).st_ino
    if ino == own_inode():
        return {"self": True, "ino": ino}
    return _holder(ino)


def held_elsewhere(ino: int) -> bool:
    """Whether namespace `ino` is named (/run/netns) or some other process is in it — i.e. it lives
    on without the descriptors and sockets this daemon holds there (which alone would keep a deleted
    VM namespace, and the TAPs in it, alive)."""
    holder = _holder(ino, skip_pid=os.getpid())
    return ino == own_inode() or "name" in holder or "pid" in holder


def _holder(ino: int, skip_pid: int | None = None) -> NetnsRef:
    for name in _listdir(NETNS_DIR):
        if _ino(os.path.join(NETNS_DIR, name)) == ino:
            return {"name": name, "ino": ino}
    for pid in _pids():
        if pid != skip_pid and _ino(f"/proc/{pid}/ns/net") == ino:
            return {"pid": pid, "ino": ino}
    return {"ino": ino}


def open_ref(ref: NetnsRef) -> int:
    """A new descriptor (O_RDONLY) of the namespace `ref` names; the caller closes it.

    Raises NamespaceGone when no path leads to a namespace with that inode any more.
    """
    if ref.get("self"):
        return os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    ino = ref.get("ino")
    first = []
    if "name" in ref:
        first.append(os.path.join(NETNS_DIR, str(ref["name"])))
    if "pid" in ref:
        first.append(f"/proc/{int(ref['pid'])}/ns/net")
    for path in first:
        fd = _open_if(path, ino)
        if fd is not None:
            return fd
    # renamed, or the process that held it is gone but another one (a child) still does
    for path in [os.path.join(NETNS_DIR, n) for n in _listdir(NETNS_DIR)] + [f"/proc/{p}/ns/net" for p in _pids()]:
        if _ino(path) == ino:
            fd = _open_if(path, ino)
            if fd is not None:
                return fd
    raise NamespaceGone(errno.ENOENT, f"{label(ref)} is gone")


def setns(ns_fd: int) -> None:
    """Move the *calling thread* into the network namespace of `ns_fd` (OSError on failure)."""
    if hasattr(os, "setns"):  # Python 3.12+
        os.setns(ns_fd, CLONE_NEWNET)
        return
    if _libc().setns(ns_fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns into a network namespace failed: {os.strerror(err)}")


def path(netns: str) -> str:
    """The file naming namespace `netns`: a name under /run/netns (``ip netns``), or already a path."""
    return netns if netns.startswith("/") else os.path.join(NETNS_DIR, netns)


def run_in(ns: int | str, fn: Callable[[], T]) -> T:
    """Run `fn` on a new thread that joined namespace `ns` and return its result (or raise it).

    `ns` is a namespace descriptor, a name under /run/netns or a path (``/proc/PID/ns/net``); a
    name that does not exist raises FileNotFoundError (a namespace is never created here), a
    failed ``setns`` OSError. What `fn` opens there (a /dev/net/tun file, a socket) keeps that
    namespace for its life and can be used from any thread afterwards; a program `fn` starts is
    born there. The calling thread never changes namespace.
    """
    box: dict[str, Any] = {}

    def body() -> None:
        try:
            if isinstance(ns, int):
                setns(ns)
            else:
                fd = os.open(path(ns), os.O_RDONLY | os.O_CLOEXEC)
                try:
                    setns(fd)
                finally:
                    os.close(fd)
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc
        # the thread ends here, and its namespace with it

    t = threading.Thread(target=body, name=f"netns-{ns}", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


_LIBC: Any = None


def _libc() -> Any:
    global _LIBC
    if _LIBC is None:
        _LIBC = ctypes.CDLL(None, use_errno=True)
    return _LIBC


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _pids() -> list[int]:
    return sorted(int(e) for e in _listdir("/proc") if e.isdigit())


def _ino(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _open_if(path: str, ino: Any) -> int | None:
    """Open `path` if it is (still, once open) the namespace with inode `ino`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    if os.fstat(fd).st_ino == ino:
        return fd
    os.close(fd)
    return None
