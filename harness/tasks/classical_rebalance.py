"""classical-rebalance, the Cadenza CAD2 Task 2 rebalancing of classical music (`cad2-task2/1`).

Items are scenes: a stereo 44.1 kHz mixture of 2 to 4 instruments and their stems `source_1`
.. `source_N` (the CAD2 names; `metadata.instruments` says which instrument each is), the gain
the listener asks for each, `metadata.gains_db = {"source_1": -3.0, ...}`, and optionally
`metadata.listeners` (the scene's listeners, scene_listeners.json) and `metadata.compressor`
(listener id -> the listener's multiband-compressor fitting, compressor_params.json:
`{"cr_l": [6 ratios], "cr_r": [...], "gain_l": [6 make-up gains in dB], "gain_r": [...]}`). A
system returns, for one listener, `remix`: the rebalanced, hearing-aid processed music, stereo
(left ear, right ear) at 32 kHz, the mixture's length.

Scoring is pyclarity 0.9.0's recipes/cad2/task2/baseline/evaluate.py, step by step:
- the reference stems (float64), each gained by pyloudnorm's `normalize.loudness(x, L, L + gain)`
  with L their integrated loudness (-80 LUFS when silent), in the item's source order, summed
  (`apply_gains`, `remix_stems`), then scaled by the recipe's `adjust_level`: 10 ** (dbn / 20)
  with dbn = -10 log10(mean over the gain set of 10 ** (gain / 10));
- per ear, that channel through pyclarity's `MultibandCompressor` (crossovers 353.55, 707.11,
  1414.21, 2828.43, 5656.85 Hz; attack 11/11/14/13/11/11 ms, release 80/80/80/80/100/100 ms,
  threshold -30 dB in every band; the ear's ratios and make-up gains from the listener's
  fitting), resampled 44.1 -> 24 kHz by pyclarity's `resample`;
- the remix channel resampled 32 -> 24 kHz the same way;
- HAAQI with equalisation=2 and level1 = 65 - 20 log10(rms) of that channel of the level-adjusted
  reference before the compressor; the (scene, listener) HAAQI is the mean of the 2 ears; numpy
  seeded once per (scene, listener) with int(md5(scene id), 16) mod 10**8, left ear then right.

Where the harness departs: a listener the scene's `metadata.compressor` does not fit is fitted by
the harness's own rule (`fitting`: make-up gain max(HL - 20, 0) / 2 dB and ratio
1 + max(HL - 20, 0) / 40, at most 3, per band at the audiogram's 250..6000 Hz thresholds); the
challenge's own fittings come with its dataset and are imported with it. The recipe reads the
reference stems whole and the mixture as a segment (music.json `start`, `duration`); the harness
does the same, so when they differ in length HAAQI compares the pair trimmed to the shorter, as
pyclarity's ear model does.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from harness.audio import Audio
from harness.errors import SuiteError
from harness.listener import EAR_CHANNEL, EARS, audiogram
from harness.metrics import Score
from harness.metrics.haaqi import HAAQI_RATE
from harness.suites.types import Item
from harness.tasks.base import OutputSpec, TaskProtocol, resampled_frames
from harness.tasks.music_rebalance import (
    MIN_LOUDNESS_S,
    _loudness,
    _to_loudness,
    clarity_resample,
    score_remix_haaqi,
    unprocessed_remix,
)

REMIX_RATE = 32000
INPUT_RATE = 44100
SOURCE = re.compile(r"source_[1-9][0-9]*$")
# recipes/cad2/task2/baseline/config.yaml (pyclarity 0.9.0), `enhancer`
CROSSOVER_HZ = (353.55, 707.11, 1414.21, 2828.43, 5656.85)
ATTACK_MS = (11, 11, 14, 13, 11, 11)
RELEASE_MS = (80, 80, 80, 80, 100, 100)
THRESHOLD_DB = (-30, -30, -30, -30, -30, -30)
BAND_HZ = (250, 500, 1000, 2000, 4000, 6000)  # the bands' centres, for the harness's own fitting
FITTING_KEYS = ("cr_l", "cr_r", "gain_l", "gain_r")
# The instruments of the CAD2 Task 2 recipe's separators (its enhance.py) and a General MIDI
# program for each, for the generator.
INSTRUMENTS = {"Bassoon": 70, "Cello": 42, "Clarinet": 71, "Flute": 73, "Oboe": 68, "Sax": 65,
               "Viola": 41, "Violin": 40}


def sources(item: Item) -> list[str]:
    """The item's stems, in the order the recipe sums them (source_1, source_2, ...)."""
    return sorted((r for r in item.references if SOURCE.match(r)), key=lambda r: int(r[7:]))


def scene_gains(item: Item) -> dict[str, float]:
    """The scene's gain set in dB: a finite gain for every source (more entries are allowed:
    the recipe's level adjustment reads the whole set)."""
    gains = item.metadata.get("gains_db")
    where = f"{item.suite or 'suite'}: item {item.id}"
    if not isinstance(gains, dict):
        raise SuiteError(f"{where}: metadata.gains_db is missing (a gain in dB per source)")
    missing = [s for s in sources(item) if s not in gains]
    if missing:
        raise SuiteError(f"{where}: metadata.gains_db lacks {', '.join(missing)}")
    out = {}
    for k, v in gains.items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            out[k] = float("nan")
        if not np.isfinite(out[k]):
            raise SuiteError(f"{where}: metadata.gains_db.{k} is not a finite number: {v!r}")
    return out


def adjust_level(signal: np.ndarray, gains: dict[str, float]) -> np.ndarray:
    """The recipe's `adjust_level`: the mix brought back by the power mean of the gain set."""
    dbi = np.array(list(gains.values()))
    dbn = -10 * np.log10(np.sum(10 ** (dbi / 10)) / dbi.shape[0])
    return signal * 10 ** (dbn / 20)


def recipe_reference(item: Item) -> tuple[np.ndarray, int]:
    """The level-adjusted, rebalanced reference as the recipe makes it, (frames, 2) float64."""
    import pyloudnorm as pyln

    gains = scene_gains(item)
    names = sources(item)
    stems = {s: item.reference(s) for s in names}
    rate = stems[names[0]].rate
    if min(a.frames for a in stems.values()) < MIN_LOUDNESS_S * rate:
        raise SuiteError(f"{item.suite or 'suite'}: item {item.id}: shorter than "
                         f"{MIN_LOUDNESS_S} s, too short for the recipe's loudness measure")
    meter = pyln.Meter(int(rate))
    remix = np.zeros((stems[names[0]].frames, 2))
    for s, a in stems.items():
        x = a.samples.T.astype(np.float64)
        lufs = _loudness(meter, x)
        remix = remix + _to_loudness(x, lufs, lufs + gains[s])
    return adjust_level(remix, gains), rate


def fitting(listener: Any) -> dict[str, list[float]]:
    """The harness's own compressor fitting of a listener (when a scene carries none): per band,
    make-up gain max(HL - 20, 0) / 2 dB and ratio min(1 + max(HL - 20, 0) / 40, 3)."""
    out: dict[str, list[float]] = {}
    for ear, tag in (("left", "l"), ("right", "r")):
        ag = audiogram(listener, ear)
        hl = np.interp(BAND_HZ, np.asarray(ag.frequencies, float), np.asarray(ag.levels, float))
        over = np.maximum(hl - 20.0, 0.0)
        out[f"cr_{tag}"] = [round(float(v), 3) for v in np.minimum(1.0 + over / 40.0, 3.0)]
        out[f"gain_{tag}"] = [round(float(v), 3) for v in over / 2.0]
    return out


def listener_fitting(item: Item, listener: Any) -> dict[str, list[float]]:
    """The listener's fitting from the scene (the challenge's compressor_params), else the
    harness's rule; a malformed one is a SuiteError naming the item and listener."""
    given = (item.metadata.get("compressor") or {}).get(listener.id)
    if given is None:
        return fitting(listener)
    where = f"{item.suite or 'suite'}: item {item.id}: metadata.compressor.{listener.id}"
    out = {}
    for key in FITTING_KEYS:
        v = given.get(key) if isinstance(given, dict) else None
        try:
            arr = np.asarray(v, dtype=float).reshape(-1)
        except (TypeError, ValueError):
            arr = np.array([])
        if arr.size not in (1, len(BAND_HZ)) or not np.all(np.isfinite(arr)):
            raise SuiteError(f"{where}.{key} must be 1 or {len(BAND_HZ)} finite numbers, not {v!r}")
        out[key] = arr.tolist() if arr.size > 1 else float(arr[0])
    return out


def hearing_aid(x: np.ndarray, rate: int, fit: dict[str, Any], ear: str) -> np.ndarray:
    """One channel through the recipe's multiband compressor set for the ear."""
    from clarity.enhancer.multiband_compressor import MultibandCompressor

    tag = "l" if ear == "left" else "r"
    mbc = MultibandCompressor(crossover_frequencies=list(CROSSOVER_HZ), sample_rate=rate)
    mbc.set_compressors(attack=list(ATTACK_MS), release=list(RELEASE_MS),
                        threshold=list(THRESHOLD_DB), ratio=fit[f"cr_{tag}"],
                        makeup_gain=fit[f"gain_{tag}"])
    return mbc(signal=x)[0]


def recipe_references(item: Item, listener: Any) -> dict[str, tuple[np.ndarray, float]]:
    """Per ear: (the 24 kHz HAAQI reference, level1), as the recipe's evaluate.py makes them."""
    from clarity.utils.signal_processing import compute_rms

    ref, rate = recipe_reference(item)
    fit = listener_fitting(item, listener)
    out = {}
    for ear in EARS:
        channel = ref[:, EAR_CHANNEL[ear]]
        rms = float(compute_rms(channel))
        level1 = 65.0 - 20.0 * np.log10(rms) if rms > 0 else 65.0
        aided = hearing_aid(channel, rate, fit, ear)
        out[ear] = (clarity_resample(aided, rate, HAAQI_RATE), level1)
    return out


def recipe_split(scene_id: str) -> str:
    """The folder the recipe writes a scene's output to (its enhance.py and evaluate.py)."""
    try:
        n = int(scene_id[1:])
    except ValueError:
        return "test"
    if 0 < n < 49999:
        return "train"
    if 50000 < n < 59999:
        return "valid"
    return "test"


class ClassicalRebalance(TaskProtocol):
    task = "classical-rebalance"
    version = "cad2-task2/1"
    uses_listener = True
    input_roles = ("mixture",)
    references_note = "source_1 .. source_N (one per instrument)"
    default_metrics = ("haaqi",)
    supported_metrics = ("haaqi",)
    resampling_note = ("As the CAD2 Task 2 recipe: the compressed reference 44.1 -> 24 kHz and the "
                       "remix 32 -> 24 kHz with pyclarity's resample (soxr HQ); the multiband "
                       "compressor on the reference at 44.1 kHz.")
    seeding = ("HAAQI: numpy RandomState(int(md5(<scene id>), 16) % 10**8) per (scene, listener), "
               "drawn by the 2 calls in order left, right")

    def item_problems(self, item: Item) -> list[str]:
        out = super().item_problems(item)
        if not sources(item):
            where = f"{item.manifest}: " if item.manifest else ""
            out.append(f"{where}item {item.id!r} has no reference source_1 .. source_N (it has "
                       f"{', '.join(item.references) or 'none'}; task {self.task})")
        return out

    def output_spec(self, item: Item) -> dict[str, OutputSpec]:
        mix = item.inputs["mixture"]
        return {"remix": OutputSpec(REMIX_RATE, 2, resampled_frames(mix.frames, mix.rate, REMIX_RATE))}

    def recipe_path(self, item: Item, listener_id: str | None, output: str) -> str | None:
        # enhance.py: enhanced_signals/<train|valid|test>/<scene>_<listener>_remix.flac
        if listener_id is None:
            return None
        return f"{recipe_split(item.id)}/{item.id}_{listener_id}_{output}"

    def anchor(self, kind: str, item: Item, listener: Any) -> dict[str, Audio]:
        if kind == "oracle":  # the reference remix through the listener's hearing aid
            ref, rate = recipe_reference(item)
            fit = listener_fitting(item, listener)
            ears = [hearing_aid(ref[:, EAR_CHANNEL[e]], rate, fit, e) for e in EARS]
            return {"remix": Audio(clarity_resample(np.stack(ears, axis=1), rate, REMIX_RATE).T,
                                   REMIX_RATE)}
        return unprocessed_remix(item, REMIX_RATE)

    def expected(self, item: Item, metrics: list[str]) -> list[tuple[str, str, str]]:
        return [(m, ear, "") for m in metrics for ear in EARS]

    def score_valid(self, item, outputs, listener, metrics, problems, ctx) -> list[Score]:
        return score_remix_haaqi(item, outputs, listener, problems, ctx, recipe_references)
