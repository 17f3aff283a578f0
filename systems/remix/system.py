"""`remix`: separation plus per-ear hearing-aid processing and remixing (Cadenza CAD1 Task 1,
and the ICASSP 2024 rebalancing task, where the scene's per-stem gains are applied and only the
remix is returned).

separator -> per-stem gains (on music-rebalance the scene's, the sum brought to the mixture's
loudness as the ICASSP 2024 recipe does) -> per ear: NAL-R (pyclarity) -> compressor (pyclarity, or off)
-> the eight per-ear stems at 24 kHz; remix = sum of the processed stems per ear -> Butterworth
band-pass -> output level (0 dBFS = 100 dB SPL) -> soft clip -> 32 kHz.

Every stage is a parameter (see DEFAULTS); `harness run --system remix/dsp` picks the
separator by the label after the slash, and `[system_params."remix/NAME"]` in a run config sets
the rest.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.api import BaseSystem, Output
from harness.audio import Audio, resample
from harness.errors import ConfigError
from harness.listener import EAR_CHANNEL, EARS
from harness.suites.types import Item
from harness.tasks.music_remix import REMIX_RATE, STEM_RATE
from systems.remix import stages
from systems.remix.separators import STEMS, chunked, make_separator, validate_stems

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
    # music-rebalance: the gained stems scaled together so their sum has the mixture's integrated
    # loudness before NAL-R (the ICASSP 2024 recipe's `remix_stems`, which its reference has too)
    "rebalance_loudness": True,
    "soft_clip_knee": 0.9,  # 1 or more: off
}


class Remix(BaseSystem):
    name = "remix"
    task = "music-remix"
    also_tasks = ("music-rebalance",)  # the scene's gains_db are applied on top of gains_db
    version = "1"
    description = ("Separate, per-ear NAL-R, compress, band-pass and remix (Cadenza CAD1 Task 1; "
                   "ICASSP 2024 rebalancing)")
    variant_param = "separator"  # `--system remix/LABEL` sets separator=LABEL
    defaults = DEFAULTS
    limits = {"chunk_s": "[1, inf)", "overlap": "[0, 0.5]", "nalr_design": ("precise", "clarity"),
              "nalr_taps": "[1, inf)", "soft_clip_knee": "[0, inf)"}

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

    @classmethod
    def training(cls, variant: str = "spleeter"):
        """The trainable separator (`harness train remix/spleeter`)."""
        if variant != "spleeter":
            raise ConfigError(f"remix/{variant} is not trainable (remix/spleeter is)")
        from systems.remix.train_spleeter import SpleeterTraining

        return SpleeterTraining()

    def identity(self) -> str:
        """As every system's, plus the separator's weights (a retrained checkpoint at the same
        path is another system, never a stale resume)."""
        digest = getattr(self.separator, "digest", None)
        if digest is None:
            return super().identity()
        import hashlib

        return hashlib.sha256(f"{super().identity()}:{digest()}".encode()).hexdigest()

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

    def gains_db(self, item: Item) -> dict[str, float]:
        """The configured gain per stem, plus the scene's requested gain on music-rebalance."""
        gains = {s: float(self.cfg["gains_db"].get(s, 0.0)) for s in STEMS}
        if item.task == "music-rebalance":
            from harness.tasks.music_rebalance import scene_gains

            gains = {s: g + scene_gains(item)[s] for s, g in gains.items()}
        return gains

    def loudness_gain_db(self, item: Item, stems: dict[str, np.ndarray], rate: int,
                         gains: dict[str, float]) -> float:
        """The gain that brings the sum of the gained stems to the mixture's loudness (ITU-R
        BS.1770 via pyloudnorm; -80 LUFS stands for silence, as in the recipe)."""
        import pyloudnorm as pyln

        meter = pyln.Meter(rate)

        def lufs(x: np.ndarray) -> float:
            value = float(meter.integrated_loudness(x.T))
            return -80.0 if value == -np.inf else value

        total = sum(10 ** (gains[s] / 20) * stems[s] for s in STEMS)
        return lufs(item.input("mixture").samples.astype(np.float64)) - lufs(total)

    def process_item(self, item: Item, listener: Any) -> Output:
        stems, rate = self.separate(item)
        gains = self.gains_db(item)
        if item.task == "music-rebalance" and self.cfg["rebalance_loudness"]:
            level = self.loudness_gain_db(item, stems, rate, gains)
            gains = {s: g + level for s, g in gains.items()}
        out: Output = {}
        remix = np.zeros((2, next(iter(stems.values())).shape[-1]))
        for stem in STEMS:
            gain = 10 ** (gains[stem] / 20)
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
        if item.task == "music-rebalance":  # the task scores the remix alone
            return {"remix": out["remix"]}
        return out

    def process(self, items: list[Item], listener: Any | None) -> list[Output]:
        return [self.process_item(it, listener) for it in items]
