"""The pre-stage that puts a scene's recordings on one time-frequency grid.

Each recording is resampled (soxr) to the output rate and its time offset against the first
recording (which defines the scene's clock) is estimated by generalised cross-correlation with
PHAT weighting, restricted to the bins where both recordings carry energy: devices differ in
band (a phone's 300-3400 Hz against a 500 Hz high-pass) and PHAT would otherwise weight empty
bins like full ones. The estimated offsets are kept for the record.
"""

from __future__ import annotations

import numpy as np

from harness.audio import Audio, resample
from harness.suites.types import Item
from harness.tasks.crowd_enhancement import recording_roles as recordings

__all__ = ["align", "as_audio", "estimate_lag", "load_on_rate", "recordings", "true_lags"]


def load_on_rate(item: Item, roles: list[str], rate: int) -> list[np.ndarray]:
    """Each recording, mono float64, resampled to `rate`."""
    return [resample(item.input(r), rate).mono().astype(np.float64) for r in roles]


def _active_bins(spec: np.ndarray, floor_db: float = -50.0) -> np.ndarray:
    """Bins whose smoothed magnitude is within floor_db of the recording's strongest bins."""
    mag = np.abs(spec)
    k = max(1, len(mag) // 512)
    smooth = np.convolve(mag, np.ones(2 * k + 1) / (2 * k + 1), mode="same")
    return smooth > np.percentile(smooth, 99) * 10 ** (floor_db / 20)


def estimate_lag(ref: np.ndarray, x: np.ndarray, max_lag: int) -> int:
    """d such that x[j] is ref[j + d] (GCC-PHAT over the bins both signals occupy), |d| <= max_lag."""
    n = 1 << int(np.ceil(np.log2(len(ref) + len(x) + 1)))
    R, X = np.fft.rfft(ref, n), np.fft.rfft(x, n)
    cross = R * np.conj(X)
    both = _active_bins(R) & _active_bins(X)
    mag = np.abs(cross)
    weighted = np.where(both & (mag > 0), cross / np.where(mag > 0, mag, 1.0), 0.0)
    c = np.fft.irfft(weighted, n)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    return int(lags[np.argmax(c[lags])])


def align(signals: list[np.ndarray], length: int, max_lag: int,
          lags: list[int] | None = None) -> tuple[np.ndarray, list[int]]:
    """Signals placed on the first one's clock (sample j of signal l at j + lag_l), cut or
    zero-padded to `length`: an L x length array, and the lags used (estimated when not given)."""
    if lags is None:
        lags = [0] + [estimate_lag(signals[0], x, max_lag) for x in signals[1:]]
    out = np.zeros((len(signals), length))
    for l_, (x, d) in enumerate(zip(signals, lags, strict=True)):
        lo, hi = max(d, 0), min(length, d + len(x))
        if hi > lo:
            out[l_, lo:hi] = x[lo - d: hi - d]
    return out, lags


def true_lags(item: Item, roles: list[str], rate: int) -> list[int]:
    """The generator's offsets (metadata) as lags against the first recording, at `rate`."""
    offs = {r.get("role"): float(r.get("offset_s", 0.0)) for r in item.metadata.get("recordings", [])}
    base = offs.get(roles[0], 0.0)
    return [int(round((offs.get(r, 0.0) - base) * rate)) for r in roles]


def as_audio(x: np.ndarray, rate: int) -> Audio:
    return Audio(x[None, :], rate)
