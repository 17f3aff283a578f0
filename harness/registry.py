"""Lazy registries backed by entry points (`harness.systems`, `harness.metrics`, `harness.panels`).

Built-in systems and panels are declared as entry points of this distribution, so they are
found exactly like third-party ones: `pip install my-system` makes it appear in `harness systems`.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from harness.errors import RegistryError

# Fallbacks used when the distribution's metadata is not installed (e.g. running from a bare
# source tree with PYTHONPATH); the entry points in pyproject.toml say the same.
BUILTIN = {
    "harness.systems": {
        "unprocessed": "systems.anchors:Unprocessed",
        "oracle": "systems.anchors:Oracle",
    },
    "harness.panels": {"builtin": "listeners.builtin:builtin_panel"},
    "harness.metrics": {},
}


@cache
def names(group: str) -> dict[str, str]:
    """Name -> 'module:attr' for every entry of the group (built-ins first, then plugins)."""
    found = dict(BUILTIN.get(group, {}))
    for ep in entry_points(group=group):
        found[ep.name] = ep.value
    return found


def load(group: str, name: str) -> Any:
    """Import and return the object registered as `name` in `group`."""
    table = names(group)
    if name not in table:
        kind = group.split(".")[-1].rstrip("s")
        raise RegistryError(f"unknown {kind} {name!r} (known: {', '.join(sorted(table))})")
    target = table[name]
    module, _, attr = target.partition(":")
    try:
        obj = import_module(module)
        for part in attr.split(".") if attr else []:
            obj = getattr(obj, part)
    except Exception as exc:  # a broken plugin must not take the harness down
        raise RegistryError(f"{group} entry {name!r} ({target}) failed to load: {exc}") from None
    return obj


def register(group: str, name: str, target: str) -> None:
    """Register `module:attr` under `name` for this process (plugins use entry points instead)."""
    BUILTIN.setdefault(group, {})[name] = target
    names.cache_clear()
