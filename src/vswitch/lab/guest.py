"""A real QEMU guest for labs and tests: Debian's kernel, a busybox initramfs, a shell on the console.

Owns the guest image (built once into a cache directory) and the QEMU process of one guest. The
image is Debian's own ``linux-image-*`` kernel (fetched with ``apt-get download``, never installed)
and an initramfs written here: a static busybox, the modules of that kernel it loads at boot
(virtio-net, bridge, 802.1Q) in dependency order, and an ``/init`` that brings eth0 up with the
address and gateway given on the kernel command line, then runs a shell on the serial console.
The console is a unix socket; :meth:`QemuGuest.exec` types a command there and reads its output
and exit status.

The guest's NIC is whatever ``-netdev`` argument a vswitch port prints (``qemu-stream`` or
``qemu-dgram``), so a test with a guest proves that argument works with the real QEMU.

Invariants: software emulation (TCG) by default — it boots in about 2 s and works where nested KVM
does not; QEMU is stopped by PID, never by name; nothing outside ``cache_dir`` and the paths the
caller gives is written. Must not touch: switches (the caller adds the port), namespaces.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from vswitch.lab import daemons

DEFAULT_CACHE = Path("/var/cache/vswitch/guest")
QEMU = "qemu-system-x86_64"
BUSYBOX_PATHS = ("/usr/bin/busybox", "/bin/busybox")
#: the modules the guest loads at boot, found in the kernel package (their dependencies are added from
#: modinfo): eth0's, and a bridge and 802.1Q VLANs, so a guest can bridge inside itself (a nested
#: VM's switch) or tag its own traffic (a VLAN sub-interface on a trunk port)
GUEST_MODULES = ("virtio_pci", "virtio_net", "bridge", "8021q")
READY = "vswitch-guest-ready"

_INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev 2>/dev/null
dmesg -n 1
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko; done
for a in $(cat /proc/cmdline); do
  case $a in vs.ip=*) IP=${a#vs.ip=};; vs.gw=*) GW=${a#vs.gw=};; esac
done
ip link set lo up; ip link set eth0 up
for ip in $(echo "$IP" | tr , ' '); do ip addr add $ip dev eth0; done
[ -n "$GW" ] && ip route add default via $GW
stty -echo -F /dev/ttyS0 2>/dev/null
echo READY > /dev/ttyS0
export PS1=''
exec setsid sh -c 'exec sh </dev/ttyS0 >/dev/ttyS0 2>&1'
""".replace("READY", READY)


class GuestError(RuntimeError):
    """The guest image cannot be built or the guest does not start; the message says what is missing."""


@dataclass(frozen=True)
class GuestImage:
    kernel: Path
    initrd: Path


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)


def _kernel_package() -> str:
    """The versioned package linux-image-amd64 points to (e.g. linux-image-6.1.0-57-amd64)."""
    out = _run(["apt-cache", "depends", "linux-image-amd64"]).stdout
    m = re.search(r"Depends:\s*(linux-image-\S+)", out)
    if not m:
        raise GuestError("cannot find Debian's linux-image-amd64 package (apt-cache depends); "
                         "run `apt-get update` as root")
    return m.group(1)


def _modinfo_depends(ko: Path) -> list[str]:
    m = re.search(rb"depends=([A-Za-z0-9_,-]*)\x00", ko.read_bytes())
    return [d for d in (m.group(1).decode().split(",") if m else []) if d]


def _module_order(moddir: Path, wanted: tuple[str, ...]) -> list[Path]:
    """`wanted` and everything they depend on, each after its dependencies."""
    index = {p.name[:-3]: p for p in moddir.rglob("*.ko")}
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in seen:
            return
        seen.add(name)
        path = index.get(name)
        if path is None:
            raise GuestError(f"kernel module {name} is not in {moddir}")
        for dep in _modinfo_depends(path):
            visit(dep)
        order.append(path)

    for name in wanted:
        visit(name)
    return order


def _is_static(path: Path) -> bool:
    """True for an ELF executable without a program interpreter (it runs with no libc beside it)."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit ELF only
        return False
    phoff = int.from_bytes(data[0x20:0x28], "little")
    phentsize = int.from_bytes(data[0x36:0x38], "little")
    phnum = int.from_bytes(data[0x38:0x3A], "little")
    pt_interp = 3
    return all(int.from_bytes(data[phoff + i * phentsize:phoff + i * phentsize + 4], "little") != pt_interp
               for i in range(phnum))


def _cpio(entries: list[tuple[str, int, bytes]]) -> bytes:
    """An initramfs archive (cpio "newc"): (path, mode, data) in order, directories first."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], 1):
        raw = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0)
        out += b"070701" + b"".join(b"%08X" % v for v in fields) + raw
        out += b"\0" * (-(110 + len(raw)) % 4) + data + b"\0" * (-len(data) % 4)
    return bytes(out)


def ensure_image(cache_dir: Path = DEFAULT_CACHE) -> GuestImage:
    """Build (once) and return the guest image. GuestError names what is missing."""
    if shutil.which(QEMU) is None:
        raise GuestError(f"{QEMU} is missing (Debian package qemu-system-x86)")
    busybox = next((Path(p) for p in BUSYBOX_PATHS if os.path.exists(p)), None)
    if busybox is None or not _is_static(busybox):
        raise GuestError("a static busybox is missing (Debian package busybox-static)")
    pkg = _kernel_package()
    kernel = cache_dir / f"vmlinuz-{pkg}"
    # named by what goes into it: an image cached by an older vswitch (other modules, another
    # /init) is not taken for this one
    tag = hashlib.sha256(repr((GUEST_MODULES, _INIT)).encode()).hexdigest()[:8]
    initrd = cache_dir / f"initrd-{pkg}-{tag}.gz"
    if kernel.exists() and initrd.exists():
        return GuestImage(kernel, initrd)
    cache_dir.mkdir(parents=True, exist_ok=True)
    extract = cache_dir / f"{pkg}.d"
    if not extract.exists():
        debs = list(cache_dir.glob(f"{pkg}_*.deb"))
        if not debs:
            got = _run(["apt-get", "download", "-q", pkg], cwd=cache_dir)
            if got.returncode != 0:
                _run(["apt-get", "update", "-qq"])
                got = _run(["apt-get", "download", "-q", pkg], cwd=cache_dir)
            debs = list(cache_dir.glob(f"{pkg}_*.deb"))
            if not debs:
                raise GuestError(f"apt-get download {pkg} failed: {got.stderr.strip()[-300:]}")
        tmp = cache_dir / f"{pkg}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        x = _run(["dpkg-deb", "-x", str(debs[0]), str(tmp)])
        if x.returncode != 0:
            raise GuestError(f"dpkg-deb -x {debs[0].name} failed: {x.stderr.strip()}")
        tmp.rename(extract)
        for deb in debs:
            deb.unlink()
    vmlinuz = next(iter((extract / "boot").glob("vmlinuz-*")), None)
    moddirs = list((extract / "lib" / "modules").glob("*"))
    if vmlinuz is None or not moddirs:
        raise GuestError(f"{pkg} holds no kernel or no modules")
    modules = _module_order(moddirs[0], GUEST_MODULES)
    entries: list[tuple[str, int, bytes]] = [(d, 0o040755, b"") for d in
                                             ("bin", "lib", "lib/modules", "proc", "sys", "dev", "tmp")]
    entries.append(("bin/busybox", 0o100755, busybox.read_bytes()))
    entries.append(("init", 0o100755, _INIT.encode()))
    entries.append(("lib/modules/order", 0o100644, " ".join(p.name[:-3] for p in modules).encode()))
    entries += [(f"lib/modules/{p.name}", 0o100644, p.read_bytes()) for p in modules]
    part = initrd.with_suffix(".part")
    part.write_bytes(gzip.compress(_cpio(entries), 6))
    shutil.copyfile(vmlinuz, kernel)
    part.rename(initrd)
    shutil.rmtree(extract, ignore_errors=True)  # ~400 MB of modules; the kernel and initrd are all we keep
    return GuestImage(kernel, initrd)


def netdev_args(qemu_arg: str, mac: str) -> list[str]:
    """QEMU arguments for a NIC on a vswitch port, from the ``-netdev …`` text the port prints."""
    flag, _, spec = qemu_arg.partition(" ")
    m = re.search(r"(?:^|,)id=([^,]+)", spec)
    if flag != "-netdev" or not m:
        raise GuestError(f"not a -netdev argument: {qemu_arg!r}")
    return ["-netdev", spec, "-device", f"virtio-net-pci,netdev={m.group(1)},mac={mac}"]


class QemuGuest:
    """One QEMU guest: ``start`` it on a port's ``-netdev`` argument, ``exec`` commands, ``stop``."""

    def __init__(self, image: GuestImage, console_path: str, *, memory_mb: int = 128) -> None:
        self.image = image
        self.console_path = console_path
        self.memory_mb = memory_mb
        self.proc: subprocess.Popen[bytes] | None = None
        self._console: socket.socket | None = None
        self._buf = b""

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def start(self, qemu_arg: str, mac: str, *, addresses: tuple[str, ...] = (), gateway: str | None = None,
              netns: str | None = None, log_path: str | None = None, timeout: float = 60) -> QemuGuest:
        """Boot the guest (inside namespace `netns` when given, so it goes with it) and wait for its shell."""
        cmdline = "console=ttyS0 quiet panic=-1"
        if addresses:
            cmdline += f" vs.ip={','.join(addresses)}"
        if gateway:
            cmdline += f" vs.gw={gateway}"
        if os.path.exists(self.console_path):
            os.unlink(self.console_path)
        argv = [QEMU, "-accel", "tcg", "-m", str(self.memory_mb), "-nodefaults", "-no-user-config",
                "-display", "none", "-no-reboot", "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd),
                "-append", cmdline, "-serial", f"unix:{self.console_path},server=on,wait=off",
                *netdev_args(qemu_arg, mac)]
        if netns:
            argv = ["ip", "netns", "exec", netns, *argv]
        log = open(log_path, "wb") if log_path else subprocess.DEVNULL
        try:
            # its own session: a Ctrl-C meant for whoever started it does not stop the guest
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        finally:
            if log_path:
                log.close()  # type: ignore[union-attr]
        try:
            self._connect(timeout)
            self._read_until(re.compile(re.escape(READY.encode())), time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise
        return self

    @classmethod
    def attach(cls, console_path: str, timeout: float = 5) -> QemuGuest:
        """A handle on a guest another process started, through its console (for `exec`)."""
        guest = cls(GuestImage(Path(), Path()), console_path)
        guest._connect(timeout)
        return guest

    def detach(self) -> None:
        """Let the guest run on without us: close the console, forget the process (not stopped)."""
        if self._console is not None:
            self._console.close()
            self._console = None
        self.proc = None

    def _connect(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise GuestError(f"QEMU exited with status {self.proc.returncode} before its console opened")
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(self.console_path)
                self._console = sock
                return
            except OSError:
                sock.close()
                if time.monotonic() > deadline:
                    raise GuestError(f"the guest console {self.console_path} did not open") from None
                time.sleep(0.05)

    def _read_until(self, marker: re.Pattern[bytes], deadline: float) -> re.Match[bytes]:
        assert self._console is not None
        while True:
            found = marker.search(self._buf)
            if found is not None:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                raise GuestError(f"the guest did not answer in time; console so far: {self._buf[-300:]!r}")
            self._console.settimeout(left)
            try:
                chunk = self._console.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise GuestError("the guest console closed (QEMU stopped?)")
            self._buf += chunk

    def exec(self, command: str, timeout: float = 30) -> tuple[int, str]:
        """Run a shell command in the guest; its exit status and its output (stdout and stderr)."""
        if self._console is None:
            raise GuestError("the guest is not running")
        token = secrets.token_hex(4)
        self._buf = b""
        self._console.sendall(f"{command}\necho @@{token}=$?@@\n".encode())
        m = self._read_until(re.compile(rb"@@" + token.encode() + rb"=(\d+)@@"), time.monotonic() + timeout)
        output = self._buf[:m.start()].decode(errors="replace")
        self._buf = self._buf[m.end():]
        return int(m.group(1)), output

    def stop(self) -> None:
        """Stop QEMU (SIGTERM, then SIGKILL) by PID and close the console. Idempotent. A handle
        from :meth:`attach` only closes the console: the guest belongs to whoever started it."""
        if self._console is not None:
            self._console.close()
            self._console = None
        proc, self.proc = self.proc, None
        if proc is None:
            return
        daemons.terminate(proc.pid, grace_s=5.0)
        proc.wait(timeout=5)
        if os.path.exists(self.console_path):
            os.unlink(self.console_path)


def running(pid: int, console_path: str) -> bool:
    """True while `pid` is the QEMU serving `console_path` (a PID can be reused by anything)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return (bool(cmdline) and cmdline[0].endswith(QEMU.encode()) and daemons.alive(pid)
            and any(console_path.encode() in a for a in cmdline))


def stop_pid(pid: int, console_path: str, grace_s: float = 5.0) -> None:
    """Stop the QEMU guest `pid` started elsewhere, only if it still is that guest. "Already gone" is success."""
    if running(pid, console_path):
        daemons.terminate(pid, grace_s)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # our own child (a lab built by this process): no zombie left
