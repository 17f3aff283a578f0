"""STOI (Taal et al. 2011) and extended STOI (Jensen & Taal 2016) in torch, on CPU or CUDA: the
same algorithm and numbers as pystoi, without its per-frame Python loops.

Per item:

1. Resample to 10 kHz with the Octave-compatible anti-aliasing filter pystoi uses (a Kaiser-
   windowed sinc: 60 dB rejection, roll-off a tenth of the cut-off at 1 / (2 max(p, q)),
   normalised to unit sum), through scipy's polyphase `resample_poly`.
2. Silent-frame removal: 256-sample Hann frames (Matlab's `hanning`, no zero end points) with
   hop 128, starting at 0, 128, ... while the start is below len - 256; frames of the clean
   signal more than 40 dB below its loudest frame are dropped from both signals, and the kept
   windowed frames are overlap-added back.
3. STFT with the same frames and window, 512-point FFT; 15 one-third-octave bands from 150 Hz
   (band edges snapped to the nearest FFT bin, upper edge exclusive); band magnitudes
   sqrt(sum |X|^2).
4. Short-time segments of 30 frames (hop 1). STOI: the processed segment scaled to the clean
   one's norm, clipped at (1 + 10^(15/20)) times the clean, then the mean correlation over
   bands and segments. ESTOI: each segment mean- and norm-normalised along time per band, then
   along bands per frame; the mean over segments of sum(x * y) / 30.

Fewer than 30 frames after silence removal is an error here (pystoi warns and returns 1e-5).
pystoi adds Gaussian noise of size 2.2e-16 in ESTOI's normalisation (to avoid dividing by zero);
this version divides by max(norm, tiny) instead, a difference far below 1e-6.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

FS = 10000
FRAME = 256
HOP = 128
NFFT = 512
BANDS = 15
MIN_FREQ = 150.0
SEGMENT = 30
BETA_DB = -15.0
DYN_RANGE = 40.0
EPS = float(np.finfo(np.float64).eps)


class TooShort(ValueError):
    """Fewer than 30 STFT frames are left after silent-frame removal."""


@functools.cache
def octave_filter(p: int, q: int) -> np.ndarray:
    """Octave's `resample` anti-aliasing filter for a p/q rate change, normalised to unit sum."""
    g = math.gcd(p, q)
    p, q = p // g, q // g
    cutoff = 1.0 / (2 * max(p, q))
    rejection_db = 60.0
    half = math.ceil((rejection_db - 8) / (28.714 * cutoff / 10))
    t = np.arange(-half, half + 1)
    beta = 0.1102 * (rejection_db - 8.7)  # Kaiser's beta for a rejection above 50 dB
    h = np.kaiser(2 * half + 1, beta) * (2 * p * cutoff * np.sinc(2 * cutoff * t))
    return h / h.sum()


def resample_to_10k(x: np.ndarray, rate: int) -> np.ndarray:
    from scipy.signal import resample_poly

    if rate == FS:
        return np.asarray(x, dtype=np.float64)
    g = math.gcd(FS, rate)
    return resample_poly(np.asarray(x, dtype=np.float64), FS // g, rate // g,
                         window=octave_filter(FS, rate))


def resample_to_10k_torch(x: torch.Tensor, rate: int) -> torch.Tensor:
    """`resample_to_10k` in torch, differentiable, over the last axis of x (batch, samples):
    scipy's `resample_poly` (zero-stuff by p, the filter scaled by p, keep every q-th sample,
    trim the filter's delay) written as one strided convolution."""
    from torch.nn import functional as F

    if rate == FS:
        return x
    g = math.gcd(FS, rate)
    up, down = FS // g, rate // g
    h = octave_filter(FS, rate) * up
    half = (len(h) - 1) // 2
    pre = down - half % down
    n_in = x.shape[-1]
    n_out = -(-n_in * up // down)
    remove = (half + pre) // down
    h = np.concatenate([np.zeros(pre), h, np.zeros(down)])  # post-padding as long as any trim needs
    shape = x.shape
    x = x.reshape(-1, 1, n_in)
    stuffed = x.new_zeros((x.shape[0], 1, n_in * up))
    stuffed[..., ::up] = x
    kernel = torch.as_tensor(h[::-1].copy(), dtype=x.dtype, device=x.device).view(1, 1, -1)
    # full convolution sampled at 0, q, 2q, ...: y[m] = sum_j h[j] stuffed[m q - j]
    y = F.conv1d(F.pad(stuffed, (len(h) - 1, len(h) - 1)), kernel, stride=down)
    return y[..., remove:remove + n_out].reshape(*shape[:-1], n_out)


@functools.cache
def third_octave_matrix() -> np.ndarray:
    """15 x 257 band matrix: ones from the bin nearest each band's lower edge (inclusive) to the
    bin nearest its upper edge (exclusive); edges at 150 * 2^((2k -+ 1) / 6) Hz."""
    f = np.linspace(0, FS, NFFT + 1)[: NFFT // 2 + 1]
    k = np.arange(BANDS, dtype=np.float64)
    low = MIN_FREQ * 2.0 ** ((2 * k - 1) / 6)
    high = MIN_FREQ * 2.0 ** ((2 * k + 1) / 6)
    m = np.zeros((BANDS, len(f)))
    for i in range(BANDS):
        lo = int(np.argmin((f - low[i]) ** 2))
        hi = int(np.argmin((f - high[i]) ** 2))
        m[i, lo:hi] = 1.0
    return m


def _window(device, dtype) -> torch.Tensor:
    k = torch.arange(1, FRAME + 1, device=device, dtype=dtype)
    return 0.5 - 0.5 * torch.cos(2 * math.pi * k / (FRAME + 1))


def _frames(x: torch.Tensor) -> torch.Tensor:
    """Frames starting at 0, HOP, ... while start < len - FRAME (pystoi's range)."""
    count = max(0, math.ceil((x.shape[-1] - FRAME) / HOP))
    if count == 0:
        return x.new_zeros((0, FRAME))
    return x.unfold(-1, FRAME, HOP)[:count]


def _remove_silence(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    w = _window(x.device, x.dtype)
    fx, fy = _frames(x) * w, _frames(y) * w
    if fx.shape[0] == 0:
        return x[:0], y[:0]
    energy = 20 * torch.log10(torch.linalg.vector_norm(fx, dim=-1) + EPS)
    keep = (energy.max() - DYN_RANGE - energy) < 0
    fx, fy = fx[keep], fy[keep]

    def overlap_add(frames):
        k = frames.shape[0]
        out = frames.new_zeros((k + 1, HOP))
        out[:k] += frames[:, :HOP]
        out[1:] += frames[:, HOP:]
        return out.reshape(-1)

    return overlap_add(fx), overlap_add(fy)


def _band_magnitudes(x: torch.Tensor, floor: float = 0.0) -> torch.Tensor:
    """bands x frames (`floor` is added to the band powers: a loss needs a finite gradient of
    the square root at an empty band)."""
    spec = torch.fft.rfft(_frames(x) * _window(x.device, x.dtype), n=NFFT)
    power = spec.real ** 2 + spec.imag ** 2
    obm = torch.as_tensor(third_octave_matrix(), device=x.device, dtype=x.dtype)
    return torch.sqrt(obm @ power.T + floor)


def _stoi(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """xs, ys: segments x bands x 30."""
    norm_x = torch.linalg.vector_norm(xs, dim=-1, keepdim=True)
    norm_y = torch.linalg.vector_norm(ys, dim=-1, keepdim=True)
    y = ys * (norm_x / (norm_y + EPS))
    y = torch.minimum(y, xs * (1 + 10 ** (-BETA_DB / 20)))
    y = y - y.mean(-1, keepdim=True)
    x = xs - xs.mean(-1, keepdim=True)
    y = y / (torch.linalg.vector_norm(y, dim=-1, keepdim=True) + EPS)
    x = x / (torch.linalg.vector_norm(x, dim=-1, keepdim=True) + EPS)
    return (x * y).sum() / (xs.shape[0] * xs.shape[1])


def _normalise(s: torch.Tensor, dim: int) -> torch.Tensor:
    s = s - s.mean(dim, keepdim=True)
    tiny = torch.finfo(s.dtype).tiny
    return s / torch.linalg.vector_norm(s, dim=dim, keepdim=True).clamp_min(tiny)


def _estoi(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    x = _normalise(_normalise(xs, -1), 1)
    y = _normalise(_normalise(ys, -1), 1)
    return (x * y).sum() / SEGMENT / xs.shape[0]


def stoi_batch(references, estimates, rate: int, *, extended: bool = False, device=None,
               dtype: torch.dtype = torch.float64) -> list[float]:
    """STOI (or ESTOI) of each (reference, estimate) pair of 1-D arrays at `rate` Hz (a pair is
    trimmed to its shorter length). Raises TooShort for an item with under 30 frames of speech;
    `stoi_scores` reports per item instead."""
    values = stoi_scores(references, estimates, rate, extended=extended, device=device, dtype=dtype)
    for v in values:
        if isinstance(v, Exception):
            raise v
    return values


def stoi_scores(references, estimates, rate: int, *, extended: bool = False, device=None,
                dtype: torch.dtype = torch.float64) -> list[float | Exception]:
    """As `stoi_batch`, with a TooShort exception in place of each item that cannot be scored."""
    device = torch.device(device or "cpu")
    out: list[float | Exception] = []
    for ref, est in zip(references, estimates, strict=True):
        n = min(len(ref), len(est))
        x = torch.as_tensor(resample_to_10k(np.asarray(ref)[:n], rate), device=device, dtype=dtype)
        y = torch.as_tensor(resample_to_10k(np.asarray(est)[:n], rate), device=device, dtype=dtype)
        x, y = _remove_silence(x, y)
        bx, by = _band_magnitudes(x), _band_magnitudes(y)
        if bx.shape[-1] < SEGMENT:
            out.append(TooShort("fewer than 30 STFT frames after silent-frame removal"))
            continue
        xs = bx.unfold(-1, SEGMENT, 1).transpose(0, 1)  # segments x bands x 30
        ys = by.unfold(-1, SEGMENT, 1).transpose(0, 1)
        out.append(float(_estoi(xs, ys) if extended else _stoi(xs, ys)))
    return out


def estoi_differentiable(references: torch.Tensor, estimates: torch.Tensor, rate: int) -> torch.Tensor:
    """ESTOI of each row of `estimates` (batch, samples) against the same row of `references`,
    as a tensor with a gradient (a training loss): the algorithm above end to end in torch, the
    resampling by `resample_to_10k_torch`, silent frames chosen on the reference (as pystoi
    does, so the choice carries no gradient). Band powers get a floor of 1e-12 (about 1e-7 in
    magnitude), where `stoi_scores` has none; an item with under 30 frames of speech raises
    TooShort."""
    x10 = resample_to_10k_torch(references, rate)
    y10 = resample_to_10k_torch(estimates, rate)
    out = []
    for x, y in zip(x10, y10, strict=True):
        x, y = _remove_silence(x.detach(), y)
        bx, by = _band_magnitudes(x, 1e-12), _band_magnitudes(y, 1e-12)
        if bx.shape[-1] < SEGMENT:
            raise TooShort("fewer than 30 STFT frames after silent-frame removal")
        segments = [b.unfold(-1, SEGMENT, 1).transpose(0, 1) for b in (bx, by)]  # segments x bands x 30
        out.append(_estoi(*segments))
    return torch.stack(out)
