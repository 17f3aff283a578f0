"""Suites: Item/Suite types, manifest I/O, built-in quick suites and name resolution."""

from __future__ import annotations

from pathlib import Path

from harness.errors import SuiteError
from harness.suites.types import MANIFEST_NAME, FileRef, Item, Suite, load_suite, write_manifest

QUICK_DIR = Path(__file__).parent / "quick"
DEFAULT_SUITES = ("speech-enhancement-quick", "music-remix-quick")

__all__ = [
    "DEFAULT_SUITES",
    "FileRef",
    "Item",
    "Suite",
    "builtin_suites",
    "load_suite",
    "resolve_suite",
    "write_manifest",
]


def builtin_suites() -> dict[str, Path]:
    """Names of the suites shipped with the harness, mapped to their folders."""
    return {
        p.parent.name: p.parent for p in sorted(QUICK_DIR.glob(f"*/{MANIFEST_NAME}"))
    }


def resolve_suite(spec: str) -> Suite:
    """A built-in suite name, or a path to a suite folder / manifest."""
    if not spec.strip():
        raise SuiteError("an empty suite name (give a built-in suite's name or a folder)")
    builtin = builtin_suites()
    if spec in builtin:
        return load_suite(builtin[spec])
    path = Path(spec)
    if path.exists():
        return load_suite(path)
    known = ", ".join(builtin) or "none"
    raise SuiteError(f"unknown suite {spec!r}: not a built-in suite ({known}) nor a folder")
