"""The harness's one cache folder: simulated room banks, training pools and synthesised training
speech live under it (never results: those go to the output folder). `HARNESS_CACHE` moves it;
a training config's `data.cache` moves that training's pools and room bank (festival's sentences
stay in the shared folder)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

DEFAULT = "~/.cache/audio-harness"


def root(override: str | os.PathLike | None = None) -> Path:
    """`override` when given (not empty), else $HARNESS_CACHE, else ~/.cache/audio-harness."""
    return Path(override or os.environ.get("HARNESS_CACHE") or DEFAULT).expanduser()


def keyed(name: str, key: Any, suffix: str, override: str | os.PathLike | None = None) -> Path:
    """`root/NAME-<16 hex digits of sha256(json(key))>SUFFIX`: a cache file named by what made it."""
    digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]
    return root(override) / f"{name}-{digest}{suffix}"
