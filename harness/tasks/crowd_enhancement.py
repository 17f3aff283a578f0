"""crowd-enhancement (PLCS, Kim & Smaragdis 2013/2016): many unsynchronised, differently degraded
recordings of one scene in, one enhanced source out.

Items hold recordings `rec000`, `rec001`, ... (each at its device's rate, each with its time
offset in the metadata: recording sample j is source time j / rate + offset_s; rec000's offset
is 0, so the source's clock is rec000's and a system aligns to rec000), optional prior
material (`prior_source`, `prior_interference`: clean examples of the source and interference
kinds, allowed as side information), and the clean `source` reference. Systems return
{'enhanced': mono, at the source's rate and length}.

Metrics: BSSEval v4 SDR and SI-SDR against the source, and `sdr_improvement`, the SDR minus the
mean SDR of the recordings, each resampled to the source rate (soxr VHQ) and aligned with its
true offset (zeros where it does not cover the source). The `unprocessed` anchor is rec000
aligned the same way (it uses the true offset: a lower anchor without alignment errors).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.audio import Audio, resample
from harness.errors import InvalidInput, MetricFailed
from harness.metrics import Score, evaluate, get_metric
from harness.metrics.backends import ScoringContext
from harness.metrics.base import first_line
from harness.metrics.bsseval import bsseval_v4
from harness.suites.types import Item
from harness.tasks.base import OutputSpec, TaskProtocol


def recording_roles(item: Item) -> list[str]:
    return sorted(r for r in item.inputs if r.startswith("rec"))


def offset_of(item: Item, role: str) -> float:
    for rec in item.metadata.get("recordings", []):
        if rec.get("role") == role:
            return float(rec.get("offset_s", 0.0))
    return 0.0


def aligned(item: Item, role: str) -> Audio:
    """Recording `role` on the source's time grid: resampled to the source rate, shifted by its
    offset, cut or zero-padded to the source's length."""
    ref = item.references["source"]
    x = resample(item.input(role), ref.rate).mono().astype(np.float64)
    shift = int(round(offset_of(item, role) * ref.rate))
    out = np.zeros(ref.frames)
    # recording sample j sits at source sample j + shift
    lo, hi = max(shift, 0), min(ref.frames, shift + len(x))
    if hi > lo:
        out[lo:hi] = x[lo - shift: hi - shift]
    return Audio(out, ref.rate)


class CrowdEnhancement(TaskProtocol):
    task = "crowd-enhancement"
    version = "crowd-enhancement/1"
    uses_listener = False
    reference_roles = ("source",)
    inputs_note = "rec* (one per recording, any number)"
    default_metrics = ("sdr", "sdr_improvement", "si_sdr")
    supported_metrics = ("sdr", "sdr_improvement", "si_sdr", "snr")
    resampling_note = (
        "Outputs at the source's rate and length. For sdr_improvement and the `unprocessed` anchor "
        "the harness resamples each recording to the source rate (soxr VHQ) and aligns it by its "
        "true offset."
    )

    def item_problems(self, item: Item) -> list[str]:
        out = super().item_problems(item)
        if not recording_roles(item):
            where = f"{item.manifest}: " if item.manifest else ""
            out.append(f"{where}item {item.id!r} has no recording (inputs named rec*)")
        return out

    def output_spec(self, item: Item) -> dict[str, OutputSpec]:
        ref = item.references["source"]
        return {"enhanced": OutputSpec(ref.rate, 1, ref.frames)}

    def anchor(self, kind: str, item: Item, listener: Any) -> dict[str, Audio]:
        if kind == "oracle":
            return {"enhanced": item.reference("source")}
        return {"enhanced": aligned(item, recording_roles(item)[0])}

    def expected(self, item: Item, metrics: list[str]) -> list[tuple[str, str, str]]:
        return [(m, "", "") for m in metrics]

    def input_sdr(self, item: Item, ctx: ScoringContext) -> dict:
        """Mean (and spread) of the recordings' SDR against the source; memoised per item."""
        backend = ctx.backend("bsseval")

        def compute() -> dict:
            ref = item.reference("source")
            values = []
            for role in recording_roles(item):
                try:
                    values.append(float(bsseval_v4([ref], [aligned(item, role)],
                                                   backend=backend)["sdr"][0]))
                except Exception:  # a silent aligned recording has no SDR: leave it out
                    continue
            values = [v for v in values if np.isfinite(v)]
            return {"mean": float(np.mean(values)) if values else None, "count": len(values)}

        return ctx.memoised([self.version, "input_sdr", backend, item.hash], compute)

    def recordings_sdr(self, item: Item, ctx: ScoringContext) -> float:
        """The baseline of sdr_improvement: the recordings' mean SDR (raises with the reason when
        there is none)."""
        try:
            base = self.input_sdr(item, ctx)
        except Exception as exc:
            raise MetricFailed(f"input SDR: {first_line(exc)}") from None
        if base["mean"] is None:
            raise InvalidInput("no recording has a defined SDR")
        return base["mean"]

    def score_valid(self, item, outputs, listener, metrics, problems, ctx) -> list[Score]:
        if "enhanced" in problems:
            return self.all_invalid(item, metrics, problems["enhanced"])
        ref = item.reference("source")
        est = outputs["enhanced"]
        sdr = None
        out = []
        for m in metrics:
            if m in ("sdr", "sdr_improvement"):
                sdr = sdr or evaluate(get_metric("sdr"), est, ref, ctx=ctx)
            if m == "sdr":
                out.append(sdr)
            elif m == "sdr_improvement":
                out.append(evaluate(get_metric(m), est, ref, ctx=ctx, of=sdr,
                                    baseline=lambda: self.recordings_sdr(item, ctx)))
            else:
                out.append(evaluate(get_metric(m), est, ref, ctx=ctx))
        return out
