"""HAAQI v1 (Kates & Arehart 2015/2016), fast: the same algorithm and numbers as pyclarity's
`haaqi_v1`, vectorised over auditory bands and segments and scored for a batch of
(reference, processed, audiogram) items in one call.

The model, item by item (24 kHz signals; pyclarity is the reference in the tests):

1. Input alignment: the processed signal is shifted by the lag of the maximum |cross-covariance|
   with the reference, less 2 ms, and both are cut to the span where |reference| exceeds 0.001
   of its peak. With equalisation=1 the reference gets the listener's NAL-R (pyclarity's `NALR`,
   140 taps).
2. Middle ear (1-pole low-pass at 5 kHz, 2-pole high-pass at 350 Hz), then 32 gammatone bands
   (ERB-spaced, 80 Hz to 8 kHz). A control pass at the widest (100 dB loss) bandwidths sets each
   band's bandwidth from its level (50 to 100 dB SPL between the listener's minimum and the
   maximum); the main pass gives each band's envelope and basilar-membrane (BM) motion.
3. Outer hair cells: dynamic-range compression driven by the control envelope (gain low-passed
   at 800 Hz), the processed envelope and BM aligned to the reference's (lags up to 100 ms),
   conversion to dB above the inner-hair-cell threshold, and the IHC rapid/short-term
   adaptation circuit. Gaussian noise 10 dB below threshold is added to the BM motion, and the
   bands' group delays are compensated.
4. Features: the envelopes smoothed in 8 ms half-overlapping Hann segments give a mel-cepstrum
   (6 coefficients) whose modulation-filtered (8 bands to 125 Hz) correlations give the
   high-modulation cepstral correlation; the BM motion in 16 ms segments gives the maximum
   normalised cross-covariance within 1 ms per (band, segment), averaged with IHC
   synchronisation weights (BM sync 5); the long-term band levels give the loudness and
   normalised-spectrum differences.
5. HAAQI = 0.336 N + 0.001 L + 0.501 N^2 + 0.161 L^2, N = 0.754 cep^3 + 0.246 bmsync5,
   L = 0.329 dloud + 0.671 dnorm.

Internal noise follows the reference's seeding exactly: each item draws from its own numpy
RandomState (or numpy's global generator) in pyclarity's order and amounts: the reference's BM
noise (32 x n), the processed signal's, then the two mel-cepstrum draws (32 x segments above
threshold, scaled by add_noise = 0 but drawn all the same). Items sharing a RandomState consume
it in batch order, as consecutive pyclarity calls would. Drawing (numpy's legacy Gaussian,
compiled: about 0.4 s of one core per 30 s item) runs in a worker thread alongside the model;
for the torch engine, items with generators of their own are drawn by several threads.

On the CPU the sample-by-sample recursions (filters, IHC circuit, segment covariances) run in
compiled kernels (`_numba`), written to the same direct-form-II-transposed arithmetic as scipy's
`lfilter` (the gammatone's 32 bands side by side, vectorised across bands); the rest is
torch: the lag searches by overlap-save FFT correlation, the compression gain and dB
conversions as a few whole-array passes. The bands x samples arrays live in a
workspace reused from item to item (`_Workspace`). float64 (default) matches pyclarity to
rounding; float32 is accepted within 0.01.

`haaqi_v1_batch(..., device=, engine=)` picks the engine: "compiled" (the above; CPU only, the
default there) or "torch" (`haaqi_torch`: the same model in torch operations alone, every
recursion a block-and-prefix-scan state-space filter; the default on any other device, such as
CUDA). Both pass the same parity tests against pyclarity; on this CPU the torch engine is
slower than pyclarity (about 39 s per 30 s item) and is there for GPUs.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import threading
from dataclasses import dataclass

import numpy as np
import torch
from scipy.signal import butter, firwin, group_delay

from harness.metrics.fast import _numba
from harness.metrics.fast.bsseval import _fast_len

RATE = 24000
NCHAN = 32
AUDIOGRAM_FREQUENCIES = np.array([250, 500, 1000, 2000, 4000, 6000])
EAR_Q = 9.26449
MIN_BW = 24.7
SMALL = 1e-30
THRESHOLD_DB = 2.5  # silence threshold, dB above auditory threshold
ALIGN_RANGE_MS = 100  # envelope alignment search range
IHC_NOISE_DB = -10.0  # BM noise level re: auditory threshold
NALR_TAPS = 140


def centre_frequencies(nchan: int = NCHAN, low: float = 80.0, high: float = 8000.0) -> np.ndarray:
    """Gammatone centre frequencies, equally spaced on the ERB scale (Slaney's TR #35), ascending."""
    c = EAR_Q * MIN_BW
    k = np.arange(1, nchan)
    cf = -c + np.exp(k * (-np.log(high + c) + np.log(low + c)) / (nchan - 1)) * (high + c)
    return np.flip(np.concatenate([[high], cf]))


@dataclass(frozen=True)
class Ear:
    """Cochlear parameters per band for one audiogram (Kates's apportioning of the loss
    between outer and inner hair cells, after Moore et al. 1999)."""

    attn_ohc: np.ndarray
    bw_min: np.ndarray
    low_knee: np.ndarray
    ratio: np.ndarray
    attn_ihc: np.ndarray

    @classmethod
    def from_loss(cls, loss: np.ndarray, cf: np.ndarray) -> Ear:
        loss = np.asarray(loss, dtype=np.float64)
        f = np.concatenate([[cf[0]], AUDIOGRAM_FREQUENCIES, [cf[-1]]])
        v = np.concatenate([[loss[0]], loss, [loss[-1]]])
        band_loss = np.maximum(np.interp(cf, f, v), 0)
        n = len(cf)
        ratio = 1.25 + 2.25 * np.arange(n) / (n - 1)  # 1.25:1 at 80 Hz to 3.5:1 at 8 kHz
        theoretical = 1.25 * 70 * (1 - 1 / ratio)
        ohc = 0.8 * band_loss
        ihc = 0.2 * band_loss
        over = band_loss >= theoretical
        ohc[over] = 0.8 * theoretical[over]
        ihc[over] = 0.2 * theoretical[over] + (band_loss[over] - theoretical[over])
        bw = 1 + ohc / 50.0 + 2.0 * (ohc / 50.0) ** 6
        knee = ohc + 30
        upamp = 30 + 70 / ratio
        ratio = (100 - knee) / (upamp + ohc - knee)
        return cls(ohc, bw, knee, ratio, ihc)


def gammatone_coefficients(bw: np.ndarray, cf: np.ndarray) -> np.ndarray:
    """Per band: cos w, sin w, a1..a5 and gain of Kates's 4th-order gammatone (rows x 8)."""
    erb = MIN_BW + cf / EAR_Q
    tpt = 2 * np.pi / RATE
    a = np.exp(-(bw * tpt * erb * 1.019))
    a1, a2, a3, a4, a5 = 4.0 * a, -6.0 * a * a, 4.0 * a * a * a, -a * a * a * a, 4.0 * a * a
    gain = 2.0 * (1 - a1 - a2 - a3 - a4) / (1 + a1 + a5)
    w = tpt * cf
    return np.stack([np.cos(w), np.sin(w), a1, a2, a3, a4, a5, gain], axis=-1)


def _correlation(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Full linear cross-correlation c[k] = sum_n x[n + k - (N - 1)] y[n] (scipy's `correlate`
    'full' ordering), by FFT."""
    n = len(x)
    size = _fast_len(2 * n - 1)
    X = torch.fft.rfft(torch.from_numpy(x), n=size)
    Y = torch.fft.rfft(torch.from_numpy(y), n=size)
    c = torch.fft.irfft(X * Y.conj(), n=size).numpy()
    return np.concatenate([c[size - (n - 1):], c[:n]])


def align_inputs(reference: np.ndarray, processed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kates's bulk alignment and silence trimming (pyclarity's `input_align`)."""
    n = min(len(reference), len(processed))
    c = _correlation(reference[:n] - reference[:n].mean(), processed[:n] - processed[:n].mean())
    delay = n - int(np.argmax(np.abs(c))) - 1
    delay = int(np.rint(delay - 2 * RATE / 1000.0))
    m = len(processed)
    if delay > 0:
        processed = np.concatenate((processed[delay:m], np.zeros(delay)))
    else:
        processed = np.concatenate((np.zeros(-delay), processed[: m + delay]))
    mag = np.abs(reference)
    above = np.nonzero(mag > 0.001 * mag.max())[0]
    first, last = above[0], min(above[-1], m)
    return reference[first:last + 1], processed[first:last + 1]


def _nalr(reference: np.ndarray, loss: np.ndarray) -> np.ndarray:
    from clarity.enhancer.nalr import NALR
    from clarity.utils.audiogram import Audiogram

    enhancer = NALR(NALR_TAPS, RATE)
    fir, _ = enhancer.build(Audiogram(levels=np.asarray(loss), frequencies=AUDIOGRAM_FREQUENCIES))
    return enhancer.apply(fir, reference)[NALR_TAPS:NALR_TAPS + len(reference)]


# ------------------------------------------------------------------------------------ filters


def _lfilter(b: np.ndarray, a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The same IIR filter (b, a) along every row of x."""
    x = np.ascontiguousarray(x)
    R = x.shape[0]
    b = np.broadcast_to(np.asarray(b, np.float64) / a[0], (R, len(a))).copy()
    a = np.broadcast_to(np.asarray(a, np.float64) / a[0], (R, len(a))).copy()
    y = np.empty_like(x)
    _numba.lfilter_rows(b, a, x, y)
    return y


class _Workspace:
    """The per-item arrays of bands x samples (control then adapted, envelope, BM motion: 370 MB each
    for two sides of 30 s in float64), allocated once per batch at its longest item and reused
    by every item. Fresh pages first written by the parallel kernels cost more than the kernels
    (one gammatone pass: 0.19 s on faulted-in pages, about twice that on fresh ones); an array
    is faulted in by one sequential fill when it is made."""

    def __init__(self, n_max: int, dtype) -> None:
        self.n_max, self.dtype, self.flat = n_max, dtype, {}

    def take(self, name: str, rows: int, n: int) -> np.ndarray:
        buf = self.flat.get(name)
        if buf is None or buf.size < rows * n:
            buf = np.empty(rows * max(n, self.n_max), self.dtype)
            buf.fill(0)
            self.flat[name] = buf
        return buf[: rows * n].reshape(rows, n)


def _control_envelopes(x: np.ndarray, coef: np.ndarray, work: _Workspace
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The control path's envelopes, time-major (sides x N x bands: they only feed the
    compression gain, which is elementwise, and the analysis kernel, which reads them sample by
    sample across the bands), and their RMS (sides x bands); x is sides x N, coef sides x bands
    x 8."""
    S, K = coef.shape[:2]
    N = x.shape[1]
    out = work.take("control", S, N * K)
    rms = np.empty(S * K)
    _numba.gammatone_envelopes(x, np.ascontiguousarray(coef, np.float64), out, rms)
    return out.reshape(S, N, K), rms.reshape(S, K)


def _compressed_bands(x: np.ndarray, coef: np.ndarray, gain: np.ndarray, work: _Workspace
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Envelopes and BM motion of the bands (sides x bands x N, the workspace's "env" and "bm"),
    each times the compression gain (sides x N x bands, time-major) low-passed at 800 Hz, and
    the envelopes' RMS before the gain (sides x bands)."""
    S, K = coef.shape[:2]
    N = x.shape[1]
    env = work.take("env", S * K, N)
    bm = work.take("bm", S * K, N)
    rms = np.empty(S * K)
    lp_b, lp_a = butter(1, 800 / (0.5 * RATE))
    lp = np.array([lp_b[0] / lp_a[0], lp_b[1] / lp_a[0], lp_a[1] / lp_a[0]])
    _numba.gammatone_bands(x, np.ascontiguousarray(coef, np.float64), env, bm, rms,
                           gain.reshape(S, N * K), lp)
    return env.reshape(S, K, N), bm.reshape(S, K, N), rms.reshape(S, K)


def _align_lags(ref: torch.Tensor, out: torch.Tensor, lags: int,
                cache_bytes: float = 4e6) -> np.ndarray:
    """Per row, the delay d in [-lags, lags - 1] maximising R(d) = sum_n ref[n - d] out[n]
    (the largest d among equal maxima, as numpy's argmax over pyclarity's lag window).

    Overlap-save in the frequency domain: out is cut into blocks of B samples, each correlated
    with the stretch of ref it can meet (B + 2 lags samples) by FFTs of m = B + 2 lags points,
    and the block spectra are summed before one inverse FFT. Exact (no wrap-around: a block's
    products all fall inside its m points), and the short FFTs stay in cache, where one FFT of
    N + lags points per row streams from memory (0.5-0.7 s against 0.8-1.0 s for 32 rows of
    30 s). Rows go as many at a time as keep one set of block spectra within `cache_bytes`,
    so they stay in cache through the product and the sum: one row of 30 s (3.4 MB in
    float32; 4 rows at a time took 20-40% longer), more rows of a short signal (one FFT call
    per row made a 1.5 s item 60% slower: each call has a fixed cost)."""
    K, N = ref.shape
    m = 1 << max(12, math.ceil(math.log2(12 * lags)))
    B = m - 2 * lags
    nb = -(-N // B)
    chunk = max(1, int(cache_bytes // (nb * (m // 2 + 1) * 2 * ref.element_size())))
    pad = torch.nn.functional.pad
    best = []
    for k in range(0, K, chunk):
        blocks = pad(out[k:k + chunk], (0, nb * B - N)).reshape(-1, nb, B)
        spans = pad(ref[k:k + chunk], (lags, nb * B + lags - N)).unfold(-1, B + 2 * lags, B)
        spec = torch.fft.rfft(spans, n=m)
        spec.mul_(torch.fft.rfft(blocks, n=m).conj_physical())
        c = torch.fft.irfft(spec.sum(1), n=m)  # c[s] = R(lags - s)
        del spec
        best.append(torch.argmax(c[:, 1:2 * lags + 1], dim=-1))  # d = lags - 1 down to -lags
    return lags - 1 - torch.cat(best).cpu().numpy()


def _ohc_gain(control: torch.Tensor, knee, slope, attn, level1: float, *,
              bands_last: bool = False) -> torch.Tensor:
    """The outer hair cells' linear gain per sample from the control envelope (rows x N,
    overwritten): its level L = level1 + 20 log10 x in dB SPL clipped to [knee, 100] sets a gain
    of -attn - (L - knee) * slope dB per band. In linear terms that is
    10^(-attn/20) (x_c / x_knee)^(-slope), x_c the envelope clipped to the amplitudes of knee
    and 100 dB SPL: three passes over the rows (clip, power, scale) where the dB form needs
    eight. With bands_last, control is ... x bands (time-major) and the parameters are per band."""
    knee, slope, attn = (np.asarray(v, dtype=np.float64) for v in (knee, slope, attn))
    x_knee = 10.0 ** ((knee - level1) / 20)
    lo = np.maximum(x_knee, 1e-30)  # the reference floors the envelope at 1e-30 before the log
    hi = np.maximum(10.0 ** ((100.0 - level1) / 20), lo)  # a knee above 100 dB: a fixed gain
    def col(v):
        t = torch.as_tensor(v, dtype=control.dtype, device=control.device)
        return t if bands_last else t[:, None]

    control.clamp_(min=col(lo), max=col(hi)).pow_(col(-slope))
    return control.mul_(col(10.0 ** (-attn / 20) * x_knee ** slope))


def _db_sl(env: torch.Tensor, attn_ihc, level1: float, out: torch.Tensor) -> None:
    """The envelopes in dB above the inner-hair-cell threshold, clipped at 0, into out."""
    col = torch.as_tensor(level1 - np.asarray(attn_ihc), dtype=env.dtype, device=env.device)[:, None]
    torch.add(env, SMALL, out=out)
    torch.add(col, out.log10_(), alpha=20, out=out).clamp_min_(0.0)  # four passes, not five


def _group_delays(bw: np.ndarray, cf: np.ndarray) -> np.ndarray:
    """Samples of delay that line every band up with the slowest one."""
    erb = MIN_BW + cf / EAR_Q
    tpt = 2 * np.pi / RATE
    a = np.exp(-(tpt * 1.019 * bw * erb))
    gd = np.empty(len(cf))
    for k in range(len(cf)):
        ak = a[k]
        num = [1.0, 4.0 * ak, 4.0 * ak * ak]
        den = [1.0, -4.0 * ak, 6.0 * ak * ak, -4.0 * ak * ak * ak, ak * ak * ak * ak]
        gd[k] = group_delay((num, den), w=1)[1][0]
    gd = np.rint(gd).astype(int)
    gd = gd - gd.min()
    return gd.max() - gd


def _delay_bands(x: np.ndarray, delays: np.ndarray) -> None:
    """Delay band k of every side of x (sides x bands x N, C-contiguous) by delays[k] samples,
    in place."""
    S, K, N = x.shape
    _numba.shift_rows(x.reshape(S * K, N), -np.tile(np.asarray(delays, np.int64), S))


def _levels_to_sl(rms, control_rms, ear: Ear, level1: float) -> np.ndarray:
    """Long-term band levels in dB SL after the OHC gain and IHC loss."""
    control_db = level1 + 20 * np.log10(np.maximum(control_rms, SMALL))
    control_db = np.maximum(np.minimum(control_db, 100), ear.low_knee)
    gain = -ear.attn_ohc - (control_db - ear.low_knee) * (1 - 1 / ear.ratio)
    level = np.maximum(level1 + 20 * np.log10(np.maximum(rms, SMALL)), 0)
    return np.maximum(level + gain - ear.attn_ihc, 0)


# ----------------------------------------------------------------------------------- features


def smooth_envelopes(env: torch.Tensor, segment_ms: float = 8) -> torch.Tensor:
    """Kates's env_smooth: Hann-weighted means over half-overlapping segments (the first and
    last halves weighted by half windows), rows x segments."""
    W = int(np.around(segment_ms * (0.001 * RATE)))
    W += W % 2
    h = W // 2
    win = torch.from_numpy(np.hanning(W)).to(env)
    N = env.shape[-1]
    nseg = int(1 + np.floor(N / W) + np.floor((N - W / 2) / W))
    first = env[:, :h] @ win[h:] / win[h:].sum()
    middle = env[:, h:].unfold(-1, W, h)[:, : nseg - 2] @ win / win.sum()
    s = (nseg - 1) * h
    last = env[:, s:s + h] @ win[:h] / win[h:].sum()
    return torch.cat([first[:, None], middle, last[:, None]], dim=1)


def _modulation_filters(segment_ms: float = 8) -> tuple[np.ndarray, int]:
    """The 9 modulation-band FIR filters (Hann-windowed, to 125 Hz at 250 Hz envelope rate)."""
    edges = [4.0, 8.0, 12.5, 20.0, 32.0, 50.0, 80.0]
    nyq = 0.5 * 1000.0 / (0.5 * segment_ms)
    nfir = int(2 * np.floor(np.around(128 * (nyq / 125)) / 2))
    bands = [firwin(nfir + 1, edges[0] / nyq, window="hann", pass_zero="lowpass")]
    bands += [firwin(nfir + 1, [edges[m - 1] / nyq, edges[m] / nyq], window="hann",
                     pass_zero="bandpass") for m in range(1, len(edges))]
    bands.append(firwin(nfir + 1, edges[-1] / nyq, window="hann", pass_zero="highpass"))
    return np.stack(bands), nfir


def above_threshold(smooth_ref: torch.Tensor) -> torch.Tensor:
    """Segments whose mean specific loudness exceeds the silence threshold."""
    level = 20 * torch.log10(torch.sum(10 ** (smooth_ref / 20), 0) / smooth_ref.shape[0])
    return torch.nonzero(level > THRESHOLD_DB)[:, 0]


def cepstral_correlation_high(ref: torch.Tensor, proc: torch.Tensor, index: torch.Tensor) -> float:
    """melcor9's high-modulation (bands 5-8) mel-cepstrum correlation, from the smoothed dB
    envelopes (bands x segments) at the segments above threshold."""
    nb = ref.shape[0]
    if len(index) <= 1:
        return 0.0
    k = np.arange(nb)
    basis = np.cos(np.outer(k, np.arange(6)) * np.pi / (nb - 1))
    cepm = torch.from_numpy(basis / np.linalg.norm(basis, axis=0, keepdims=True)).to(ref)
    cr = cepm.T @ ref[:, index]
    cp = cepm.T @ proc[:, index]
    cr = cr - cr.mean(1, keepdim=True)
    cp = cp - cp.mean(1, keepdim=True)
    b, nfir = _modulation_filters()
    w = torch.from_numpy(b[:, ::-1].copy()).to(ref)[:, None, :]  # 9 x 1 x taps, flipped
    both = torch.cat([cr, cp])[:, None, :]  # 12 x 1 x S
    f = torch.nn.functional.conv1d(both, w, padding=nfir // 2)  # 12 x 9 x S
    f = f - f.mean(-1, keepdim=True)
    x, y = f[:6].transpose(0, 1), f[6:].transpose(0, 1)  # 9 x 6 x S
    xs, ys = (x * x).sum(-1), (y * y).sum(-1)
    xy = (x * y).sum(-1)
    ok = (xs >= SMALL) & (ys >= SMALL)
    cov = torch.where(ok, xy.abs() / torch.sqrt(torch.where(ok, xs * ys, 1.0)), 0.0)
    return float(cov[4:8, 1:].sum() / (4 * 5))


def spectrum_differences(ref_sl: np.ndarray, proc_sl: np.ndarray) -> tuple[float, float]:
    """Standard deviations (times the band count) of the loudness-normalised spectra's
    difference and of their relative difference."""
    n = len(ref_sl)
    x = 10 ** (ref_sl / 20)
    y = 10 ** (proc_sl / 20)
    x = x / x.sum()
    y = y / y.sum()
    return n * np.std(x - y), n * np.std((x - y) / (x + y))


def bm_covariances(ref_bm: np.ndarray, proc_bm: np.ndarray, segment_ms: float = 16, *,
                   noise: tuple[np.ndarray, np.ndarray] | None = None, noise_gain: float = 0.0,
                   delays: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Kates's bm_covary: per band and segment, the max normalised cross-covariance within
    +-1 ms and the reference's mean square (times 2). With noise and delays, those of
    ref_bm + noise_gain noise[0] and proc_bm + noise_gain noise[1], band k delayed by
    delays[k] samples, formed inside the kernel (the inputs are left as they are)."""
    maxlag = int(np.around(1.0 * (0.001 * RATE)))
    W = int(np.around(segment_ms * (0.001 * RATE)))
    W += W % 2
    h = W // 2
    win = np.hanning(W)

    def inv_corr(w):
        c = np.correlate(w, w, "full")
        return 1 / c[len(w) - 1 - maxlag: maxlag + len(w)]

    K, N = ref_bm.shape
    nseg = int(1 + np.floor(N / W) + np.floor((N - W / 2) / W))
    dt = ref_bm.dtype
    cov = np.empty((K, nseg), dt)
    msx = np.empty((K, nseg), dt)
    msy = np.empty((K, nseg), dt)
    x, y = np.ascontiguousarray(ref_bm), np.ascontiguousarray(proc_bm)
    nx, ny = (x, y) if noise is None else (np.ascontiguousarray(v, dt) for v in noise)
    gain = 0.0 if noise is None else float(noise_gain)
    delays = np.zeros(K, np.int64) if delays is None else np.asarray(delays, np.int64)
    _numba.segment_covariance(x, y, nx, ny, gain, delays,
                              win.astype(dt), inv_corr(win[h:]).astype(dt),
                              inv_corr(win).astype(dt), dt.type(1 / np.sum(win[h:] ** 2)),
                              dt.type(1 / np.sum(win ** 2)), maxlag, nseg, cov, msx, msy)
    return cov, 2.0 * msx


def bm_sync(cov: np.ndarray, ms: np.ndarray, cf: np.ndarray) -> float:
    """ave_covary2's IHC-synchronisation-weighted average covariance, 5th low-pass (order 5 at
    3.5 kHz): the BM sync 5 term."""
    rms = np.sqrt(ms)
    level = 20 * np.log10(np.sum(10 ** (rms / 20), 0) / cov.shape[0])
    index = np.nonzero(level > THRESHOLD_DB)[0]
    if len(index) <= 1:
        return 0.0
    fsync = np.sqrt(3500.0 ** 10 / (3500.0 ** 10 + cf ** 10))
    c = cov[:, index]
    w = np.where(rms[:, index] > THRESHOLD_DB, fsync[:, None], 0.0)
    return float(np.sum(w * c) / np.sum(w))


# -------------------------------------------------------------------------------------- model


def _ihc_circuit(rate: float, delta: float = 2.0) -> tuple[float, ...]:
    """Kates's IHC adaptation circuit (two capacitors, time constants 2 and 60 ms) discretised
    at `rate`, as the coefficients of its update from the dB SL input v0: b1 = v0 r2 + p1 v1,
    b2 = p2 v2, v1' = denom (a22 b1 - a12 b2), v2' = denom (-a21 b1 + a11 b2), output
    max((v0 - v1') / r1, 0). Returns (r1, r2, p1, p2, a11, a12, a21, a22, denom); both engines
    take them from here."""
    delta = max(delta, 1.0001)
    r_1 = 1 / delta
    r_2 = 0.5 * (1 - r_1)
    r_3 = r_2
    tau1, tau2 = 0.002, 0.060
    c_1 = tau1 * (r_1 + r_2) / (r_1 * r_2)
    c_2 = tau2 / ((r_1 + r_2) * r_3)
    a11 = r_1 + r_2 + r_1 * r_2 * (c_1 * rate)
    a12 = -r_1
    a21 = -r_3
    a22 = r_2 + r_3 + r_2 * r_3 * (c_2 * rate)
    denom = 1 / ((a11 * a22) - (a21 * a12))
    p1 = r_1 * r_2 * (c_1 * rate)
    p2 = r_2 * r_3 * (c_2 * rate)
    return r_1, r_2, p1, p2, a11, a12, a21, a22, denom


@dataclass
class HaaqiResult:
    score: float
    nonlinear: float
    linear: float
    cepstral_high: float
    bm_sync5: float
    d_loud: float
    d_norm: float


def _standard_normal_into(rs: np.random.RandomState, out: np.ndarray) -> np.ndarray:
    """out (C-contiguous) filled with rs.standard_normal(out.shape)'s very draws (rounded if out
    is float32), rs advanced as that call would have advanced it; compiled
    (`_numba.legacy_gauss_fill`, about 9 ns a draw against numpy's 16-19 here) and written in
    place (no fresh pages per item). A RandomState on another bit generator than MT19937 draws
    through numpy."""
    state = rs.get_state(legacy=False)
    if state["bit_generator"] != "MT19937":
        out[...] = rs.standard_normal(out.shape)
        return out
    key = np.array(state["state"]["key"], dtype=np.uint32)
    pos, has_gauss, gauss = _numba.legacy_gauss_fill(key, int(state["state"]["pos"]),
                                                     bool(state["has_gauss"]),
                                                     float(state["gauss"]), out.reshape(-1))
    state["state"] = {"key": key, "pos": int(pos)}
    state["has_gauss"], state["gauss"] = int(has_gauss), float(gauss)
    rs.set_state(state)
    return out


class _NoiseWorker:
    """Draws the items' internal noise in pyclarity's order on worker threads: item b's BM noise
    (reference, processed), then, once the model reports item b's count of segments above
    threshold, the two mel-cepstrum draws. With one thread (always, when items share a
    generator) item b + 1 follows; each of `threads` threads otherwise takes every threads-th
    item, so that many items' noise is drawn at once (each item's generator is its own, so the
    draws are the same). A thread's BM noise goes into one of two buffers in turn: its next
    item is drawn while the model works on this one, after the model has reported this one's
    count, and the item after that once the model has moved on."""

    def __init__(self, rngs, lengths, nchan, dtype=np.float64, threads: int = 1):
        self.out = [queue.Queue(1) for _ in rngs]
        self.counts = [queue.Queue(1) for _ in rngs]
        self.error = None
        if len({id(r) for r in rngs}) < len(rngs):
            threads = 1  # a shared generator is drawn in item order
        threads = max(1, min(threads, len(rngs)))
        self.threads = [threading.Thread(target=self._run, args=(rngs, lengths, nchan, dtype, t,
                                                                 threads), daemon=True)
                        for t in range(threads)]
        for thread in self.threads:
            thread.start()

    def _run(self, rngs, lengths, nchan, dtype, first, step):
        try:
            n_max = max(lengths, default=0)
            flat = [None, None]
            for i, b in enumerate(range(first, len(rngs), step)):
                rs, n = rngs[b], lengths[b]
                if flat[i % 2] is None:  # in the model's dtype: float32 halves the traffic
                    flat[i % 2] = np.empty(2 * nchan * n_max, dtype)
                both = flat[i % 2][: 2 * nchan * n].reshape(2, nchan, n)
                self.out[b].put((_standard_normal_into(rs, both[0]), _standard_normal_into(rs, both[1])))
                count = self.counts[b].get()
                if count > 1:
                    rs.standard_normal((nchan, count))
                    rs.standard_normal((nchan, count))
        except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
            self.error = exc
            for q in self.out:
                if q.empty():
                    q.put(None)

    def noise(self, b):
        got = self.out[b].get()
        if got is None:
            raise self.error
        return got


def _rng(seed):
    if seed is None:
        return np.random.mtrand._rand
    if isinstance(seed, np.random.RandomState):
        return seed
    return np.random.RandomState(seed)


def haaqi_v1_batch(references, processeds, losses, level1, *, equalisation: int = 1,
                   seeds=None, dtype=torch.float64, device="cpu",
                   engine: str | None = None) -> list[HaaqiResult]:
    """HAAQI v1 of each (reference, processed, loss, level1) item, all at 24 kHz.

    references, processeds: sequences of 1-D arrays (a pair trimmed to its shorter length);
    losses: per item the hearing loss in dB HL at 250, 500, 1000, 2000, 4000 and 6000 Hz;
    level1: per item the dB SPL of a signal of RMS 1 (a scalar for all);
    equalisation: 1 = apply NAL-R to the reference, 2 = the reference already has it;
    seeds: per item an int (a fresh RandomState), a RandomState (drawn from and advanced; items
    sharing one consume it in order) or None (numpy's global generator); one value for all;
    device: where the model runs; engine: "compiled" (the CPU kernels; the default on the CPU)
    or "torch" (`haaqi_torch`, torch operations only; the default on any other device)."""
    device = torch.device(device)
    engine = engine or ("compiled" if device.type == "cpu" else "torch")
    if engine not in ("compiled", "torch") or (engine == "compiled" and device.type != "cpu"):
        raise ValueError(f"engine {engine!r} cannot run on {device}: the compiled kernels are CPU-only")
    B = len(references)
    if equalisation not in (1, 2):
        raise ValueError("equalisation must be 1 (add NAL-R) or 2 (reference has NAL-R)")
    level1 = np.broadcast_to(np.asarray(level1, dtype=np.float64), (B,))
    if seeds is None or isinstance(seeds, (int, np.integer, np.random.RandomState)):
        shared = _rng(seeds)
        rngs = [shared] * B
    else:
        rngs = [_rng(s) for s in seeds]
    npdt = np.float64 if dtype == torch.float64 else np.float32
    cf = centre_frequencies()
    bw_max = Ear.from_loss(np.full(6, 100.0), cf).bw_min
    control_coef = gammatone_coefficients(bw_max, cf)

    items = []
    for b in range(B):
        x = np.asarray(references[b], dtype=np.float64).ravel()
        y = np.asarray(processeds[b], dtype=np.float64).ravel()
        n = min(len(x), len(y))
        x, y = align_inputs(x[:n], y[:n])
        if equalisation == 1:
            x = _nalr(x, losses[b])
        items.append((x, y))
    with _small_pages():
        # the compiled engine keeps both cores busy: one noise thread; on a GPU the CPU's
        # other cores draw the noise of several items at once
        threads = 1 if engine == "compiled" else min(8, os.cpu_count() or 1)
        worker = _NoiseWorker(rngs, [len(x) for x, _ in items], NCHAN, npdt, threads)
        if engine == "torch":
            from harness.metrics.fast import haaqi_torch

            return [haaqi_torch.one(x, y, np.asarray(losses[b], dtype=np.float64), float(level1[b]),
                                    cf, bw_max, control_coef, dtype, device, worker, b)
                    for b, (x, y) in enumerate(items)]
        work = _Workspace(max((len(x) for x, _ in items), default=0), npdt)
        return [_one(x, y, np.asarray(losses[b], dtype=np.float64), float(level1[b]), cf, bw_max,
                     control_coef, npdt, worker, b, work) for b, (x, y) in enumerate(items)]


@contextlib.contextmanager
def _small_pages():
    """numpy's large arrays without its transparent-huge-page advice, for the duration.

    numpy advises huge pages for arrays of 4 MB and more. Here a huge page is usually the slower
    kind to fault in: it needs a free 2 MB block, and this virtual machine's guest reports such
    blocks to the host as free (virtio-balloon free page reporting), which drops their backing,
    so touching one makes the host fault it back in. Small pages come from fragmented free
    memory that is never reported. A fresh 184 MB array took 0.35-0.55 s to fill on huge pages
    and 0.07-0.1 s on small ones (0.02 s on huge pages only when freed moments before, not yet
    reported); no compaction stall was counted. Passes over touched arrays run at the same
    speed on either. So the advice is off for the batch; the setting is numpy's own switch,
    restored on exit; a numpy without it is left alone."""
    switch = getattr(getattr(np, "_core", np).multiarray, "_set_madvise_hugepage", None)
    if switch is None:
        yield
        return
    before = switch(False)
    try:
        yield
    finally:
        switch(before)


def _one(x, y, loss, level1, cf, bw_max, control_coef, npdt, worker, b, work) -> HaaqiResult:
    ear = Ear.from_loss(loss, cf)
    N = len(x)
    lp = butter(1, 5000 / (0.5 * RATE))
    hp = butter(2, 350 / (0.5 * RATE), "high")
    xy = np.stack([x, y]).astype(npdt)
    mid = _lfilter(*hp, _lfilter(*lp, xy))

    # control pass at the widest bandwidths, then the level-dependent bandwidths
    control, control_rms = _control_envelopes(mid, np.stack([control_coef, control_coef]), work)
    with np.errstate(divide="ignore"):  # a silent band: -inf dB, the narrowest bandwidth
        control_db = 20 * np.log10(control_rms) + level1
    frac = np.clip((control_db - 50) / 50, 0, 1)
    bw = ear.bw_min + frac * (bw_max - ear.bw_min)
    bw = np.where(control_db < 50, ear.bw_min, np.where(control_db > 100, bw_max, bw))
    coef = np.stack([gammatone_coefficients(bw[s], cf) for s in range(2)])

    # OHC compression: the gain from the control envelope (in place), low-passed at 800 Hz and
    # applied inside the analysis kernel as the bands are made
    _ohc_gain(torch.from_numpy(control), ear.low_knee, 1 - 1 / ear.ratio, ear.attn_ohc, level1,
              bands_last=True)
    env, bm, env_rms = _compressed_bands(mid, coef, control, work)
    E, M = torch.from_numpy(env), torch.from_numpy(bm)
    rows = 2 * NCHAN
    del control

    # align the processed envelope and BM motion to the reference's, band by band
    lags = min(int(np.rint(0.001 * ALIGN_RANGE_MS * RATE)), N)
    d_env = _align_lags(E[0], E[1], lags)
    d_bm = _align_lags(M[0], M[1], lags)
    _numba.shift_rows(env[1], d_env.astype(np.int64))
    _numba.shift_rows(bm[1], d_bm.astype(np.int64))

    # dB SL envelopes, BM motion scaled alike, IHC adaptation
    adapted = work.take("control", rows, N).reshape(env.shape)  # the control envelope is spent
    _db_sl(E.reshape(rows, N), np.tile(ear.attn_ihc, 2), level1,
           torch.from_numpy(adapted.reshape(rows, N)))
    _numba.ihc_adaptation_rows(env.reshape(rows, N), bm.reshape(rows, N), adapted.reshape(rows, N),
                               *_ihc_circuit(RATE))
    del env, E, M

    # envelope features need no noise: report the segment count to the noise worker early
    delays = _group_delays(bw[0], cf)
    _delay_bands(adapted, delays)
    At = torch.from_numpy(adapted)
    smooth = [smooth_envelopes(At[s]) for s in range(2)]
    index = above_threshold(smooth[0])
    worker.counts[b].put(len(index))
    cep_high = cepstral_correlation_high(smooth[0], smooth[1], index)

    # the BM motion plus the internal noise, delayed like the envelopes, formed in the kernel
    cov, ms = bm_covariances(bm[0], bm[1], noise=worker.noise(b),
                             noise_gain=10 ** ((IHC_NOISE_DB - level1) / 20), delays=delays)
    sync5 = bm_sync(cov.astype(np.float64), ms.astype(np.float64), cf)

    ref_sl = _levels_to_sl(env_rms[0], control_rms[0], ear, level1)
    proc_sl = _levels_to_sl(env_rms[1], control_rms[1], ear, level1)
    return _combine(cep_high, sync5, ref_sl, proc_sl)


def _combine(cep_high: float, sync5: float, ref_sl: np.ndarray, proc_sl: np.ndarray) -> HaaqiResult:
    """HAAQI v1's nonlinear and linear terms and their combination."""
    dloud, dnorm = spectrum_differences(ref_sl, proc_sl)
    d_loud = min(max(1.0 - dloud / 2.5, 0.0), 1.0)
    d_norm = min(max(1.0 - dnorm / 25, 0.0), 1.0)
    nonlinear = 0.754 * cep_high ** 3 + 0.246 * sync5
    linear = 0.329 * d_loud + 0.671 * d_norm
    score = 0.336 * nonlinear + 0.001 * linear + 0.501 * nonlinear ** 2 + 0.161 * linear ** 2
    return HaaqiResult(float(score), float(nonlinear), float(linear), float(cep_high),
                       float(sync5), d_loud, d_norm)
