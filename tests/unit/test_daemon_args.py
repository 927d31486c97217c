"""vswitchd refuses bad start-up options with a message naming the option, before touching anything."""

from __future__ import annotations

import pytest

from vswitch.app.daemon import StartupError, build_parser, run


@pytest.mark.parametrize("value", ["-1", "100001"])
def test_busy_poll_out_of_range_is_refused_before_binding(tmp_path, value):
    sock = tmp_path / "vswitchd.sock"
    args = build_parser().parse_args(["--state-dir", str(tmp_path / "state"), "--socket", str(sock),
                                      "--busy-poll-us", value])
    with pytest.raises(StartupError, match="--busy-poll-us"):
        run(args)
    assert not sock.exists(), "a refused start must not leave a socket behind"
    assert not (tmp_path / "state").exists(), "a refused start must not create the state dir"


def test_version_comes_from_the_package_metadata(capsys):
    from importlib import metadata

    from vswitch.app.daemon import main

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"vswitchd {metadata.version('vswitch')}\n"
