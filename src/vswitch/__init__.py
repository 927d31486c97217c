"""vswitch: Hyper-V-style virtual switches for Linux.

External, Internal and Private switches built from a pure learning-switch core (`vswitch.core`),
port back-ends that move frames (`vswitch.ports`), a forwarding loop (`vswitch.datapath`) and a
control plane that knows switch types (`vswitch.control`).

The version is written once, in pyproject.toml; `version()` reads it from the installed package's
metadata, on demand (importing importlib.metadata costs ~0.1 s, which vswitchd's restart must not pay).
"""


def version() -> str:
    """The installed vswitch's version (``vswitch --version``, ``vswitchd --version``).

    Raises nothing: a source tree that was never installed answers ``unknown (not installed)``.
    """
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as distribution_version

    try:
        return distribution_version("vswitch")
    except PackageNotFoundError:
        return "unknown (not installed)"
