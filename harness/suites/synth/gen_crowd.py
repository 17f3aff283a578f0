"""The crowd-enhancement generator (presets: default, 2013, massive)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from harness.audio import resample_samples
from harness.errors import SuiteError
from harness.suites.synth import degrade as dg
from harness.suites.synth import music, speech
from harness.suites.synth.generators import (
    MUSIC_RATE,
    SPEECH_RATE,
    Generator,
    Writer,
    _r,
    cycled,
    device_chain,
    effective_band,
    headroom,
    item_rng,
)
from harness.suites.synth.tools import require
from harness.suites.types import Item

# ------------------------------------------------------------------ crowd-enhancement
PRESET_2013 = [
    # (device, interfering voice or None, clip fraction)
    (dg.Device("X1", MUSIC_RATE, None, 8000.0, order=8), "slt", None),
    (dg.Device("X2", MUSIC_RATE, 500.0, None, order=8), "hts_slt", None),
    (dg.Device("X3", MUSIC_RATE, 500.0, 11500.0, order=8), None, 0.3),
]


def _random_device(rng: np.random.Generator, k: int, source_rate: int) -> dg.Device:
    rate = int(rng.choice(dg.DEVICE_RATES))
    nyq = 0.45 * min(rate, source_rate)
    low = float(rng.uniform(60, 600)) if rng.random() < 0.8 else None
    high = float(rng.uniform(min(2500.0, nyq * 0.6), nyq)) if rng.random() < 0.8 else None
    clip = float(rng.uniform(0.3, 0.7)) if rng.random() < 0.3 else None
    return dg.Device(f"device{k:03d}", rate, low and _r(low, 1), high and _r(high, 1),
                     int(rng.choice([2, 4, 6])), _r(rng.uniform(-10.0, 6.0), 2), clip and _r(clip, 3))


def _source(kind: str, rng: np.random.Generator, seconds: float, opts: dict) -> tuple[np.ndarray, int, dict]:
    if kind == "music":
        arr = music.arrangement(rng, seconds)
        x = sum(music.render(arr, seconds, MUSIC_RATE, opts.get("soundfont")).values()).mean(axis=0)
        return x, MUSIC_RATE, {"arrangement": arr.to_json()}
    voice = str(rng.choice(["slt", "rms", "awb", "kal16"]))
    x, texts = speech.talk(voice, rng, seconds, SPEECH_RATE)
    return x, SPEECH_RATE, {"voice": voice, "texts": texts}


def _prior_speech(rng: np.random.Generator, seconds: float, rate: int, voices: list[str]) -> np.ndarray:
    parts = [speech.talk(v, rng, seconds / len(voices), SPEECH_RATE)[0] for v in voices]
    return resample_samples(np.concatenate(parts), SPEECH_RATE, rate)


def make_crowd(root: Path, items: int, seconds: float, seed: int, opts: dict,
               tick: Callable[[], None]) -> tuple[list[Item], dict]:
    preset = str(opts.get("preset", "default"))
    if preset == "massive":
        return make_crowd_massive(root, items, seconds, seed, opts, tick)
    if preset not in ("default", "2013"):
        raise SuiteError(f"unknown crowd-enhancement preset {preset!r} (default, 2013, massive)")
    require(["flite", "text2wave", "fluidsynth"], "crowd-enhancement")
    recordings = int(opts.get("recordings", 6))
    max_offset = float(opts.get("max_offset_s", 0.5)) if preset == "default" else 0.0
    level = float(opts.get("level_lufs", -23.0))
    w = Writer(root)
    out = []
    for i in range(items):
        iid = f"scene{i:04d}"
        rng = item_rng(seed, f"crowd-enhancement/{preset}", i)
        kind = "music" if preset == "2013" else str(
            opts.get("source", cycled(["music", "speech"], i, seed, "src")))
        margin = max_offset + 0.02
        src, rate, src_meta = _source(kind, rng, seconds + 2 * margin, opts)
        src = dg.to_loudness(src, rate, level)
        m = int(round(margin * rate))
        n = int(round(seconds * rate))
        refs = {"source": w(f"{iid}/source", src[m: m + n], rate)}
        if preset == "2013":
            chain = PRESET_2013
        else:
            chain = []
            for k in range(recordings):
                dev = _random_device(rng, k, rate)
                voice = str(rng.choice(speech.VOICES)) if rng.random() < 0.7 else None
                chain.append((dev, voice, dev.clip_fraction))
        inputs, recs = {}, []
        for k, (dev, voice, clip) in enumerate(chain):
            role = f"rec{k:03d}"
            # offsets on a 20 ms grid: a whole number of samples at every device rate
            steps = round(max_offset / 0.02)
            off_steps = int(rng.integers(-steps, steps + 1)) if steps else 0
            if k == 0:  # rec000 starts at source time 0: its clock is the scene's clock
                off_steps = 0
            offset_s = off_steps * 0.02
            a = m + int(round(offset_s * rate))
            target_img = device_chain(dev, src[a: a + n], rate)
            rec_meta: dict[str, Any] = {"role": role, "device": dev.to_json(),
                                        "band_hz_effective": list(effective_band(dev, rate)),
                                        "offset_s": _r(offset_s, 4),
                                        "offset_samples": int(round(offset_s * dev.rate)),
                                        "rate": dev.rate}
            mix, interf_img = target_img, None
            if voice is not None:
                sir = 0.0 if preset == "2013" else _r(rng.uniform(-5.0, 10.0), 2)
                talker, texts = speech.talk(voice, rng, seconds, SPEECH_RATE)
                talker = resample_samples(talker, SPEECH_RATE, rate)[:n]
                interf_img = dg.scale_to_snr(target_img, device_chain(dev, talker, rate), sir)
                mix = target_img + interf_img
                rec_meta.update({"interferer_voice": voice, "interferer_texts": texts, "sir_db": sir})
            threshold = None if clip is None else float(clip * np.max(np.abs(mix)))
            rec = dg.hard_clip(mix, threshold) if threshold is not None else mix
            g = headroom(float(np.max(np.abs(rec))))
            inputs[role] = w(f"{iid}/{role}", rec * g, dev.rate)
            comp = {"target_image": w(f"{iid}/components/{role}_target", target_img * g, dev.rate).path}
            if interf_img is not None:
                comp["interference_image"] = w(
                    f"{iid}/components/{role}_interference", interf_img * g, dev.rate).path
            rec_meta.update({"clip_threshold": None if threshold is None else _r(threshold * g, 6),
                             "headroom_gain_db": _r(20 * np.log10(g)), "components": comp})
            recs.append(rec_meta)
        if preset == "2013" or opts.get("priors"):
            prior_rng = np.random.default_rng(np.random.SeedSequence([seed, 2013, i]))
            if kind == "music":  # a "studio take": same style, key, tempo, instruments, new melody
                arr = music.arrangement(prior_rng, 30.0, src_meta["arrangement"]["style"])
                prior = sum(music.render(arr, 30.0, MUSIC_RATE, opts.get("soundfont")).values()).mean(axis=0)
            else:
                prior = _prior_speech(prior_rng, 30.0, rate, ["rms", "awb", "kal16"])
            inputs["prior_source"] = w(f"{iid}/prior_source", dg.to_loudness(prior, rate, level), rate)
            interf = _prior_speech(prior_rng, 20.0, rate, ["slt", "hts_slt", "rms", "awb"])
            inputs["prior_interference"] = w(
                f"{iid}/prior_interference", dg.to_loudness(interf, rate, level), rate)
        out.append(Item(iid, "crowd-enhancement", root, inputs, refs, {
            "preset": preset, "source_kind": kind, **src_meta, "level_lufs": level,
            "recordings": recs,
            "offsets": "recording sample j (at its own rate) is source time j / rate + offset_s",
        }))
        tick()
    return out, {"preset": preset, "recordings": len(PRESET_2013) if preset == "2013" else recordings,
                 "max_offset_s": max_offset, "level_lufs": level}


def make_crowd_massive(root: Path, items: int, seconds: float, seed: int, opts: dict,
                       tick: Callable[[], None]) -> tuple[list[Item], dict]:
    """The 2016 experiment: a 50 x 50 m room, 30 sources (the target talker at the centre, 20 dB
    louder, 19 other talkers and 10 noises elsewhere), L sensors at random positions, each the
    instantaneous mixture of the sources with gain 1 / max(distance, 1 m)."""
    require(["flite", "text2wave"], "crowd-enhancement massive")
    sensors = int(opts.get("sensors", 1000))
    size = float(opts.get("room_m", 50.0))
    boost = float(opts.get("target_boost_db", 20.0))
    talkers, noises = int(opts.get("talkers", 20)), int(opts.get("noises", 10))
    rate = SPEECH_RATE
    n = int(round(seconds * rate))
    w = Writer(root)
    out = []
    voices = list(speech.VOICES)
    for i in range(items):
        iid = f"massive{i:04d}"
        rng = item_rng(seed, "crowd-enhancement/massive", i)
        srcs, kinds = [], []
        for k in range(talkers):
            x, _ = speech.talk(voices[k % len(voices)], rng, seconds, rate)
            srcs.append(x / dg.rms(x))
            kinds.append(f"talker:{voices[k % len(voices)]}")
        for k in range(noises):
            kind = ["white", "pink", "brown", "hum50", "hum60"][k % 5]
            srcs.append(dg.make_noise(kind, n, rate, rng))
            kinds.append(f"noise:{kind}")
        srcs[0] = srcs[0] * 10 ** (boost / 20)
        pos = rng.uniform(0, size, size=(len(srcs), 2))
        pos[0] = [size / 2, size / 2]
        mics = rng.uniform(0, size, size=(sensors, 2))
        dist = np.linalg.norm(mics[:, None, :] - pos[None, :, :], axis=2)
        gains = 1.0 / np.maximum(dist, 1.0)
        S = np.stack(srcs)
        peak = 0.0
        for a in range(0, sensors, 64):
            peak = max(peak, float(np.max(np.abs(gains[a: a + 64] @ S))))
        scale = 0.9 / max(peak, float(np.max(np.abs(S))))  # sensors and stored sources fit
        S_q = dg.quantise(S * scale)  # the stored sources; sensors are mixed from exactly these
        refs = {"source": w(f"{iid}/sources/src00", S_q[0], rate)}
        inputs = {}
        for k in range(1, len(srcs)):
            w(f"{iid}/sources/src{k:02d}", S_q[k], rate)
        for a in range(0, sensors, 64):
            block = gains[a: a + 64] @ S_q
            for j, x in enumerate(block):
                inputs[f"rec{a + j:04d}"] = w(f"{iid}/rec{a + j:04d}", x, rate)
        geometry = {"sources_m": pos.tolist(), "sensors_m": mics.tolist(),
                    "source_kinds": kinds, "gains": gains.tolist(),
                    "note": "rec_l = sum_k gains[l][k] * sources/src{k}; src00 is the target"}
        gpath = root / iid / "geometry.json"
        gpath.write_text(json.dumps(geometry))
        target_sir = 10 * np.log10(gains[:, 0] ** 2 * np.sum(S_q[0] ** 2)
                                   / ((gains[:, 1:] ** 2) @ np.sum(S_q[1:] ** 2, axis=1)))
        if opts.get("priors"):  # a generic speech prior (2016: bases from 20 other talkers)
            prior_rng = np.random.default_rng(np.random.SeedSequence([seed, 2016, i]))
            prior = _prior_speech(prior_rng, 30.0, rate, voices)
            inputs["prior_source"] = w(f"{iid}/prior_source", dg.to_loudness(prior, rate, -23.0), rate)
        out.append(Item(iid, "crowd-enhancement", root, inputs, refs, {
            "preset": "massive", "source_kind": "speech", "sensors": sensors, "room_m": size,
            "talkers": talkers, "noises": noises, "target_boost_db": boost,
            "scale": _r(scale, 8), "geometry": f"{iid}/geometry.json",
            "sensor_sir_db": {"min": _r(target_sir.min(), 2), "median": _r(np.median(target_sir), 2),
                              "max": _r(target_sir.max(), 2)},
            "recordings": [{"role": r, "offset_s": 0.0, "offset_samples": 0, "rate": rate}
                           for r in inputs if r.startswith("rec")],
        }))
        tick()
    return out, {"preset": "massive", "sensors": sensors, "room_m": size, "talkers": talkers,
                 "noises": noises, "target_boost_db": boost}




CROWD = Generator(
    "crowd-enhancement", "crowd-enhancement", make_crowd, 10.0, 5,
    "one source captured by many degraded, unsynchronised devices (presets: default, 2013, massive)",
    ("preset", "recordings", "max_offset_s", "source", "priors", "level_lufs", "soundfont",
     "sensors", "room_m", "talkers", "noises", "target_boost_db"),
    presets={"2013": (15.0, 5), "massive": (10.0, 1)},
    limits={"preset": ("default", "2013", "massive"), "recordings": "integer [1, 64]",
            "max_offset_s": "[0, 10]", "source": ("music", "speech"), "level_lufs": "[-60, -10]",
            "sensors": "integer [1, 10000]", "room_m": "[1, 1000]", "talkers": "integer [1, 1000]",
            "noises": "integer [0, 1000]", "target_boost_db": "[-40, 60]"},
)
