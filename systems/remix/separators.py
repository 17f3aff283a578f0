"""Separator backends for the remix pipeline: mixture in, named stems out.

Every backend takes a (channels, frames) float array at its rate and returns a dict of arrays of
the same shape, one per stem of STEMS. `validate_stems` checks what a backend returned (names,
shapes, finite samples) so a broken backend fails its item with a reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage, signal

from harness.errors import ConfigError
from harness.tasks.music_remix import STEMS  # the task's stems, named once


def validate_stems(stems: Any, shape: tuple[int, ...], backend: str) -> dict[str, np.ndarray]:
    """The stems a backend returned, or ValueError saying what is wrong with them."""
    if not isinstance(stems, dict):
        raise ValueError(f"separator {backend} returned {type(stems).__name__}, not a dict of stems")
    missing = [s for s in STEMS if s not in stems]
    if missing:
        raise ValueError(f"separator {backend} returned no {', '.join(missing)} "
                         f"(got {', '.join(map(str, stems)) or 'nothing'})")
    out = {}
    for s in STEMS:
        x = np.asarray(stems[s], dtype=np.float64)
        if x.shape != shape:
            raise ValueError(f"separator {backend}: stem {s} has shape {x.shape}, expected {shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"separator {backend}: stem {s} has non-finite samples")
        out[s] = x
    return out


def chunked(fn, x: np.ndarray, rate: int, chunk_s: float = 10.0,
            overlap: float = 0.1) -> dict[str, np.ndarray]:
    """Run fn (array -> dict of arrays) on overlapping chunks and join them with linear
    cross-fades (the Cadenza baseline's scheme: 10 s chunks, 10% overlap). The fades are
    complementary, so stems that sum to their chunk still sum to the mixture."""
    n = x.shape[-1]
    size = int(chunk_s * rate)
    if n <= size:
        return fn(x)
    hop = int(size * (1 - overlap))
    fade = size - hop
    out: dict[str, np.ndarray] = {}
    start = 0
    while True:
        end = min(start + size, n)
        part = fn(x[..., start:end])
        w = np.ones(end - start)
        ramp = np.arange(fade) / fade  # fade-in i/fade and fade-out 1 - i/fade sum to one
        if start > 0 and fade:
            w[:fade] = ramp
        if end < n and fade:  # no overlap (fade 0): chunks abut
            w[-fade:] = 1.0 - ramp
        for k, v in part.items():
            out.setdefault(k, np.zeros(x.shape[:-1] + (n,)))
            out[k][..., start:end] += v * w
        if end == n:
            return out
        start += hop


class OracleSeparator:
    """The true stems (the upper bound of separation): read from the item, not the mixture."""

    name = "oracle"
    needs_item = True

    def separate_item(self, item) -> dict[str, np.ndarray]:
        return {s: item.reference(s).samples.astype(np.float64) for s in STEMS}


class DspSeparator:
    """A separator without weights: STFT masks from harmonic/percussive separation (median
    filtering, Fitzgerald 2010) for drums, a low-frequency split of the harmonic part for bass,
    and stereo centre extraction (inter-channel similarity, Avendano & Jot 2004) for vocals
    against the rest. The masks sum to one, so the stems sum to the mixture."""

    name = "dsp"
    needs_item = False

    def __init__(self, n_fft: int = 4096, hop: int = 1024, kernel: int = 17,
                 bass_hz: float = 220.0, centre_power: float = 8.0):
        self.n_fft, self.hop, self.kernel = n_fft, hop, kernel
        self.bass_hz, self.centre_power = bass_hz, centre_power

    def separate(self, x: np.ndarray, rate: int) -> dict[str, np.ndarray]:
        n = x.shape[-1]
        f, _, spec = signal.stft(x, rate, nperseg=self.n_fft, noverlap=self.n_fft - self.hop)
        mag = np.mean(np.abs(spec), axis=0)
        harm = ndimage.median_filter(mag, size=(1, self.kernel), mode="nearest")
        perc = ndimage.median_filter(mag, size=(self.kernel, 1), mode="nearest")
        eps = 1e-12
        m_h = harm**2 / (harm**2 + perc**2 + eps)
        m_p = 1.0 - m_h
        low = 1.0 / (1.0 + (f / self.bass_hz) ** 8)  # smooth split at bass_hz
        m_bass = m_h * low[:, None]
        rest = m_h - m_bass
        if spec.shape[0] == 2:
            cross = np.abs(spec[0] * np.conj(spec[1]))
            power = np.abs(spec[0]) ** 2 + np.abs(spec[1]) ** 2
            centre = (2 * cross / (power + eps)) ** self.centre_power
        else:
            centre = np.full_like(rest, 0.5)
        masks = {"drums": m_p, "bass": m_bass, "vocals": rest * centre, "other": rest * (1 - centre)}
        out = {}
        for stem, m in masks.items():
            _, y = signal.istft(spec * m[None], rate, nperseg=self.n_fft, noverlap=self.n_fft - self.hop)
            y = y[..., :n]
            out[stem] = np.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, n - y.shape[-1])])
        return out


def make_separator(name: str, **options: Any):
    if name == "oracle":
        return OracleSeparator()
    if name == "dsp":
        return DspSeparator(**options)
    if name == "spleeter":
        from systems.remix.spleeter import SpleeterSeparator

        unknown = sorted(set(options) - {"checkpoint", "mask_extension", "wiener", "wiener_iterations"})
        if unknown:
            raise ConfigError(f"separator spleeter: unknown option(s) {', '.join(unknown)} "
                              "(checkpoint, mask_extension, wiener, wiener_iterations)")
        return SpleeterSeparator(**options)
    if name in ("hdemucs", "htdemucs", "openunmix"):
        from systems.remix import learned

        return learned.make(name, **options)
    raise ConfigError(f"unknown separator {name!r} (oracle, dsp, spleeter, hdemucs, htdemucs, openunmix)")
