#!/usr/bin/env python3
"""Frame injector for the flood benchmark: send paced raw frames out of one link (run it in a namespace).

``inject.py IFNAME DST SRC COUNT RATE`` sends COUNT 60-byte frames DST←SRC with EtherType 0x88B5
(IEEE local experimental: no kernel stack reacts to it) at about RATE frames/s in bursts of 16.
Writing to the kernel side of a TAP hands the frame to the TAP's owner (the switch). The socket is
created with protocol 0, so it receives nothing. Prints ``{"sent": N}``.
"""

from __future__ import annotations

import json
import socket
import sys
import time

BURST = 16


def main() -> int:
    ifname, dst, src, count, rate = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    frame = bytes.fromhex(dst.replace(":", "")) + bytes.fromhex(src.replace(":", "")) + b"\x88\xb5"
    frame += bytes(60 - len(frame))
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    s.bind((ifname, 0))
    sent = 0
    t0 = time.monotonic()
    while sent < count:
        for _ in range(min(BURST, count - sent)):
            try:
                s.send(frame)
                sent += 1
            except BlockingIOError:
                break
        ahead = t0 + sent / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
    print(json.dumps({"sent": sent, "seconds": time.monotonic() - t0}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
