"""tcpdump/pcap filter expressions (`vswitch capture --filter`), compiled and run by libpcap itself.

Owns `PcapFilter`: an expression compiled once (``pcap_compile`` on a ``pcap_open_dead`` Ethernet
handle) and matched against frames with ``pcap_offline_filter`` — the BPF interpreter tcpdump uses,
so an expression means here exactly what it means to tcpdump and Wireshark's capture filters.
Why libpcap through ctypes: the pcap filter language is large (protocols, `vlan`, byte offsets,
`and`/`or`/`not`); a hand-written matcher would be a second, wrong copy of it. libpcap0.8 is there
wherever tcpdump or tshark is.

Invariants: a `PcapFilter` is used by one thread at a time (the capture's request thread, never the
datapath's); `close` frees the program and the handle (idempotent).
Must not touch: sockets, devices — a dead handle captures nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

from vswitch.control.model import InvalidRequest, VswitchError

DLT_EN10MB = 1
PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF


class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.c_void_p)]


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _PktHdr(ctypes.Structure):
    _fields_ = [("ts", _Timeval), ("caplen", ctypes.c_uint32), ("len", ctypes.c_uint32)]


_lib: ctypes.CDLL | None = None
#: pcap_compile is not thread-safe in every libpcap (its parser's state): one compile at a time
_compile_lock = threading.Lock()


def _libpcap() -> ctypes.CDLL:
    """libpcap, loaded once. Raises VswitchError when it is not installed."""
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("pcap") or "libpcap.so.0.8"
        try:
            lib = ctypes.CDLL(name)
        except OSError as e:
            raise VswitchError(f"capture filters need libpcap (Debian: libpcap0.8), which cannot be loaded: {e}"
                               ) from None
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.pcap_compile.restype = ctypes.c_int
        lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_BpfProgram), ctypes.c_char_p, ctypes.c_int,
                                     ctypes.c_uint32]
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_geterr.argtypes = [ctypes.c_void_p]
        lib.pcap_offline_filter.restype = ctypes.c_int
        lib.pcap_offline_filter.argtypes = [ctypes.POINTER(_BpfProgram), ctypes.POINTER(_PktHdr), ctypes.c_char_p]
        lib.pcap_freecode.argtypes = [ctypes.POINTER(_BpfProgram)]
        lib.pcap_close.argtypes = [ctypes.c_void_p]
        _lib = lib
    return _lib


class PcapFilter:
    """A compiled pcap filter `expression` for Ethernet frames of at most `snaplen` bytes.

    Raises InvalidRequest naming the expression and libpcap's message when it does not compile,
    VswitchError when libpcap cannot be loaded."""

    def __init__(self, expression: str, snaplen: int = 262144) -> None:
        lib = _libpcap()
        self.expression = expression
        self._lib = lib
        self._handle: int | None = lib.pcap_open_dead(DLT_EN10MB, snaplen)
        if not self._handle:
            raise VswitchError("libpcap could not open a handle to compile the capture filter")
        self._prog = _BpfProgram()
        self._compiled = False
        with _compile_lock:
            rc = lib.pcap_compile(self._handle, ctypes.byref(self._prog), expression.encode(), 1,
                                  PCAP_NETMASK_UNKNOWN)
            message = lib.pcap_geterr(self._handle) if rc != 0 else None
        if rc != 0:
            self.close()
            why = message.decode(errors="replace") if message else "does not compile"
            raise InvalidRequest(f"capture filter {expression!r} is not a valid pcap filter expression: {why}")
        self._compiled = True
        self._hdr = _PktHdr()

    def matches(self, frame: bytes, original_len: int | None = None) -> bool:
        """Whether `frame` (the bytes captured; `original_len` its length on the wire) passes."""
        hdr = self._hdr
        hdr.caplen = len(frame)
        hdr.len = original_len if original_len is not None else len(frame)
        return self._lib.pcap_offline_filter(ctypes.byref(self._prog), ctypes.byref(hdr), frame) != 0

    def close(self) -> None:
        """Free the compiled program and the handle. Idempotent."""
        if self._compiled:
            self._compiled = False
            self._lib.pcap_freecode(ctypes.byref(self._prog))
        if self._handle:
            handle, self._handle = self._handle, None
            self._lib.pcap_close(handle)

    def __del__(self) -> None:
        self.close()
