"""Which implementation computes each metric family: `reference` (the field's package) or `fast`
(harness.metrics.fast, torch). Every stored score records the backend that produced it.

A family is a set of metrics computed together: `bsseval` covers sdr, isr, sir, sar and the
crowd task's sdr_improvement. `fast` is the default only for families whose parity tests
against the reference pass (tests/test_fast_bsseval.py, test_fast_haaqi.py,
test_fast_speech_metrics.py); asking for `fast` where no fast kernel
exists keeps the reference and says so in the run manifest.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field
from pathlib import Path
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


@dataclass(frozen=True)
class ScoringContext:
    """What scoring needs beyond its signals, passed from the runner to the protocol to
    `evaluate` (no process-wide state): the backend per metric family, the folder where
    listener-independent results are memoised (None: compute every time), the torch device of
    the fast kernels (`device`: "cpu", or the run's GPU when scoring runs there) and, on the
    device scorer, the `HaaqiBatcher` that gathers HAAQI calls across jobs (None: each call is
    computed when it is made). The metrics read it through `current()` while `active(ctx)`
    holds on their thread (the scorers enter it around each job)."""

    backends: dict[str, str] = field(default_factory=lambda: dict(DEFAULTS))
    memo_dir: Path | None = None
    device: str = "cpu"
    haaqi_batcher: Any = None

    def backend(self, family: str) -> str:
        return self.backends.get(family, REFERENCE)

    def backend_of(self, metric: str) -> str:
        """The backend a score of this metric is computed with."""
        fam = family_of(metric)
        return self.backend(fam) if fam else REFERENCE

    def memoised(self, key_parts: list[str], compute):
        """compute() (a JSON-able value), cached on disk under memo_dir when it is set. Keys
        hash what determines the value (protocol version, backend, content hashes), so a hit is
        the same number; across processes one computes and the others wait for its result."""
        if self.memo_dir is None:
            return compute()
        import fcntl
        import hashlib
        import json
        import os

        key = hashlib.sha256("|".join(key_parts).encode()).hexdigest()
        path = Path(self.memo_dir) / key[:2] / f"{key}.json"
        if path.exists():
            return json.loads(path.read_text())
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if path.exists():
                return json.loads(path.read_text())
            value = compute()
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(value))
            tmp.replace(path)
        return value


DEFAULT_CONTEXT = ScoringContext()

_ACTIVE: contextvars.ContextVar[ScoringContext | None] = contextvars.ContextVar("harness_scoring",
                                                                               default=None)


def current() -> ScoringContext:
    """The scoring context of this thread's job (DEFAULT_CONTEXT outside one)."""
    return _ACTIVE.get() or DEFAULT_CONTEXT


@contextlib.contextmanager
def active(ctx: ScoringContext):
    """Make ctx the context that metrics called on this thread see (`current`)."""
    token = _ACTIVE.set(ctx)
    try:
        yield ctx
    finally:
        _ACTIVE.reset(token)
