"""speech-enhancement: a noisy, reverberant, band-limited input; the clean 16 kHz speech is the
reference. Systems return {'enhanced': mono 16 kHz, same length as the reference}.
Metrics: PESQ (wide band), STOI, ESTOI, SI-SDR, SNR against the clean reference."""

from __future__ import annotations

from typing import Any

from harness.audio import Audio, resample
from harness.metrics import Score, evaluate, get_metric
from harness.metrics.base import INVALID
from harness.protocols.base import OutputSpec, TaskProtocol
from harness.suites.types import Item

RATE = 16000


class SpeechEnhancement(TaskProtocol):
    task = "speech-enhancement"
    version = "speech-enhancement/1"
    uses_listener = False
    default_metrics = ("pesq", "stoi", "estoi", "si_sdr", "snr")
    supported_metrics = ("pesq", "pesq_nb", "stoi", "estoi", "si_sdr", "snr", "sdr")
    resampling_note = (
        "None: outputs must be 16 kHz mono of the reference's length. The `unprocessed` anchor "
        "resamples an input recorded at another rate to 16 kHz (soxr VHQ); pesq_nb resamples to 8 kHz."
    )

    def output_spec(self, item: Item) -> dict[str, OutputSpec]:
        ref = item.references["clean"]
        return {"enhanced": OutputSpec(RATE, 1, ref.frames)}

    def anchor(self, kind: str, item: Item, listener: Any) -> dict[str, Audio]:
        if kind == "oracle":
            return {"enhanced": item.reference("clean")}
        x = resample(item.input("input"), RATE)
        return {"enhanced": x}

    def expected(self, item: Item, metrics: list[str]) -> list[tuple[str, str, str]]:
        return [(m, "", "") for m in metrics]

    def score_valid(self, item, outputs, listener, metrics, problems) -> list[Score]:
        if "enhanced" in problems:
            return self.all_invalid(item, metrics, problems["enhanced"])
        ref = item.reference("clean")
        est = outputs["enhanced"]
        out = []
        for m in metrics:
            s = evaluate(get_metric(m), est, ref)
            if s.status == INVALID and "reference" in s.reason:
                s = Score(m, None, INVALID, f"{item.root / item.references['clean'].path}: {s.reason}")
            out.append(s)
        return out
