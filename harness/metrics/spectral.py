"""Log-spectral distance (LSD), the bandwidth-extension metric of Kuleshov et al. (2017).

LSD = mean over frames t of sqrt(mean over frequencies f of (log10 P_ref(f,t) - log10 P_est(f,t))^2)
with P = |STFT|^2 (periodic Hann window of 2048 samples, hop 512, one-sided, unscaled, no
padding) plus a floor of 1e-10
(-100 dB) so silent bins stay finite. Lower is better; 0 for identical signals; a
gain of g dB on the estimate gives exactly |g| / 10.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from harness.audio import Audio
from harness.errors import InvalidInput
from harness.metrics.base import FunctionMetric

N_FFT, HOP, FLOOR = 2048, 512, 1e-10


def log_power(x: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).ravel()
    if len(x) < n_fft:
        raise InvalidInput(f"signal shorter than one {n_fft}-sample frame: LSD is undefined")
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    spec = np.fft.rfft(frames * signal.get_window("hann", n_fft), axis=1)  # unscaled, as librosa
    return np.log10(np.abs(spec.T) ** 2 + FLOOR)


def lsd(estimate: np.ndarray, reference: np.ndarray) -> float:
    diff = log_power(reference) - log_power(estimate)
    return float(np.mean(np.sqrt(np.mean(diff**2, axis=0))))


def _lsd(estimate: Audio, reference: Audio, **_) -> float:
    return lsd(estimate.samples, reference.samples)


LSD = FunctionMetric(
    "lsd", _lsd, higher_is_better=False, unit="log10 power", estimate_may_be_silent=True,
    description="Log-spectral distance (Kuleshov et al. 2017; 2048-point Hann STFT, hop 512)",
)
