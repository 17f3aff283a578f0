"""music-rebalance, the ICASSP 2024 Cadenza stem-rebalancing task (`icassp2024-rebalance/2`).

Items are scenes: a stereo 44.1 kHz mixture and its stems vocals/drums/bass/other, with a gain
per stem, `metadata.gains_db = {"vocals": 3.0, ...}` (the listener's requested balance), and
optionally `metadata.listeners`, the listener ids the scene is scored for (the challenge's
scene_listeners.json). A system returns, for one listener, `remix`: the rebalanced,
hearing-aid processed song, stereo (left ear, right ear) at 32 kHz.

Scoring is pyclarity 0.9.0's recipes/cad_icassp_2024/baseline/evaluate.py, step by step:
- the reference stems (float64) each gained by pyloudnorm's `normalize.loudness(x, L, L + gain)`
  with L their integrated loudness (-80 LUFS when silent), summed in the recipe's order (drums,
  bass, other, vocals), the sum normalised to the mixture's integrated loudness (the recipe's
  `remix_stems`: pyloudnorm Meter at 44.1 kHz);
- per ear, that channel through pyclarity's NAL-R for the ear's audiogram (220 taps at 44.1 kHz,
  `NALR.apply`: a full convolution, so the reference is 220 samples longer and keeps the filter's
  delay), resampled 44.1 -> 24 kHz by pyclarity's `resample` (soxr HQ);
- the remix channel (float32) resampled 32 -> 24 kHz the same way;
- HAAQI with equalisation=2 and level1 = 65 - 20 log10(rms) of that channel of the loudness-
  normalised remix at 44.1 kHz (before NAL-R); the (scene, listener) HAAQI is the mean of the 2
  ears; numpy seeded once per (scene, listener) with int(md5(scene id), 16) mod 10**8, left ear
  then right.
Lengths: the remix has the mixture's length at 32 kHz, or the recipe's (its NAL-R tail resampled:
+160 frames at 32 kHz for 30 s); pyclarity's ear model trims the pair to the shorter, and so does the
harness. (`icassp2024-rebalance/1` used plain dB gains without the loudness normalisation, NAL-R
with its delay removed, soxr VHQ, and level1 from the NAL-R'd 24 kHz reference: up to 0.12 off.)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from harness.audio import Audio
from harness.errors import SuiteError
from harness.listener import EAR_CHANNEL, EARS, audiogram, nalr_full
from harness.metrics import Score, evaluate
from harness.metrics.base import INVALID
from harness.metrics.haaqi import HAAQI_PRE_EQUALISED, HAAQI_RATE, cad1_song_seed, with_level1
from harness.suites.types import Item
from harness.tasks.base import (
    OutputSpec,
    TaskProtocol,
    recipe_tail,
    resampled_frames,
)
from harness.tasks.music_remix import CAD1_SCORING_ORDER, REMIX_RATE, STEMS

SILENT_LUFS = -80.0  # the recipe's stand-in for the loudness of a silent signal
MIN_LOUDNESS_S = 0.4  # one ITU-R BS.1770 gating block: pyloudnorm measures nothing shorter


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


def _loudness(meter, x: np.ndarray) -> float:
    value = float(meter.integrated_loudness(x))
    return SILENT_LUFS if value == -np.inf else value


def _to_loudness(x: np.ndarray, current: float, target: float) -> np.ndarray:
    import pyloudnorm as pyln

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Possible clipped samples in output")
        return pyln.normalize.loudness(x, current, target)


def recipe_remix(item: Item) -> tuple[np.ndarray, int]:
    """The scene's reference remix as the recipe makes it, (frames, 2) float64 at the stems'
    rate: each stem gained through pyloudnorm, summed, normalised to the mixture's loudness."""
    import pyloudnorm as pyln

    gains = scene_gains(item)
    stems = {s: item.reference(s) for s in CAD1_SCORING_ORDER}  # the recipe's reading order
    rate = stems["drums"].rate
    if stems["drums"].frames < MIN_LOUDNESS_S * rate:
        raise SuiteError(f"{item.suite or 'suite'}: item {item.id}: shorter than "
                         f"{MIN_LOUDNESS_S} s, too short for the recipe's loudness measure")
    meter = pyln.Meter(int(rate))
    remix = np.zeros((stems["drums"].frames, 2))
    for s, a in stems.items():
        x = a.samples.T.astype(np.float64)
        lufs = _loudness(meter, x)
        remix += _to_loudness(x, lufs, lufs + gains[s])
    mixture = item.input("mixture").samples.T.astype(np.float64)
    remix_lufs = _loudness(meter, remix)
    gain = _loudness(meter, mixture) - remix_lufs
    return _to_loudness(remix, remix_lufs, remix_lufs + gain), rate


def clarity_resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    from clarity.utils.signal_processing import resample

    return resample(x, rate_in, rate_out)


def recipe_references(item: Item, listener: Any) -> dict[str, tuple[np.ndarray, float]]:
    """Per ear: (the 24 kHz HAAQI reference, level1), as the recipe's evaluate.py makes them."""
    from clarity.utils.signal_processing import compute_rms

    remix, rate = recipe_remix(item)
    out = {}
    for ear in EARS:
        channel = remix[:, EAR_CHANNEL[ear]]
        rms = float(compute_rms(channel))
        level1 = 65.0 - 20.0 * np.log10(rms) if rms > 0 else 65.0
        ref = nalr_full(channel, rate, audiogram(listener, ear))
        out[ear] = (clarity_resample(ref, rate, HAAQI_RATE), level1)
    return out


def remix_haaqi(item: Item, remix: Audio, refs: dict[str, tuple[np.ndarray, float]], listener: Any,
                ctx) -> list[Score]:
    """HAAQI (equalisation=2) of each ear of a remix against its 24 kHz reference and level1, the
    remix channel resampled to 24 kHz by pyclarity's `resample`; one RandomState seeded by the
    scene id, drawn left then right (the Cadenza rebalancing recipes)."""
    rng = np.random.RandomState(cad1_song_seed(item.id))
    out = []
    for ear in EARS:
        ref24, level1 = refs[ear]
        est24 = clarity_resample(remix.samples[EAR_CHANNEL[ear]], remix.rate, HAAQI_RATE)
        out.append(evaluate(with_level1(HAAQI_PRE_EQUALISED, level1), Audio(est24, HAAQI_RATE),
                            Audio(ref24, HAAQI_RATE), listener=listener, ear=ear, seed=rng, ctx=ctx))
    return out


def unprocessed_remix(item: Item, rate: int) -> dict[str, Audio]:
    """The rebalance tasks' `unprocessed` anchor: the mixture resampled to the remix rate."""
    mix = item.input("mixture")
    return {"remix": Audio(clarity_resample(mix.samples.T.astype(np.float64), mix.rate, rate).T, rate)}


def score_remix_haaqi(item: Item, outputs: dict[str, Audio], listener: Any, problems: dict[str, str], ctx,
                      references: Callable[[Item, Any], dict[str, tuple[np.ndarray, float]]]) -> list[Score]:
    """`remix_haaqi` against `references(item, listener)`; per ear `invalid` with the reason when
    the remix is (problems) or its references cannot be made."""
    if "remix" in problems:
        return [Score("haaqi", None, INVALID, problems["remix"], ear) for ear in EARS]
    try:
        refs = references(item, listener)
    except SuiteError as exc:
        return [Score("haaqi", None, INVALID, str(exc), ear) for ear in EARS]
    return remix_haaqi(item, outputs["remix"], refs, listener, ctx)


class MusicRebalance(TaskProtocol):
    task = "music-rebalance"
    version = "icassp2024-rebalance/2"  # /1: dB gains, no loudness step, NAL-R delay removed, VHQ
    uses_listener = True
    input_roles = ("mixture",)
    reference_roles = STEMS
    default_metrics = ("haaqi",)
    supported_metrics = ("haaqi",)
    resampling_note = ("As the ICASSP 2024 recipe: the NAL-R'd reference 44.1 -> 24 kHz and the "
                       "remix 32 -> 24 kHz with pyclarity's resample (soxr HQ); NAL-R on the "
                       "reference at 44.1 kHz (pyclarity, 220 taps, full convolution).")
    seeding = ("HAAQI: numpy RandomState(int(md5(<scene id>), 16) % 10**8) per (scene, listener), "
               "drawn by the 2 calls in order left, right")

    def output_spec(self, item: Item) -> dict[str, OutputSpec]:
        ref = item.references[STEMS[0]]
        return {"remix": OutputSpec(REMIX_RATE, 2, resampled_frames(ref.frames, ref.rate, REMIX_RATE),
                                    tail=recipe_tail(ref.frames, ref.rate, REMIX_RATE))}

    def recipe_path(self, item: Item, listener_id: str | None, output: str) -> str | None:
        # enhance.py: enhanced_signals/<scene>_<listener>_remix.flac, one flat folder
        return f"{item.id}_{listener_id}_{output}" if listener_id is not None else None

    def anchor(self, kind: str, item: Item, listener: Any) -> dict[str, Audio]:
        if kind == "oracle":  # the recipe's baseline with perfect stems: the reference, per ear
            remix, rate = recipe_remix(item)
            ears = [nalr_full(remix[:, EAR_CHANNEL[e]], rate, audiogram(listener, e)) for e in EARS]
            return {"remix": Audio(clarity_resample(np.stack(ears, axis=1), rate, REMIX_RATE).T,
                                   REMIX_RATE)}
        return unprocessed_remix(item, REMIX_RATE)

    def expected(self, item: Item, metrics: list[str]) -> list[tuple[str, str, str]]:
        return [(m, ear, "") for m in metrics for ear in EARS]

    def score_valid(self, item, outputs, listener, metrics, problems, ctx) -> list[Score]:
        return score_remix_haaqi(item, outputs, listener, problems, ctx, recipe_references)
