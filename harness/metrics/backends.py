"""Which implementation computes each metric family: `reference` (the field's package) or `fast`
(harness.metrics.fast, torch). Every stored score records the backend that produced it.

A family is a set of metrics computed together: `bsseval` covers sdr, isr, sir, sar and the
crowd task's sdr_improvement. `fast` is the default only for families whose parity tests
against the reference pass (tests/test_fast_bsseval.py, test_fast_haaqi.py,
test_fast_speech_metrics.py); asking for `fast` where no fast kernel
exists keeps the reference and says so in the run manifest.
"""

from __future__ import annotations

from typing import Any

from harness.errors import ConfigError

REFERENCE, FAST = "reference", "fast"

FAMILIES: dict[str, tuple[str, ...]] = {
    "bsseval": ("sdr", "isr", "sir", "sar", "sdr_improvement"),
    "haaqi": ("haaqi", "haaqi_pre_equalised"),
    "pesq": ("pesq", "pesq_nb"),
    "stoi": ("stoi", "estoi"),
}
HAS_FAST = {"bsseval", "haaqi", "stoi"}  # families with a fast kernel whose parity tests pass
DEFAULTS = {f: (FAST if f in HAS_FAST else REFERENCE) for f in FAMILIES}

_current: dict[str, str] = dict(DEFAULTS)


def family_of(metric: str) -> str | None:
    for fam, names in FAMILIES.items():
        if metric in names:
            return fam
    return None


def resolve(choice: Any) -> dict[str, str]:
    """Backends per family from a config value: None/"default", "reference", "fast", or a table
    of family or metric name -> backend (a metric name sets its whole family)."""
    out = dict(DEFAULTS)
    if choice in (None, "", "default"):
        return out
    if isinstance(choice, str):
        choice = {f: choice for f in FAMILIES}
    if not isinstance(choice, dict):
        raise ConfigError(f"metrics_backend must be reference, fast or a table, got {choice!r}")
    for key, value in choice.items():
        fam = key if key in FAMILIES else family_of(key)
        if fam is None:
            raise ConfigError(f"metrics_backend: unknown metric or family {key!r} "
                              f"(families: {', '.join(FAMILIES)})")
        if value not in (REFERENCE, FAST):
            raise ConfigError(f"metrics_backend.{key}: must be reference or fast, got {value!r}")
        out[fam] = value if (value == REFERENCE or fam in HAS_FAST) else REFERENCE
    return out


def configure(backends: dict[str, str] | None) -> None:
    """Set the process's backends (the runner calls this in every scoring process)."""
    _current.clear()
    _current.update(DEFAULTS if backends is None else {**DEFAULTS, **backends})


def current(family: str) -> str:
    return _current.get(family, REFERENCE)


def label(metric: str) -> str:
    """The backend a score of this metric is computed with, now."""
    fam = family_of(metric)
    return current(fam) if fam else REFERENCE
