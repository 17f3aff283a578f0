"""Listeners and panels, on top of pyclarity's `Listener` and `Audiogram` types.

A listener is pyclarity's `Listener` (an id and a left and right `Audiogram`). A panel is an
ordered list of them with a name; panels come from the `harness.panels` registry or from a
Clarity/Cadenza `listeners*.json` file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from clarity.utils.audiogram import Audiogram, Listener

from harness import registry
from harness.errors import ListenerError, read_structured
from harness.suites.types import plain_component

# The audiometric frequencies HAAQI's ear model and NAL-R's prescription read (pyclarity's).
AUDIOGRAM_FREQUENCIES = np.array([250, 500, 1000, 2000, 4000, 6000])
HAAQI_FREQUENCIES = AUDIOGRAM_FREQUENCIES
# pyclarity's NALR in the Cadenza recipes: nfir = 220 at 44.1 kHz, a filter of 221 taps.
NALR_NFIR = 220
# The audiometric range of the Clarity/Cadenza listener data: a threshold outside it is a typo.
THRESHOLD_RANGE_DB_HL = (-10.0, 120.0)
SEVERITY_ORDER = ("NOTHING", "MILD", "MODERATE", "SEVERE")
EARS = ("left", "right")
EAR_CHANNEL = {"left": 0, "right": 1}  # the channel of each ear in a stereo signal

__all__ = ["Audiogram", "Listener", "Panel", "load_listener_file", "resolve_panel"]


@dataclass(frozen=True)
class Panel:
    name: str
    listeners: tuple[Listener, ...]
    source: str = ""

    @property
    def ids(self) -> list[str]:
        return [li.id for li in self.listeners]

    def get(self, listener_id: str) -> Listener:
        for li in self.listeners:
            if li.id == listener_id:
                return li
        raise ListenerError(
            f"unknown listener id {listener_id!r} in panel {self.name!r} "
            f"(known: {', '.join(self.ids)})"
        )

    def subset(self, ids: list[str]) -> Panel:
        return Panel(self.name, tuple(self.get(i) for i in ids), self.source)

    def digest(self) -> dict:
        """What identifies a panel in a run manifest: ids and thresholds per ear."""
        return {
            li.id: {
                "cfs": li.audiogram_left.frequencies.tolist(),
                "left": li.audiogram_left.levels.tolist(),
                "right": li.audiogram_right.levels.tolist(),
            }
            for li in self.listeners
        }


def panel_from_digest(name: str, digest: dict) -> Panel:
    """Rebuild a panel from `Panel.digest()` (as stored in a run manifest)."""
    listeners = tuple(
        Listener(
            id=lid,
            audiogram_left=Audiogram(levels=d["left"], frequencies=d["cfs"]),
            audiogram_right=Audiogram(levels=d["right"], frequencies=d["cfs"]),
        )
        for lid, d in digest.items()
    )
    return Panel(name=name, listeners=listeners, source="run manifest")


def audiogram(listener: Listener, ear: str) -> Audiogram:
    if ear not in EARS:
        raise ValueError(f"ear must be one of {EARS}, got {ear!r}")
    return listener.audiogram_left if ear == "left" else listener.audiogram_right


def haaqi_audiogram(ag: Audiogram) -> Audiogram:
    """The audiogram on HAAQI's six frequencies, resampled explicitly (log-frequency, ends held).

    pyclarity would do the same inside HAAQI but logs a warning each time; doing it here keeps
    the step visible and the warning out of the user's output.
    """
    if ag.has_frequencies(HAAQI_FREQUENCIES):
        keep = np.isin(ag.frequencies, HAAQI_FREQUENCIES)
        return Audiogram(levels=ag.levels[keep], frequencies=ag.frequencies[keep])
    return ag.resample(HAAQI_FREQUENCIES)


def severity(listener: Listener) -> str:
    """pyclarity's severity band (mean 2-8 kHz: >56 SEVERE, >35 MODERATE, >15 MILD) of the
    ear-averaged audiogram."""
    left, right = listener.audiogram_left, listener.audiogram_right
    if np.array_equal(left.frequencies, right.frequencies):
        levels = (np.asarray(left.levels, float) + np.asarray(right.levels, float)) / 2
        return Audiogram(levels=levels, frequencies=left.frequencies).severity
    worst = max(left.severity, right.severity, key=SEVERITY_ORDER.index)
    return worst


def check_audiogram(path: Path, key: str, ear: str, cfs, levels) -> None:
    """Thresholds must be finite and within the audiometric range, one per frequency."""
    lv = np.asarray(levels, dtype=float)
    fr = np.asarray(cfs, dtype=float)
    if lv.ndim != 1 or fr.ndim != 1 or len(lv) != len(fr) or len(lv) == 0:
        raise ListenerError(f"{path}: listener {key!r}, {ear} ear: {len(np.atleast_1d(lv))} thresholds "
                            f"for {len(np.atleast_1d(fr))} frequencies (one per audiogram_cfs entry)")
    if not np.all(np.isfinite(lv)):
        raise ListenerError(f"{path}: listener {key!r}, {ear} ear: thresholds must be finite numbers")
    lo, hi = THRESHOLD_RANGE_DB_HL
    bad = [(f, v) for f, v in zip(fr, lv, strict=True) if not lo <= v <= hi]
    if bad:
        f, v = bad[0]
        raise ListenerError(f"{path}: listener {key!r}, {ear} ear: threshold {v:g} dB HL at {f:g} Hz "
                            f"is outside the audiometric range {lo:g} to {hi:g} dB HL")
    if not np.all(np.isfinite(fr)) or np.any(fr <= 0) or np.any(np.diff(fr) <= 0):
        raise ListenerError(f"{path}: listener {key!r}: audiogram_cfs must be positive frequencies in "
                            "increasing order")


def load_listener_file(path: str | Path) -> Panel:
    """Read a Clarity/Cadenza listeners*.json through pyclarity; one-line errors name the file and
    the listener: duplicate ids, thresholds outside -10..120 dB HL, malformed entries."""
    path = Path(path)
    raw = read_structured(path, ListenerError, "listener file", "listener file not found",
                          repeated="listener {key!r} is given twice (each listener once)")
    if not isinstance(raw, dict) or not raw:
        raise ListenerError(f"{path}: expected a non-empty JSON object keyed by listener id")
    listeners = []
    for key, entry in raw.items():
        if not isinstance(entry, dict):
            raise ListenerError(f"{path}: listener {key!r} is not an object")
        missing = [
            k
            for k in ("name", "audiogram_cfs", "audiogram_levels_l", "audiogram_levels_r")
            if k not in entry
        ]
        if missing:
            raise ListenerError(f"{path}: listener {key!r} lacks {', '.join(missing)}")
        if entry["name"] != key:
            raise ListenerError(f"{path}: listener key {key!r} differs from its name {entry['name']!r}")
        if not plain_component(key):
            raise ListenerError(f"{path}: listener id {key!r} is not a plain name (submissions use it "
                                "as a folder name: no '/', '\\', '..', '.' or control characters)")
        try:
            for ear, k in (("left", "audiogram_levels_l"), ("right", "audiogram_levels_r")):
                check_audiogram(path, key, ear, entry["audiogram_cfs"], entry[k])
            li = Listener.from_dict(entry)
        except (ValueError, TypeError) as exc:
            raise ListenerError(f"{path}: listener {key!r}: {exc}") from None
        listeners.append(li)
    return Panel(name=path.stem, listeners=tuple(listeners), source=str(path))


def resolve_panel(spec: str = "builtin", ids: list[str] | None = None) -> Panel:
    """A registered panel name or a path to a listeners*.json file, optionally subset by ids."""
    if spec in registry.names("harness.panels"):
        panel = registry.load("harness.panels", spec)()
    elif Path(spec).suffix == ".json" or Path(spec).exists():
        panel = load_listener_file(spec)
    else:
        known = ", ".join(registry.names("harness.panels"))
        raise ListenerError(f"unknown panel {spec!r}: not a registered panel ({known}) nor a file")
    return panel.subset(list(dict.fromkeys(ids))) if ids else panel


def nalr_fir(audiogram: Audiogram, rate: int, nfir: int = NALR_NFIR) -> np.ndarray:
    """pyclarity's NAL-R filter (nfir + 1 taps) for one ear's audiogram at `rate`: the one place
    the harness builds it."""
    from clarity.enhancer.nalr import NALR

    fir, _ = NALR(nfir, rate).build(audiogram)
    return np.asarray(fir)


def nalr_full(x: np.ndarray, rate: int, audiogram: Audiogram, nfir: int = NALR_NFIR) -> np.ndarray:
    """pyclarity's NAL-R for one audiogram as its `NALR.apply` does it: np.convolve, full length
    (len(x) + nfir), the filter's delay kept."""
    from clarity.enhancer.nalr import NALR

    return NALR(nfir, rate).apply(nalr_fir(audiogram, rate, nfir), x)
