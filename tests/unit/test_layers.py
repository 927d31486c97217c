"""The doors between rooms: imports only go downward, and pyroute2 lives in two modules.

    app > frontends > lab > control > datapath > ports > core

A module may import its own room and any room below it, never one above. pyroute2 (netlink) is
spoken only by control/netlink.py and lab/netns.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "vswitch"
ORDER = ["core", "ports", "datapath", "control", "lab", "frontends", "app"]
NETLINK_OWNERS = {"control/netlink.py", "lab/netns.py"}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if p.parent != SRC)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_only_go_downward(path: Path) -> None:
    room = path.relative_to(SRC).parts[0]
    rank = ORDER.index(room)
    for line, module in _imports(path):
        parts = module.split(".")
        if parts[0] != "vswitch" or len(parts) < 2 or parts[1] not in ORDER:
            continue
        assert ORDER.index(parts[1]) <= rank, (
            f"{path.relative_to(SRC)}:{line} imports {module}: {room} must not import from {parts[1]}, "
            f"a room above it ({' > '.join(reversed(ORDER))})")


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_pyroute2_only_in_the_netlink_modules(path: Path) -> None:
    rel = str(path.relative_to(SRC))
    if rel in NETLINK_OWNERS:
        return
    for line, module in _imports(path):
        assert module.split(".")[0] != "pyroute2", (
            f"{rel}:{line} imports pyroute2; only {sorted(NETLINK_OWNERS)} speak netlink")
