"""The fast HAAQI's model stages that both engines share (see harness.metrics.fast.haaqi)."""

from __future__ import annotations

import contextlib
import math
import queue
import threading
from dataclasses import dataclass

import numpy as np
import torch
from scipy.signal import firwin, group_delay

from harness.listener import AUDIOGRAM_FREQUENCIES, nalr_full
from harness.metrics.fast import _numba
from harness.metrics.fast.bsseval import _fast_len

RATE = 24000
NCHAN = 32
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


def correlation(x: np.ndarray, y: np.ndarray) -> np.ndarray:
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
    c = correlation(reference[:n] - reference[:n].mean(), processed[:n] - processed[:n].mean())
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


def nalr_reference(reference: np.ndarray, loss: np.ndarray) -> np.ndarray:
    from clarity.utils.audiogram import Audiogram

    ag = Audiogram(levels=np.asarray(loss), frequencies=AUDIOGRAM_FREQUENCIES)
    return nalr_full(reference, RATE, ag, NALR_TAPS)[NALR_TAPS:NALR_TAPS + len(reference)]


def align_lags(ref: torch.Tensor, out: torch.Tensor, lags: int,
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


def ohc_gain(control: torch.Tensor, knee, slope, attn, level1: float, *,
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


def db_sl(env: torch.Tensor, attn_ihc, level1: float, out: torch.Tensor) -> None:
    """The envelopes in dB above the inner-hair-cell threshold, clipped at 0, into out."""
    col = torch.as_tensor(level1 - np.asarray(attn_ihc), dtype=env.dtype, device=env.device)[:, None]
    torch.add(env, SMALL, out=out)
    torch.add(col, out.log10_(), alpha=20, out=out).clamp_min_(0.0)  # four passes, not five


def group_delays(bw: np.ndarray, cf: np.ndarray) -> np.ndarray:
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


def levels_to_sl(rms, control_rms, ear: Ear, level1: float) -> np.ndarray:
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


def modulation_filters(segment_ms: float = 8) -> tuple[np.ndarray, int]:
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
    b, nfir = modulation_filters()
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


def ihc_circuit(rate: float, delta: float = 2.0) -> tuple[float, ...]:
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


def standard_normal_into(rs: np.random.RandomState, out: np.ndarray) -> np.ndarray:
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


class NoiseWorker:
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
                self.out[b].put((standard_normal_into(rs, both[0]), standard_normal_into(rs, both[1])))
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


def make_rng(seed):
    if seed is None:
        return np.random.mtrand._rand
    if isinstance(seed, np.random.RandomState):
        return seed
    return np.random.RandomState(seed)


@contextlib.contextmanager
def small_pages():
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


def combine(cep_high: float, sync5: float, ref_sl: np.ndarray, proc_sl: np.ndarray) -> HaaqiResult:
    """HAAQI v1's nonlinear and linear terms and their combination."""
    dloud, dnorm = spectrum_differences(ref_sl, proc_sl)
    d_loud = min(max(1.0 - dloud / 2.5, 0.0), 1.0)
    d_norm = min(max(1.0 - dnorm / 25, 0.0), 1.0)
    nonlinear = 0.754 * cep_high ** 3 + 0.246 * sync5
    linear = 0.329 * d_loud + 0.671 * d_norm
    score = 0.336 * nonlinear + 0.001 * linear + 0.501 * nonlinear ** 2 + 0.161 * linear ** 2
    return HaaqiResult(float(score), float(nonlinear), float(linear), float(cep_high),
                       float(sync5), d_loud, d_norm)
