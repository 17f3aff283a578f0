"""Generators of the music tasks: music-remix, music-rebalance and cocktail-fork."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from harness.audio import resample_samples
from harness.errors import SuiteError
from harness.suites.synth import degrade as dg
from harness.suites.synth import effects, music, speech
from harness.suites.synth.generators import (
    MUSIC_RATE,
    SPEECH_RATE,
    Generator,
    Writer,
    _r,
    cycled,
    headroom,
    item_rng,
)
from harness.suites.synth.tools import require
from harness.suites.types import FileRef, Item


# ------------------------------------------------------------------ music-remix
def make_music_remix(root: Path, items: int, seconds: float, seed: int, opts: dict,
                     tick: Callable[[], None]) -> tuple[list[Item], dict]:
    require(["fluidsynth"], "music-remix")
    level = float(opts.get("level_lufs", -23.0))
    styles = list(opts.get("styles", music.STYLES))
    w = Writer(root)
    out = []
    for i in range(items):
        iid = f"song{i:04d}"
        rng = item_rng(seed, "music-remix", i)
        arr = music.arrangement(rng, seconds, cycled(styles, i, seed, "style"))
        stems = music.render(arr, seconds, MUSIC_RATE, opts.get("soundfont"))
        mix = sum(stems.values())
        gain = 10 ** ((level - dg.loudness_lufs(mix, MUSIC_RATE)) / 20)
        gain *= headroom(float(np.max(np.abs(mix))) * gain, 0.98)
        q = {s: dg.quantise(x * gain) for s, x in stems.items()}
        refs = {s: w(f"{iid}/{s}", q[s], MUSIC_RATE) for s in music.STEMS}
        inputs = {"mixture": w(f"{iid}/mixture", sum(q.values()), MUSIC_RATE)}
        out.append(Item(iid, "music-remix", root, inputs, refs, {
            "arrangement": arr.to_json(), "level_lufs": level, "seconds": seconds,
            "mixture": "exact sum of the stored stems (24-bit grid)",
        }))
        tick()
    return out, {"styles": styles, "level_lufs": level}


def make_music_rebalance(root: Path, items: int, seconds: float, seed: int, opts: dict,
                         tick: Callable[[], None]) -> tuple[list[Item], dict]:
    """music-remix songs whose scenes also request a balance: a gain per stem, drawn uniformly
    in +/- gain_range_db (rounded to 0.5 dB), as the ICASSP 2024 rebalancing task's scenes."""
    span = float(opts.get("gain_range_db", 10.0))
    if not 0 <= span <= 40:
        raise SuiteError(f"music-rebalance: gain_range_db must be within 0..40 dB, got {span:g}")
    songs, info = make_music_remix(root, items, seconds, seed,
                                   {k: v for k, v in opts.items() if k != "gain_range_db"}, tick)
    out = []
    for i, it in enumerate(songs):
        rng = item_rng(seed, "music-rebalance", i)
        gains = {s: float(np.round(rng.uniform(-span, span) * 2) / 2) for s in music.STEMS}
        out.append(replace(it, task="music-rebalance",
                                       metadata={**it.metadata, "gains_db": gains}))
    return out, {**info, "gain_range_db": span}


# ------------------------------------------------------------------ classical-rebalance
CLASSICAL_PARTS = {  # harmonic role -> (arrangement stem it is written as, instruments that play it)
    "melody": ("vocals", ("Violin", "Flute", "Oboe", "Clarinet", "Sax")),
    "harmony": ("other", ("Viola", "Clarinet", "Violin")),
    "bass": ("bass", ("Cello", "Bassoon")),
}


def make_classical_rebalance(root: Path, items: int, seconds: float, seed: int, opts: dict,
                             tick: Callable[[], None]) -> tuple[list[Item], dict]:
    """Chamber pieces of 2 or 3 instruments (melody and bass, plus harmony in every other piece),
    each instrument one stem `source_k` as CAD2 Task 2 names them, the instruments drawn among
    the recipe's (Violin, Viola, Cello, Flute, Oboe, Clarinet, Bassoon, Sax); a gain per source
    drawn uniformly in +/- gain_range_db (0.5 dB steps)."""
    from harness.tasks.classical_rebalance import INSTRUMENTS

    require(["fluidsynth"], "classical-rebalance")
    span = float(opts.get("gain_range_db", 10.0))
    if not 0 <= span <= 40:
        raise SuiteError(f"classical-rebalance: gain_range_db must be within 0..40 dB, got {span:g}")
    level = float(opts.get("level_lufs", -23.0))
    w = Writer(root)
    out = []
    for i in range(items):
        iid = f"S{50001 + i}"  # the recipe's valid-scene numbering (its output folder follows it)
        rng = item_rng(seed, "classical-rebalance", i)
        style = cycled(["chamber", "chamber-minor"], i, seed, "style")
        roles = ["melody", "bass"] + (["harmony"] if cycled([0, 1], i, seed, "trio") else [])
        players = {r: str(rng.choice(CLASSICAL_PARTS[r][1])) for r in roles}
        arr = music.arrangement(rng, seconds, style)
        arr = replace(arr, programs={CLASSICAL_PARTS[r][0]: INSTRUMENTS[players[r]] for r in roles})
        parts = music.render(arr, seconds, MUSIC_RATE, opts.get("soundfont"),
                             stems=tuple(CLASSICAL_PARTS[r][0] for r in roles))
        mix = sum(parts.values())
        gain = 10 ** ((level - dg.loudness_lufs(mix, MUSIC_RATE)) / 20)
        gain *= headroom(float(np.max(np.abs(mix))) * gain, 0.98)
        names = {r: f"source_{k}" for k, r in enumerate(roles, 1)}
        q = {names[r]: dg.quantise(parts[CLASSICAL_PARTS[r][0]] * gain) for r in roles}
        refs = {s: w(f"{iid}/{s}", x, MUSIC_RATE) for s, x in q.items()}
        inputs = {"mixture": w(f"{iid}/mixture", sum(q.values()), MUSIC_RATE)}
        gains = {s: float(np.round(rng.uniform(-span, span) * 2) / 2) for s in q}
        out.append(Item(iid, "classical-rebalance", root, inputs, refs, {
            "gains_db": gains,
            "instruments": {names[r]: f"{players[r]}_{k}" for k, r in enumerate(roles, 1)},
            "roles": {names[r]: r for r in roles}, "arrangement": arr.to_json(),
            "level_lufs": level, "seconds": seconds,
            "mixture": "exact sum of the stored sources (24-bit grid)",
        }))
        tick()
    return out, {"gain_range_db": span, "level_lufs": level}


# ------------------------------------------------------------------ car-music (CAD1 Task 2)
CAR_HEAD_ROTATIONS = (-20, 0, 20)  # degrees; each has its own car and anechoic BRIRs
CAR_SPEAKER_DEG = {"ls": -30.0, "rs": 30.0}
CAR_NOISE_DEG = {"000": 0.0, "m90": -90.0, "p90": 90.0}


def _brir(rng: np.random.Generator, azimuth: float, ear: str, car: bool) -> np.ndarray:
    """A synthetic BRIR at 44.1 kHz (float32): the direct path with a spherical head's delay and
    level difference (Woodworth's formula, a 8.75 cm head), plus, in the car, a 60 ms
    exponentially decaying diffuse tail 12 dB below it. A stand-in for the eBrird BRIRs the
    challenge uses (not redistributable here); the protocol reads whatever the suite gives."""
    theta = np.deg2rad(azimuth) * (1.0 if ear == "right" else -1.0)  # towards this ear: > 0
    itd = 0.0875 / 343.0 * (theta + np.sin(theta)) / 2
    delay = 40 + 44100 * (0.00066 / 2 - itd)  # samples: the nearer ear hears first
    n = np.arange(2048 if car else 256)
    direct = np.sinc(n - delay) * np.hanning(len(n) + 2)[1:-1] ** 0.25
    h = direct * 10 ** (3.0 * np.sin(theta) / 20)
    if car:
        tail = rng.standard_normal(len(n)) * np.exp(-6.9 * n / (0.06 * 44100))
        h = h + 0.25 * tail * (n > delay + 20)
    return (0.5 * h / np.max(np.abs(h))).astype(np.float32)


def make_car_music(root: Path, items: int, seconds: float, seed: int, opts: dict,
                   tick: Callable[[], None]) -> tuple[list[Item], dict]:
    """Songs for a listener in a car (CAD1 Task 2): a fluidsynth arrangement (stereo 44.1 kHz),
    the car's noise parameters from pyclarity's CarNoiseParametersGenerator at a speed drawn in
    50-120 km/h, an SNR drawn in snr_min..snr_max dB, and a head rotation whose synthetic BRIRs
    (car and anechoic loudspeakers, anechoic noise directions) are the item's references."""
    from clarity.utils.car_noise_simulator.carnoise_parameters_generator import (
        CarNoiseParametersGenerator,
    )
    from scipy.io import wavfile

    from harness.suites.types import file_ref
    from harness.tasks.car_music import NOISE_BRIRS

    require(["fluidsynth"], "car-music")
    lo, hi = float(opts.get("snr_min", 2.0)), float(opts.get("snr_max", 12.0))
    if not -20 <= lo <= hi <= 40:
        raise SuiteError(f"car-music: need -20 <= snr_min <= snr_max <= 40 dB, got {lo:g}, {hi:g}")
    level = float(opts.get("level_lufs", -20.0))
    w = Writer(root)
    brirs: dict[tuple[int, str], FileRef] = {}
    rng_brir = np.random.default_rng([seed, 7])

    def brir_file(hr: int | None, name: str, azimuth: float, ear: str, car: bool):
        key = (hr if hr is not None else 999, name)
        if key not in brirs:
            room = "Car" if car else "Anechoic"
            path = root / "eBrird" / room / "audio" / f"{name}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            wavfile.write(path, MUSIC_RATE, _brir(rng_brir, azimuth, ear, car))  # IEEE float, no PEAK chunk
            brirs[key] = file_ref(root, path)
        return brirs[key]

    out = []
    for i in range(items):
        iid = f"S{1001 + i}"
        rng = item_rng(seed, "car-music", i)
        arr = music.arrangement(rng, seconds)
        mix = sum(music.render(arr, seconds, MUSIC_RATE, opts.get("soundfont")).values())
        gain = 10 ** ((level - dg.loudness_lufs(mix, MUSIC_RATE)) / 20)
        gain *= headroom(float(np.max(np.abs(mix))) * gain, 0.98)
        song = w(f"{iid}/song", mix * gain, MUSIC_RATE)
        hr = int(CAR_HEAD_ROTATIONS[int(rng.integers(len(CAR_HEAD_ROTATIONS)))])
        refs = {"music": song}
        for room, car in (("car", True), ("anechoic", False)):
            for sp, deg in CAR_SPEAKER_DEG.items():
                for ear in ("left", "right"):
                    name = f"HR{hr:+d}_{'E01' if car else 'E02'}_CH{3 if sp == 'ls' else 4}_{ear.title()}"
                    refs[f"{room}_{sp}_{ear}"] = brir_file(hr, name, deg - hr, ear, car)
        for d, deg in CAR_NOISE_DEG.items():
            for ear in ("left", "right"):
                refs[f"noise_{d}_{ear}"] = brir_file(None, f"{NOISE_BRIRS[d]}_{ear.title()}", deg, ear,
                                                     False)
        speed = _r(float(rng.uniform(50.0, 120.0)), 1)
        state = np.random.get_state()  # the parameter generator draws from numpy's global one
        try:
            np.random.seed(int(rng.integers(2**31)))
            params = CarNoiseParametersGenerator(random_flag=True).gen_parameters(speed)
        finally:
            np.random.set_state(state)
        out.append(Item(iid, "car-music", root, {"music": song}, refs, {
            "song": f"song{i:03d}", "genre": arr.style,
            "hr": hr, "snr": _r(float(rng.uniform(lo, hi)), 2), "speed_kph": speed,
            "car_noise_parameters": json.loads(json.dumps(params)), "split": "valid",
            "arrangement": arr.to_json(), "level_lufs": level, "seconds": seconds,
            "brirs": "synthetic (spherical head, car tail 60 ms); eBrird's in the challenge",
        }))
        tick()
    return out, {"snr_db": [lo, hi], "level_lufs": level}


# ------------------------------------------------------------------ lyric-intelligibility
LYRIC_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
LYRIC_LEAD_S = 0.5  # seconds of the song before and after the scene's segment


def make_lyric_intelligibility(root: Path, items: int, seconds: float, seed: int, opts: dict,
                               tick: Callable[[], None]) -> tuple[list[Item], dict]:
    """Songs whose `vocals` stem is speech (flite voices reading Harvard sentences, so the lyrics
    are known words) over a fluidsynth accompaniment (drums, bass, other), 44.1 kHz stereo, the
    vocals at `vocal_lu` LU against the accompaniment; each scene is the song's middle (the song
    runs 0.5 s longer at each end), its lyrics the sentences sung inside it, its alpha drawn from
    0, 0.25, .., 1 (balanced over the suite)."""
    require(["flite", "fluidsynth"], "lyric-intelligibility")
    level = float(opts.get("level_lufs", -23.0))
    vocal_lu = float(opts.get("vocal_lu", 0.0))
    w = Writer(root, subtype="PCM_16")
    out = []
    total = seconds + 2 * LYRIC_LEAD_S
    n_total, first = int(round(total * MUSIC_RATE)), int(round(LYRIC_LEAD_S * MUSIC_RATE))
    n_seg = int(round(seconds * MUSIC_RATE))
    for i in range(items):
        iid = f"S{50001 + i}"
        rng = item_rng(seed, "lyric-intelligibility", i)
        voice = cycled(["slt", "rms", "awb", "kal16"], i, seed, "voice")
        order = rng.permutation(len(speech.SENTENCES))
        sung, texts, k = [], [], 0
        while k < len(order):
            x = speech.say(voice, speech.SENTENCES[order[k]], SPEECH_RATE)
            k += 1
            used = sum(len(p) for p in sung)
            if used + len(x) > seconds * SPEECH_RATE:
                break
            sung += [x, np.zeros(int(0.2 * SPEECH_RATE))]
            texts.append(speech.SENTENCES[order[k - 1]])
        talk = resample_samples(np.concatenate(sung), SPEECH_RATE, MUSIC_RATE)[:n_seg]
        vocals = np.zeros(n_total)
        vocals[first:first + talk.size] = talk
        arr = music.arrangement(rng, total)
        accomp = music.render(arr, total, MUSIC_RATE, opts.get("soundfont"),
                              stems=("drums", "bass", "other"))
        acc_lufs = dg.loudness_lufs(sum(accomp.values()), MUSIC_RATE)
        vox = np.stack([vocals, vocals])
        vox = dg.to_loudness(vox, MUSIC_RATE, acc_lufs + vocal_lu)
        stems = {"vocals": vox, **accomp}
        mix = sum(stems.values())
        gain = 10 ** ((level - dg.loudness_lufs(mix, MUSIC_RATE)) / 20)
        gain *= headroom(float(np.max(np.abs(mix))) * gain, 0.9)
        q = {s: dg.quantise(x * gain, bits=16) for s, x in stems.items()}
        refs = {s: w(f"{iid}/{s}", q[s], MUSIC_RATE) for s in ("vocals", "drums", "bass", "other")}
        whole = w(f"{iid}/mixture", sum(q.values()), MUSIC_RATE)
        inputs = {"mixture": replace(whole, start=first, frames=n_seg, segment=True)}
        alpha = float(cycled(list(LYRIC_ALPHAS), i, seed, "alpha"))
        out.append(Item(iid, "lyric-intelligibility", root, inputs, refs, {
            "segment": [first, first + n_seg], "alpha": alpha, "alpha_text": str(alpha),
            "text": " ".join(texts), "voice": voice, "arrangement": arr.to_json(),
            "vocal_lu": vocal_lu, "level_lufs": level, "seconds": seconds,
            "mixture": "exact sum of the stored stems (16-bit grid); the input is its segment",
        }))
        tick()
    return out, {"level_lufs": level, "vocal_lu": vocal_lu, "alphas": list(LYRIC_ALPHAS),
                 "lead_s": LYRIC_LEAD_S}


# ------------------------------------------------------------------ cocktail-fork
CF_LEVELS = {"speech": -17.0, "music": -24.0, "sfx": -21.0}
CF_CLASS_SPREAD, CF_CLIP_SPREAD = 2.0, 1.0


def make_cocktail_fork(root: Path, items: int, seconds: float, seed: int, opts: dict,
                       tick: Callable[[], None]) -> tuple[list[Item], dict]:
    require(["flite", "fluidsynth"], "cocktail-fork")
    w = Writer(root, subtype="FLOAT", suffix=".wav")
    out = []
    for i in range(items):
        iid = f"cf{i:04d}"
        rng = item_rng(seed, "cocktail-fork", i)
        voice = cycled(["slt", "rms", "awb", "kal16"], i, seed, "voice")
        talk16, texts = speech.talk(voice, rng, seconds, SPEECH_RATE)
        n = int(round(seconds * MUSIC_RATE))
        sp = resample_samples(talk16, SPEECH_RATE, MUSIC_RATE)[:n]
        arr = music.arrangement(rng, seconds)
        mu = sum(music.render(arr, seconds, MUSIC_RATE, opts.get("soundfont")).values()).mean(axis=0)
        fx, events = effects.effects_track(rng, seconds, MUSIC_RATE)
        targets, stems = {}, {}
        for name, x in (("speech", sp), ("music", mu), ("sfx", fx)):
            class_jit = float(rng.uniform(-CF_CLASS_SPREAD, CF_CLASS_SPREAD))
            clip_jit = float(rng.uniform(-CF_CLIP_SPREAD, CF_CLIP_SPREAD))
            targets[name] = {"nominal_lufs": CF_LEVELS[name], "class_offset_lu": _r(class_jit, 3),
                             "clip_offset_lu": _r(clip_jit, 3),
                             "lufs": _r(CF_LEVELS[name] + class_jit + clip_jit, 3)}
            stems[name] = dg.to_loudness(x, MUSIC_RATE, targets[name]["lufs"]).astype(np.float32)
        mix = sum(s.astype(np.float64) for s in stems.values())
        refs = {s: w(f"{iid}/{s}", stems[s], MUSIC_RATE) for s in stems}
        inputs = {"mixture": w(f"{iid}/mix", mix, MUSIC_RATE)}
        out.append(Item(iid, "cocktail-fork", root, inputs, refs, {
            "voice": voice, "texts": texts, "arrangement": arr.to_json(), "sfx_events": events,
            "loudness": targets,
            "mixture": "sum of the stored float32 stems, stored as float32",
        }))
        tick()
    return out, {"levels_lufs": CF_LEVELS, "class_spread_lu": CF_CLASS_SPREAD,
                 "clip_spread_lu": CF_CLIP_SPREAD}




MUSIC_REMIX = Generator(
    "music-remix", "music-remix", make_music_remix, 10.0, 5,
    "multi-stem fluidsynth songs, stereo 44.1 kHz stems and mixture (CAD1-like)",
    ("styles", "level_lufs", "soundfont"), limits={"level_lufs": "[-60, -10]"},
)
MUSIC_REBALANCE = Generator(
    "music-rebalance", "music-rebalance", make_music_rebalance, 10.0, 5,
    "music-remix songs plus a requested gain per stem (ICASSP 2024 rebalancing)",
    ("gain_range_db", "styles", "level_lufs", "soundfont"), limits={"level_lufs": "[-60, -10]"},
)
CLASSICAL_REBALANCE = Generator(
    "classical-rebalance", "classical-rebalance", make_classical_rebalance, 10.0, 4,
    "chamber duos and trios (CAD2 Task 2's instruments), stereo 44.1 kHz sources, a gain per source",
    ("gain_range_db", "level_lufs", "soundfont"), limits={"level_lufs": "[-60, -10]"},
)
LYRIC_INTELLIGIBILITY = Generator(
    "lyric-intelligibility", "lyric-intelligibility", make_lyric_intelligibility, 8.0, 4,
    "songs with spoken lyrics (flite) over fluidsynth accompaniment, 44.1 kHz stereo stems, a "
    "scene segment and an alpha each (CAD2 Task 1)",
    ("vocal_lu", "level_lufs", "soundfont"), limits={"vocal_lu": "[-40, 40]", "level_lufs": "[-60, -10]"},
)
COCKTAIL_FORK = Generator(
    "cocktail-fork", "cocktail-fork", make_cocktail_fork, 10.0, 10,
    "mono 44.1 kHz speech/music/sfx stems at -17/-24/-21 LUFS (+/-2, +/-1 LU)",
    ("soundfont",),
)
CAR_MUSIC = Generator(
    "car-music", "car-music", make_car_music, 6.0, 4,
    "songs for a hearing-aid listener in a car (CAD1 Task 2): stereo 44.1 kHz, car noise "
    "parameters, an SNR and a head rotation's synthetic BRIRs",
    ("snr_min", "snr_max", "level_lufs", "soundfont"), limits={"level_lufs": "[-60, -10]"},
)
