"""The repository's structure: the engine (`harness/`) never imports the adapters (`systems/`)
or the panels (`listeners/`); no two modules import each other, even through a function-level
import; every module imports on its own in a fresh interpreter."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "systems", "listeners")


def module_files() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = module_files()


def imported(module: str, path: Path) -> set[str]:
    """Repository modules that `module` imports anywhere in its body (function-level too)."""
    def known(name: str) -> str | None:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        return name or None

    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {m for a in node.names if (m := known(a.name))}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for a in node.names:
                m = known(f"{base}.{a.name}") if f"{base}.{a.name}" in MODULES else known(base)
                if m:
                    out.add(m)
    out.discard(module)
    return out


GRAPH = {m: imported(m, p) for m, p in MODULES.items()}


def test_the_engine_never_imports_the_adapters_or_the_panels():
    bad = {m: sorted(d for d in deps if d.split(".")[0] in ("systems", "listeners"))
           for m, deps in GRAPH.items() if m.split(".")[0] == "harness"}
    assert not {m: d for m, d in bad.items() if d}


def test_no_import_cycles():
    """Tarjan's strongly connected components over every import, lazy ones included."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(GRAPH)))
    for v in GRAPH:
        if v not in index:
            visit(v)
    assert cycles == []
    assert len(GRAPH) > 50 and sum(map(len, GRAPH.values())) > 100  # the scan saw the imports


def test_a_cycle_is_seen_by_the_scan(tmp_path, monkeypatch):
    """The scanner itself: two modules importing each other inside functions are found."""
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("def f():\n    from harness import b\n")
    b.write_text("from harness.a import f\n")
    monkeypatch.setitem(MODULES, "harness.a", a)
    monkeypatch.setitem(MODULES, "harness.b", b)
    assert imported("harness.a", a) == {"harness.b"} and imported("harness.b", b) == {"harness.a"}


FORK_IMPORTER = r"""
import json, os, sys, traceback
# third-party libraries first, once: every child forked below inherits them, and still imports
# the project's modules from scratch (none of them is in sys.modules here)
for lib in ("numpy", "scipy.signal", "torch", "pandas", "soundfile", "soxr", "clarity", "typer", "rich"):
    try:
        __import__(lib)
    except Exception:
        pass
assert not [m for m in sys.modules if m.split(".")[0] in ("harness", "systems", "listeners")]
failed = {}
for m in sys.argv[1:]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            __import__(m)
            os._exit(0)
        except BaseException:
            os.write(w, traceback.format_exc().strip().splitlines()[-1].encode())
            os._exit(1)
    os.close(w)
    why = os.read(r, 4096).decode()
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if status:
        failed[m] = why or f"status {status}"
print(json.dumps(failed))
"""


@pytest.mark.slow
def test_every_module_imports_on_its_own():
    """Each module imported in a fresh process with no other project module imported first (so
    none can hide an import-order dependency): children forked from one interpreter that has
    loaded only the third-party libraries (numpy, torch, ...), which saves starting those once
    per module."""
    p = subprocess.run([sys.executable, "-c", FORK_IMPORTER, *MODULES], cwd=ROOT, capture_output=True,
                       text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-2000:]
    failed = json.loads(p.stdout.strip().splitlines()[-1])
    assert not failed
