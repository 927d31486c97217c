"""atheris (libFuzzer) target: `offload.adapt` and the QEMU stream framing on arbitrary bytes.

Run by tests/unit/test_atheris.py for a few seconds; by hand for longer:
    python tests/fuzz/atheris_adapt.py -max_total_time=600
Any exception but OffloadError is a crash (libFuzzer writes the input as crash-*; keep it as an
@example in tests/unit/test_fuzz_datapath.py).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from vswitch.ports.errors import OffloadError
    from vswitch.ports.offload import adapt


def one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    in_hdr = (10, 12)[data[0] & 1]
    out_hdr = (0, 10, 12)[data[1] % 3]
    try:
        adapt(data[2:], in_hdr, out_hdr)
    except OffloadError:
        pass


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
