"""`remix`: separation plus per-ear hearing-aid processing and remixing (Cadenza CAD1 Task 1).

separator -> per-stem gains -> per ear: NAL-R (pyclarity) -> compressor (pyclarity, or off)
-> the eight per-ear stems at 24 kHz; remix = sum of the processed stems per ear -> Butterworth
band-pass -> output level (0 dBFS = 100 dB SPL) -> soft clip -> 32 kHz.

Every stage is a parameter (see DEFAULTS); `harness run --system remix/dsp` picks the
separator by the label after the slash, and `[system_params."remix/NAME"]` in a run config sets
the rest.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.audio import Audio, resample
from harness.errors import ConfigError
from harness.listener import EARS
from harness.suites.types import Item
from systems.base import BaseSystem, Output
from systems.remix import stages
from systems.remix.separators import STEMS, chunked, make_separator, validate_stems

STEM_RATE, REMIX_RATE = 24000, 32000
EAR_CHANNEL = {"left": 0, "right": 1}

DEFAULTS: dict[str, Any] = {
    "separator": "dsp",
    "separator_options": {},
    "chunk_s": 10.0,
    "overlap": 0.1,
    "gains_db": {},  # per stem, e.g. {"vocals": 3.0}
    "nalr": True,
    "nalr_design": "precise",  # or "clarity": pyclarity's NALR filter, as the CAD1 baseline
    "nalr_taps": 220,  # length of the "clarity" design (pyclarity's default at 44.1 kHz)
    "compressor": None,  # or {attack_ms, release_ms, threshold, attenuation, rms_window_s, makeup_gain}
    "bandpass": {"low_hz": 250.0, "high_hz": 18500.0, "order": 5},  # on the remix; None = off
    "remix_level_db_spl": None,  # RMS level of the remix; None = as processed
    "soft_clip_knee": 0.9,
}


class Remix(BaseSystem):
    name = "remix"
    task = "music-remix"
    version = "1"
    description = "Separate, per-ear NAL-R, compress, band-pass and remix (Cadenza CAD1 Task 1)"
    variant_param = "separator"  # `--system remix/LABEL` sets separator=LABEL

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(DEFAULTS))
        if unknown:
            raise ConfigError(f"remix: unknown parameter(s) {', '.join(unknown)} "
                              f"(known: {', '.join(DEFAULTS)})")
        cfg = {**DEFAULTS, **params}
        bad = sorted(set(cfg["gains_db"]) - set(STEMS))
        if bad:
            raise ConfigError(f"remix: gains_db names unknown stem(s) {', '.join(bad)} ({', '.join(STEMS)})")
        super().__init__(**cfg)
        self.cfg = cfg
        self.separator = make_separator(cfg["separator"], **cfg["separator_options"])

    def prepare(self, device: str) -> None:
        super().prepare(device)
        if hasattr(self.separator, "prepare"):
            self.separator.prepare(device)

    # ---- stages
    def separate(self, item: Item) -> tuple[dict[str, np.ndarray], int]:
        mix = item.input("mixture")
        shape = mix.samples.shape
        if getattr(self.separator, "needs_item", False):
            stems = self.separator.separate_item(item)
        else:
            x = mix.samples.astype(np.float64)
            stems = chunked(lambda c: self.separator.separate(c, mix.rate), x, mix.rate,
                            self.cfg["chunk_s"], self.cfg["overlap"])
        return validate_stems(stems, shape, self.cfg["separator"]), mix.rate

    def ear_stem(self, x: np.ndarray, rate: int, audiogram) -> np.ndarray:
        """One channel of one stem through NAL-R and the compressor."""
        if self.cfg["nalr"]:
            x = stages.NalR(rate, self.cfg["nalr_taps"], self.cfg["nalr_design"]).apply(audiogram, x)
        if self.cfg["compressor"]:
            x = stages.Compressor(rate, **self.cfg["compressor"]).apply(x)
        return x

    def process_item(self, item: Item, listener: Any) -> Output:
        stems, rate = self.separate(item)
        out: Output = {}
        remix = np.zeros((2, next(iter(stems.values())).shape[-1]))
        for stem in STEMS:
            gain = 10 ** (self.cfg["gains_db"].get(stem, 0.0) / 20)
            for ear in EARS:
                audiogram = listener.audiogram_left if ear == "left" else listener.audiogram_right
                ch = EAR_CHANNEL[ear]
                y = self.ear_stem(gain * stems[stem][ch], rate, audiogram)
                remix[ch] += y
                out[f"{ear}_{stem}"] = resample(Audio(y, rate), STEM_RATE)
        bp = self.cfg["bandpass"]
        if bp:
            remix = stages.bandpass(remix, rate, bp["low_hz"], bp["high_hz"], bp.get("order", 5))
        remix = stages.to_level(remix, self.cfg["remix_level_db_spl"])
        remix = stages.soft_clip(remix, self.cfg["soft_clip_knee"])
        out["remix"] = resample(Audio(remix, rate), REMIX_RATE)
        return out

    def process(self, items: list[Item], listener: Any | None) -> list[Output]:
        return [self.process_item(it, listener) for it in items]
