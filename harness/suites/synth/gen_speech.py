"""Generators of the speech tasks: speech-enhancement, bandwidth-extension and speech-restoration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import interpolate, signal

from harness.errors import SuiteError
from harness.suites.synth import degrade as dg
from harness.suites.synth import speech
from harness.suites.synth.generators import (
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

# ------------------------------------------------------------------ speech-enhancement
SE_SNRS = [-5.0, 0.0, 5.0, 10.0, 15.0, 20.0]
SE_RT60S = [0.0, 0.3, 0.6, 0.9]
SE_DEVICES = ["studio", "headset", "laptop", "phone", "camcorder", "handheld-clipping"]
SE_NOISES = list(dg.NOISE_KINDS)


@dataclass(frozen=True)
class Degraded:
    """One pass of the speech degradation chain, with its parts (at the device's rate)."""

    noisy: np.ndarray
    speech_image: np.ndarray  # the (reverberant) speech after the device, before noise
    noise_image: np.ndarray  # the noise after the device, scaled to the SNR
    rir: np.ndarray | None
    room: dict[str, Any]
    threshold: float | None  # the device's clipping threshold, if it clips


def degrade_speech(clean: np.ndarray, rng: np.random.Generator, snr: float, rt60: float,
                   device: dg.Device, kind: str, babble_voices: tuple[str, ...], *,
                   make_rir: Callable[..., tuple[np.ndarray, dict]] = dg.shoebox_rir,
                   sentences: tuple[str, ...] = speech.SENTENCES) -> Degraded:
    """The speech-enhancement degradation chain (the generator's, and the trainer's): clean 16 kHz
    speech -> a shoebox room of the given RT60 (none at 0) -> the device's band-limit and rate ->
    noise of `kind` at `snr` dB (speech image vs noise image at the device output) -> the device's
    clipping. Draws from `rng` in a fixed order, so one seed gives one degradation.
    `make_rir(rt60, rate, rng)` gives the impulse response (default: a fresh shoebox simulation;
    the trainer draws from a bank of simulated rooms); babble talkers say `sentences`."""
    room: dict[str, Any] = {"rt60_s": rt60}
    if rt60 > 0:
        h, info = make_rir(rt60, SPEECH_RATE, rng)
        room.update(info)
        wet = dg.reverberate(clean, h)
    else:
        h, wet = None, clean
    seconds = len(clean) / SPEECH_RATE
    babble = (speech.babble(rng, seconds, SPEECH_RATE, 4, babble_voices, sentences)
              if kind == "babble" else None)
    noise = dg.make_noise(kind, len(clean), SPEECH_RATE, rng, babble)
    speech_img = device_chain(device, wet, SPEECH_RATE)
    noise_img = dg.scale_to_snr(speech_img, device_chain(device, noise, SPEECH_RATE), snr)
    mix = speech_img + noise_img
    threshold = device.clip_threshold(mix)
    noisy = dg.hard_clip(mix, threshold) if threshold is not None else mix
    return Degraded(noisy, speech_img, noise_img, h, room, threshold)


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
        others = tuple(v for v in ("slt", "rms", "awb", "kal16") if v != voice)
        d = degrade_speech(clean, rng, snr, rt60, device, kind, others)
        room, h, speech_img, noise_img, threshold = d.room, d.rir, d.speech_image, d.noise_image, d.threshold
        noisy = d.noisy
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


def music_excerpt(rng: np.random.Generator, seconds: float, rate: int = SPEECH_RATE,
                  font: str | None = None) -> tuple[np.ndarray, dict]:
    """A rendered arrangement (every stem, fluidsynth), summed and down-mixed to mono at `rate`."""
    from harness.suites.synth import music

    arr = music.arrangement(rng, seconds)
    stems = music.render(arr, seconds, music.RATE, font)
    mix = np.mean(sum(stems.values()), axis=0)
    from harness.audio import resample_samples

    return resample_samples(mix, music.RATE, rate)[: int(round(seconds * rate))], arr.to_json()


def make_bandwidth_extension(root: Path, items: int, seconds: float, seed: int, opts: dict,
                             tick: Callable[[], None]) -> tuple[list[Item], dict]:
    ratios = [int(r) for r in opts.get("ratios", BWE_RATIOS)]
    source = str(opts.get("source", "speech"))
    if source not in ("speech", "music"):
        raise SuiteError(f"bandwidth-extension: source must be speech or music, not {source!r}")
    voices = list(opts.get("voices", speech.VOICES))
    level = float(opts.get("level_lufs", -26.0))
    if source == "speech":
        require(speech.programs_for(voices), "bandwidth-extension")
    else:
        require(["fluidsynth"], "bandwidth-extension (music)")
    block = int(np.lcm.reduce(ratios))
    n = int(round(seconds * SPEECH_RATE)) // block * block
    w = Writer(root)
    out = []
    for i in range(items):
        iid = f"bwe{i:04d}"
        rng = item_rng(seed, "bandwidth-extension", i)
        ratio = cycled(ratios, i, seed, "ratio")
        if source == "speech":
            voice = cycled(voices, i, seed, "voice")
            clean, texts = speech.talk(voice, rng, n / SPEECH_RATE, SPEECH_RATE)
            what = {"voice": voice, "texts": texts}
        else:
            clean, arrangement = music_excerpt(rng, n / SPEECH_RATE, SPEECH_RATE, opts.get("soundfont"))
            what = {"arrangement": arrangement}
        clean = dg.to_loudness(clean[:n], SPEECH_RATE, level)
        # scipy's decimate: order-8 Chebyshev type I (0.05 dB ripple, edge 0.8 x the new
        # Nyquist), applied forwards and backwards (zero phase), then every ratio-th sample
        low = signal.decimate(clean, ratio, n=8, ftype="iir", zero_phase=True)
        upsampled = spline_upsample(low, ratio, n)
        g = headroom(float(np.max(np.abs(upsampled))))
        refs = {"clean": w(f"clean/{iid}", clean, SPEECH_RATE)}
        inputs = {"input": w(f"input/{iid}", upsampled * g, SPEECH_RATE)}
        out.append(Item(iid, "bandwidth-extension", root, inputs, refs, {
            "source": source, **what, "level_lufs": level, "ratio": ratio,
            "low_rate_hz": _r(SPEECH_RATE / ratio, 3),
            "anti_alias": "scipy.signal.decimate: Chebyshev I order 8, 0.05 dB, zero phase",
            "filter_edge_hz": _r(0.8 * SPEECH_RATE / 2 / ratio, 2),
            "input": "cubic-spline interpolation of the low-rate signal at 16 kHz; input[::ratio] "
                     "is the decimated signal",
            "headroom_gain_db": _r(20 * np.log10(g)),
        }))
        tick()
    return out, {"ratios": ratios, "source": source, "voices": voices, "level_lufs": level}


# ------------------------------------------------------------------ speech-restoration
RESTORATION_RATE = 32000
# Evaluation voices whose synthesiser renders at >= 32 kHz (festival's HTS voice of slt renders at
# 32 kHz; flite's voices and the diphone voices at 16 kHz, so they cannot give the top band).
WIDEBAND_VOICES = {"hts_slt": 32000}
SR_SNRS = [0.0, 5.0, 10.0, 15.0, 20.0]
SR_RT60S = [0.0, 0.3, 0.6]
SR_DEVICES = ["headset", "laptop", "phone", "camcorder", "handheld-clipping"]


def make_speech_restoration(root: Path, items: int, seconds: float, seed: int, opts: dict,
                            tick: Callable[[], None]) -> tuple[list[Item], dict]:
    """The speech-enhancement chain at 16 kHz on speech rendered at 32 kHz: the reference is the
    dry 32 kHz speech; the input is its 16 kHz version (soxr VHQ) through a room, a device, noise
    and clipping, stored at the device's rate or 16 kHz, whichever is lower."""
    from harness.audio import resample_samples

    snrs = [float(s) for s in opts.get("snrs", SR_SNRS)]
    rt60s = [float(s) for s in opts.get("rt60s", SR_RT60S)]
    devices = list(opts.get("devices", SR_DEVICES))
    noises = list(opts.get("noises", SE_NOISES))
    voices = list(opts.get("voices", list(WIDEBAND_VOICES)))
    level = float(opts.get("level_lufs", -30.0))
    for d in devices:
        if d not in dg.DEVICES:
            raise SuiteError(f"unknown device {d!r} (known: {', '.join(dg.DEVICES)})")
    for v in voices:
        if WIDEBAND_VOICES.get(v, 0) < RESTORATION_RATE:
            raise SuiteError(f"voice {v!r} is not rendered at {RESTORATION_RATE} Hz or above "
                             f"(wide-band voices: {', '.join(WIDEBAND_VOICES)})")
    require(speech.programs_for(voices + ["slt", "rms", "awb", "kal16"]), "speech-restoration")
    w = Writer(root)
    out = []
    n = int(round(seconds * RESTORATION_RATE)) // 2 * 2
    for i in range(items):
        iid = f"sr{i:04d}"
        rng = item_rng(seed, "speech-restoration", i)
        voice = cycled(voices, i, seed, "voice")
        snr = cycled(snrs, i, seed, "snr")
        rt60 = cycled(rt60s, i, seed, "rt60")
        device = dg.DEVICES[cycled(devices, i, seed, "device")]
        kind = cycled(noises, i, seed, "noise")
        clean, texts = speech.talk(voice, rng, n / RESTORATION_RATE, RESTORATION_RATE)
        clean = dg.to_loudness(clean[:n], RESTORATION_RATE, level)
        clean16 = resample_samples(clean, RESTORATION_RATE, SPEECH_RATE)[: n // 2]
        others = tuple(v for v in ("slt", "rms", "awb", "kal16") if v != voice)
        d = degrade_speech(clean16, rng, snr, rt60, device, kind, others)
        rate_in = min(device.rate, SPEECH_RATE)
        noisy = resample_samples(d.noisy, device.rate, rate_in) if device.rate != rate_in else d.noisy
        g = headroom(float(np.max(np.abs(noisy))))
        refs = {"clean": w(f"clean/{iid}", clean, RESTORATION_RATE)}
        inputs = {"input": w(f"input/{iid}", noisy * g, rate_in)}
        low, high = effective_band(device, SPEECH_RATE)
        out.append(Item(iid, "speech-restoration", root, inputs, refs, {
            "voice": voice, "texts": texts, "level_lufs": level, "snr_db": snr,
            "snr_defined": "speech image vs noise image at the device output, before clipping",
            "noise": kind, "room": d.room,
            "device": {**device.to_json(), "band_hz_effective": [low, high],
                       "clip_threshold": None if d.threshold is None else _r(d.threshold * g, 6)},
            "input_rate_hz": rate_in, "reference_rate_hz": RESTORATION_RATE,
            "headroom_gain_db": _r(20 * np.log10(g)),
        }))
        tick()
    return out, {"snrs": snrs, "rt60s": rt60s, "devices": devices, "noises": noises,
                 "voices": voices, "level_lufs": level}


# a room's impulse response is simulated for its RT60: 2 s takes about half a minute an item
SPEECH_LIMITS = {"snrs": "[-20, 60]", "rt60s": "[0, 2]", "level_lufs": "[-60, -10]"}
SPEECH_ENHANCEMENT = Generator(
    "speech-enhancement", "speech-enhancement", make_speech_enhancement, 4.0, 24,
    "flite/festival speech at 16 kHz; room (RT60), device and noise (SNR) on a grid",
    ("snrs", "rt60s", "devices", "noises", "voices", "level_lufs"), limits=SPEECH_LIMITS,
)
BANDWIDTH_EXTENSION = Generator(
    "bandwidth-extension", "bandwidth-extension", make_bandwidth_extension, 4.0, 12,
    "16 kHz speech (or music: -O source=music); inputs decimated 2x/4x/6x (Chebyshev order 8) "
    "and spline-upsampled",
    ("ratios", "source", "voices", "level_lufs", "soundfont"),
    limits={"ratios": "integer [2, 16]", "source": ("speech", "music"), "level_lufs": "[-60, -10]"},
)
SPEECH_RESTORATION = Generator(
    "speech-restoration", "speech-restoration", make_speech_restoration, 4.0, 15,
    "festival's HTS voice at 32 kHz (the reference); input: the 16 kHz speech-enhancement chain",
    ("snrs", "rt60s", "devices", "noises", "voices", "level_lufs"), limits=SPEECH_LIMITS,
)
