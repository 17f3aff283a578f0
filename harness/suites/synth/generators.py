"""Suite generators (`harness suites make NAME --items N --seconds S --seed K --out DIR`).

Every generator is deterministic: item i draws from a random stream seeded by (seed, suite name,
i), so the same arguments give the same bytes and a bigger suite extends a smaller one. Each
item's metadata records every generation parameter; files that make the asked quantities
measurable (noise-free images, interference images, room impulse responses) are written under
`components/` beside the inputs and references.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import interpolate, signal

from harness.audio import Audio, write
from harness.errors import SuiteError
from harness.suites.synth import degrade as dg
from harness.suites.synth import effects, music, speech
from harness.suites.synth.tools import require
from harness.suites.types import FileRef, Item, Suite, file_ref, write_manifest

SPEECH_RATE = 16000
MUSIC_RATE = 44100


# ------------------------------------------------------------------ plumbing
class Writer:
    """Writes audio into a suite folder and returns manifest entries for it."""

    def __init__(self, root: Path, subtype: str = "PCM_24", suffix: str = ".flac"):
        self.root, self.subtype, self.suffix = root, subtype, suffix

    def __call__(self, rel: str, x: np.ndarray, rate: int) -> FileRef:
        x = np.asarray(x, dtype=np.float64)
        peak = float(np.max(np.abs(x))) if x.size else 0.0
        if self.subtype != "FLOAT" and peak >= 1.0:
            raise RuntimeError(f"{rel}: peak {peak:.3f} would clip in {self.subtype}")
        if self.subtype == "PCM_24":
            x = dg.quantise(x, 24)
        path = write(self.root / (rel + self.suffix), Audio(x, rate), self.subtype)
        return file_ref(self.root, path)



def item_rng(seed: int, name: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(name.encode()), index]))


def cycled(levels: list, index: int, seed: int, factor: str):
    """Level of a factor for item `index`: each pass over the levels is a seeded shuffle, so
    every level appears once per pass (a balanced grid whatever the number of items)."""
    cycle, pos = divmod(index, len(levels))
    rng = np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(factor.encode()), cycle]))
    return levels[int(rng.permutation(len(levels))[pos])]


def _r(x: float, digits: int = 4) -> float:
    return round(float(x), digits)


def headroom(peak: float, limit: float = 0.95) -> float:
    """Gain that brings a peak under `limit` (1 when it already is)."""
    return 1.0 if peak <= limit else limit / peak


def effective_band(device: dg.Device, source_rate: int) -> tuple[float | None, float | None]:
    """The device's band edges that lie inside the signal's band (edges above 0.45 x the lower of
    the source and device rates are open: that band is limited by the rates themselves)."""
    nyq = 0.45 * min(source_rate, device.rate)
    high = device.high_hz if device.high_hz is not None and device.high_hz < nyq else None
    low = device.low_hz if device.low_hz is not None and device.low_hz < nyq else None
    return low, high


def device_chain(device: dg.Device, x: np.ndarray, rate: int) -> np.ndarray:
    low, high = effective_band(device, rate)
    return dg.Device(device.name, device.rate, low, high, device.order, device.gain_db).linear(x, rate)


# ------------------------------------------------------------------ speech-enhancement
SE_SNRS = [-5.0, 0.0, 5.0, 10.0, 15.0, 20.0]
SE_RT60S = [0.0, 0.3, 0.6, 0.9]
SE_DEVICES = ["studio", "headset", "laptop", "phone", "camcorder", "handheld-clipping"]
SE_NOISES = list(dg.NOISE_KINDS)


def make_speech_enhancement(root: Path, items: int, seconds: float, seed: int, opts: dict,
                            tick: Callable[[], None]) -> tuple[list[Item], dict]:
    snrs = [float(s) for s in opts.get("snrs", SE_SNRS)]
    rt60s = [float(s) for s in opts.get("rt60s", SE_RT60S)]
    devices = list(opts.get("devices", SE_DEVICES))
    noises = list(opts.get("noises", SE_NOISES))
    voices = list(opts.get("voices", speech.VOICES))
    level = float(opts.get("level_lufs", -30.0))
    for d in devices:
        if d not in dg.DEVICES:
            raise SuiteError(f"unknown device {d!r} (known: {', '.join(dg.DEVICES)})")
    require(speech.programs_for(voices + ["slt", "rms", "awb", "kal16"]), "speech-enhancement")
    w = Writer(root)
    out = []
    for i in range(items):
        iid = f"se{i:04d}"
        rng = item_rng(seed, "speech-enhancement", i)
        voice = cycled(voices, i, seed, "voice")
        snr = cycled(snrs, i, seed, "snr")
        rt60 = cycled(rt60s, i, seed, "rt60")
        device = dg.DEVICES[cycled(devices, i, seed, "device")]
        kind = cycled(noises, i, seed, "noise")
        clean, texts = speech.talk(voice, rng, seconds, SPEECH_RATE)
        clean = dg.to_loudness(clean, SPEECH_RATE, level)
        room: dict[str, Any] = {"rt60_s": rt60}
        if rt60 > 0:
            h, info = dg.shoebox_rir(rt60, SPEECH_RATE, rng)
            room.update(info)
            wet = dg.reverberate(clean, h)
        else:
            h, wet = None, clean
        others = [v for v in ("slt", "rms", "awb", "kal16") if v != voice]
        babble = speech.babble(rng, seconds, SPEECH_RATE, 4, tuple(others)) if kind == "babble" else None
        noise = dg.make_noise(kind, len(clean), SPEECH_RATE, rng, babble)
        speech_img = device_chain(device, wet, SPEECH_RATE)
        noise_img = dg.scale_to_snr(speech_img, device_chain(device, noise, SPEECH_RATE), snr)
        mix = speech_img + noise_img
        threshold = device.clip_threshold(mix)
        noisy = dg.hard_clip(mix, threshold) if threshold is not None else mix
        g = headroom(float(np.max(np.abs(noisy))))
        refs = {"clean": w(f"clean/{iid}", clean, SPEECH_RATE)}
        inputs = {"input": w(f"input/{iid}", noisy * g, device.rate)}
        comp = {
            "speech_image": w(f"components/{iid}/speech_image", speech_img * g, device.rate).path,
            "noise_image": w(f"components/{iid}/noise_image", noise_img * g, device.rate).path,
        }
        if h is not None:
            comp["rir"] = w(f"components/{iid}/rir", h, SPEECH_RATE).path
        low, high = effective_band(device, SPEECH_RATE)
        out.append(Item(iid, "speech-enhancement", root, inputs, refs, {
            "voice": voice, "texts": texts, "level_lufs": level, "snr_db": snr,
            "snr_defined": "speech image vs noise image at the device output, before clipping",
            "noise": kind, "room": room,
            "device": {**device.to_json(), "band_hz_effective": [low, high],
                       "clip_threshold": None if threshold is None else _r(threshold * g, 6)},
            "headroom_gain_db": _r(20 * np.log10(g)), "components": comp,
        }))
        tick()
    return out, {"snrs": snrs, "rt60s": rt60s, "devices": devices, "noises": noises,
                 "voices": voices, "level_lufs": level}


# ------------------------------------------------------------------ bandwidth-extension
BWE_RATIOS = [2, 4, 6]


def spline_upsample(low: np.ndarray, ratio: int, n: int) -> np.ndarray:
    """Cubic-spline interpolation of the low-rate samples onto the high-rate grid (n samples);
    it passes through every low-rate sample: y[::ratio] == low."""
    knots = np.arange(len(low)) * ratio
    spline = interpolate.make_interp_spline(knots, low, k=3)
    return spline(np.arange(n))


def make_bandwidth_extension(root: Path, items: int, seconds: float, seed: int, opts: dict,
                             tick: Callable[[], None]) -> tuple[list[Item], dict]:
    ratios = [int(r) for r in opts.get("ratios", BWE_RATIOS)]
    voices = list(opts.get("voices", speech.VOICES))
    level = float(opts.get("level_lufs", -26.0))
    require(speech.programs_for(voices), "bandwidth-extension")
    block = int(np.lcm.reduce(ratios))
    n = int(round(seconds * SPEECH_RATE)) // block * block
    w = Writer(root)
    out = []
    for i in range(items):
        iid = f"bwe{i:04d}"
        rng = item_rng(seed, "bandwidth-extension", i)
        voice = cycled(voices, i, seed, "voice")
        ratio = cycled(ratios, i, seed, "ratio")
        clean, texts = speech.talk(voice, rng, n / SPEECH_RATE, SPEECH_RATE)
        clean = dg.to_loudness(clean[:n], SPEECH_RATE, level)
        # scipy's decimate: order-8 Chebyshev type I (0.05 dB ripple, edge 0.8 x the new
        # Nyquist), applied forwards and backwards (zero phase), then every ratio-th sample
        low = signal.decimate(clean, ratio, n=8, ftype="iir", zero_phase=True)
        upsampled = spline_upsample(low, ratio, n)
        g = headroom(float(np.max(np.abs(upsampled))))
        refs = {"clean": w(f"clean/{iid}", clean, SPEECH_RATE)}
        inputs = {"input": w(f"input/{iid}", upsampled * g, SPEECH_RATE)}
        out.append(Item(iid, "bandwidth-extension", root, inputs, refs, {
            "voice": voice, "texts": texts, "level_lufs": level, "ratio": ratio,
            "low_rate_hz": _r(SPEECH_RATE / ratio, 3),
            "anti_alias": "scipy.signal.decimate: Chebyshev I order 8, 0.05 dB, zero phase",
            "filter_edge_hz": _r(0.8 * SPEECH_RATE / 2 / ratio, 2),
            "input": "cubic-spline interpolation of the low-rate signal at 16 kHz; input[::ratio] "
                     "is the decimated signal",
            "headroom_gain_db": _r(20 * np.log10(g)),
        }))
        tick()
    return out, {"ratios": ratios, "voices": voices, "level_lufs": level}


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
        sp = dg.resample(talk16, SPEECH_RATE, MUSIC_RATE)[:n]
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
    return dg.resample(np.concatenate(parts), SPEECH_RATE, rate)


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
                talker = dg.resample(talker, SPEECH_RATE, rate)[:n]
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


# ------------------------------------------------------------------ registry
@dataclass(frozen=True)
class Generator:
    name: str
    task: str
    make: Callable[..., tuple[list[Item], dict]]
    seconds: float
    items: int
    description: str
    options: tuple[str, ...]  # keys accepted by -O KEY=VALUE


GENERATORS = {
    g.name: g for g in (
        Generator("speech-enhancement", "speech-enhancement", make_speech_enhancement, 4.0, 24,
                  "flite/festival speech at 16 kHz; room (RT60), device and noise (SNR) on a grid",
                  ("snrs", "rt60s", "devices", "noises", "voices", "level_lufs")),
        Generator("bandwidth-extension", "bandwidth-extension", make_bandwidth_extension, 4.0, 12,
                  "16 kHz speech; inputs decimated 2x/4x/6x (Chebyshev order 8) and spline-upsampled",
                  ("ratios", "voices", "level_lufs")),
        Generator("music-remix", "music-remix", make_music_remix, 10.0, 5,
                  "multi-stem fluidsynth songs, stereo 44.1 kHz stems and mixture (CAD1-like)",
                  ("styles", "level_lufs", "soundfont")),
        Generator("music-rebalance", "music-rebalance", make_music_rebalance, 10.0, 5,
                  "music-remix songs plus a requested gain per stem (ICASSP 2024 rebalancing)",
                  ("gain_range_db", "styles", "level_lufs", "soundfont")),
        Generator("crowd-enhancement", "crowd-enhancement", make_crowd, 10.0, 5,
                  "one source captured by many degraded, unsynchronised devices "
                  "(presets: default, 2013, massive)",
                  ("preset", "recordings", "max_offset_s", "source", "priors", "level_lufs", "soundfont",
                   "sensors", "room_m", "talkers", "noises", "target_boost_db")),
        Generator("cocktail-fork", "cocktail-fork", make_cocktail_fork, 10.0, 10,
                  "mono 44.1 kHz speech/music/sfx stems at -17/-24/-21 LUFS (+/-2, +/-1 LU)",
                  ("soundfont",)),
    )
}

PRESET_DEFAULTS = {  # per crowd preset: (seconds, items)
    "2013": (15.0, 5),
    "massive": (10.0, 1),
}


def make_suite(name: str, out: Path, items: int | None = None, seconds: float | None = None,
               seed: int = 0, options: dict | None = None,
               progress: Callable[[int], Callable[[], None]] | None = None) -> Suite:
    """Generate suite `name` into folder `out` and write its manifest."""
    if name not in GENERATORS:
        raise SuiteError(f"unknown generator {name!r} (known: {', '.join(GENERATORS)})")
    gen = GENERATORS[name]
    options = dict(options or {})
    unknown = sorted(set(options) - set(gen.options) - {"suite_name"})
    if unknown:
        raise SuiteError(f"{name}: unknown option(s) {', '.join(unknown)} "
                         f"(known: {', '.join(gen.options)}, suite_name)")
    d_seconds, d_items = PRESET_DEFAULTS.get(str(options.get("preset")), (gen.seconds, gen.items))
    items = d_items if items is None else items
    seconds = d_seconds if seconds is None else seconds
    if items < 1:
        raise SuiteError("--items must be at least 1")
    if seconds < 1.0:
        raise SuiteError("--seconds must be at least 1 (loudness needs 400 ms blocks)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SuiteError(f"{out}: is a file (--out names a new or empty folder)")
    if out.exists() and any(out.iterdir()):
        raise SuiteError(f"{out}: folder exists and is not empty (choose a new --out)")
    out.mkdir(parents=True, exist_ok=True)
    tick = progress(items) if progress else (lambda: None)
    made, params = gen.make(out, items, seconds, seed, options, tick)
    label = name if "preset" not in options else f"{name}-{options['preset']}"
    suite = Suite(
        name=str(options.get("suite_name", label)), version="1", task=gen.task, root=out,
        items=tuple(made), description=f"{gen.description} ({items} items x {seconds:g} s, seed {seed})",
        generator={"generator": name, "items": items, "seconds": seconds, "seed": seed,
                   "options": {k: v for k, v in options.items() if k != "suite_name"},
                   "parameters": params},
    )
    write_manifest(suite)
    return suite
