"""Suite generators (`harness suites make NAME --items N --seconds S --seed K --out DIR`).

Every generator is deterministic: item i draws from a random stream seeded by (seed, suite name,
i), so the same arguments give the same bytes and a bigger suite extends a smaller one. Each
item's metadata records every generation parameter; files that make the asked quantities
measurable (noise-free images, interference images, room impulse responses) are written under
`components/` beside the inputs and references.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness import registry
from harness.audio import Audio, write
from harness.config import limit_problem
from harness.errors import HarnessError, SuiteError
from harness.suites.synth import degrade as dg
from harness.suites.types import FileRef, Item, Suite, file_ref, write_manifest

SPEECH_RATE = 16000
MUSIC_RATE = 44100


# ------------------------------------------------------------------ plumbing
class Writer:
    """Writes audio into a suite folder and returns manifest entries for it."""

    def __init__(self, root: Path, subtype: str = "PCM_24", suffix: str = ".flac"):
        self.root, self.subtype, self.suffix = root, subtype, suffix

    def __call__(self, rel: str, x: np.ndarray, rate: int) -> FileRef:
        x = np.asarray(x, dtype=np.float64)
        peak = float(np.max(np.abs(x))) if x.size else 0.0
        if self.subtype != "FLOAT" and peak >= 1.0:
            raise SuiteError(f"{rel}: peak {peak:.3f} would clip in {self.subtype} (a lower -O level_lufs?)")
        if self.subtype == "PCM_24":
            x = dg.quantise(x, 24)
        path = write(self.root / (rel + self.suffix), Audio(x, rate), self.subtype)
        return file_ref(self.root, path)



def item_rng(seed: int, name: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(name.encode()), index]))


def cycled(levels: list, index: int, seed: int, factor: str):
    """Level of a factor for item `index`: each pass over the levels is a seeded shuffle, so
    every level appears once per pass (a balanced grid whatever the number of items)."""
    cycle, pos = divmod(index, len(levels))
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(factor.encode()), cycle]))
    return levels[int(rng.permutation(len(levels))[pos])]


def _r(x: float, digits: int = 4) -> float:
    return round(float(x), digits)


def headroom(peak: float, limit: float = 0.95) -> float:
    """Gain that brings a peak under `limit` (1 when it already is)."""
    return 1.0 if peak <= limit else limit / peak


def effective_band(device: dg.Device, source_rate: int) -> tuple[float | None, float | None]:
    """The device's band edges that lie inside the signal's band (edges above 0.45 x the lower of
    the source and device rates are open: that band is limited by the rates themselves)."""
    nyq = 0.45 * min(source_rate, device.rate)
    high = device.high_hz if device.high_hz is not None and device.high_hz < nyq else None
    low = device.low_hz if device.low_hz is not None and device.low_hz < nyq else None
    return low, high


def device_chain(device: dg.Device, x: np.ndarray, rate: int) -> np.ndarray:
    low, high = effective_band(device, rate)
    return dg.Device(device.name, device.rate, low, high, device.order, device.gain_db).linear(x, rate)


# ------------------------------------------------------------------ the generator record
@dataclass(frozen=True)
class Generator:
    """A suite generator: registered in the `harness.generators` group of harness.registry."""

    name: str
    task: str
    make: Callable[..., tuple[list[Item], dict]]
    seconds: float
    items: int
    description: str
    options: tuple[str, ...]  # keys accepted by -O KEY=VALUE
    presets: dict[str, tuple[float, int]] = field(default_factory=dict)  # preset -> (seconds, items)
    # option -> the values it may take (harness.config.limit_problem: "[0, 2]", "integer [2, 16]",
    # or a tuple of choices), checked before anything is generated
    limits: dict[str, Any] = field(default_factory=dict)


def generators() -> dict[str, Generator]:
    """Every registered generator, loaded."""
    return registry.load_all("harness.generators", Generator)


def get_generator(name: str) -> Generator:
    try:
        return registry.load("harness.generators", name, Generator)
    except HarnessError as exc:
        raise SuiteError(str(exc)) from None


# generator options that are grids (lists of levels); a single value is a grid of one
LIST_OPTIONS = {"snrs", "rt60s", "devices", "noises", "voices", "ratios", "styles", "interferers"}


def make_suite(name: str, out: Path, items: int | None = None, seconds: float | None = None,
               seed: int = 0, options: dict | None = None,
               progress: Callable[[int], Callable[[], None]] | None = None) -> Suite:
    """Generate suite `name` into folder `out` and write its manifest."""
    gen = get_generator(name)
    options = dict(options or {})
    unknown = sorted(set(options) - set(gen.options) - {"suite_name"})
    if unknown:
        raise SuiteError(f"{name}: unknown option(s) {', '.join(unknown)} "
                         f"(known: {', '.join(gen.options)}, suite_name)")
    for key in LIST_OPTIONS & set(options):  # -O ratios=4: a grid of one level
        if not isinstance(options[key], list):
            options[key] = [options[key]]
    for key, rule in gen.limits.items():
        problem = limit_problem(rule, options[key]) if key in options else None
        if problem:
            raise SuiteError(f"{name}: -O {key} {problem}")
    d_seconds, d_items = gen.presets.get(str(options.get("preset")), (gen.seconds, gen.items))
    items = d_items if items is None else items
    seconds = d_seconds if seconds is None else seconds
    if items < 1:
        raise SuiteError("--items must be at least 1")
    if seconds < 1.0:
        raise SuiteError("--seconds must be at least 1 (loudness needs 400 ms blocks)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SuiteError(f"{out}: is a file (--out names a new or empty folder)")
    if out.exists() and any(out.iterdir()):
        raise SuiteError(f"{out}: folder exists and is not empty (choose a new --out)")
    out.mkdir(parents=True, exist_ok=True)
    tick = progress(items) if progress else (lambda: None)
    try:
        made, params = gen.make(out, items, seconds, seed, options, tick)
    except (TypeError, ValueError) as exc:  # an option value of the wrong kind (-O ratios=two)
        shown = ", ".join(f"{k}={v!r}" for k, v in options.items()) or "none"
        raise SuiteError(f"{name}: cannot generate with options {shown}: {exc}") from None
    label = name if "preset" not in options else f"{name}-{options['preset']}"
    suite = Suite(
        name=str(options.get("suite_name", label)), version="1", task=gen.task, root=out,
        items=tuple(made), description=f"{gen.description} ({items} items x {seconds:g} s, seed {seed})",
        generator={"generator": name, "items": items, "seconds": seconds, "seed": seed,
                   "options": {k: v for k, v in options.items() if k != "suite_name"},
                   "parameters": params},
    )
    write_manifest(suite)
    return suite
