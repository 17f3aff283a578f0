"""Hearing-aid speech in noise: the Clarity CEC2 task (`hearing-aid-speech`, `cec2/1`), the
ICASSP 2023 Clarity challenge (`hearing-aid-enhancement`, `icassp2023/1`) and CEC3
(`hearing-aid-cec3`, `cec3/1`).

Items are Clarity scenes at 44.1 kHz: inputs `mix_CH1` (the front microphones of the left and
right hearing aids, stereo) and optionally `mix_CH2`, `mix_CH3` (the middle and rear pairs);
references `target_anechoic` and `target` (the target at the front pair without and with the
room). Each scene is scored for the listeners it names (`metadata.listeners`,
scenes_listeners.json) or the panel.

The reference of both is the recipes' (pyclarity 0.9.0): per channel, the anechoic target scaled
to the reverberant target's RMS. HASPI v2 and HASQI v2 are pyclarity's (`haspi_v2`, `hasqi_v2`
with `equalisation=1`), with the listener's own audiogram, level 100 dB SPL for RMS 1 (the
recipes' `haspi_v2_be` / `hasqi_v2_better_ear` defaults); numpy's global generator seeded once
per (scene, listener) with int(md5(scene id), 16) mod 10**8 and drawn by the calls in the
recipe's order (HASPI left, right, then HASQI left, right). A (scene, listener) value is the
better ear's, as the recipes score it.

- `cec2/1` (recipes/cec2/baseline/evaluate.py): the system returns `ha_output`, the hearing-aid
  output itself (stereo, the mixture's length, or 220 samples longer as the baseline's NAL-R
  writes it); `haspi` per ear, the better ear's the score. `unprocessed` is `mix_CH1`, which the
  recipe scores as its "unprocessed" figure.
- `icassp2023/1` (recipes/icassp_2023/baseline/evaluate.py): the system returns `enhanced`
  (stereo, the mixture's length); the evaluator amplifies it per ear for the listener (pyclarity
  NAL-R, 220 taps, full convolution, then its `Compressor`: threshold 0.35, attenuation 0.1,
  attack 50, release 1000, rms buffer 0.064 s) and soft-clips it (tanh); `haspi` and `hasqi`
  per ear on that, and `icassp2023_score` = 0.5 x (better-ear HASPI + better-ear HASQI), the
  challenge's score. (The recipe reads the enhanced WAV without scaling: a 16-bit file would be
  scored in raw integers. The harness reads every file as floats in [-1, 1]; for the float WAV
  the baseline writes, the two agree.)
- `cec3/1` (recipes/cec3/baseline/evaluate.py): 48 kHz scenes whose one reference is
  `reference` (`<scene>_reference.wav`, mono or stereo; a mono one is used for both ears, as the
  recipe does); the system returns `ha_output` (the mixture's length, or +220 samples as the
  baseline's NAL-R writes it); `haspi` per ear, better ear. The recipe reads the HA output
  without scaling (its baseline writes float WAV); the harness reads floats as CEC2.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from harness.audio import Audio
from harness.listener import EAR_CHANNEL, EARS
from harness.metrics import Score
from harness.metrics.base import FAILED, OK, process_state, status_of
from harness.metrics.haaqi import cad1_song_seed
from harness.suites.types import Item
from harness.tasks.base import OutputSpec, TaskProtocol

RATE = 44100
LEVEL_DB = 100.0  # haspi_v2_be / hasqi_v2_better_ear default: dB SPL of RMS 1
NALR_NFIR = 220
COMPRESSOR = {"threshold": 0.35, "attenuation": 0.1, "attack": 50, "release": 1000,
              "rms_buffer_size": 0.064}


def recipe_reference(item: Item) -> np.ndarray:
    """(frames, 2): the anechoic target scaled per channel to the reverberant target's RMS (CEC3:
    the scene's reference file, a mono one doubled)."""
    if "reference" in item.references:
        ref = item.reference("reference").samples.T.astype(np.float64)
        return np.repeat(ref, 2, axis=1) if ref.shape[1] == 1 else ref
    anechoic = item.reference("target_anechoic").samples.T.astype(np.float64)
    target = item.reference("target").samples.T.astype(np.float64)
    rms_target = np.mean(target**2, axis=0) ** 0.5
    rms_anechoic = np.mean(anechoic**2, axis=0) ** 0.5
    return anechoic * rms_target / rms_anechoic


def scene_seeded(scene: str):
    """numpy's global generator seeded as the recipes seed it, restored afterwards
    (process_state: held by this thread alone, stdout swallowed)."""
    return process_state(cad1_song_seed(scene))


def _call(metric: str, ear: str, fn) -> Score:
    try:
        value = float(fn())
    except Exception as exc:
        return Score(metric, None, *status_of(exc), ear=ear)
    if not np.isfinite(value):
        return Score(metric, None, FAILED, f"{metric} is {value}", ear=ear)
    return Score(metric, value, OK, ear=ear)


def score_ears(item: Item, proc: np.ndarray, ref: np.ndarray, listener: Any,
               metrics: list[str], rate: int = RATE) -> dict[tuple[str, str], Score]:
    """HASPI then HASQI, left then right, from one seeded stream, as the recipes call them."""
    from clarity.evaluator.haspi import haspi_v2
    from clarity.evaluator.hasqi import hasqi_v2

    ags = {"left": listener.audiogram_left, "right": listener.audiogram_right}
    out = {}
    with scene_seeded(item.id):
        for metric in ("haspi", "hasqi"):
            if metric not in metrics:
                continue
            for ear in EARS:
                c = EAR_CHANNEL[ear]
                if metric == "haspi":
                    fn = lambda c=c, ear=ear: haspi_v2(ref[:, c], rate, proc[:, c], rate, ags[ear],  # noqa: E731
                                                       LEVEL_DB)[0]
                else:
                    fn = lambda c=c, ear=ear: hasqi_v2(ref[:, c], rate, proc[:, c], rate, ags[ear],  # noqa: E731
                                                       equalisation=1, level1=LEVEL_DB)[0]
                out[(metric, ear)] = _call(metric, ear, fn)
    return out


class _ClarityScenes(TaskProtocol):
    uses_listener = True
    input_roles = ("mix_CH1",)
    inputs_note = "mix_CH1 (front pair); mix_CH2, mix_CH3 when the scene has them"
    reference_roles = ("target_anechoic", "target")
    output = ""
    resampling_note = "None: scored at the scenes' 44.1 kHz, as the recipes score them."
    seeding = ("numpy's global generator seeded with int(md5(<scene id>), 16) % 10**8 per (scene, "
               "listener), drawn by HASPI left, right, then HASQI left, right")

    def anchor(self, kind: str, item: Item, listener: Any) -> dict[str, Audio]:
        if kind == "oracle":
            return {self.output: Audio(recipe_reference(item).T, item.inputs["mix_CH1"].rate)}
        mix = item.input("mix_CH1")
        return {self.output: Audio(mix.samples.astype(np.float64), mix.rate)}

    def expected(self, item: Item, metrics: list[str]) -> list[tuple[str, str, str]]:
        return [(m, "", "") if m.endswith("_score") else (m, ear, "") for m in metrics
                for ear in (("",) if m.endswith("_score") else EARS)]

    def unit(self, rows: list[Score]) -> tuple[float | None, str]:
        """The better ear's value (the recipes' `*_be` scores); one row passes through."""
        bad = [r for r in rows if r.status != "ok"]
        if not rows:
            return None, "no score"
        if bad:
            return None, bad[0].status
        return float(max(r.value for r in rows)), "ok"

    def processed(self, item: Item, out: Audio, listener: Any) -> np.ndarray:
        return out.samples.T.astype(np.float64)

    def score_valid(self, item, outputs, listener, metrics, problems, ctx) -> list[Score]:
        if self.output in problems:
            return self.all_invalid(item, metrics, problems[self.output])
        ref = recipe_reference(item)
        proc = self.processed(item, outputs[self.output], listener)
        rows = score_ears(item, proc, ref, listener, metrics, item.inputs["mix_CH1"].rate)
        if "icassp2023_score" in metrics:
            parts = [rows[(m, e)] for m in ("haspi", "hasqi") for e in EARS]
            bad = [p for p in parts if p.status != OK]
            if bad:
                rows[("icassp2023_score", "")] = Score("icassp2023_score", None, bad[0].status,
                                                       f"{bad[0].metric}: {bad[0].reason}")
            else:
                be = {m: max(rows[(m, e)].value for e in EARS) for m in ("haspi", "hasqi")}
                rows[("icassp2023_score", "")] = Score("icassp2023_score",
                                                       0.5 * (be["haspi"] + be["hasqi"]), OK)
        return [rows[(m, ear)] for m, ear, _ in self.expected(item, metrics)]


class HearingAidSpeech(_ClarityScenes):
    task = "hearing-aid-speech"
    version = "cec2/1"
    output = "ha_output"
    default_metrics = ("haspi",)
    supported_metrics = ("haspi", "hasqi")

    def output_spec(self, item: Item) -> dict[str, OutputSpec]:
        mix = item.inputs["mix_CH1"]
        return {self.output: OutputSpec(mix.rate, 2, mix.frames, tail=NALR_NFIR)}

    def recipe_path(self, item: Item, listener_id: str | None, output: str) -> str | None:
        return f"{item.id}_{listener_id}_HA-output" if listener_id is not None else None


class HearingAidEnhancement(_ClarityScenes):
    task = "hearing-aid-enhancement"
    version = "icassp2023/1"
    output = "enhanced"
    default_metrics = ("haspi", "hasqi", "icassp2023_score")
    supported_metrics = ("haspi", "hasqi", "icassp2023_score")

    def output_spec(self, item: Item) -> dict[str, OutputSpec]:
        mix = item.inputs["mix_CH1"]
        return {self.output: OutputSpec(mix.rate, 2, mix.frames)}

    def recipe_path(self, item: Item, listener_id: str | None, output: str) -> str | None:
        return f"{item.id}_{listener_id}_enhanced" if listener_id is not None else None

    def processed(self, item: Item, out: Audio, listener: Any) -> np.ndarray:
        """The recipe's `amplify_signal` per ear, then its soft clip."""
        from clarity.enhancer.compressor import Compressor
        from clarity.enhancer.nalr import NALR

        nalr, comp = NALR(nfir=NALR_NFIR, sample_rate=RATE), Compressor(**COMPRESSOR)
        ears = []
        for ear, ag in (("left", listener.audiogram_left), ("right", listener.audiogram_right)):
            fir, _ = nalr.build(ag)
            y = nalr.apply(fir, out.samples[EAR_CHANNEL[ear]].astype(np.float64))
            y, _, _ = comp.process(y)
            ears.append(y)
        return np.tanh(np.stack(ears, axis=1))



class HearingAidCEC3(HearingAidSpeech):
    task = "hearing-aid-cec3"
    version = "cec3/1"
    reference_roles = ("reference",)
    resampling_note = "None: scored at the scenes' 48 kHz, as the CEC3 recipe scores them."
