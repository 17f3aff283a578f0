"""Generators of Clarity-style hearing-aid scenes (hearing-aid-speech: CEC2; hearing-aid-
enhancement: ICASSP 2023), 44.1 kHz, written as the Clarity data is (16-bit WAV per channel pair).

A scene: a shoebox room (pyroomacoustics image source, RT60 drawn in 0.2-0.6 s) with a listener
whose two hearing aids carry three microphones each (front, middle, rear, 7.6 mm apart, the ears
18 cm apart; free field: pyroomacoustics has no head, so the ears differ by time and distance,
not by head shadow); a target talker (flite voices, Harvard sentences) within +/-30 degrees of
the look direction at 1-2.5 m, and one interferer elsewhere in the room (another talker or
pink noise), starting 0.5 s before the target and running 0.5 s after it, at an SNR drawn from
the `snrs` grid (target against interferer, both reverberant, at the front pair). References:
the target at the front pair through the direct path only (`target_anechoic`) and through the
room (`target`), as the Clarity scenes' `target_anechoic_CH1` and `target_CH1`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import signal

from harness.audio import resample_samples
from harness.errors import SuiteError
from harness.suites.synth import degrade as dg
from harness.suites.synth import speech
from harness.suites.synth.generators import Generator, Writer, _r, cycled, headroom, item_rng
from harness.suites.synth.tools import require
from harness.suites.types import Item

RATE = 44100
CEC3_RATE = 48000
EAR_Y, MIC_X = 0.09, 0.0076  # half the ear distance; front/middle/rear microphone spacing (m)
LEAD_S = 0.5
VOICES = ("slt", "rms", "awb", "kal16")


def _array(head: np.ndarray) -> np.ndarray:
    """(3, 6): microphones L1, R1, L2, R2, L3, R3 (1 front, 2 middle, 3 rear), facing +x."""
    mics = []
    for k in (1, 0, -1):
        for side in (1, -1):  # left is +y when facing +x
            mics.append(head + [k * MIC_X, side * EAR_Y, 0.0])
    return np.array(mics).T


def _place(head: np.ndarray, dims: np.ndarray, azimuth: float, distance: float) -> np.ndarray:
    p = head + distance * np.array([np.cos(azimuth), np.sin(azimuth), 0.0])
    p[:2] = np.clip(p[:2], 0.3, dims[:2] - 0.3)
    return p


def _rirs(dims, absorption, max_order, sources, mics, rate: int = RATE) -> list[list[np.ndarray]]:
    import pyroomacoustics as pra

    room = pra.ShoeBox(list(dims), fs=rate, materials=pra.Material(absorption), max_order=max_order)
    for s in sources:
        room.add_source(list(s))
    room.add_microphone_array(pra.MicrophoneArray(mics, rate))
    room.compute_rir()
    return room.rir  # [mic][source]


def _render(x: np.ndarray, rirs: list[list[np.ndarray]], source: int, n: int, start: int) -> np.ndarray:
    """(6, n): x from `source` at every microphone, starting at frame `start`."""
    out = np.zeros((len(rirs), n))
    for m, per_source in enumerate(rirs):
        y = signal.fftconvolve(x, per_source[source])
        stop = min(n, start + len(y))
        out[m, start:stop] = y[: stop - start]
    return out


def make_clarity_scenes(root: Path, items: int, seconds: float, seed: int, opts: dict,
                        tick: Callable[[], None], task: str = "hearing-aid-speech",
                        rate: int = RATE) -> tuple[list[Item], dict]:
    """`rate` 48 kHz and task hearing-aid-cec3: the CEC3 form, whose one reference file
    (`<scene>_reference.wav`) is the anechoic target scaled per channel to the reverberant one's
    RMS (what the CEC2 recipe computes from its two)."""
    import pyroomacoustics as pra

    require(speech.programs_for(list(VOICES)), task)
    snrs = [float(v) for v in opts.get("snrs", [-6.0, 0.0, 6.0])]
    kinds = list(opts.get("interferers", ["speech", "noise"]))
    if not snrs or any(not -30 <= s <= 30 for s in snrs):
        raise SuiteError(f"{task}: snrs must lie within -30..30 dB, got {snrs}")
    if any(k not in ("speech", "noise") for k in kinds):
        raise SuiteError(f"{task}: interferers must be speech and/or noise, got {kinds}")
    w = Writer(root, subtype="PCM_16", suffix=".wav")
    out = []
    for i in range(items):
        sid = f"S{6001 + i:05d}"
        rng = item_rng(seed, "clarity-scenes", i)
        voice = cycled(list(VOICES), i, seed, "voice")
        snr = float(cycled(snrs, i, seed, "snr"))
        kind = cycled(kinds, i, seed, "interferer")
        talk, texts = speech.talk(voice, rng, seconds, speech.RATE)
        target = resample_samples(talk, speech.RATE, rate)
        lead = int(LEAD_S * rate)
        n = target.size + 2 * lead
        if kind == "speech":
            other = VOICES[(VOICES.index(voice) + 1 + int(rng.integers(len(VOICES) - 1))) % len(VOICES)]
            babble, _ = speech.talk(other, rng, n / rate, speech.RATE)
            interferer = resample_samples(babble, speech.RATE, rate)[:n]
        else:
            other = "pink"
            interferer = dg.make_noise("pink", n, rate, rng)
        rt60 = float(rng.uniform(0.2, 0.6))
        dims = np.array([rng.uniform(5.0, 7.0), rng.uniform(4.0, 6.0), rng.uniform(2.7, 3.0)])
        head = dims * np.array([rng.uniform(0.4, 0.6), rng.uniform(0.4, 0.6), 0.0]) + [0, 0, 1.6]
        az_t = np.deg2rad(rng.uniform(-30, 30))
        az_i = np.deg2rad(rng.uniform(60, 150) * rng.choice([-1, 1]))
        d_t, d_i = rng.uniform(1.0, 2.5), rng.uniform(1.5, 3.0)
        src_t, src_i = _place(head, dims, az_t, d_t), _place(head, dims, az_i, d_i)
        mics = _array(head)
        absorption, max_order = pra.inverse_sabine(rt60, dims.tolist())
        room = _rirs(dims, absorption, max_order, [src_t, src_i], mics, rate)
        free = _rirs(dims, absorption, 0, [src_t], mics, rate)
        tgt = _render(target, room, 0, n, lead)
        dry = _render(target, free, 0, n, lead)
        noise = _render(interferer, room, 1, n, 0)
        gain = np.sqrt(dg.energy(tgt[:2]) / max(dg.energy(noise[:2]), 1e-20) / 10 ** (snr / 10))
        noise *= gain
        mix = tgt + noise
        # CEC3's single reference: the anechoic target at the reverberant target's RMS
        ref = dry[:2] * np.sqrt(np.mean(tgt[:2] ** 2, axis=1) / np.mean(dry[:2] ** 2, axis=1))[:, None]
        scale = 10 ** ((-26.0 - dg.loudness_lufs(mix[:2], rate)) / 20)
        peak = float(np.max(np.abs(mix)))
        if task == "hearing-aid-cec3":
            peak = max(peak, float(np.max(np.abs(ref))))
        scale *= headroom(peak * scale, 0.9)
        pairs = {f"mix_CH{k + 1}": mix[2 * k: 2 * k + 2] * scale for k in range(3)}
        inputs = {name: w(f"{sid}_{name}", x, rate) for name, x in pairs.items()}
        if task == "hearing-aid-cec3":
            refs = {"reference": w(f"{sid}_reference", ref * scale, rate)}
        else:
            refs = {"target_anechoic": w(f"{sid}_target_anechoic_CH1", dry[:2] * scale, rate),
                    "target": w(f"{sid}_target_CH1", tgt[:2] * scale, rate)}
        out.append(Item(sid, task, root, inputs, refs, {
            "voice": voice, "texts": texts, "interferer": {"kind": kind, "source": other},
            "snr_db": snr, "rt60_s": _r(rt60, 3), "room_m": [_r(d, 3) for d in dims],
            "target": {"azimuth_deg": _r(np.rad2deg(az_t), 2), "distance_m": _r(d_t, 3)},
            "interferer_position": {"azimuth_deg": _r(np.rad2deg(az_i), 2), "distance_m": _r(d_i, 3)},
            "lead_s": LEAD_S,
        }))
        tick()
    return out, {"snrs": snrs, "interferers": kinds, "rate": rate}


def make_hearing_aid_enhancement(root, items, seconds, seed, opts, tick):
    return make_clarity_scenes(root, items, seconds, seed, opts, tick, task="hearing-aid-enhancement")


def make_hearing_aid_cec3(root, items, seconds, seed, opts, tick):
    return make_clarity_scenes(root, items, seconds, seed, opts, tick, task="hearing-aid-cec3",
                               rate=CEC3_RATE)


CLARITY_LIMITS = {"snrs": "[-20, 40]", "interferers": ("speech", "noise")}
HEARING_AID_SPEECH = Generator(
    "hearing-aid-speech", "hearing-aid-speech", make_clarity_scenes, 3.0, 4,
    "Clarity-style scenes (CEC2): a target talker and an interferer in a simulated room, six "
    "hearing-aid microphones, 44.1 kHz 16-bit WAV",
    ("snrs", "interferers"), limits=CLARITY_LIMITS,
)
HEARING_AID_ENHANCEMENT = Generator(
    "hearing-aid-enhancement", "hearing-aid-enhancement", make_hearing_aid_enhancement, 3.0, 4,
    "the same Clarity-style scenes for the ICASSP 2023 task (the evaluator amplifies)",
    ("snrs", "interferers"), limits=CLARITY_LIMITS,
)
HEARING_AID_CEC3 = Generator(
    "hearing-aid-cec3", "hearing-aid-cec3", make_hearing_aid_cec3, 3.0, 4,
    "the same scenes at 48 kHz in the CEC3 form (one <scene>_reference.wav)",
    ("snrs", "interferers"), limits=CLARITY_LIMITS,
)
