"""The kernel fast path: SwitchCore's rules in a tc clsact ingress BPF program (switch.bpf.c).

Modules, one job each: switch.h / layout.py (the shared numbers and structs), libbpf.py (ctypes
binding to libbpf.so.1), tables.py (the maps: ports, config, MAC table, counters), tc.py (netlink:
clsact + bpf filter), program.py (`SwitchProgram`: one switch's loaded program, slots, attachment),
events.py (its per-frame decision events, read from a ring buffer while someone watches).
The object is built by `make bpf` beside its source. A switch uses it through
datapath/fastpath.py (`KernelDatapath`), chosen by the switch's `--datapath`.
Must not touch: control/, the Python datapath (datapath/loop.py).
"""

from __future__ import annotations

import os
import shutil

from vswitch.datapath.kernel.program import OBJECT_PATH


def unavailable_reason() -> str | None:
    """Why the fast path cannot be loaded here (None when it can be tried): not built, no libbpf,
    no privilege. A load can still fail on an old kernel (BpfError)."""
    if not OBJECT_PATH.exists():
        why = "clang is not installed" if shutil.which("clang") is None else "make bpf was not run"
        return f"the kernel fast path is not built ({why}; make as root installs clang and libbpf-dev)"
    try:
        from vswitch.datapath.kernel.libbpf import possible_cpus
        possible_cpus()
    except OSError as e:
        return str(e)
    if os.geteuid() != 0:
        return "loading BPF programs needs root (CAP_BPF + CAP_NET_ADMIN)"
    return None


__all__ = ["OBJECT_PATH", "unavailable_reason"]
