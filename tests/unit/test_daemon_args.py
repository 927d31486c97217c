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


def test_an_inherited_listener_is_checked_before_it_is_served(tmp_path):
    import socket

    from vswitch.app.daemon import adopted_address

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        assert adopted_address(listening.fileno(), False) == listening.getsockname()
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        with pytest.raises(StartupError, match="not listening"):
            adopted_address(bound.fileno(), False)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        with pytest.raises(StartupError, match="not a TCP socket"):
            adopted_address(udp.fileno(), False)
    with socket.socket() as anywhere:
        anywhere.bind(("0.0.0.0", 0))
        anywhere.listen(1)
        with pytest.raises(StartupError, match="not a loopback address"):
            adopted_address(anywhere.fileno(), False)
        assert adopted_address(anywhere.fileno(), True)[0] == "0.0.0.0"
    with pytest.raises(StartupError, match="not an open socket"):
        adopted_address(987, False)


def test_listen_and_listen_fd_are_one_or_the_other(tmp_path, capsys):
    from vswitch.app.daemon import main

    with pytest.raises(SystemExit) as exit_:
        main(["--state-dir", str(tmp_path / "s"), "--socket", str(tmp_path / "x.sock"), "--listen", "127.0.0.1:1",
              "--listen-fd", "3", "--token-file", str(tmp_path / "t")])
    assert exit_.value.code == 2
    assert "give one" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["--state-dir", str(tmp_path / "s"), "--socket", str(tmp_path / "x.sock"), "--listen-fd", "3"])
    assert exit_.value.code == 2
    assert "--token-file" in capsys.readouterr().err
