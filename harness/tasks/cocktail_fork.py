"""cocktail-fork (Petermann et al., ICASSP 2022): split a mono soundtrack into speech, music and
sound effects.

Items hold the `mixture` and references `speech`, `music`, `sfx` (mono, 44.1 kHz in Divide and
Remaster and the generated suites). Systems return {'speech', 'music', 'sfx'}: mono, at the
mixture's rate and length. Metrics per stem: SI-SDR, and SI-SDRi, its improvement over the
mixture taken as the estimate (SI-SDR(estimate) - SI-SDR(mixture), both against the stem).
No resampling: every signal is scored at the rate it is stored at.
"""

from __future__ import annotations

from typing import Any

from harness.audio import Audio
from harness.metrics import Score, evaluate, get_metric
from harness.metrics.base import INVALID, value_of
from harness.suites.types import Item
from harness.tasks.base import OutputSpec, TaskProtocol

STEMS = ("speech", "music", "sfx")


class CocktailFork(TaskProtocol):
    task = "cocktail-fork"
    version = "cocktail-fork/1"
    uses_listener = False
    input_roles = ("mixture",)
    reference_roles = STEMS
    default_metrics = ("si_sdr", "si_sdri")
    supported_metrics = ("si_sdr", "si_sdri", "snr", "sdr", "usdr")
    resampling_note = "None: outputs at the mixture's rate; every metric at that rate."

    def output_spec(self, item: Item) -> dict[str, OutputSpec]:
        mix = item.inputs["mixture"]
        return {s: OutputSpec(mix.rate, 1, mix.frames) for s in STEMS}

    def anchor(self, kind: str, item: Item, listener: Any) -> dict[str, Audio]:
        if kind == "oracle":
            return {s: item.reference(s) for s in STEMS}
        mix = item.input("mixture")
        return dict.fromkeys(STEMS, mix)  # no separation: every stem is the mixture

    def expected(self, item: Item, metrics: list[str]) -> list[tuple[str, str, str]]:
        return [(m, "", s) for m in metrics for s in STEMS]

    def score_valid(self, item, outputs, listener, metrics, problems, ctx) -> list[Score]:
        mix = item.input("mixture")
        out = []
        for stem in STEMS:
            if stem in problems:
                out += [Score(m, None, INVALID, problems[stem], "", stem) for m in metrics]
                continue
            ref = item.reference(stem)

            def mixture(ref=ref, stem=stem) -> float:  # SI-SDR of the unseparated mixture
                return value_of(evaluate(get_metric("si_sdr"), mix, ref, stem=stem, ctx=ctx),
                                "mixture: ")

            out += [evaluate(get_metric(m), outputs[stem], ref, stem=stem, ctx=ctx,
                             baseline=mixture) for m in metrics]
        return out
