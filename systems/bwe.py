"""DSP baselines for bandwidth-extension and speech-restoration: `spline` (cubic-spline
interpolation, the paper's baseline, as a system so that chains can end with it: `hifigan>spline`)
and `sbr`.

`sbr`: spectral band replication, a DSP baseline for bandwidth-extension beside the spline.

The input is the spline-interpolated low-rate signal at 16 kHz; its band ends at the decimation
filter's edge fc = 0.8 x the low rate's Nyquist (the item's `ratio` metadata gives it; without
it, fc is where the input's long-term spectrum falls most steeply: the filter's cliff). Per STFT frame
(512 points, hop 128, Hann):

1. the source patch is the top `patch_octaves` octave of the band, [fc / 2^k, fc);
2. it is copied upwards, patch after patch, until 8 kHz (translation keeps each bin's phase
   advance consistent for a hop that is a multiple of the patch shift's period, so the copied
   bins are given the source bins' phases rotated by the frame's shift);
3. each copied bin gets the spectral envelope extrapolated from the band: a straight line in dB
   against log-frequency fitted to the frame's log-magnitude over the top octave of the band,
   continued from its value at fc with its slope (never rising), lowered by a further
   `rolloff_db` per octave (speech's high band falls faster than its mid band) and floored at
   `floor_db` below the frame's peak;
4. the replicated band is resynthesised, high-passed at fc (order-8 Butterworth, zero phase)
   and added to the input, whose band below fc is kept as it is.

This is the idea of MPEG's SBR (Dietz et al. 2002) without its side information: the encoder
would send the envelope, here it is extrapolated.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import signal

from harness.api import BaseSystem, Output
from harness.audio import Audio
from harness.suites.types import Item

RATE = 16000


def band_edge(x: np.ndarray, ratio: int | None, n_fft: int = 512) -> float:
    """fc in Hz: 0.8 x the low rate's Nyquist when the ratio is known, else measured."""
    if ratio:
        return 0.8 * RATE / 2 / ratio
    f, _, spec = signal.stft(x, RATE, nperseg=n_fft)
    level = 10 * np.log10(np.mean(np.abs(spec) ** 2, axis=1) + 1e-20)
    level = np.convolve(level, np.ones(3) / 3, mode="same")
    drop = level[2:] - level[:-2]  # the anti-alias filter's cliff: the steepest fall
    drop[f[1:-1] < 500] = 0
    return float(f[1 + int(np.argmin(drop))])


def replicate(x: np.ndarray, fc: float, *, n_fft: int = 512, hop: int = 128,
              patch_octaves: float = 1.0, rolloff_db: float = 12.0, floor_db: float = 60.0) -> np.ndarray:
    f, _, spec = signal.stft(x, RATE, window="hann", nperseg=n_fft, noverlap=n_fft - hop)
    df = f[1]
    k_c = int(np.floor(fc / df))  # first empty bin
    k_lo = max(1, int(np.floor(fc / 2 ** patch_octaves / df)))
    width = k_c - k_lo
    if width < 2 or k_c >= len(f) - 1:
        return x.copy()
    mag = np.abs(spec)
    logmag = 20 * np.log10(mag + 1e-12)
    # the envelope: per frame, a line in dB against log2 frequency over the top octave of the band
    fit_bins = np.arange(max(1, k_c // 2), k_c)
    lf = np.log2(f[fit_bins])
    a = np.vstack([lf, np.ones_like(lf)]).T
    coef, *_ = np.linalg.lstsq(a, logmag[fit_bins], rcond=None)  # (2, frames)
    out = np.zeros_like(spec)  # the replicated band alone
    peak = logmag.max(axis=0)
    k = k_c
    while k < len(f):
        n = min(width, len(f) - k)
        src = spec[k_lo:k_lo + n]
        shift = k - k_lo
        # keep the phase advance of a translated bin consistent from frame to frame
        rot = np.exp(2j * np.pi * shift * hop * np.arange(spec.shape[1]) / n_fft)
        octaves = np.log2(f[k:k + n] / fc)
        # the band's line at fc, continued with its slope (never rising) minus the roll-off
        at_fc = coef[0] * np.log2(fc) + coef[1]
        env_db = at_fc[None] + (np.minimum(coef[0], 0.0)[None] - rolloff_db) * octaves[:, None]
        env_db = np.maximum(env_db, peak[None] - floor_db)
        # the source's fine structure (its deviation from the fitted line at the source bins)
        # carried onto the extrapolated envelope
        src_line = coef[0][None] * np.log2(f[k_lo:k_lo + n])[:, None] + coef[1][None]
        out[k:k + n] = src * 10 ** ((env_db - src_line) / 20) * rot[None]
        k += n
    _, z = signal.istft(out, RATE, window="hann", nperseg=n_fft, noverlap=n_fft - hop)
    z = np.pad(z[: len(x)], (0, max(0, len(x) - len(z))))
    # a modified STFT is not the STFT of any signal: its resynthesis leaks below fc, so the
    # replicated band is high-passed at fc (zero phase) before it is added to the input
    sos = signal.butter(8, fc, btype="high", fs=RATE, output="sos")
    return x + signal.sosfiltfilt(sos, z)


def restoration_input(item: Item, out_rate: int) -> tuple[np.ndarray, int]:
    """(the input spline-upsampled to out_rate, ratio), for speech-restoration. The input's band
    is taken to be that of its rate when that rate is below out_rate and divides it (a phone's
    8 kHz: ratio 4 to 32 kHz), else that of 16 kHz: the input is resampled to 16 kHz first (an
    earlier stage's output already at out_rate comes down to 16 kHz without loss: its band ends
    at 8 kHz)."""
    from harness.audio import resample
    from harness.suites.synth.gen_speech import spline_upsample

    audio = item.input("input")
    band = audio.rate if audio.rate < out_rate and out_rate % audio.rate == 0 else RATE
    low = resample(audio, band).mono().astype(np.float64)
    ratio = out_rate // band
    return spline_upsample(low, ratio, len(low) * ratio), ratio


def fit(y: np.ndarray, frames: int, rate: int) -> dict[str, Audio]:
    """{'enhanced': y} cut or zero-padded to `frames`, as float32 Audio at `rate`."""
    y = np.pad(y[:frames], (0, max(0, frames - len(y))))
    return {"enhanced": Audio(y[None].astype(np.float32), rate)}


class Spline(BaseSystem):
    name = "spline"
    task = "speech-restoration"
    also_tasks = ("bandwidth-extension",)
    description = ("Cubic-spline interpolation to the task's rate (bandwidth-extension's input is "
                   "already that: returned as it is)")
    defaults: dict = {}

    def input_problem(self, item: Item, rate: int, channels: int) -> str | None:
        return None if channels == 1 else f"takes mono input, not {channels} channels"

    def process(self, items: list[Item], listener: Any | None) -> list[Output]:
        from harness.tasks import get_protocol

        outs = []
        for it in items:
            spec = get_protocol(it.task).output_spec(it)["enhanced"]
            if it.task == "bandwidth-extension":
                y = it.input("input").mono().astype(np.float64)
            else:
                y, _ = restoration_input(it, spec.rate)
            outs.append(fit(y, spec.frames, spec.rate))
        return outs


class SBR(BaseSystem):
    name = "sbr"
    task = "bandwidth-extension"
    description = "Spectral band replication: the top octave copied upwards on an extrapolated envelope"
    # rolloff_db 12: chosen on a development suite (bandwidth-extension, seed 31): LSD 3.86 -> 1.69
    # with SNR 15.7 -> 12.7 dB (6 dB/octave: LSD 1.65, SNR 11.2 dB)
    defaults = {"patch_octaves": 1.0, "rolloff_db": 12.0, "floor_db": 60.0, "n_fft": 512, "hop": 128}
    limits = {"patch_octaves": "(0, inf)", "rolloff_db": "[0, inf)", "floor_db": "[0, inf)",
              "n_fft": "[16, inf)", "hop": "[1, inf)"}

    def process(self, items: list[Item], listener: Any | None) -> list[Output]:
        p = {**self.defaults, **self.params}
        outs = []
        for it in items:
            x = it.input("input").mono().astype(np.float64)
            fc = band_edge(x, it.metadata.get("ratio"), int(p["n_fft"]))
            y = replicate(x, fc, n_fft=int(p["n_fft"]), hop=int(p["hop"]),
                          patch_octaves=float(p["patch_octaves"]), rolloff_db=float(p["rolloff_db"]),
                          floor_db=float(p["floor_db"]))
            outs.append(fit(y, it.references["clean"].frames, RATE))
        return outs
