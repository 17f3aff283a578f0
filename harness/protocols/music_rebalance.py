"""music-rebalance, the ICASSP 2024 Cadenza stem-rebalancing task.

Items are music-remix songs (stereo 44.1 kHz mixture and stems vocals/drums/bass/other) whose
scene also carries a gain per stem, `metadata.gains_db = {"vocals": 3.0, ...}`: the listener's
requested balance. A system returns, for one listener, `remix`: the rebalanced, hearing-aid
processed song, stereo (left ear, right ear) at 32 kHz.

Reference, per ear: sum over stems of 10^(gain/20) x that stem's channel, through NAL-R for
that ear's audiogram (pyclarity `NALR`, 220 taps at 44.1 kHz, as the challenge's recipe, with
the filter delay removed), resampled 44.1 -> 24 kHz (soxr VHQ). Scoring: HAAQI per ear with
`equalisation=2` (the reference already carries NAL-R), level1 = 65 - 20 log10 rms(reference
ear), the remix resampled 32 -> 24 kHz; the (song, listener) HAAQI is the mean of the 2 ears.
Seeding as music-remix: one RandomState per (song, listener) from md5(song), left then right.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import signal

from harness.audio import Audio, resample
from harness.errors import SuiteError
from harness.listener import EARS, audiogram
from harness.metrics import Score, evaluate
from harness.metrics.base import INVALID
from harness.metrics.haaqi import HAAQI_PRE_EQUALISED, HAAQI_RATE, cad1_song_seed
from harness.protocols.base import OutputSpec, TaskProtocol, resampled_frames
from harness.protocols.music_remix import EAR_CHANNEL, REMIX_RATE, STEMS
from harness.suites.types import Item

NALR_TAPS = 220  # pyclarity's NALR length at 44.1 kHz in the Cadenza recipes


def scene_gains(item: Item) -> dict[str, float]:
    """The scene's per-stem gains in dB; every stem must have a finite one."""
    gains = item.metadata.get("gains_db")
    where = f"{item.suite or 'suite'}: item {item.id}"
    if not isinstance(gains, dict):
        raise SuiteError(f"{where}: metadata.gains_db is missing (a gain in dB per stem)")
    missing = [s for s in STEMS if s not in gains]
    extra = sorted(set(gains) - set(STEMS))
    if missing or extra:
        raise SuiteError(f"{where}: metadata.gains_db needs exactly {', '.join(STEMS)}"
                         + (f"; missing {', '.join(missing)}" if missing else "")
                         + (f"; unknown {', '.join(extra)}" if extra else ""))
    out = {}
    for s in STEMS:
        try:
            out[s] = float(gains[s])
        except (TypeError, ValueError):
            out[s] = float("nan")
        if not np.isfinite(out[s]):
            raise SuiteError(f"{where}: metadata.gains_db.{s} is not a finite number: {gains[s]!r}")
    return out


def rebalanced(item: Item) -> Audio:
    """The gained remix of the reference stems (stereo, the stems' rate)."""
    gains = scene_gains(item)
    stems = {s: item.reference(s) for s in STEMS}
    x = sum(10 ** (gains[s] / 20) * stems[s].samples.astype(np.float64) for s in STEMS)
    return Audio(x, stems[STEMS[0]].rate)


def nalr_clarity(x: np.ndarray, rate: int, ag) -> np.ndarray:
    """pyclarity's NAL-R filter for one audiogram on a 1-D signal, delay removed, same length."""
    from clarity.enhancer.nalr import NALR

    fir, _ = NALR(NALR_TAPS, rate).build(ag)
    y = signal.fftconvolve(x, np.asarray(fir, dtype=np.float64))
    return y[NALR_TAPS // 2: NALR_TAPS // 2 + len(x)]


def reference_ears(item: Item, listener: Any) -> Audio:
    """The reference at the stems' rate: the gained remix through each ear's NAL-R (stereo)."""
    mix = rebalanced(item)
    ears = [nalr_clarity(mix.samples[EAR_CHANNEL[e]], mix.rate, audiogram(listener, e)) for e in EARS]
    return Audio(np.stack(ears), mix.rate)


class MusicRebalance(TaskProtocol):
    task = "music-rebalance"
    version = "icassp2024-rebalance/1"
    uses_listener = True
    input_roles = ("mixture",)
    reference_roles = STEMS
    default_metrics = ("haaqi",)
    supported_metrics = ("haaqi",)
    resampling_note = ("Reference 44.1 -> 24 kHz and the remix 32 -> 24 kHz (soxr VHQ) for "
                       "HAAQI; NAL-R on the reference at 44.1 kHz (pyclarity, 220 taps).")
    seeding = ("HAAQI: numpy RandomState(int(md5(<item id>), 16) % 10**8) per (item, listener), "
               "drawn by the 2 calls in order left, right")

    def output_spec(self, item: Item) -> dict[str, OutputSpec]:
        ref = item.references[STEMS[0]]
        return {"remix": OutputSpec(REMIX_RATE, 2, resampled_frames(ref.frames, ref.rate, REMIX_RATE))}

    def anchor(self, kind: str, item: Item, listener: Any) -> dict[str, Audio]:
        if kind == "oracle":  # the reference itself, ear by ear (float: may exceed full scale)
            return {"remix": resample(reference_ears(item, listener), REMIX_RATE)}
        return {"remix": resample(item.input("mixture"), REMIX_RATE)}

    def expected(self, item: Item, metrics: list[str]) -> list[tuple[str, str, str]]:
        return [(m, ear, "") for m in metrics for ear in EARS]

    def score_valid(self, item, outputs, listener, metrics, problems) -> list[Score]:
        if "remix" in problems:
            return [Score("haaqi", None, INVALID, problems["remix"], ear) for ear in EARS]
        try:
            ref24 = resample(reference_ears(item, listener), HAAQI_RATE)
        except SuiteError as exc:
            return [Score("haaqi", None, INVALID, str(exc), ear) for ear in EARS]
        est24 = resample(outputs["remix"], HAAQI_RATE)
        rng = np.random.RandomState(cad1_song_seed(item.id))
        return [
            evaluate(HAAQI_PRE_EQUALISED, est24.channel(EAR_CHANNEL[ear]),
                     ref24.channel(EAR_CHANNEL[ear]), listener=listener, ear=ear, seed=rng)
            for ear in EARS
        ]
