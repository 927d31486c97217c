"""The two datapaths a test of real links runs on (issue 12: every such test runs on both), the skip
where the kernel fast path cannot load here, and the check that a switch really runs on the one asked."""

from __future__ import annotations

import pytest

from vswitch.datapath import kernel

#: `SwitchSpec.datapath` values: "kernel" is the fast path or a refusal, never a silent fall-back
DATAPATHS = ("python", "kernel")


def require(mode: str) -> None:
    """Skip, saying why, a kernel-datapath test where the program cannot load (not built, no libbpf,
    not root)."""
    if mode == "kernel":
        reason = kernel.unavailable_reason()
        if reason is not None:
            pytest.skip(reason)


def assert_runs_on(label: str, mode: str) -> None:
    """`label` is a switch's `SwitchInfo.datapath`; it must name the datapath `mode`."""
    assert label.startswith(mode), f"the switch runs on {label!r}, not on the {mode} datapath"
