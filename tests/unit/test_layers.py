"""The doors between rooms: imports only go downward, and pyroute2 lives in two modules.

    app > frontends > lab > control > datapath > ports > core

A module may import its own room and any room below it, never one above. pyroute2 (netlink) is
spoken only by control/netlink.py, lab/netns.py and datapath/kernel/tc.py (the fast path's tc
attachment: the datapath cannot import control). A few rules live in one module each: entering
a network namespace (ports/netns.py `run_in`), creating a veth (control/netlink.py
`Netlink.create_veth`), building the front ends' rich console (frontends/console.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "vswitch"
ORDER = ["core", "ports", "datapath", "control", "lab", "frontends", "app"]
NETLINK_OWNERS = {"control/netlink.py", "lab/netns.py", "datapath/kernel/tc.py"}


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


#: the one place a thread enters a network namespace (`run_in`), and the one veth creator
NAMESPACE_ENTRY = "ports/netns.py"
VETH_CREATOR = "control/netlink.py"


def _calls(path: Path, name: str) -> list[int]:
    """Lines of `path` that call a function or method called `name`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and (getattr(node.func, "attr", None) == name or getattr(node.func, "id", None) == name)]


def _veth_kinds(path: Path) -> list[int]:
    """Lines of `path` that pass ``kind="veth"`` to anything."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [kw.value.lineno for node in ast.walk(tree) if isinstance(node, ast.Call) for kw in node.keywords
            if kw.arg == "kind" and isinstance(kw.value, ast.Constant) and kw.value.value == "veth"]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_one_way_into_a_namespace(path: Path) -> None:
    rel = str(path.relative_to(SRC))
    if rel == NAMESPACE_ENTRY:
        return
    lines = _calls(path, "setns")
    assert not lines, f"{rel}:{lines} calls setns; enter a namespace with vswitch.ports.netns.run_in"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_one_veth_creator(path: Path) -> None:
    rel = str(path.relative_to(SRC))
    if rel == VETH_CREATOR:
        return
    lines = _veth_kinds(path)
    assert not lines, f"{rel}:{lines} creates a veth itself; use vswitch.control.netlink.Netlink.create_veth"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_one_console_rule(path: Path) -> None:
    rel = str(path.relative_to(SRC))
    if rel == "frontends/console.py":
        return
    lines = _calls(path, "Console")
    assert not lines, f"{rel}:{lines} builds a rich Console itself; use vswitch.frontends.console.console"


def test_no_two_test_files_share_a_name() -> None:
    """pytest imports test files by basename (the tiers have no __init__.py): a second
    tests/*/test_x.py is an "import file mismatch" error once both tiers run in one session."""
    tests = Path(__file__).resolve().parents[1]
    seen: dict[str, Path] = {}
    for path in sorted(tests.rglob("test_*.py")):
        other = seen.setdefault(path.name, path)
        assert other == path, f"{path.relative_to(tests)} and {other.relative_to(tests)} share a name"
