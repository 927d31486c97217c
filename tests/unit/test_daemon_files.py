"""vswitchd's private files: the token file's mode and owner, the state directory and config.sqlite."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from vswitch.app.daemon import StartupError, private_path, read_tokens
from vswitch.frontends.tokens import Role, client_token


def test_private_token_file_is_read_with_roles(tmp_path: Path) -> None:
    f = tmp_path / "tokens"
    f.write_text("admin:a-1\nreader:r-1\n")
    f.chmod(0o600)
    assert read_tokens(str(f)) == {"a-1": Role.ADMIN, "r-1": Role.READER}
    f.chmod(0o400)
    assert read_tokens(str(f))["a-1"] is Role.ADMIN


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o660, 0o602])
def test_token_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    f = tmp_path / "tokens"
    f.write_text("admin:a-1\n")
    f.chmod(mode)
    with pytest.raises(StartupError, match=f"mode {mode:04o}.*chmod 600"):
        read_tokens(str(f))


def test_token_file_symlink_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.write_text("admin:a-1\n")
    real.chmod(0o600)
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(StartupError, match="cannot read token file"):
        read_tokens(str(tmp_path / "link"))


def test_client_token_drops_the_role_and_wants_one_token(tmp_path: Path) -> None:
    f = tmp_path / "t"
    f.write_text("reader:r-1\n")
    assert client_token(str(f)) == "r-1"
    f.write_text("admin:a\nreader:b\n")
    with pytest.raises(ValueError, match="holds 2 tokens"):
        client_token(str(f))


def test_state_dir_and_config_are_created_private_or_tightened(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    fresh = tmp_path / "fresh"
    private_path(fresh, 0o700, directory=True)
    private_path(fresh / "config.sqlite", 0o600, directory=False)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700
    assert stat.S_IMODE((fresh / "config.sqlite").stat().st_mode) == 0o600
    wide = tmp_path / "wide"
    wide.mkdir()
    wide.chmod(0o755)
    (wide / "config.sqlite").write_bytes(b"")
    (wide / "config.sqlite").chmod(0o644)
    private_path(wide, 0o700, directory=True)
    private_path(wide / "config.sqlite", 0o600, directory=False)
    assert stat.S_IMODE(wide.stat().st_mode) == 0o700
    assert stat.S_IMODE((wide / "config.sqlite").stat().st_mode) == 0o600
    assert "tightened" in caplog.text
    os.symlink(tmp_path / "elsewhere", tmp_path / "ln")
    with pytest.raises(StartupError):
        private_path(tmp_path / "ln", 0o600, directory=False)
