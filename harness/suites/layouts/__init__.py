"""Loaders for real dataset layouts on disk (`harness suites import LAYOUT PATH`).

Each loader validates the whole tree first and reports every missing or malformed file by path
(`TreeProblems`), then returns a Suite whose files stay where they are: the manifest written by
`harness suites import` records the dataset root, and paths inside it are relative to that root.
"""

from __future__ import annotations

from pathlib import Path

from harness import registry
from harness.errors import SuiteError
from harness.suites.layouts.common import Layout, TreeProblems, checked_ref  # noqa: F401
from harness.suites.types import Suite


def layouts() -> dict[str, Layout]:
    """Every registered layout (`harness.layouts` group of harness.registry), loaded."""
    return registry.load_all("harness.layouts", Layout)


def layout_names() -> dict[str, str]:
    return {k: v.description for k, v in layouts().items()}


def import_layout(layout: str, root: str | Path, **options) -> Suite:
    found = registry.load("harness.layouts", layout, Layout)
    root = Path(root)
    if not root.is_dir():
        raise SuiteError(f"{root}: not a folder")
    return found.load(root, **options)
