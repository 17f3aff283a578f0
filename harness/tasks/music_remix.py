"""music-remix, Cadenza CAD1 Task 1: separate and remix a song for each ear of a listener.

Items hold a stereo 44.1 kHz mixture and the reference stems vocals/drums/bass/other. A system
returns, for one listener, the eight per-ear stems `{left,right}_{stem}` as mono 24 kHz signals
and optionally `remix`, stereo 32 kHz.

Scoring, per listener, ear and stem: HAAQI (pyclarity, equalisation=1) of the processed stem
against that channel of the reference stem, as pyclarity 0.9.0's
recipes/cad1/task1/baseline/evaluate.py computes it: the 44.1 kHz channel (float32) resampled to
24 kHz by pyclarity's `resample` (soxr "HQ"), presented at level1 = 65 - 20 log10(rms) of the
44.1 kHz channel; the (item, listener) HAAQI is the mean of the 8. Seeding as the CAD1 recipe:
numpy's generator is seeded once per (song, listener) with int(md5(song), 16) mod 10**8 and the
eight calls draw from it in the recipe's order (drums, bass, other, vocals; left then right
ear), each ear with its own audiogram.
SDR/ISR/SIR/SAR per stem: BSSEval v4 over the four stems jointly, the stereo estimate being
(left, right) ear stems (cut to the reference's length).
Lengths: each output has the reference's length at its rate, or the length the recipe's
enhance.py writes: its NAL-R is a full convolution of 220 taps at 44.1 kHz, so its stems are
longer by the resampled 220-sample tail (+120 frames at 24 kHz for 30 s). HAAQI takes either as
the recipe's evaluator does (pyclarity's ear model trims the pair to the shorter).
Stated resampling: for HAAQI, each reference channel 44.1 -> 24 kHz with soxr HQ (the recipe's);
for BSSEval, the stereo reference stems 44.1 -> 24 kHz with soxr VHQ.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.audio import Audio, resample
from harness.listener import EAR_CHANNEL, EARS
from harness.metrics import Score, evaluate, get_metric
from harness.metrics.base import INVALID
from harness.metrics.bsseval import BSS_NAMES, evaluate_sources
from harness.metrics.haaqi import cad1_song_seed, with_level1
from harness.suites.types import Item
from harness.tasks.base import (
    OutputSpec,
    TaskProtocol,
    recipe_tail,
    resampled_frames,
)

STEMS = ("vocals", "drums", "bass", "other")
CAD1_SCORING_ORDER = ("drums", "bass", "other", "vocals")  # the order the recipe draws noise in
STEM_RATE = 24000
REMIX_RATE = 32000


def recipe_reference(stem: Audio, ear: str) -> tuple[Audio, float]:
    """One ear's HAAQI reference as the CAD1 recipe makes it: that channel of the 44.1 kHz stem
    (float32) through pyclarity's `resample` (soxr "HQ") to 24 kHz, and the level1 of the
    44.1 kHz channel, 65 - 20 log10(compute_rms(channel))."""
    from clarity.utils.signal_processing import compute_rms
    from clarity.utils.signal_processing import resample as clarity_resample

    channel = stem.samples[EAR_CHANNEL[ear]]
    rms = float(compute_rms(channel))
    level1 = 65.0 - 20.0 * np.log10(rms) if rms > 0 else 65.0  # silent: scored invalid anyway
    return Audio(clarity_resample(channel, stem.rate, STEM_RATE), STEM_RATE), level1


class MusicRemix(TaskProtocol):
    task = "music-remix"
    version = "cad1-task1/3"  # /2: VHQ 24 kHz reference and its level; /1: seeded per call
    uses_listener = True
    input_roles = ("mixture",)
    reference_roles = STEMS
    default_metrics = ("haaqi", "sdr")
    supported_metrics = ("haaqi", *BSS_NAMES, "usdr")
    resampling_note = ("Reference stems 44.1 -> 24 kHz: for HAAQI channel by channel with soxr HQ "
                       "(pyclarity's resample, as the CAD1 recipe), level1 from the 44.1 kHz "
                       "channel; for BSSEval with soxr VHQ.")
    seeding = ("HAAQI: numpy RandomState(int(md5(<item id>), 16) % 10**8) per (item, listener), "
               "drawn by the 8 calls in order drums, bass, other, vocals x left, right")

    def output_spec(self, item: Item) -> dict[str, OutputSpec]:
        ref = item.references[STEMS[0]]
        n24 = resampled_frames(ref.frames, ref.rate, STEM_RATE)
        n32 = resampled_frames(ref.frames, ref.rate, REMIX_RATE)
        # The recipe's NAL-R (a full convolution at 44.1 kHz) makes its files longer by the
        # filter's tail: that length is accepted too and scored as the recipe's evaluator does.
        t24 = recipe_tail(ref.frames, ref.rate, STEM_RATE)
        t32 = recipe_tail(ref.frames, ref.rate, REMIX_RATE)
        spec = {f"{ear}_{stem}": OutputSpec(STEM_RATE, 1, n24, tail=t24) for ear in EARS
                for stem in STEMS}
        spec["remix"] = OutputSpec(REMIX_RATE, 2, n32, required=False, tail=t32)
        return spec

    def anchor(self, kind: str, item: Item, listener: Any) -> dict[str, Audio]:
        if kind == "oracle":
            stems = {s: item.reference(s) for s in STEMS}
            mix = Audio(sum(a.samples for a in stems.values()), stems[STEMS[0]].rate)
        else:
            mix = item.input("mixture")
            stems = dict.fromkeys(STEMS, mix)  # no separation: every stem is the whole mixture
        out = {}
        for stem, a in stems.items():
            a24 = resample(a, STEM_RATE)
            for ear in EARS:
                out[f"{ear}_{stem}"] = a24.channel(EAR_CHANNEL[ear])
        out["remix"] = resample(mix, REMIX_RATE)
        return out

    def expected(self, item: Item, metrics: list[str]) -> list[tuple[str, str, str]]:
        rows = []
        for m in metrics:
            if m == "haaqi":
                rows += [(m, ear, stem) for ear in EARS for stem in STEMS]
            else:
                rows += [(m, "", stem) for stem in STEMS]
        return rows

    def score_valid(self, item, outputs, listener, metrics, problems, ctx) -> list[Score]:
        refs = {s: item.reference(s) for s in STEMS}
        out: list[Score] = []
        if "haaqi" in metrics:
            haaqi = get_metric("haaqi")
            rng = np.random.RandomState(cad1_song_seed(item.id))
            for stem in CAD1_SCORING_ORDER:
                for ear in EARS:
                    key = f"{ear}_{stem}"
                    if key in problems:
                        out.append(Score("haaqi", None, INVALID, problems[key], ear, stem))
                        continue
                    ref, level1 = recipe_reference(refs[stem], ear)
                    out.append(
                        evaluate(with_level1(haaqi, level1), outputs[key], ref, listener=listener,
                                 ear=ear, stem=stem, seed=rng, ctx=ctx)
                    )
        bss = [m for m in metrics if m in BSS_NAMES]
        if bss or "usdr" in metrics:
            refs24 = {s: resample(a, STEM_RATE) for s, a in refs.items()}
        if bss:
            out += self._bss(item, outputs, refs24, bss, problems, ctx)
        if "usdr" in metrics:  # per stem, over both ears' outputs and the whole song, as BSSEval's input
            for s in STEMS:
                bad = [problems[f"{e}_{s}"] for e in EARS if f"{e}_{s}" in problems]
                if bad:
                    out.append(Score("usdr", None, INVALID, bad[0], "", s))
                    continue
                n = refs24[s].frames
                est = Audio(np.stack([outputs[f"{e}_{s}"].mono()[:n] for e in EARS]), STEM_RATE)
                out.append(evaluate(get_metric("usdr"), est, refs24[s], stem=s, ctx=ctx))
        return out

    def _bss(self, item, outputs, refs24, names, problems, ctx) -> list[Score]:
        bad = [problems[f"{e}_{s}"] for e in EARS for s in STEMS if f"{e}_{s}" in problems]
        if bad:
            return [Score(n, None, INVALID, bad[0], "", s) for n in names for s in STEMS]
        n = refs24[STEMS[0]].frames  # a recipe-length output loses its filter tail here
        ests = [
            Audio(np.stack([outputs[f"{e}_{s}"].mono()[:n] for e in EARS]), STEM_RATE)
            for s in STEMS
        ]
        # BSSEval does not depend on the listener: outputs that are identical across listeners
        # (anchors, listener-independent systems) are scored once per content.
        key = [self.version, "bsseval_v4", ctx.backend("bsseval"), item.hash,
               *(e.sha256() for e in ests)]
        return evaluate_sources(names, [refs24[s] for s in STEMS], ests, list(STEMS), ctx, key)
