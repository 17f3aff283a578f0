"""Run configuration: every `harness run` flag has a key in a TOML file.

    suites = ["speech-enhancement-quick", "music-remix-quick"]
    systems = ["unprocessed", "oracle"]
    panel = "builtin"            # or a path to a Clarity/Cadenza listeners*.json
    listeners = []               # optional subset of the panel's ids
    metrics = []                 # empty: each task's default metrics
    jobs = 2                     # scoring worker processes
    device = "auto"              # auto | cpu | cuda | cuda:N
    out = "harness-runs"
    batch_size = 4
    run_name = ""                # default: the run id (a hash of what determines the numbers)
    quiet = false
    metrics_backend = "default"  # default (fast where parity holds) | reference | fast, or a
                                 # table: [metrics_backend] sdr = "reference"

    [system_params.some-system]  # keyword arguments for a system's constructor
    option = 1

Flags given on the command line override the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, read_structured
from harness.suites import DEFAULT_SUITES


def default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


@dataclass
class RunConfig:
    suites: list[str] = field(default_factory=lambda: list(DEFAULT_SUITES))
    systems: list[str] = field(default_factory=lambda: ["unprocessed", "oracle"])
    panel: str = "builtin"
    listeners: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    jobs: int = field(default_factory=default_jobs)
    device: str = "auto"
    out: str = "harness-runs"
    batch_size: int = 4
    run_name: str = ""
    quiet: bool = False
    system_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics_backend: Any = "default"  # default | reference | fast | {family or metric = backend}

    def validate(self) -> RunConfig:
        if not self.suites:
            raise ConfigError("no suite given")
        if not self.systems:
            raise ConfigError("no system given")
        if self.jobs < 1:
            raise ConfigError(f"jobs must be at least 1, got {self.jobs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        from harness.metrics.backends import resolve

        resolve(self.metrics_backend)  # raises a ConfigError naming the bad key
        return self


KEYS = {f.name for f in fields(RunConfig)}
_LISTS = {"suites", "systems", "listeners", "metrics"}


def load_config(path: str | Path | None, overrides: dict[str, Any]) -> RunConfig:
    """Merge a TOML file (if given) with command-line overrides (None/empty means 'not given')."""
    values: dict[str, Any] = {}
    if path:
        p = Path(path)
        if p.suffix.lower() != ".toml":
            raise ConfigError(f"{p}: a run config must be a .toml file")
        raw = read_structured(p, ConfigError, "config file", "config file not found")
        unknown = sorted(set(raw) - KEYS)
        if unknown:
            raise ConfigError(f"{p}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(KEYS))})")
        for k, v in raw.items():
            if k in _LISTS and isinstance(v, str):
                v = [v]
            values[k] = v
    for k, v in overrides.items():
        if v is None or (k in _LISTS and not v):
            continue
        values[k] = v
    where = f"{path}: " if path else ""
    try:
        cfg = RunConfig(**values)
    except TypeError as exc:
        raise ConfigError(f"{where}bad configuration: {exc}") from None
    for k in _LISTS:
        if not isinstance(getattr(cfg, k), list):
            raise ConfigError(f"{where}config key {k!r} must be a list of strings")
    try:
        return cfg.validate()
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None
