"""speech-enhancement: a noisy, reverberant, band-limited input; the clean speech is the reference.
Scoring happens at 16 kHz: systems return {'enhanced': mono 16 kHz, of the reference's length at
16 kHz}; a reference stored at another rate (VoiceBank-DEMAND 48 kHz, DAPS 44.1 kHz) is
resampled to 16 kHz by the harness (soxr VHQ), as the papers evaluate.
Metrics: PESQ (wide band), STOI, ESTOI, SI-SDR, SNR against the clean reference; on request the
non-intrusive DNSMOS (SIG, BAK, OVRL, P.808) and PLCMOS of the output alone."""

from __future__ import annotations

from typing import Any

from harness.audio import Audio, resample
from harness.metrics import Score, evaluate, get_metric
from harness.metrics.base import INVALID, seed_for
from harness.suites.types import Item
from harness.tasks.base import OutputSpec, TaskProtocol, resampled_frames

RATE = 16000


class SpeechEnhancement(TaskProtocol):
    task = "speech-enhancement"
    version = "speech-enhancement/1"
    uses_listener = False
    input_roles = ("input",)
    reference_roles = ("clean",)
    default_metrics = ("pesq", "stoi", "estoi", "si_sdr", "snr")
    supported_metrics = ("pesq", "pesq_nb", "stoi", "estoi", "si_sdr", "snr", "sdr",
                         "dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808", "plcmos",
                         "distillmos")
    seeding = "PLCMOS: numpy's global generator seeded with seed_for(<item id>, 'plcmos') per item"
    resampling_note = (
        "Outputs must be 16 kHz mono of the reference's length at 16 kHz. References stored at "
        "another rate are resampled to 16 kHz, and the `unprocessed` anchor resamples its input "
        "to 16 kHz (soxr VHQ); pesq_nb resamples to 8 kHz."
    )

    def output_spec(self, item: Item) -> dict[str, OutputSpec]:
        ref = item.references["clean"]
        return {"enhanced": OutputSpec(RATE, 1, resampled_frames(ref.frames, ref.rate, RATE))}

    def reference(self, item: Item) -> Audio:
        return resample(item.reference("clean"), RATE)

    def anchor(self, kind: str, item: Item, listener: Any) -> dict[str, Audio]:
        if kind == "oracle":
            return {"enhanced": self.reference(item)}
        return {"enhanced": resample(item.input("input"), RATE)}

    def expected(self, item: Item, metrics: list[str]) -> list[tuple[str, str, str]]:
        return [(m, "", "") for m in metrics]

    def score_valid(self, item, outputs, listener, metrics, problems, ctx) -> list[Score]:
        if "enhanced" in problems:
            return self.all_invalid(item, metrics, problems["enhanced"])
        ref = self.reference(item)
        est = outputs["enhanced"]
        out = []
        for m in metrics:
            metric = get_metric(m)
            s = evaluate(metric, est, ref if metric.needs_reference else None, ctx=ctx,
                         seed=seed_for(item.id, m))
            if s.status == INVALID and "reference" in s.reason:
                s = Score(m, None, INVALID, f"{item.root / item.references['clean'].path}: {s.reason}")
            out.append(s)
        return out
