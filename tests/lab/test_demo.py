"""`vswitch demo` (what `make demo` runs): the whole one-nic story, exit 0, nothing left behind.

Not root: it explains why it needs root and changes nothing.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import interruptible

pytestmark = pytest.mark.root

VSWITCH = str(Path(sys.executable).parent / "vswitch")


def _namespaces() -> set[str]:
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


def _cmdlines_mentioning(word: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if word in cmd and int(pid) != os.getpid():
            found.append(f"{pid}: {cmd}")
    return found


def _run_demo(timeout: float) -> tuple[int, str]:
    """Run `vswitch demo`; if it hangs, Ctrl-C it (so it still tears its lab down) and fail."""
    proc = subprocess.Popen([VSWITCH, "demo"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        pytest.fail(f"the demo took more than {timeout} s:\n{out}")
    return proc.returncode, out


def test_demo_tells_the_story_and_leaves_nothing_behind() -> None:
    rc, out = _run_demo(timeout=120)
    assert rc == 0, out
    for words in ("bindings BEFORE", "bindings AFTER", "create the External switch", "learning, observed",
                  "FLOOD_UNKNOWN", "FORWARD_LEARNED", "vm1", "the MAC table", "tear down", "demo finished"):
        assert words in out, f"{words!r} missing from the demo's output:\n{out}"
    assert re.search(r"echo seq 1\b", out) and "physical switch" in out, out
    m = re.search(r"lab (\S+) removed", out)
    assert m, out
    name = m.group(1)
    namespaces = re.search(r"namespaces removed: (.*)", out).group(1).split()
    pids = re.search(r"vswitchd stopped: PID (.*)", out).group(1).split()
    assert len(namespaces) == 4 and pids, out
    assert not [ns for ns in namespaces if os.path.exists(f"/run/netns/{ns}")], "lab namespaces left behind"
    assert not [p for p in pids if os.path.exists(f"/proc/{p}")], "the lab's vswitchd is still running"
    assert "still present" not in out and "still running" not in out
    lab_id = namespaces[0][2:6]
    assert _cmdlines_mentioning(f"/{name}/") == [], "processes of the demo's lab left behind"
    assert not any(ns.startswith(f"vl{lab_id}-") for ns in _namespaces())
    listed = subprocess.run([VSWITCH, "lab", "list", "--json"], capture_output=True, text=True, timeout=30)
    # by name: other labs of the same topology (another test's, a user's) may be up meanwhile
    assert name not in [lab["name"] for lab in json.loads(listed.stdout)], listed.stdout


def test_demo_without_root_explains_and_does_nothing() -> None:
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", VSWITCH, "demo"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "needs root" in proc.stderr and "namespaces" in proc.stderr, proc.stderr
    assert proc.stdout == "", f"nothing may start without root:\n{proc.stdout}"


def test_demo_interrupted_midway_still_tears_everything_down() -> None:
    proc = interruptible.popen([VSWITCH, "demo"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.append(line)
            if "Step 4/7" in line:  # the lab and its switch exist now
                proc.send_signal(signal.SIGINT)
                break
        out.append(proc.stdout.read())
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "".join(out)
    assert rc != 0 and "interrupted" in text, text
    namespaces = re.search(r"namespaces removed: (.*)", text).group(1).split()
    assert len(namespaces) == 4, text
    assert not [ns for ns in namespaces if os.path.exists(f"/run/netns/{ns}")], "Ctrl-C left namespaces behind"
    pids = re.search(r"vswitchd stopped: PID (.*)", text).group(1).split()
    assert not [p for p in pids if os.path.exists(f"/proc/{p}")], "Ctrl-C left vswitchd running"
