#!/usr/bin/env python3
"""Python cost of one known-unicast frame through the datapath's batch loop, machine load aside.

    .venv/bin/python bench/loop_cost.py                 # CPU instructions per frame (valgrind), and µs
    .venv/bin/python bench/loop_cost.py --src /tmp/old  # the same for another source tree (its src/)

Two `MemoryPort`s (vnet header 10, so no conversion) on a `Datapath` that is not started; frames
from a learned MAC to a learned MAC are injected into port a and `Datapath._read_batch` is called
directly, as the loop does on a wake-up (`BATCH` frames each). What it counts is the Python side of
the hot path — `recv`, the core's decision, `_send`, `write` — not the kernel's work in real
ports' syscalls (the memory port's eventfd read is one cheap syscall per frame).

On a shared machine a timing moves by ±30 % with other jobs; the instruction count does not.
With valgrind installed (apt `valgrind`), the script runs itself twice under cachegrind (few and
many batches) and prints the difference per frame; without it, only the best thread-CPU time.
The core's decision alone (`SwitchCore.process`) is measured the same way, for comparison.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
A_MAC, B_MAC = bytes.fromhex("020000000001"), bytes.fromhex("020000000002")
HDR = 10


def _frame(dst: bytes, src: bytes) -> bytes:
    return bytes(HDR) + dst + src + b"\x08\x00" + bytes(60)


def run_loop(batches: int) -> float:
    """Seconds of thread CPU for `batches` batches through `_read_batch`."""
    from vswitch.core.switch import SwitchCore
    from vswitch.datapath.loop import BATCH, Datapath
    from vswitch.ports.memory import MemoryPort

    dp = Datapath("cost", SwitchCore())
    a, b = MemoryPort("a", HDR), MemoryPort("b", HDR)
    for p in (a, b):
        p.open()
        dp.attach(p.name, p)
    ps_a, ps_b = dp._ports["a"], dp._ports["b"]  # noqa: SLF001 - the hot path itself is measured
    b.inject(_frame(A_MAC, B_MAC))
    dp._read_batch(ps_b)  # noqa: SLF001 - b's MAC learned: every later frame is known unicast
    frame = _frame(B_MAC, A_MAC)
    cpu = 0.0
    for _ in range(batches):
        for _ in range(BATCH):
            a.inject(frame)
        b.sent.clear()
        t0 = time.thread_time()
        dp._read_batch(ps_a)  # noqa: SLF001
        cpu += time.thread_time() - t0
    dp.stop()
    return cpu


def run_core(frames: int) -> float:
    """Seconds of thread CPU for `frames` decisions of `SwitchCore.process` alone."""
    from vswitch.core.switch import SwitchCore

    core = SwitchCore()
    core.add_port("a")
    core.add_port("b")
    core.process("b", _frame(A_MAC, B_MAC), HDR, 0.0)
    frame, process = _frame(B_MAC, A_MAC), core.process
    t0 = time.thread_time()
    for _ in range(frames):
        process("a", frame, HDR, 0.0)
    return time.thread_time() - t0


def _instructions(src: str, what: str, n: int) -> int:
    out = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                          sys.executable, __file__, "--src", src, "--child", what, str(n)],
                         capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    m = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
    if m is None:
        raise RuntimeError(f"no instruction count from valgrind: {out.stderr[-500:]}")
    return int(m.group(1).replace(",", ""))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", default=str(ROOT), help="source tree whose src/ is measured (default: this one)")
    p.add_argument("--child", nargs=2, metavar=("WHAT", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    sys.path.insert(0, os.path.join(os.path.abspath(args.src), "src"))
    if args.child:
        what, n = args.child[0], int(args.child[1])
        run_loop(n) if what == "loop" else run_core(n)
        return 0
    from vswitch.datapath.loop import BATCH

    few, many = 10, 510
    loop_us = min(run_loop(many) for _ in range(5)) / (many * BATCH) * 1e6
    core_us = min(run_core(many * BATCH) for _ in range(5)) / (many * BATCH) * 1e6
    print(f"{args.src}: best thread CPU {loop_us:.3f} µs/frame (core alone {core_us:.3f} µs)")
    if shutil.which("valgrind") is None:
        print("valgrind not installed: no instruction count")
        return 0
    frames = (many - few) * BATCH
    loop_i = (_instructions(args.src, "loop", many) - _instructions(args.src, "loop", few)) / frames
    core_i = (_instructions(args.src, "core", many * BATCH) - _instructions(args.src, "core", few * BATCH)) / frames
    print(f"{args.src}: {loop_i:,.0f} instructions/frame (core alone {core_i:,.0f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
