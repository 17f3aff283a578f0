"""The fast HAAQI's CPU engine: the sample-by-sample recursions in compiled kernels (`_numba`),
the bands x samples arrays in a workspace reused from item to item."""

from __future__ import annotations

import numpy as np
import torch
from scipy.signal import butter

from harness.metrics.fast import _numba
from harness.metrics.fast.haaqi.model import (
    ALIGN_RANGE_MS,
    IHC_NOISE_DB,
    NCHAN,
    RATE,
    Ear,
    HaaqiResult,
    above_threshold,
    align_lags,
    bm_sync,
    cepstral_correlation_high,
    combine,
    db_sl,
    gammatone_coefficients,
    group_delays,
    ihc_circuit,
    levels_to_sl,
    ohc_gain,
    smooth_envelopes,
)

# ------------------------------------------------------------------------------------ filters


def lfilter_rows(b: np.ndarray, a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The same IIR filter (b, a) along every row of x."""
    x = np.ascontiguousarray(x)
    R = x.shape[0]
    b = np.broadcast_to(np.asarray(b, np.float64) / a[0], (R, len(a))).copy()
    a = np.broadcast_to(np.asarray(a, np.float64) / a[0], (R, len(a))).copy()
    y = np.empty_like(x)
    _numba.lfilter_rows(b, a, x, y)
    return y


class Workspace:
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


def control_envelopes(x: np.ndarray, coef: np.ndarray, work: Workspace
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


def compressed_bands(x: np.ndarray, coef: np.ndarray, gain: np.ndarray, work: Workspace
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


def delay_bands(x: np.ndarray, delays: np.ndarray) -> None:
    """Delay band k of every side of x (sides x bands x N, C-contiguous) by delays[k] samples,
    in place."""
    S, K, N = x.shape
    _numba.shift_rows(x.reshape(S * K, N), -np.tile(np.asarray(delays, np.int64), S))


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


def score_one(x, y, loss, level1, cf, bw_max, control_coef, npdt, worker, b, work) -> HaaqiResult:
    ear = Ear.from_loss(loss, cf)
    N = len(x)
    lp = butter(1, 5000 / (0.5 * RATE))
    hp = butter(2, 350 / (0.5 * RATE), "high")
    xy = np.stack([x, y]).astype(npdt)
    mid = lfilter_rows(*hp, lfilter_rows(*lp, xy))

    # control pass at the widest bandwidths, then the level-dependent bandwidths
    control, control_rms = control_envelopes(mid, np.stack([control_coef, control_coef]), work)
    with np.errstate(divide="ignore"):  # a silent band: -inf dB, the narrowest bandwidth
        control_db = 20 * np.log10(control_rms) + level1
    frac = np.clip((control_db - 50) / 50, 0, 1)
    bw = ear.bw_min + frac * (bw_max - ear.bw_min)
    bw = np.where(control_db < 50, ear.bw_min, np.where(control_db > 100, bw_max, bw))
    coef = np.stack([gammatone_coefficients(bw[s], cf) for s in range(2)])

    # OHC compression: the gain from the control envelope (in place), low-passed at 800 Hz and
    # applied inside the analysis kernel as the bands are made
    ohc_gain(torch.from_numpy(control), ear.low_knee, 1 - 1 / ear.ratio, ear.attn_ohc, level1,
              bands_last=True)
    env, bm, env_rms = compressed_bands(mid, coef, control, work)
    E, M = torch.from_numpy(env), torch.from_numpy(bm)
    rows = 2 * NCHAN
    del control

    # align the processed envelope and BM motion to the reference's, band by band
    lags = min(int(np.rint(0.001 * ALIGN_RANGE_MS * RATE)), N)
    d_env = align_lags(E[0], E[1], lags)
    d_bm = align_lags(M[0], M[1], lags)
    _numba.shift_rows(env[1], d_env.astype(np.int64))
    _numba.shift_rows(bm[1], d_bm.astype(np.int64))

    # dB SL envelopes, BM motion scaled alike, IHC adaptation
    adapted = work.take("control", rows, N).reshape(env.shape)  # the control envelope is spent
    db_sl(E.reshape(rows, N), np.tile(ear.attn_ihc, 2), level1,
           torch.from_numpy(adapted.reshape(rows, N)))
    _numba.ihc_adaptation_rows(env.reshape(rows, N), bm.reshape(rows, N), adapted.reshape(rows, N),
                               *ihc_circuit(RATE))
    del env, E, M

    # envelope features need no noise: report the segment count to the noise worker early
    delays = group_delays(bw[0], cf)
    delay_bands(adapted, delays)
    At = torch.from_numpy(adapted)
    smooth = [smooth_envelopes(At[s]) for s in range(2)]
    index = above_threshold(smooth[0])
    worker.counts[b].put(len(index))
    cep_high = cepstral_correlation_high(smooth[0], smooth[1], index)

    # the BM motion plus the internal noise, delayed like the envelopes, formed in the kernel
    cov, ms = bm_covariances(bm[0], bm[1], noise=worker.noise(b),
                             noise_gain=10 ** ((IHC_NOISE_DB - level1) / 20), delays=delays)
    sync5 = bm_sync(cov.astype(np.float64), ms.astype(np.float64), cf)

    ref_sl = levels_to_sl(env_rms[0], control_rms[0], ear, level1)
    proc_sl = levels_to_sl(env_rms[1], control_rms[1], ear, level1)
    return combine(cep_high, sync5, ref_sl, proc_sl)
