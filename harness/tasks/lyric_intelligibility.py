"""lyric-intelligibility, the Cadenza CAD2 Task 1 (`cad2-task1/1`): make the lyrics of a song
easier to follow for a listener with hearing loss, keeping its quality.

Items are scenes: a song's stems `vocals`, `drums`, `bass`, `other` (stereo 44.1 kHz, whole
files), its mixture as the scene's segment (the input), `metadata.segment = [first, end]` (frames
of that segment in the song), `metadata.alpha` (the scene's weight of intelligibility against
quality, in 0..1), `metadata.text` (the segment's lyrics), optionally `metadata.listeners` and
`metadata.compressor` (listener id -> the compressor fitting, as classical-rebalance). A system
returns, for one listener, `remix`: stereo (left ear, right ear) at 44.1 kHz, the segment's
length.

Scoring is pyclarity 0.9.0's recipes/cad2/task1/baseline/evaluate.py (`run_compute_scores`):
- the reference: vocals x 10^(1/20) plus drums + bass + other x 10^(-1/20) (float32, as
  `read_flac_signal` reads 16-bit FLAC), brought to -40 LUFS over the whole song (pyloudnorm),
  cut to the segment (`load_reference_signal`), then per ear through the listener's multiband
  compressor (the CAD2 fitting, as classical-rebalance);
- `haaqi` per ear: the remix channel and that compressed reference channel, each resampled to
  24 kHz by pyclarity's `resample`, `equalisation=2`, level1 = 65 - 20 log10(rms) of the
  compressed reference channel (`compute_quality`); seeded per (scene, listener) with
  int(md5(scene id), 16) mod 10**8, left then right. (The recipe's config sets
  `set_random_seed: True` but its evaluate.py never seeds, so its own HAAQI values move by a
  little from run to run; the harness seeds as CAD2 Task 2 does. With that seed the values are
  the recipe's.)
- `lyrics_correct` per ear: the share of the lyrics' words that Whisper transcribes correctly
  from the remix channel after pyclarity's MSBG hearing-loss model for that ear
  (equiv_0db_spl = 100). It needs a local Whisper checkpoint (`HARNESS_WHISPER_MODEL` names the
  file; the `openai-whisper` and `jiwer` packages): without one the rows are `failed` with that
  reason, never 0. Departures from the recipe's known bugs: the recipe transcribes the
  unprocessed stereo remix for both ears (it writes `enhanced_signal`, not the MSBG output, to
  the files it transcribes) and divides both ears' hits by the right ear's word count; the
  harness transcribes each ear's MSBG output and divides by that ear's count.
- `cad2_score` (one row per scene and listener): alpha x max over ears of `lyrics_correct` +
  (1 - alpha) x mean over ears of `haaqi`, the challenge's ranking score; `failed` when
  `lyrics_correct` is.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from harness.audio import Audio
from harness.errors import SuiteError
from harness.listener import EAR_CHANNEL, EARS
from harness.metrics import Score, evaluate
from harness.metrics.base import FAILED, OK
from harness.metrics.haaqi import HAAQI_PRE_EQUALISED, HAAQI_RATE, cad1_song_seed, with_level1
from harness.suites.types import Item
from harness.tasks.base import OutputSpec, TaskProtocol
from harness.tasks.classical_rebalance import hearing_aid, listener_fitting
from harness.tasks.music_rebalance import MIN_LOUDNESS_S, clarity_resample

RATE = 44100
STEMS = ("vocals", "drums", "bass", "other")
TARGET_LUFS = -40.0
WHISPER_ENV = "HARNESS_WHISPER_MODEL"


def segment(item: Item) -> tuple[int, int]:
    """(first, end) frames of the scene's segment within the song."""
    seg = item.metadata.get("segment")
    where = f"{item.suite or 'suite'}: item {item.id}"
    try:
        first, end = (int(v) for v in seg)
    except (TypeError, ValueError):
        raise SuiteError(f"{where}: metadata.segment must be [first, end] frames, not {seg!r}") from None
    if not 0 <= first < end:
        raise SuiteError(f"{where}: metadata.segment {seg!r} is empty or negative")
    return first, end


def alpha_of(item: Item) -> float:
    a = item.metadata.get("alpha")
    try:
        a = float(a)
    except (TypeError, ValueError):
        a = float("nan")
    if not 0.0 <= a <= 1.0:
        raise SuiteError(f"{item.suite or 'suite'}: item {item.id}: metadata.alpha must be a "
                         f"number in 0..1, not {item.metadata.get('alpha')!r}")
    return a


def recipe_reference(item: Item) -> np.ndarray:
    """The recipe's `load_reference_signal`: (frames, 2) float32 of the segment, before the
    hearing aid."""
    import pyloudnorm as pyln

    stems = {s: item.reference(s).samples.T.astype(np.float32) for s in STEMS}
    vocal = stems["vocals"]
    accompaniment = np.zeros_like(vocal)
    for s in ("bass", "drums", "other"):
        accompaniment += stems[s]
    mixture = vocal * 10 ** (1 / 20) + accompaniment * 10 ** (-1 / 20)
    if mixture.shape[0] < MIN_LOUDNESS_S * RATE:
        raise SuiteError(f"{item.suite or 'suite'}: item {item.id}: shorter than {MIN_LOUDNESS_S} s, "
                         "too short for the recipe's loudness measure")
    level = pyln.Meter(RATE).integrated_loudness(mixture)
    mixture = mixture * (10 ** ((TARGET_LUFS - level) / 20))
    first, end = segment(item)
    if end > mixture.shape[0]:
        raise SuiteError(f"{item.suite or 'suite'}: item {item.id}: metadata.segment ends at frame "
                         f"{end}, after the song's {mixture.shape[0]} frames")
    return mixture[first:end, :]


def aided_reference(item: Item, listener: Any) -> np.ndarray:
    """(frames, 2): the reference through the listener's hearing aid, per ear."""
    ref = recipe_reference(item)
    fit = listener_fitting(item, listener)
    return np.stack([hearing_aid(ref[:, EAR_CHANNEL[e]], RATE, fit, e) for e in EARS], axis=1)


def whisper_problem() -> str | None:
    """Why Whisper word correctness cannot be computed here, or None."""
    path = os.environ.get(WHISPER_ENV)
    if not path:
        return (f"needs a local Whisper checkpoint: set {WHISPER_ENV} to the file "
                "(the harness downloads nothing)")
    if not os.path.isfile(path):
        return f"{WHISPER_ENV}={path}: no such file"
    for pkg, name in (("whisper", "openai-whisper"), ("jiwer", "jiwer")):
        try:
            __import__(pkg)
        except ImportError:
            return f"needs the {name} package for Whisper word correctness (pip install {name})"
    return None


def word_correctness(reference: str, hypothesis: str) -> float:
    """The share of the reference's words a transcript gets right: hits / (hits + substitutions
    + deletions), by jiwer's alignment (jiwer >= 3 `process_words`; older jiwer's
    `compute_measures`, which the recipe imports and jiwer 4 removed). NaN for no words."""
    import jiwer

    if hasattr(jiwer, "process_words"):
        out = jiwer.process_words(reference, hypothesis)
        hits, subs, dels = out.hits, out.substitutions, out.deletions
    else:  # pragma: no cover - jiwer < 3
        m = jiwer.compute_measures(reference, hypothesis)
        hits, subs, dels = m["hits"], m["substitutions"], m["deletions"]
    words = hits + subs + dels
    return hits / words if words else float("nan")


def lyrics_correct(remix: Audio, text: str, listener: Any) -> dict[str, float]:
    """Per ear: hits / reference words of Whisper's transcript of the MSBG-processed channel."""
    import whisper
    from clarity.evaluator.msbg.msbg import Ear

    model = whisper.load_model(os.environ[WHISPER_ENV], device="cpu")
    ear = Ear(equiv_0db_spl=100, sample_rate=remix.rate)
    out = {}
    for side in EARS:
        ear.set_audiogram(listener.audiogram_left if side == "left" else listener.audiogram_right)
        heard = ear.process(remix.samples[EAR_CHANNEL[side]])[0]
        audio16 = clarity_resample(heard, remix.rate, 16000).astype(np.float32)
        hypothesis = model.transcribe(audio16, fp16=False)["text"]
        out[side] = word_correctness(text, hypothesis)
    return out


class LyricIntelligibility(TaskProtocol):
    task = "lyric-intelligibility"
    version = "cad2-task1/1"
    uses_listener = True
    input_roles = ("mixture",)
    reference_roles = STEMS
    default_metrics = ("haaqi",)
    supported_metrics = ("haaqi", "lyrics_correct", "cad2_score")
    resampling_note = ("As the CAD2 Task 1 recipe: the remix and the compressed reference 44.1 -> "
                       "24 kHz with pyclarity's resample (soxr HQ) for HAAQI; for Whisper the "
                       "MSBG output 44.1 -> 16 kHz the same way.")
    seeding = ("HAAQI: numpy RandomState(int(md5(<scene id>), 16) % 10**8) per (scene, listener), "
               "drawn by the 2 calls in order left, right (the recipe itself does not seed)")

    def output_spec(self, item: Item) -> dict[str, OutputSpec]:
        return {"remix": OutputSpec(RATE, 2, item.inputs["mixture"].frames)}

    def recipe_path(self, item: Item, listener_id: str | None, output: str) -> str | None:
        # enhance.py: enhanced_signals/<scene>_<listener>_A<alpha>_remix.flac, alpha as written
        # in alpha.json (metadata.alpha_text keeps its spelling; str(alpha) otherwise)
        if listener_id is None:
            return None
        alpha = item.metadata.get("alpha_text", item.metadata.get("alpha"))
        return f"{item.id}_{listener_id}_A{alpha}_{output}"

    def anchor(self, kind: str, item: Item, listener: Any) -> dict[str, Audio]:
        if kind == "oracle":
            return {"remix": Audio(aided_reference(item, listener).T.astype(np.float64), RATE)}
        mix = item.input("mixture")
        return {"remix": Audio(mix.samples.astype(np.float64), mix.rate)}

    def expected(self, item: Item, metrics: list[str]) -> list[tuple[str, str, str]]:
        return [(m, "", "") if m == "cad2_score" else (m, ear, "") for m in metrics
                for ear in (("",) if m == "cad2_score" else EARS)]

    def score_valid(self, item, outputs, listener, metrics, problems, ctx) -> list[Score]:
        if "remix" in problems:
            return self.all_invalid(item, metrics, problems["remix"])
        try:
            ref = aided_reference(item, listener)
            alpha = alpha_of(item) if "cad2_score" in metrics else None
        except SuiteError as exc:
            return self.all_invalid(item, metrics, str(exc))
        remix = outputs["remix"]
        rows: dict[tuple[str, str], Score] = {}
        if "haaqi" in metrics or "cad2_score" in metrics:
            rng = np.random.RandomState(cad1_song_seed(item.id))
            from clarity.utils.signal_processing import compute_rms

            for ear in EARS:
                r = ref[:, EAR_CHANNEL[ear]]
                rms = float(compute_rms(r))
                level1 = 65.0 - 20.0 * np.log10(rms) if rms > 0 else 65.0
                est24 = clarity_resample(remix.samples[EAR_CHANNEL[ear]], RATE, HAAQI_RATE)
                ref24 = clarity_resample(r, RATE, HAAQI_RATE)
                rows[("haaqi", ear)] = evaluate(
                    with_level1(HAAQI_PRE_EQUALISED, level1), Audio(est24, HAAQI_RATE),
                    Audio(ref24, HAAQI_RATE), listener=listener, ear=ear, seed=rng, ctx=ctx)
        if "lyrics_correct" in metrics or "cad2_score" in metrics:
            why = whisper_problem()
            text = item.metadata.get("text")
            if why is None and not (isinstance(text, str) and text.split()):
                why = "the scene has no lyrics (metadata.text)"
            if why is None:
                try:
                    values = lyrics_correct(remix, text, listener)
                    for ear in EARS:
                        rows[("lyrics_correct", ear)] = Score("lyrics_correct", values[ear], OK, "", ear)
                except Exception as exc:  # a broken checkpoint: the reason, not a traceback
                    why = f"Whisper failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            if why is not None:
                for ear in EARS:
                    rows[("lyrics_correct", ear)] = Score("lyrics_correct", None, FAILED, why, ear)
        if "cad2_score" in metrics:
            parts = [rows[("haaqi", e)] for e in EARS] + [rows[("lyrics_correct", e)] for e in EARS]
            bad = [p for p in parts if p.status != OK]
            if bad:
                rows[("cad2_score", "")] = Score("cad2_score", None, bad[0].status,
                                                 f"{bad[0].metric}: {bad[0].reason}")
            else:
                q = float(np.mean([rows[("haaqi", e)].value for e in EARS]))
                w = max(rows[("lyrics_correct", e)].value for e in EARS)
                rows[("cad2_score", "")] = Score("cad2_score", alpha * w + (1 - alpha) * q, OK)
        return [rows[(m, ear)] for m, ear, _ in self.expected(item, metrics)]
