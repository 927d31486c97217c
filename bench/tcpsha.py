#!/usr/bin/env python3
"""TCP payload integrity endpoints: what one side sends, the other must receive byte for byte.

``tcpsha.py recv BIND_IP PORT`` accepts one connection, reads to EOF and prints
``{"bytes": N, "sha256": ...}``. ``tcpsha.py send DST_IP PORT NBYTES`` connects, sends NBYTES of
pseudo-random data (every 64 KiB chunk distinct, so a misplaced, repeated or lost segment changes
the digest) and prints the same JSON for what it sent. Stdlib only; run each in its namespace.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time

CHUNK = 1 << 16


def _chunks(nbytes: int):
    pool = os.urandom(1 << 20) * 2  # 2 MiB: any 64 KiB window of it is a slice, no per-chunk generation
    i = 0
    while nbytes > 0:
        off = (i * 40_503) % (1 << 20)
        chunk = i.to_bytes(8, "big") + pool[off:off + CHUNK - 8]
        yield chunk[:nbytes]
        nbytes -= len(chunk)
        i += 1


def send(dst: str, port: int, nbytes: int) -> dict[str, object]:
    h = hashlib.sha256()
    sent = 0
    deadline = time.monotonic() + 10
    while True:
        try:
            s = socket.create_connection((dst, port), timeout=10)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    s.settimeout(60)
    t0 = time.monotonic()
    with s:
        for chunk in _chunks(nbytes):
            s.sendall(chunk)
            h.update(chunk)
            sent += len(chunk)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)  # the receiver closes after reading everything: the transfer is complete
    return {"bytes": sent, "sha256": h.hexdigest(), "seconds": time.monotonic() - t0}


def recv(bind: str, port: int) -> dict[str, object]:
    h = hashlib.sha256()
    got = 0
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as ls:
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind((bind, port))
        ls.listen(1)
        ls.settimeout(60)
        conn, _ = ls.accept()
        conn.settimeout(60)
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        t0 = time.monotonic()
        with conn:
            while True:
                n = conn.recv_into(buf)
                if not n:
                    break
                h.update(view[:n])
                got += n
    return {"bytes": got, "sha256": h.hexdigest(), "seconds": time.monotonic() - t0}


def main() -> int:
    if sys.argv[1] == "send":
        out = send(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        out = recv(sys.argv[2], int(sys.argv[3]))
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
