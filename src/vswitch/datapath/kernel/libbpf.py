"""A small ctypes binding to libbpf (``libbpf.so.1``, a dependency of iproute2): open and load a BPF
object, find its programs and maps, read and write map elements (per-CPU too), run a program on a
frame with BPF_PROG_TEST_RUN, list the kernel's program ids, and read a BPF ring buffer.

Owns: every call into libbpf and the bpf(2) error texts (the verifier log of a failed load).
Invariants: a `BpfObject` owns its fds; `close` releases the programs and maps it loaded (those
attached to a link live on until detached). Nothing here knows the switch's maps or layout.
Must not touch: links, qdiscs, netlink (tc.py), the switch's layout (layout.py).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

c_void_p, c_char_p, c_int, c_uint32, c_size_t = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                                 ctypes.c_uint32, ctypes.c_size_t)

BPF_MAP_TYPE_PERCPU_HASH = 5
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_LRU_PERCPU_HASH = 10
_PERCPU_TYPES = (BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_LRU_PERCPU_HASH)
BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2

_LOG_LINES = 60
log = logging.getLogger(__name__)


class BpfError(OSError):
    """A libbpf/bpf(2) call failed; `errno` is set and the message names the call (and carries the
    verifier's log when a load was refused)."""


class LibbpfMissing(BpfError):
    """libbpf.so.1 cannot be loaded on this machine."""


_log: list[str] = []
#: ring_buffer_sample_fn: int (*)(void *ctx, void *data, size_t size)
_SAMPLE_FN = ctypes.CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t)


@cache
def _lib() -> Any:
    """The library, with the signatures used here. Raises LibbpfMissing."""
    try:
        lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
    except OSError as e:
        raise LibbpfMissing(errno.ENOENT, f"libbpf.so.1 not found ({e}): install the libbpf1 package") from None
    sigs: dict[str, tuple[Any, ...]] = {
        "bpf_object__open_file": (c_void_p, c_char_p, c_void_p),
        "bpf_object__load": (c_int, c_void_p),
        "bpf_object__close": (None, c_void_p),
        "bpf_object__find_program_by_name": (c_void_p, c_void_p, c_char_p),
        "bpf_object__find_map_by_name": (c_void_p, c_void_p, c_char_p),
        "bpf_program__fd": (c_int, c_void_p),
        "bpf_map__fd": (c_int, c_void_p),
        "bpf_map__key_size": (c_uint32, c_void_p),
        "bpf_map__value_size": (c_uint32, c_void_p),
        "bpf_map__type": (c_int, c_void_p),
        "bpf_map__max_entries": (c_uint32, c_void_p),
        "bpf_map__set_max_entries": (c_int, c_void_p, c_uint32),
        "bpf_map_lookup_elem": (c_int, c_int, c_void_p, c_void_p),
        "bpf_map_update_elem": (c_int, c_int, c_void_p, c_void_p, ctypes.c_uint64),
        "bpf_map_delete_elem": (c_int, c_int, c_void_p),
        "bpf_map_get_next_key": (c_int, c_int, c_void_p, c_void_p),
        "bpf_prog_test_run_opts": (c_int, c_int, c_void_p),
        "bpf_prog_get_next_id": (c_int, c_uint32, ctypes.POINTER(c_uint32)),
        "bpf_map_get_next_id": (c_int, c_uint32, ctypes.POINTER(c_uint32)),
        "bpf_obj_get_info_by_fd": (c_int, c_int, c_void_p, ctypes.POINTER(c_uint32)),
        "libbpf_num_possible_cpus": (c_int,),
        "ring_buffer__new": (c_void_p, c_int, _SAMPLE_FN, c_void_p, c_void_p),
        "ring_buffer__consume": (c_int, c_void_p),
        "ring_buffer__epoll_fd": (c_int, c_void_p),
        "ring_buffer__free": (None, c_void_p),
    }
    for name, (res, *args) in sigs.items():
        f = getattr(lib, name)
        f.restype = res
        f.argtypes = list(args)
    # libbpf's messages (the verifier log of a refused load) into _log instead of stderr
    libc = ctypes.CDLL(None, use_errno=True)
    libc.vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]

    @ctypes.CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
    def _print(_level: int, fmt: bytes, va: int) -> int:
        buf = ctypes.create_string_buffer(1 << 20)  # a verifier log comes as one message
        libc.vsnprintf(buf, len(buf), fmt, va)
        _log.append(buf.value.decode(errors="replace"))
        del _log[:-_LOG_LINES]
        return 0

    lib.libbpf_set_print.restype = c_void_p
    lib.libbpf_set_print.argtypes = [type(_print)]
    lib.libbpf_set_print(_print)
    lib._vswitch_print = _print  # keep the callback alive as long as the library
    return lib


def _error(what: str, rc: int | None = None, with_log: bool = False) -> BpfError:
    code = -rc if rc is not None and rc < 0 else ctypes.get_errno() or errno.EIO
    tail = ("\n" + "".join(_log).rstrip()) if with_log and _log else ""
    return BpfError(code, f"{what}: {os.strerror(code)}{tail}")


@cache
def possible_cpus() -> int:
    """How many per-CPU slots a per-CPU map value has. Raises LibbpfMissing."""
    n = _lib().libbpf_num_possible_cpus()
    if n <= 0:
        raise _error("libbpf_num_possible_cpus", n)
    return n


class Map:
    """One map of a loaded object: raw keys and values (bytes). A per-CPU map's value reads as a
    list of one value per possible CPU and is written the same way (or as one value for all)."""

    def __init__(self, ptr: int, name: str) -> None:
        lib = _lib()
        self.name = name
        self.fd: int = lib.bpf_map__fd(ptr)
        self.key_size: int = lib.bpf_map__key_size(ptr)
        self.value_size: int = lib.bpf_map__value_size(ptr)
        self.max_entries: int = lib.bpf_map__max_entries(ptr)
        self.percpu = lib.bpf_map__type(ptr) in _PERCPU_TYPES
        self._slot = (self.value_size + 7) & ~7  # per-CPU values are 8-byte aligned slots
        self._ncpu = possible_cpus() if self.percpu else 1
        self._vlen = self._slot * self._ncpu if self.percpu else self.value_size
        self._key = ctypes.create_string_buffer(self.key_size)
        self._value = ctypes.create_string_buffer(self._vlen)

    def _k(self, key: bytes) -> ctypes.Array[ctypes.c_char]:
        if len(key) != self.key_size:
            raise ValueError(f"map {self.name}: key of {len(key)} bytes, expected {self.key_size}")
        ctypes.memmove(self._key, key, self.key_size)
        return self._key

    def lookup(self, key: bytes) -> bytes | None:
        """The value (all CPUs' slots concatenated for a per-CPU map), None when absent. Raises BpfError."""
        if _lib().bpf_map_lookup_elem(self.fd, self._k(key), self._value) != 0:
            if ctypes.get_errno() == errno.ENOENT:
                return None
            raise _error(f"lookup in map {self.name}")
        return self._value.raw

    def lookup_percpu(self, key: bytes) -> list[bytes] | None:
        """A per-CPU map's value, one per CPU. Raises BpfError, ValueError for a map that is not per-CPU."""
        if not self.percpu:
            raise ValueError(f"map {self.name} is not per-CPU")
        raw = self.lookup(key)
        if raw is None:
            return None
        return [raw[i * self._slot:i * self._slot + self.value_size] for i in range(self._ncpu)]

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        """Write one element; a per-CPU map takes `value` for every CPU when it is one value long.
        Raises BpfError (E2BIG: the map is full; EEXIST/ENOENT with NOEXIST/EXIST), ValueError on sizes."""
        if self.percpu and len(value) == self.value_size:
            value = value.ljust(self._slot, b"\0") * self._ncpu
        if len(value) != self._vlen:
            raise ValueError(f"map {self.name}: value of {len(value)} bytes, expected {self._vlen}")
        ctypes.memmove(self._value, value, self._vlen)
        rc = _lib().bpf_map_update_elem(self.fd, self._k(key), self._value, flags)
        if rc != 0:
            raise _error(f"update of map {self.name}", rc)

    def delete(self, key: bytes) -> bool:
        """Remove one element; False when it was not there. Raises BpfError."""
        if _lib().bpf_map_delete_elem(self.fd, self._k(key)) != 0:
            if ctypes.get_errno() == errno.ENOENT:
                return False
            raise _error(f"delete from map {self.name}")
        return True

    def keys(self) -> Iterator[bytes]:
        """Every key (a hash map changing meanwhile may skip or repeat some, as bpf(2) does)."""
        lib = _lib()
        cur: ctypes.Array[ctypes.c_char] | None = None
        nxt = ctypes.create_string_buffer(self.key_size)
        while lib.bpf_map_get_next_key(self.fd, cur, nxt) == 0:
            k = nxt.raw
            yield k
            cur = ctypes.create_string_buffer(k, self.key_size)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for k in list(self.keys()):
            v = self.lookup(k)
            if v is not None:
                yield k, v


class BpfObject:
    """A BPF ELF object opened and loaded into the kernel (verified), with its maps and programs.

    `max_entries` resizes maps before the load (name → entries). Raises LibbpfMissing, BpfError
    (the file cannot be opened, or the kernel refused it: the message carries the verifier's log),
    KeyError for a map named in `max_entries` that the object does not have.
    """

    def __init__(self, path: str, max_entries: dict[str, int] | None = None) -> None:
        lib = _lib()
        _log.clear()
        self._ptr: int | None = lib.bpf_object__open_file(os.fsencode(path), None)
        if not self._ptr:
            raise _error(f"open BPF object {path}", with_log=True)
        try:
            for name, n in (max_entries or {}).items():
                m = lib.bpf_object__find_map_by_name(self._ptr, name.encode())
                if not m:
                    raise KeyError(f"BPF object {path} has no map {name!r}")
                rc = lib.bpf_map__set_max_entries(m, n)
                if rc != 0:
                    raise _error(f"resize map {name} to {n}", rc)
            rc = lib.bpf_object__load(self._ptr)
            if rc != 0:
                raise _error(f"load BPF object {path}", rc, with_log=True)
        except BaseException:
            self.close()
            raise
        self._maps: dict[str, Map] = {}

    def program_fd(self, name: str) -> int:
        """Raises KeyError for a program the object does not have."""
        p = _lib().bpf_object__find_program_by_name(self._require(), name.encode())
        if not p:
            raise KeyError(f"no BPF program {name!r}")
        return int(_lib().bpf_program__fd(p))

    def map(self, name: str) -> Map:
        """Raises KeyError for a map the object does not have."""
        m = self._maps.get(name)
        if m is None:
            ptr = _lib().bpf_object__find_map_by_name(self._require(), name.encode())
            if not ptr:
                raise KeyError(f"no BPF map {name!r}")
            m = self._maps[name] = Map(ptr, name)
        return m

    def _require(self) -> int:
        if not self._ptr:
            raise BpfError(errno.EBADF, "the BPF object is closed")
        return self._ptr

    def close(self) -> None:
        """Unload: the kernel frees the programs and maps once nothing else holds them. Idempotent."""
        if self._ptr:
            _lib().bpf_object__close(self._ptr)
            self._ptr = None
            self._maps = {}


class _TestRunOpts(ctypes.Structure):
    _fields_ = [("sz", c_size_t), ("data_in", c_void_p), ("data_out", c_void_p),
                ("data_size_in", c_uint32), ("data_size_out", c_uint32),
                ("ctx_in", c_void_p), ("ctx_out", c_void_p),
                ("ctx_size_in", c_uint32), ("ctx_size_out", c_uint32),
                ("retval", c_uint32), ("repeat", c_int), ("duration", c_uint32),
                ("flags", c_uint32), ("cpu", c_uint32), ("batch_size", c_uint32)]


# struct __sk_buff (UAPI, stable): its size up to `hwtstamp` and the offsets test-run lets us set
_SKB_CTX_SIZE = 192
_SKB_OFF_INGRESS_IFINDEX = 36
_SKB_OFF_IFINDEX = 40


def prog_test_run(prog_fd: int, frame: bytes, ingress_ifindex: int, *, ifindex: int = 1) -> tuple[int, bytes]:
    """Run a tc program once on `frame` as if it arrived on `ingress_ifindex` (BPF_PROG_TEST_RUN):
    (the program's return value, the frame as it left). `ifindex` must be a link of the caller's
    namespace (lo by default). The kernel keeps a VLAN tag in the bytes here, unlike the receive
    path. Raises BpfError (EINVAL for a frame under 14 bytes)."""
    data_in = ctypes.create_string_buffer(frame, len(frame))
    data_out = ctypes.create_string_buffer(len(frame) + 64)
    ctx = bytearray(_SKB_CTX_SIZE)
    ctx[_SKB_OFF_INGRESS_IFINDEX:_SKB_OFF_INGRESS_IFINDEX + 4] = ingress_ifindex.to_bytes(4, "little")
    ctx[_SKB_OFF_IFINDEX:_SKB_OFF_IFINDEX + 4] = ifindex.to_bytes(4, "little")
    ctx_in = ctypes.create_string_buffer(bytes(ctx), len(ctx))
    opts = _TestRunOpts(sz=ctypes.sizeof(_TestRunOpts), data_in=ctypes.addressof(data_in),
                        data_out=ctypes.addressof(data_out), data_size_in=len(frame),
                        data_size_out=len(data_out), ctx_in=ctypes.addressof(ctx_in), ctx_size_in=len(ctx),
                        repeat=1)
    rc = _lib().bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts))
    if rc != 0:
        raise _error("BPF_PROG_TEST_RUN", rc)
    return ctypes.c_int32(opts.retval).value, data_out.raw[:opts.data_size_out]  # TC_ACT_UNSPEC is -1


def _ids(call: str) -> list[int]:
    fn = getattr(_lib(), call)
    out: list[int] = []
    cur, nxt = 0, c_uint32()
    while fn(cur, ctypes.byref(nxt)) == 0:
        out.append(nxt.value)
        cur = nxt.value
    if ctypes.get_errno() not in (0, errno.ENOENT):
        raise _error(call)
    return out


def object_id(fd: int) -> int:
    """The kernel id of the program or map behind `fd` (bpf_prog_info.id / bpf_map_info.id: both
    the second u32). Raises BpfError."""
    info = ctypes.create_string_buffer(256)  # larger than either struct; the tail stays zero
    size = c_uint32(len(info))
    rc = _lib().bpf_obj_get_info_by_fd(fd, info, ctypes.byref(size))
    if rc != 0:
        raise _error(f"BPF_OBJ_GET_INFO_BY_FD on fd {fd}", rc)
    return int.from_bytes(info.raw[4:8], "little")


def program_ids() -> list[int]:
    """Ids of every BPF program loaded in the kernel (needs CAP_SYS_ADMIN). Raises BpfError."""
    return _ids("bpf_prog_get_next_id")


def map_ids() -> list[int]:
    """Ids of every BPF map in the kernel (needs CAP_SYS_ADMIN). Raises BpfError."""
    return _ids("bpf_map_get_next_id")


class RingBuffer:
    """The consumer side of one BPF_MAP_TYPE_RINGBUF map through libbpf's ring_buffer (which keeps
    the ring's memory-ordering protocol: acquire/release on its positions, busy and discard bits).

    `on_sample` gets each record as bytes, on the thread that calls `consume`. `fileno()` is an epoll
    descriptor that is readable while records wait (level-triggered: put it in another epoll set and
    call `consume` when it is). Raises LibbpfMissing, BpfError (the map is not a ring buffer)."""

    def __init__(self, map_fd: int, on_sample: Callable[[bytes], None]) -> None:
        lib = _lib()
        self._on_sample = on_sample
        self._budget = 0
        self._cb = _SAMPLE_FN(self._sample)  # kept alive as long as the ring
        self._ptr: int | None = lib.ring_buffer__new(map_fd, self._cb, None, None)
        if not self._ptr:
            raise _error(f"ring_buffer__new on map fd {map_fd}")
        self._fd = int(lib.ring_buffer__epoll_fd(self._ptr))

    def _sample(self, _ctx: int, data: int, size: int) -> int:
        try:
            self._on_sample(ctypes.string_at(data, size))
        except Exception:  # a callback must not unwind through C: the record is dropped
            log.exception("ring buffer record handler failed")
        self._budget -= 1
        return 0 if self._budget > 0 else -1  # negative: libbpf stops here (this record is consumed)

    def fileno(self) -> int:
        return self._fd

    def consume(self, limit: int = 1 << 30) -> int:
        """Hand at most `limit` waiting records to `on_sample` without waiting; returns how many.
        Raises BpfError (the ring is closed)."""
        if not self._ptr:
            raise BpfError(errno.EBADF, "the ring buffer is closed")
        self._budget = limit
        rc = _lib().ring_buffer__consume(self._ptr)
        if rc < 0 and self._budget > 0:
            raise _error("ring_buffer__consume", rc)
        return limit - self._budget

    def close(self) -> None:
        """Free the ring's consumer (its epoll descriptor with it). Idempotent."""
        ptr, self._ptr = self._ptr, None
        if ptr:
            _lib().ring_buffer__free(ptr)
