"""The core is pure: no module of vswitch.core reaches I/O, a clock, logging, threads or netlink.

Complements test_layers.py (which checks the room order using absolute imports only): here every
import in core/ — absolute, relative (resolved against the package), inside functions, or through
``importlib``/``__import__`` — must be either another vswitch.core module or a standard-library
module not on the forbidden list. The closure is followed through vswitch.core, so a helper
module cannot launder a forbidden import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "src" / "vswitch" / "core"
FORBIDDEN = {"asyncio", "socket", "os", "time", "logging", "pyroute2", "select", "threading", "subprocess",
             "selectors", "signal", "multiprocessing", "concurrent", "random", "datetime", "io", "shutil"}
ALLOWED_STDLIB = {"__future__", "collections", "dataclasses", "enum", "struct", "typing", "abc", "functools",
                  "itertools", "operator", "ipaddress", "math", "types"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(CORE.parent.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every module the file at `path` (a module of vswitch) imports, relative imports resolved."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return imports_in(path.read_text(), package)


def imports_in(source: str, package: str) -> list[tuple[int, str]]:
    """Every module `source` imports; relative imports are resolved against `package`."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
                if not node.module:  # `from . import fdb`: each name is a module of the package
                    found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
                    continue
            else:
                module = node.module or ""
            found.append((node.lineno, module))
        elif isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if name in ("import_module", "__import__"):
                arg = node.args[0] if node.args else None
                target = arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else "<dynamic>"
                found.append((node.lineno, target))
    return found


def core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_core_has_modules() -> None:
    names = {p.name for p in core_modules()}
    assert {"fdb.py", "frame.py", "mac.py", "policy.py", "reasons.py", "switch.py"} <= names


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: p.name)
def test_core_module_imports_only_pure_modules(path: Path) -> None:
    for line, module in imports_of(path):
        top = module.split(".")[0]
        where = f"core/{path.name}:{line} imports {module}"
        assert top not in FORBIDDEN, f"{where}: the core does no I/O and reads no clock (`now` is a parameter)"
        if top == "vswitch":
            assert module == "vswitch.core" or module.startswith("vswitch.core."), \
                f"{where}: the core imports nothing from the rooms above it"
        else:
            assert top in ALLOWED_STDLIB, f"{where}: not on the core's list of pure modules {sorted(ALLOWED_STDLIB)}"


def test_the_walker_resolves_relative_and_dynamic_imports() -> None:
    """A relative or dynamic import of a forbidden module must not slip through the walker."""
    source = ("from . import fdb\nfrom .frame import parse_header\nfrom .. import ports\n"
              "def f():\n    import importlib\n    return importlib.import_module('socket')\n")
    found = {m for _, m in imports_in(source, "vswitch.core")}
    assert found == {"vswitch.core.fdb", "vswitch.core.frame", "vswitch.ports", "importlib", "socket"}


def test_importing_the_core_loads_nothing_forbidden() -> None:
    """The same, at run time: a fresh interpreter importing vswitch.core loads none of them."""
    import subprocess
    import sys

    code = ("import sys; before = set(sys.modules); import vswitch.core, vswitch.core.switch; "
            "print(' '.join(sorted(set(sys.modules) - before)))")
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = {m.split(".")[0] for m in out.split()}
    # os/io/time & co. may come with the interpreter or the stdlib's own imports; these must not
    bad = loaded & {"asyncio", "socket", "logging", "pyroute2", "select", "selectors", "subprocess"}
    assert not bad, f"importing vswitch.core pulled in {sorted(bad)}"
