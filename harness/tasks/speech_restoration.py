"""speech-restoration: the SpeakUpAI pipeline's task (enhance at 16 kHz, then super-resolve).

Items hold `input`: a degraded recording (room, device band-limit, noise, clipping) at 16 kHz or
lower (a phone's 8 kHz), and `clean`: the dry speech at a high rate (the generator's: 32 kHz,
festival's HTS voice at its own rate). Systems return {'enhanced': mono at the reference's rate
and length}. Where the harness resamples (soxr VHQ):
- PESQ, STOI and ESTOI are scored at 16 kHz: the output and the reference are both resampled to
  16 kHz (pesq_nb: 8 kHz), as speech-enhancement scores them;
- LSD, SNR, SI-SDR and SDR are scored at the reference's full rate, on the output as returned:
  the band above 8 kHz counts there and only there.
The `unprocessed` anchor is the input resampled to the reference's rate (its top band empty).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.audio import Audio, resample
from harness.metrics import Score, evaluate, get_metric
from harness.metrics.base import INVALID
from harness.suites.types import Item
from harness.tasks.base import OutputSpec
from harness.tasks.speech_enhancement import RATE, SpeechEnhancement

FULL_RATE_METRICS = ("lsd", "snr", "si_sdr", "sdr")


class SpeechRestoration(SpeechEnhancement):
    task = "speech-restoration"
    version = "speech-restoration/1"
    default_metrics = ("pesq", "estoi", "lsd", "snr")
    supported_metrics = ("pesq", "pesq_nb", "stoi", "estoi", "lsd", "snr", "si_sdr", "sdr")
    resampling_note = (
        "Outputs must be mono at the reference's rate (32 kHz for generated suites) and length. "
        "PESQ/STOI/ESTOI resample output and reference to 16 kHz (pesq_nb: 8 kHz); LSD, SNR, "
        "SI-SDR and SDR are scored at the reference's rate. The `unprocessed` anchor resamples "
        "the input to the reference's rate (soxr VHQ)."
    )

    def output_spec(self, item: Item) -> dict[str, OutputSpec]:
        ref = item.references["clean"]
        return {"enhanced": OutputSpec(ref.rate, 1, ref.frames)}

    def reference(self, item: Item) -> Audio:
        return item.reference("clean")

    def anchor(self, kind: str, item: Item, listener: Any) -> dict[str, Audio]:
        ref = item.references["clean"]
        if kind == "oracle":
            return {"enhanced": self.reference(item)}
        return {"enhanced": fit(resample(item.input("input"), ref.rate), ref.frames)}

    def score_valid(self, item, outputs, listener, metrics, problems, ctx) -> list[Score]:
        if "enhanced" in problems:
            return self.all_invalid(item, metrics, problems["enhanced"])
        ref = self.reference(item)
        est = outputs["enhanced"]
        low = {}
        out = []
        for m in metrics:
            if m in FULL_RATE_METRICS:
                s = evaluate(get_metric(m), est, ref, ctx=ctx)
            else:
                if not low:
                    low = {"est": resample(est, RATE), "ref": resample(ref, RATE)}
                s = evaluate(get_metric(m), low["est"], low["ref"], ctx=ctx)
            if s.status == INVALID and "reference" in s.reason:
                s = Score(m, None, INVALID, f"{item.root / item.references['clean'].path}: {s.reason}")
            out.append(s)
        return out


def fit(x: Audio, frames: int) -> Audio:
    """`x` cut or zero-padded to `frames`."""
    s = x.samples[:, :frames]
    if s.shape[1] < frames:
        s = np.pad(s, ((0, 0), (0, frames - s.shape[1])))
    return Audio(s, x.rate)
