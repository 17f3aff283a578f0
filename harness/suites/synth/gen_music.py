"""Generators of the music tasks: music-remix, music-rebalance and cocktail-fork."""

from __future__ import annotations

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
from harness.suites.types import Item


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
    ("styles", "level_lufs", "soundfont"),
)
MUSIC_REBALANCE = Generator(
    "music-rebalance", "music-rebalance", make_music_rebalance, 10.0, 5,
    "music-remix songs plus a requested gain per stem (ICASSP 2024 rebalancing)",
    ("gain_range_db", "styles", "level_lufs", "soundfont"),
)
COCKTAIL_FORK = Generator(
    "cocktail-fork", "cocktail-fork", make_cocktail_fork, 10.0, 10,
    "mono 44.1 kHz speech/music/sfx stems at -17/-24/-21 LUFS (+/-2, +/-1 LU)",
    ("soundfont",),
)
