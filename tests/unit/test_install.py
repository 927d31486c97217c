"""Installed like a tool: `make install` puts vswitch and vswitchd on PATH, and the shipped systemd unit
runs what it installs with the daemon's own defaults.

`make install PREFIX=<tmp>` needs no root; the tests run only where the checkout's .venv is built
(`make venv`), so they never build one themselves.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest

from vswitch.app.daemon import DEFAULT_STATE_DIR, build_parser
from vswitch.control.api import DEFAULT_SOCKET

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "contrib" / "vswitchd.service"
PROGRAMS = ("vswitch", "vswitchd")


def make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["make", "-C", str(REPO), "--no-print-directory", *args], capture_output=True,
                          text=True, timeout=300, check=False)


@pytest.fixture
def built_venv() -> None:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    if make("-q", "venv").returncode != 0:
        pytest.skip("the checkout's .venv is not built or out of date (run make venv)")


def unit_settings() -> dict[str, str]:
    settings: dict[str, str] = {}
    for line in UNIT.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            settings[key.strip()] = value.strip()
    return settings


def test_make_install_links_the_programs_and_is_idempotent(built_venv: None, tmp_path: Path) -> None:
    for attempt in (1, 2):
        done = make("install", f"PREFIX={tmp_path}")
        assert done.returncode == 0, (attempt, done.stdout, done.stderr)
    version = metadata.version("vswitch")
    for prog in PROGRAMS:
        link = tmp_path / "bin" / prog
        assert link.is_symlink() and link.resolve() == (REPO / ".venv" / "bin" / prog).resolve(), link
        out = subprocess.run([str(link), "--version"], capture_output=True, text=True, timeout=60, check=True)
        assert out.stdout == f"{prog} {version}\n"
    completion = tmp_path / "share" / "bash-completion" / "completions" / "vswitch"
    assert "_VSWITCH_COMPLETE=bash_complete" in completion.read_text()
    for attempt in (1, 2):
        done = make("uninstall", f"PREFIX={tmp_path}")
        assert done.returncode == 0, (attempt, done.stdout, done.stderr)
    assert not any((tmp_path / "bin" / prog).exists() for prog in PROGRAMS) and not completion.exists()


def test_make_install_never_replaces_a_program_it_did_not_install(built_venv: None, tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    other = tmp_path / "bin" / "vswitchd"
    other.write_text("#!/bin/sh\necho another vswitchd\n")
    done = make("install", f"PREFIX={tmp_path}")
    assert done.returncode != 0 and f"{other} exists and is not a link" in done.stdout + done.stderr
    assert other.read_text() == "#!/bin/sh\necho another vswitchd\n"
    make("uninstall", f"PREFIX={tmp_path}")
    assert other.read_text() == "#!/bin/sh\necho another vswitchd\n", "uninstall removes only its own links"


def test_the_shipped_unit_runs_what_make_install_installs_with_the_daemons_defaults() -> None:
    prefix = re.search(r"^PREFIX \?= (\S+)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert prefix is not None, "the Makefile states its default PREFIX"
    settings = unit_settings()
    argv = shlex.split(settings["ExecStart"])
    assert argv[0] == f"{prefix.group(1)}/bin/vswitchd", "ExecStart is what `make install` links"
    args = build_parser().parse_args(argv[1:])
    assert args.socket == DEFAULT_SOCKET and args.state_dir == DEFAULT_STATE_DIR
    # systemd creates (and owns the modes of) the directories the daemon's defaults live in
    assert f"/run/{settings['RuntimeDirectory']}" == str(Path(DEFAULT_SOCKET).parent)
    assert f"/var/lib/{settings['StateDirectory']}" == DEFAULT_STATE_DIR


def test_systemd_accepts_the_unit_once_its_program_is_installed(built_venv: None, tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    assert make("install", f"PREFIX={tmp_path}").returncode == 0
    try:
        # the same unit, its ExecStart moved under the temporary PREFIX (the real one is /usr/local)
        unit = tmp_path / "vswitchd.service"
        unit.write_text(UNIT.read_text().replace("ExecStart=/usr/local/bin/", f"ExecStart={tmp_path}/bin/"))
        done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        (tmp_path / "bin" / "vswitchd").unlink()
        done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode != 0 and "vswitchd" in done.stderr, "the check can fail"
    finally:
        make("uninstall", f"PREFIX={tmp_path}")
