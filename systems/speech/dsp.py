"""DSP baselines for speech-enhancement: what a reviewer compares a learned enhancer with.

- `spectral-gating`: the `noisereduce` package (Sainburg et al. 2020): a per-bin noise threshold
  from the signal's own statistics (non-stationary by default: a smoothed running estimate over
  `time_constant_s`), a smoothed soft mask, `prop_decrease` (0.8) of the noise removed.
- `mmse-lsa`: Ephraim & Malah's log-spectral-amplitude estimator (1985) with the
  decision-directed a-priori SNR (alpha 0.98), on a noise PSD tracked by minimum statistics
  (Martin 2001: the minimum of the smoothed periodogram over the last `window_s`, times a bias
  factor); `rule = "wiener"` uses the Wiener gain xi / (1 + xi) instead.
- `wpe`: weighted prediction error dereverberation (`nara-wpe`, Nakatani et al. 2010;
  Drude et al. 2018) followed by `then` (`mmse-lsa` by default, or `spectral-gating`, or
  `none`).

Every system works at 16 kHz: the input (at its device's rate) is resampled to 16 kHz with soxr
VHQ, processed, and cut or zero-padded to the length the task asks for. They also do
speech-restoration, where the 16 kHz result is resampled to the task's rate (its top band empty:
put `unet-sr` after them in a chain, `wpe>unet-sr`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage, signal, special

from harness.api import BaseSystem, Output
from harness.audio import Audio, resample, resample_samples
from harness.suites.types import Item
from harness.tasks import get_protocol

RATE = 16000
TASK = "speech-enhancement"


def input_16k(item: Item) -> np.ndarray:
    """The item's input, mono, at 16 kHz, float64."""
    return resample(item.input("input"), RATE).mono().astype(np.float64)


def fitted(item: Item, x: np.ndarray) -> Output:
    """{'enhanced': x} (16 kHz) as the task expects it: resampled to the task's output rate
    (speech-restoration's 32 kHz; soxr VHQ, so the band above 8 kHz stays empty), cut or
    zero-padded to its length, as float32 Audio."""
    spec = get_protocol(item.task).output_spec(item)["enhanced"]
    if spec.rate != RATE:
        x = resample_samples(x, RATE, spec.rate)
    y = np.zeros(spec.frames)
    y[: min(spec.frames, len(x))] = x[: spec.frames]
    return {"enhanced": Audio(y[None].astype(np.float32), spec.rate)}


class SpeechDSP(BaseSystem):
    task = TASK
    also_tasks = ("speech-restoration",)  # enhanced at 16 kHz, resampled to the task's rate

    def process(self, items: list[Item], listener: Any | None) -> list[Output]:
        return [fitted(it, self.enhance(input_16k(it))) for it in items]

    def enhance(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


# ------------------------------------------------------------------ spectral gating
class SpectralGating(SpeechDSP):
    name = "spectral-gating"
    description = "Spectral gating (noisereduce), non-stationary noise threshold"
    defaults = {
        "stationary": False,
        # share of the noise removed: 0.8, chosen on a development suite (speech-enhancement
        # generator, seed 99, SNR 0-15 dB; never an evaluation suite) over noisereduce's 1.0
        "prop_decrease": 0.8,
        "time_constant_s": 2.0,  # smoothing of the non-stationary noise estimate
        "n_fft": 512,  # 32 ms at 16 kHz
        "n_std_thresh_stationary": 1.5,
    }
    limits = {"prop_decrease": "[0, 1]", "time_constant_s": "(0, inf)", "n_fft": "[16, inf)",
              "n_std_thresh_stationary": "[0, inf)"}

    def enhance(self, x: np.ndarray) -> np.ndarray:
        return spectral_gating(x, {**self.defaults, **self.params})


def spectral_gating(x: np.ndarray, p: dict) -> np.ndarray:
    import noisereduce

    y = noisereduce.reduce_noise(
        y=x.astype(np.float32), sr=RATE, stationary=bool(p["stationary"]),
        prop_decrease=float(p["prop_decrease"]), time_constant_s=float(p["time_constant_s"]),
        n_fft=int(p["n_fft"]), n_std_thresh_stationary=float(p["n_std_thresh_stationary"]),
        use_tqdm=False, n_jobs=1,
    )
    return np.asarray(y, dtype=np.float64)[: len(x)]


# ------------------------------------------------------------------ MMSE-LSA / Wiener
def minimum_statistics(power: np.ndarray, hop_s: float, window_s: float = 1.5,
                       smoothing: float = 0.85, bias: float = 2.5) -> np.ndarray:
    """Noise PSD per (bin, frame): the minimum of the recursively smoothed periodogram over the
    last `window_s` seconds (causal), times `bias`: the minimum of a smoothed periodogram
    underestimates the mean (Martin 2001 derives the factor from the window and the smoothing);
    2.5 is the factor measured for white noise with the defaults here (32 ms frames, 75 %
    overlap, smoothing 0.85, 1.5 s; tests/test_speech_dsp.py holds it within 2 dB)."""
    smooth = signal.lfilter([1 - smoothing], [1, -smoothing], power, axis=1,
                            zi=(smoothing * power[:, :1]))[0]
    d = max(1, int(round(window_s / hop_s)))
    return bias * ndimage.minimum_filter1d(smooth, size=d, axis=1, origin=(d - 1) // 2,
                                           mode="nearest")


def mmse_gain(power: np.ndarray, noise: np.ndarray, rule: str = "lsa", alpha: float = 0.98,
              xi_min_db: float = -25.0, floor_db: float = -25.0) -> np.ndarray:
    """Per (bin, frame) gains of the decision-directed estimator: a-posteriori SNR gamma =
    |Y|^2 / noise, a-priori xi = alpha G^2(l-1) gamma(l-1) + (1 - alpha) max(gamma - 1, 0),
    floored at xi_min; LSA gain xi/(1+xi) exp(E1(v)/2), v = xi gamma / (1 + xi), or the Wiener
    gain xi/(1+xi); limited to [floor, 1]."""
    gamma = power / np.maximum(noise, 1e-20)
    xi_min, floor = 10 ** (xi_min_db / 10), 10 ** (floor_db / 20)
    gains = np.empty_like(power)
    prev = np.ones(power.shape[0])  # G^2 gamma of the previous frame
    for t in range(power.shape[1]):
        g = gamma[:, t]
        xi = np.maximum(alpha * prev + (1 - alpha) * np.maximum(g - 1, 0), xi_min)
        wiener = xi / (1 + xi)
        if rule == "lsa":
            v = np.maximum(wiener * g, 1e-10)
            gain = wiener * np.exp(0.5 * special.exp1(v))
        else:
            gain = wiener
        gain = np.clip(gain, floor, 1.0)
        gains[:, t] = gain
        prev = gain ** 2 * g
    return gains


class MMSELSA(SpeechDSP):
    name = "mmse-lsa"
    description = "MMSE log-spectral amplitude (or Wiener) gain, minimum-statistics noise PSD"
    defaults = {
        "rule": "lsa",  # or "wiener"
        "frame_ms": 32.0,
        "overlap": 0.75,
        "alpha": 0.98,  # decision-directed smoothing
        "xi_min_db": -25.0,
        "floor_db": -25.0,  # lowest gain
        "window_s": 1.5,  # minimum-statistics search window
        "bias": 2.5,
    }
    limits = {"rule": ("lsa", "wiener"), "frame_ms": "[1, inf)", "overlap": "[0, 1)", "alpha": "[0, 1)",
              "floor_db": "(-inf, 0]", "window_s": "(0, inf)", "bias": "(0, inf)"}

    def enhance(self, x: np.ndarray) -> np.ndarray:
        return mmse_lsa(x, {**self.defaults, **self.params})


def mmse_lsa(x: np.ndarray, p: dict) -> np.ndarray:
    if p["rule"] not in ("lsa", "wiener"):
        raise ValueError(f"mmse-lsa: rule must be lsa or wiener, got {p['rule']!r}")
    n = int(round(p["frame_ms"] * RATE / 1000))
    hop = max(1, int(round(n * (1 - p["overlap"]))))
    _, _, spec = signal.stft(x, RATE, window="hann", nperseg=n, noverlap=n - hop)
    power = np.abs(spec) ** 2
    noise = minimum_statistics(power, hop / RATE, p["window_s"], bias=p["bias"])
    gains = mmse_gain(power, noise, p["rule"], p["alpha"], p["xi_min_db"], p["floor_db"])
    _, y = signal.istft(gains * spec, RATE, window="hann", nperseg=n, noverlap=n - hop)
    return y[: len(x)]


# ------------------------------------------------------------------ WPE + denoiser
class WPE(SpeechDSP):
    name = "wpe"
    description = "WPE dereverberation (nara-wpe) followed by a denoiser (MMSE-LSA by default)"
    defaults = {
        "taps": 20,  # 20 x 16 ms: predicts the tail up to ~370 ms after the delay
        "delay": 3,
        "iterations": 3,
        "frame": 1024,  # STFT size at 16 kHz (64 ms: long frames suit single-channel WPE)
        "shift": 256,
        "then": "mmse-lsa",  # or "spectral-gating", "none"
    }
    limits = {"taps": "[1, inf)", "delay": "[1, inf)", "iterations": "[1, inf)", "frame": "[16, inf)",
              "shift": "[1, inf)", "then": ("mmse-lsa", "spectral-gating", "none")}

    def enhance(self, x: np.ndarray) -> np.ndarray:
        from nara_wpe.utils import istft, stft
        from nara_wpe.wpe import wpe

        p = {**self.defaults, **self.params}
        if p["then"] not in ("mmse-lsa", "spectral-gating", "none"):
            raise ValueError(f"wpe: then must be mmse-lsa, spectral-gating or none, got {p['then']!r}")
        spec = stft(x[None], size=p["frame"], shift=p["shift"])  # (1, frames, bins)
        z = wpe(spec.transpose(2, 0, 1), taps=p["taps"], delay=p["delay"],
                iterations=p["iterations"], statistics_mode="full").transpose(1, 2, 0)
        y = istft(z, size=p["frame"], shift=p["shift"])[0][: len(x)]
        if p["then"] == "mmse-lsa":
            return mmse_lsa(y, dict(MMSELSA.defaults))
        if p["then"] == "spectral-gating":
            return spectral_gating(y, dict(SpectralGating.defaults))
        return y
