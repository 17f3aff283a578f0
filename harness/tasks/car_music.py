"""car-music, the Cadenza CAD1 Task 2 listening scene: music for a hearing-aid user in a car
(`cad1-task2/1`).

Items are scenes: a song (stereo 44.1 kHz, input and reference `music`), the car's noise
(`metadata.car_noise_parameters`, as pyclarity's `CarNoiseParametersGenerator` makes them),
the SNR of the music at the ears over that noise (`metadata.snr`, dB, in LUFS), and the
binaural room impulse responses of the listener's head rotation (`metadata.hr`), given as
references (mono WAVs, read as `scipy.io.wavfile` reads them, raw values):
`car_{ls,rs}_{left,right}` (left/right loudspeaker of the car to the left/right ear),
`anechoic_{ls,rs}_{left,right}` (the same loudspeakers in an anechoic room: the reference's
path) and `noise_{000,m90,p90}_{left,right}` (anechoic sources at 0, -90 and +90 degrees: the
engine and the two other noise sources). A system returns, for one listener, `enhanced`: stereo
at 32 kHz, the song's length.

Scoring is pyclarity 0.9.0's recipes/cad1/task2/baseline/evaluate.py (`evaluate_scene`,
`CarSceneAcoustics.apply_car_acoustics_to_signal`), step by step, with its dtypes:
- numpy's global generator seeded with int(md5(scene id), 16) mod 10**8 (`set_scene_seed`);
- car noise from that generator: `CarNoiseSignalGenerator(36 s, 44.1 kHz)` (track_duration 30 s
  plus 20 %), 2 sources and the engine, commonness 0; the engine through the 0-degree BRIRs, the
  sources through the -90 and +90 degree ones (`lfilter`);
- the system's signal through the car BRIRs of its loudspeakers, the noise scaled by pyloudnorm
  to `integrated_loudness(music) - snr`, the two summed over their common length;
- per ear pyclarity's NAL-R (220 taps, 44.1 kHz) and `Compressor(threshold 0.7, attenuation 0.1,
  attack 5, release 20, rms_buffer_size 0.064)`, then clipped to [-1, 1];
- the reference: the song as librosa reads it (float32, peak-normalised when above 1) through
  the anechoic BRIRs, brought by pyloudnorm to the processed signal's loudness, at most -14 LUFS;
- HAAQI per ear (`compute_haaqi`: equalisation 1, level1 65 dB SPL, both signals resampled to
  24 kHz by the ear model's `resample_24khz`), drawing on from the same generator, left then
  right; the scene's score is the mean of the two.

The recipe's own quirk, kept because it sets the number: the system's signal is written at
32 kHz and read back, but evaluate.py treats its samples as 44.1 kHz (it passes
`config.sample_rate` for it), so the music is scored played 44.1/32 = 1.38 times too fast and
cut to the reference's first 32/44.1 of the song. A protocol without that mistake would score
far higher for every system; this one equals the challenge's published scores.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from harness.audio import Audio
from harness.errors import SuiteError
from harness.listener import EAR_CHANNEL, EARS, audiogram
from harness.metrics import Score, evaluate
from harness.metrics.base import INVALID, process_state
from harness.metrics.haaqi import HAAQI, HAAQI_RATE, cad1_song_seed, with_level1
from harness.suites.types import Item
from harness.tasks.base import OutputSpec, TaskProtocol, resampled_frames

SONG_RATE = 44100
ENHANCED_RATE = 32000
TRACK_S, EXTEND_NOISE = 30, 0.2  # the recipe's CarSceneAcoustics(track_duration=30, extend_noise=0.2)
MAX_REFERENCE_LUFS = -14.0
NALR_TAPS = 220
COMPRESSOR = {"threshold": 0.7, "attenuation": 0.1, "attack": 5, "release": 20, "rms_buffer_size": 0.064}
SPEAKERS = {"ls": "left_speaker", "rs": "right_speaker"}
SIDES = {"left": "left_side", "right": "right_side"}
# the recipe's ANECHOIC_HRTF_FOR_NOISE: the eBrird anechoic BRIRs of the noise directions
NOISE_BRIRS = {"000": "HR36_E02_CH1", "m90": "HR0_E02_CH1", "p90": "HR72_E02_CH1"}
BRIR_ROLES = tuple([f"{room}_{sp}_{ear}" for room in ("car", "anechoic") for sp in SPEAKERS for ear in EARS]
                   + [f"noise_{d}_{ear}" for d in NOISE_BRIRS for ear in EARS])
HAAQI_65 = with_level1(HAAQI, 65.0)  # compute_haaqi's default level1: the recipe passes none


def brir(item: Item, role: str) -> np.ndarray:
    """A BRIR as the recipe reads it: `scipy.io.wavfile.read(path)[1]` (its stored dtype)."""
    from scipy.io import wavfile

    path = item.root / item.references[role].path
    try:
        with warnings.catch_warnings():  # "Chunk (non-data) not understood": a PEAK chunk, skipped
            warnings.simplefilter("ignore", wavfile.WavFileWarning)
            data = wavfile.read(path)[1]
    except (ValueError, OSError) as exc:
        raise SuiteError(f"{path}: not a WAV file scipy can read ({exc})") from None
    if data.ndim != 1:
        raise SuiteError(f"{path}: a BRIR must be one channel, not {data.shape[1]}")
    return data


def recipe_song(item: Item) -> np.ndarray:
    """The song as the recipe's read_mp3 gives it: (2, frames) float32, peak-normalised above 1."""
    x = item.reference("music").samples.astype(np.float32)
    if x.shape[0] == 1:
        x = np.concatenate([x, x], axis=0)
    if np.max(np.abs(x)) > 1:
        x = x / np.max(np.abs(x))
    return x


def through(signal: np.ndarray, item: Item, room: str) -> np.ndarray:
    """A stereo signal through a room's loudspeaker BRIRs (`add_hrtf_to_stereo_signal`)."""
    from scipy.signal import lfilter

    left = lfilter(brir(item, f"{room}_ls_left"), 1, signal[0, :])
    right = lfilter(brir(item, f"{room}_ls_right"), 1, signal[0, :])
    left += lfilter(brir(item, f"{room}_rs_left"), 1, signal[1, :])
    right += lfilter(brir(item, f"{room}_rs_right"), 1, signal[1, :])
    return np.stack([left, right], axis=0)


def car_noise(item: Item) -> np.ndarray:
    """The scene's car noise at the ears (`get_car_noise`, `add_anechoic_hrtf_to_noise`), drawn
    from numpy's global generator as it stands."""
    from clarity.utils.car_noise_simulator.carnoise_signal_generator import CarNoiseSignalGenerator
    from scipy.signal import lfilter

    params = item.metadata.get("car_noise_parameters")
    if not isinstance(params, dict):
        raise SuiteError(f"{item.suite or 'suite'}: item {item.id}: metadata.car_noise_parameters "
                         "is missing (pyclarity's CarNoiseParametersGenerator output)")
    gen = CarNoiseSignalGenerator(duration_secs=TRACK_S * (1 + EXTEND_NOISE), sample_rate=SONG_RATE)
    try:
        noise = gen.generate_car_noise(noise_parameters=params, number_noise_sources=2,
                                       commonness_factor=0)
    except (KeyError, TypeError, ValueError) as exc:
        raise SuiteError(f"{item.suite or 'suite'}: item {item.id}: metadata.car_noise_parameters "
                         f"cannot make car noise ({type(exc).__name__}: {exc})") from None
    left = lfilter(brir(item, "noise_000_left"), 1, noise[0, :])
    right = lfilter(brir(item, "noise_000_right"), 1, noise[0, :])
    left += lfilter(brir(item, "noise_m90_left"), 1, noise[1, :])
    right += lfilter(brir(item, "noise_m90_right"), 1, noise[1, :])
    left += lfilter(brir(item, "noise_p90_left"), 1, noise[2, :])
    right += lfilter(brir(item, "noise_p90_right"), 1, noise[2, :])
    return np.stack([left, right], axis=0)


def _meter():
    import pyloudnorm as pyln

    return pyln.Meter(SONG_RATE)


def scale_to_snr(signal: np.ndarray, reference: np.ndarray, snr: float) -> np.ndarray:
    """The recipe's `scale_signal_to_snr` (pyloudnorm on (frames, channels))."""
    import pyloudnorm as pyln

    if reference.shape[0] < reference.shape[1]:
        reference = reference.T
    if signal.shape[0] < signal.shape[1]:
        signal = signal.T
    meter = _meter()
    target = meter.integrated_loudness(reference) - snr
    with warnings.catch_warnings(record=True):
        out = pyln.normalize.loudness(signal, meter.integrated_loudness(signal), target)
    return out.T


def equalise_level(signal: np.ndarray, reference: np.ndarray, max_level: float) -> np.ndarray:
    """The recipe's `equalise_level`."""
    import pyloudnorm as pyln

    meter = _meter()
    level = meter.integrated_loudness(signal.T)
    target = meter.integrated_loudness(reference.T)
    with warnings.catch_warnings(record=True):
        return pyln.normalize.loudness(signal, level, min(target, max_level))


def hearing_aid(x: np.ndarray, ag: Any) -> np.ndarray:
    """One ear through the recipe's NAL-R and compressor (`apply_hearing_aid`)."""
    from clarity.enhancer.compressor import Compressor
    from clarity.enhancer.nalr import NALR

    nalr = NALR(nfir=NALR_TAPS, sample_rate=SONG_RATE)
    fir, _ = nalr.build(ag)
    y = nalr.apply(fir, x)
    y, _, _ = Compressor(**COMPRESSOR).process(y)
    return y


def scene_snr(item: Item) -> float:
    try:
        snr = float(item.metadata["snr"])
    except (KeyError, TypeError, ValueError):
        snr = float("nan")
    if not np.isfinite(snr):
        raise SuiteError(f"{item.suite or 'suite'}: item {item.id}: metadata.snr must be a finite "
                         f"number of dB, not {item.metadata.get('snr')!r}")
    return snr


def in_the_car(item: Item, enhanced: np.ndarray, listener: Any) -> np.ndarray:
    """The system's (2, frames) signal as the listener hears it in the car, after the hearing aid
    (`apply_car_acoustics_to_signal`); draws the car noise from numpy's global generator."""
    noise = car_noise(item)
    processed = through(enhanced, item, "car")
    noise = scale_to_snr(noise, processed, scene_snr(item))
    n = min(processed.shape[1], noise.shape[1])
    processed = processed[:, :n] + noise[:, :n]
    ears = [hearing_aid(processed[EAR_CHANNEL[e], :], audiogram(listener, e)) for e in EARS]
    return np.clip(np.stack(ears, axis=0), -1, 1)


def scene_scores(item: Item, enhanced: Audio, listener: Any, ctx) -> list[Score]:
    """HAAQI per ear of the system's signal in the scene, as evaluate_scene computes it."""
    from clarity.evaluator.haspi.eb import resample_24khz

    # read as the recipe reads its FLAC (float32), its samples taken as 44.1 kHz (see above)
    signal = enhanced.samples.astype(np.float32)
    rng = np.random.RandomState(cad1_song_seed(item.id))
    with process_state(rng, quiet=False):  # the car noise draws from numpy's global generator
        processed = in_the_car(item, signal, listener)
    reference = equalise_level(through(recipe_song(item), item, "anechoic"), processed,
                               MAX_REFERENCE_LUFS)
    out = []
    for ear in EARS:
        c = EAR_CHANNEL[ear]
        est24, _ = resample_24khz(processed[c, :], SONG_RATE)
        ref24, _ = resample_24khz(reference[c, :], SONG_RATE)
        out.append(evaluate(HAAQI_65, Audio(est24, HAAQI_RATE), Audio(ref24, HAAQI_RATE),
                            listener=listener, ear=ear, seed=rng, ctx=ctx))
    return out


class CarMusic(TaskProtocol):
    task = "car-music"
    version = "cad1-task2/1"
    uses_listener = True
    input_roles = ("music",)
    reference_roles = ("music", *BRIR_ROLES)
    references_note = "music; 14 BRIRs: car_{ls,rs}_{left,right}, anechoic_..., noise_{000,m90,p90}_..."
    default_metrics = ("haaqi",)
    supported_metrics = ("haaqi",)
    resampling_note = ("As the CAD1 Task 2 recipe: the system's 32 kHz samples read as 44.1 kHz (the "
                       "recipe's own mistake, kept), the car and hearing aid at 44.1 kHz, HAAQI's "
                       "ear model resampling both signals to 24 kHz (resample_poly 24/44).")
    seeding = ("car noise, then HAAQI: numpy's generator seeded with int(md5(<scene id>), 16) % "
               "10**8 per (scene, listener), drawn by the noise, then HAAQI left, then right")

    def item_problems(self, item: Item) -> list[str]:
        out = super().item_problems(item)
        ref = item.references.get("music")
        if ref is not None and ref.rate != SONG_RATE:
            where = f"{item.manifest}: " if item.manifest else ""
            out.append(f"{where}item {item.id!r}: the song is at {ref.rate} Hz; task {self.task} "
                       f"reads songs at {SONG_RATE} Hz")
        return out

    def output_spec(self, item: Item) -> dict[str, OutputSpec]:
        song = item.inputs["music"]
        return {"enhanced": OutputSpec(ENHANCED_RATE, 2, resampled_frames(song.frames, song.rate,
                                                                          ENHANCED_RATE))}

    def recipe_path(self, item: Item, listener_id: str | None, output: str) -> str | None:
        # enhance.py: enhanced_signals/<split>/<listener>/<scene>_<listener>_<song>.flac
        if listener_id is None:
            return None
        split = item.metadata.get("split", "valid")
        song = item.metadata.get("song", "song")
        return f"{split}/{listener_id}/{item.id}_{listener_id}_{song}"

    def anchor(self, kind: str, item: Item, listener: Any) -> dict[str, Audio]:
        """Both anchors give the song at 32 kHz (pyclarity's resample, as the recipe's enhance
        writes it): the input is the reference here, so `oracle` equals `unprocessed`."""
        from clarity.utils.signal_processing import resample

        song = recipe_song(item).astype(np.float64)
        return {"enhanced": Audio(resample(song.T, SONG_RATE, ENHANCED_RATE).T, ENHANCED_RATE)}

    def expected(self, item: Item, metrics: list[str]) -> list[tuple[str, str, str]]:
        return [(m, ear, "") for m in metrics for ear in EARS]

    def score_valid(self, item, outputs, listener, metrics, problems, ctx) -> list[Score]:
        if "enhanced" in problems:
            return [Score("haaqi", None, INVALID, problems["enhanced"], ear) for ear in EARS]
        try:
            return scene_scores(item, outputs["enhanced"], listener, ctx)
        except SuiteError as exc:
            return [Score("haaqi", None, INVALID, str(exc), ear) for ear in EARS]
