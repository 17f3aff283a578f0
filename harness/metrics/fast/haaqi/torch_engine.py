"""The fast HAAQI's model in torch operations only, for any device (CUDA when there is one).

The compiled CPU path (`compiled.score_one`, `_numba`) runs the recursions sample by sample. Here every
recursion is a linear time-invariant system (the middle-ear filters, the gammatone's low-pass
pair, the compression gain's low-pass and even the IHC adaptation circuit, whose two capacitor
voltages evolve linearly with the dB SL envelope; only its output is clipped), so each is a
state-space filter run by blocks:

    s[n + 1] = A s[n] + B x[n],   y[n] = C s[n] + D x[n],   s[0] = 0

Cut x into blocks of L samples. Within a block the zero-state response is a lower-triangular
Toeplitz matrix of the impulse response times the block, and the state at the block's end is
G times the block (G[:, j] = A^(L-1-j) B); from block to block s_(k+1) = A^L s_k + G u_k, a
recurrence over N / L blocks that a parallel prefix scan solves in log2(N / L) steps (each one
matrix product of all the blocks); the block outputs then get M s_k (M[i] = C A^i) added. All
of it is batched matrix products, so the work is wide and the steps few. It runs in float64
whatever the model's dtype: the gammatone's fourth-order pole near z = 1 makes A^n's entries
grow to about 1e5 before they decay, which float32 sums would not survive.

The segment covariances are FFT cross-correlations of all the segments at once, the band
alignment and delays index arithmetic. The rest (compression gain, dB SL, lag searches,
smoothing, cepstral correlation) is shared with the compiled path, which is already torch.

`many` scores a batch of items: their filters run once over all their rows, shorter items
zero-padded (the filters are causal and start from rest); the rest item by item.

On this 2-core CPU the path is much slower than the compiled one (about 64 multiply-adds per
sample per filter where the recursion needs a dozen); it exists for GPUs, and runs on the CPU
for its parity tests (`tests/test_fast_haaqi.py`).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.signal import butter

from harness.metrics.fast.haaqi import model as H

BLOCK = 64


# ------------------------------------------------------------------------ state-space filters


def state_space(b: np.ndarray, a: np.ndarray):
    """Per row, the direct-form-II-transposed realisation of b / a (rows x order + 1 each, a[:, 0]
    == 1): A (R x d x d), B, C (R x d), D (R,), d = order; y[n] = z0 + b0 x[n] as scipy's
    lfilter, so the filter from zero state is lfilter's."""
    b = np.atleast_2d(np.asarray(b, np.float64))
    a = np.atleast_2d(np.asarray(a, np.float64))
    R, M = a.shape
    d = M - 1
    A = np.zeros((R, d, d))
    A[:, :, 0] = -a[:, 1:]
    A[:, np.arange(d - 1), np.arange(1, d)] = 1.0
    B = b[:, 1:] - a[:, 1:] * b[:, :1]
    C = np.zeros((R, d))
    C[:, 0] = 1.0
    return A, B, C, b[:, 0].copy()


def _block_matrices(A, B, C, D, L):
    """T (R x L x L), G (R x d x L), M (R x L x d), Phi = A^L (R x d x d), in float64 numpy."""
    R, d, _ = A.shape
    powers = np.empty((L + 1, R, d, d))
    powers[0] = np.eye(d)
    for i in range(L):
        powers[i + 1] = powers[i] @ A
    CA = np.einsum("rd,irde->ire", C, powers[:L])  # C A^i, i = 0 .. L-1
    h = np.empty((R, L))
    h[:, 0] = D
    h[:, 1:] = np.einsum("ird,rd->ri", CA[:L - 1], B)  # C A^(i-1) B
    i, j = np.tril_indices(L)
    T = np.zeros((R, L, L))
    T[:, i, j] = h[:, i - j]
    G = np.einsum("jrde,re->rdj", powers[L - 1::-1][:L], B)  # A^(L-1-j) B
    return T, G, CA.transpose(1, 0, 2), powers[L]


def lti_filter(x: torch.Tensor, A, B, C, D, block: int = BLOCK) -> torch.Tensor:
    """The state-space filters (A, B, C, D per row, numpy float64) of the rows of x (R x N) from
    zero state, by blocks of `block` samples and a prefix scan over the blocks; float64 on x's
    device."""
    R, N = x.shape
    L = block
    nb = -(-N // L)
    dev = x.device
    T, G, M, Phi = (torch.from_numpy(np.ascontiguousarray(m)).to(dev)
                    for m in _block_matrices(A, B, C, D, L))
    U = torch.nn.functional.pad(x.to(torch.float64), (0, nb * L - N)).view(R, nb, L)
    Y = torch.einsum("rij,rkj->rki", T, U)  # zero-state response of each block
    S = torch.einsum("rdj,rkj->rkd", G, U)  # each block's end state from a zero start
    P = Phi
    off = 1
    while off < nb:  # inclusive prefix scan: S[k] = sum_j Phi^(k-j) w_j, the state after block k
        S[:, off:] += torch.einsum("rde,rke->rkd", P, S[:, :-off])
        P = P @ P
        off *= 2
    start = torch.nn.functional.pad(S[:, :-1], (0, 0, 1, 0))  # the state entering each block
    Y += torch.einsum("rid,rkd->rki", M, start)
    return Y.reshape(R, nb * L)[:, :N]


def lfilter_rows(b, a, x: torch.Tensor) -> torch.Tensor:
    """scipy's lfilter(b, a, row) for every row of x (one b, a for all), float64."""
    R = x.shape[0]
    A, B, C, D = state_space(np.tile(np.asarray(b, np.float64) / a[0], (R, 1)),
                             np.tile(np.asarray(a, np.float64) / a[0], (R, 1)))
    return lti_filter(x, A, B, C, D)


# ------------------------------------------------------------------------------ model stages


def gammatone(x: torch.Tensor, coef: np.ndarray, cf: np.ndarray):
    """Envelopes and BM motion (sides x bands x N, float64) of the sides of x (sides x N) through
    Kates's gammatone bands (coef: sides x bands x 8 as haaqi.gammatone_coefficients). The
    demodulating oscillator is cos / sin of w n (pyclarity runs it as a recursion: the two differ
    by ~1e-10 after 30 s)."""
    S, N = x.shape
    K = len(cf)
    dev = x.device
    n = torch.arange(N, dtype=torch.float64, device=dev)
    w = torch.from_numpy(2 * np.pi * np.asarray(cf, np.float64) / H.RATE).to(dev)
    cos, sin = torch.cos(w[:, None] * n), torch.sin(w[:, None] * n)  # bands x N
    xs = x.to(torch.float64)[:, None, :]
    u = torch.stack([xs * cos, xs * sin], dim=2).reshape(S * K * 2, N)  # (side, band, re/im)
    c = np.repeat(coef.reshape(S * K, 8), 2, axis=0)
    a1, a5 = (torch.from_numpy(c[:, j].copy()).to(dev)[:, None] for j in (2, 6))
    # the numerator 1 + a1 z^-1 + a5 z^-2 as an FIR, then 1 / (1 - a z^-1)^4 as four one-pole
    # stages in cascade (a = a1 / 4). The direct form's state is ill-conditioned for poles
    # this close to 1 (a matrix-power scan of it lost all accuracy); the cascade's states are
    # the stages' outputs: A = a x (lower triangle of ones), B = 1, output the fourth stage.
    v = u.clone()
    v[:, 1:] += a1 * u[:, :-1]
    v[:, 2:] += a5 * u[:, :-2]
    a = c[:, 2] / 4
    R = len(a)
    A = a[:, None, None] * np.tril(np.ones((4, 4)))[None]
    y = lti_filter(v, A, np.ones((R, 4)), A[:, 3, :], np.ones(R)).view(S, K, 2, N)
    g = torch.from_numpy(coef[:, :, 7].copy()).to(dev)[:, :, None]
    ur, ui = y[:, :, 0], y[:, :, 1]
    env = g * torch.sqrt(ur * ur + ui * ui)
    bm = g * (ur * cos + ui * sin)
    return env, bm


def ihc_adaptation(env: torch.Tensor, bm: torch.Tensor, db: torch.Tensor, rate: float = H.RATE):
    """Kates's IHC rapid and short-term adaptation of the dB SL envelopes db (rows x N): the
    adapted envelope (clipped at 0), and bm scaled as the envelope was (to dB SL, then by the
    adaptation's gain). The circuit's two voltages are linear in db, so it is a 2-state filter
    whose output v1 (after each update) gives the adapted level (db - v1) / r1."""
    r_1, r_2, p1, p2, a11, a12, a21, a22, denom = H.ihc_circuit(rate)
    # v' = F v + E db with F = denom [[a22 p1, -a12 p2], [-a21 p1, a11 p2]],
    # E = denom [a22 r2, -a21 r2]; output v1' = F[0] v + E[0] db
    F = denom * np.array([[a22 * p1, -a12 * p2], [-a21 * p1, a11 * p2]])
    E = denom * np.array([a22 * r_2, -a21 * r_2])
    R = db.shape[0]
    v1 = lti_filter(db, np.tile(F, (R, 1, 1)), np.tile(E, (R, 1)), np.tile(F[0], (R, 1)),
                    np.full(R, E[0]))
    db64 = db.to(torch.float64)
    out = torch.clamp_min((db64 - v1) * (1 / r_1), 0.0)
    small = H.SMALL
    bm = ((out + small) / (env + small)) * bm  # (db + small) / (env + small) x (out + small) / (db + small)
    return out, bm


def shift_rows(x: torch.Tensor, advance) -> torch.Tensor:
    """Row r of x advanced by advance[r] samples (delayed when negative), zero-filled."""
    R, N = x.shape
    adv = torch.as_tensor(np.asarray(advance, np.int64), device=x.device)[:, None]
    idx = torch.arange(N, device=x.device)[None, :] + adv
    ok = (idx >= 0) & (idx < N)
    return torch.where(ok, torch.gather(x, 1, idx.clamp(0, N - 1)), torch.zeros((), dtype=x.dtype,
                                                                                 device=x.device))


def bm_covariances(x: torch.Tensor, y: torch.Tensor, segment_ms: float = 16):
    """Kates's bm_covary of the rows of x and y (bands x N): per band and segment the maximum
    over lags -1..1 ms of |R_xy(l) / R_ww(l)| / sqrt(ms_x ms_y), clipped to [0, 1] (0 where
    either mean square is negligible), and 2 ms_x; the segments' correlations by FFT."""
    maxlag = int(np.around(1.0 * (0.001 * H.RATE)))
    W = int(np.around(segment_ms * (0.001 * H.RATE)))
    W += W % 2
    h = W // 2
    K, N = x.shape
    nseg = int(1 + np.floor(N / W) + np.floor((N - W / 2) / W))
    win = np.hanning(W)
    dev = x.device

    def inv_corr(w):
        c = np.correlate(w, w, "full")
        return torch.from_numpy(1 / c[len(w) - 1 - maxlag: maxlag + len(w)]).to(dev)

    def segments(xs, ys, window, corr, norm):  # xs, ys: K x S x L, unwindowed
        w = torch.from_numpy(window).to(dev)
        xs = xs * w
        ys = ys * w
        xs = xs - xs.mean(-1, keepdim=True)
        ys = ys - ys.mean(-1, keepdim=True)
        mx = (xs * xs).sum(-1) * norm
        my = (ys * ys).sum(-1) * norm
        nfft = 1 << int(np.ceil(np.log2(xs.shape[-1] + 2 * maxlag)))
        c = torch.fft.irfft(torch.fft.rfft(xs, nfft) * torch.fft.rfft(ys, nfft).conj(), nfft)
        lagged = torch.cat([c[..., nfft - maxlag:], c[..., :maxlag + 1]], -1)  # lags -maxlag..maxlag
        best = (lagged * corr).abs().amax(-1)
        ok = (mx > 1e-30) & (my > 1e-30)
        cov = torch.where(ok, best / torch.sqrt(torch.where(ok, mx * my, 1.0)), 0.0).clamp(0, 1)
        return cov, mx

    x64, y64 = x.to(torch.float64), y.to(torch.float64)
    half_norm = 1 / np.sum(win[h:] ** 2)
    first = segments(x64[:, None, :h], y64[:, None, :h], win[h:], inv_corr(win[h:]), half_norm)
    s = (nseg - 1) * h
    last = segments(x64[:, None, s:s + h], y64[:, None, s:s + h], win[:h], inv_corr(win[h:]),
                    half_norm)
    covs, mss = [first[0]], [first[1]]
    if nseg > 2:
        mid = segments(x64.unfold(-1, W, h)[:, 1:nseg - 1], y64.unfold(-1, W, h)[:, 1:nseg - 1],
                       win, inv_corr(win), 1 / np.sum(win ** 2))
        covs.append(mid[0])
        mss.append(mid[1])
    covs.append(last[0])
    mss.append(last[1])
    return torch.cat(covs, 1), 2.0 * torch.cat(mss, 1)


# ------------------------------------------------------------------------------- a batch of items

# Peak bytes per sample of the longest item, per item of a batch, of `many` in float64: the
# gammatone's modulated rows (2 sides x 32 bands x re/im) with their copy and the block filter's
# padded input and output (4 x 1024 B), the envelopes, BM motion and control envelopes (3 x
# 512 B) and the middle-ear rows, about 5.6 KiB; set to 8 KiB from the peak resident memory of
# whole CPU runs (2026-12-06, fresh processes: 2.79 GB for 4 items of 4 s, 2.66 GB for 8 of 2 s,
# 1.50 GB for 1 of 8 s, i.e. 6.9-7.8 KiB, which counts the host's noise buffers and signals too).
# benchmarks/haaqi_gpu.py prints a GPU's peak beside this estimate.
BYTES_PER_SAMPLE = 8 * 1024


def batch_bytes(n_samples: int, items: int, dtype=torch.float64) -> int:
    """The estimated peak memory of `many` for `items` items padded to `n_samples` samples."""
    scale = 1.0 if dtype == torch.float64 else 0.8
    return int(BYTES_PER_SAMPLE * scale * n_samples * items)


def _item_rows(t: torch.Tensor, b: int, n: int) -> torch.Tensor:
    """Item b's two sides (reference, processed) of a (2 x items) x ... x N tensor, cut to n."""
    return t[2 * b:2 * b + 2, ..., :n]


def many(items, losses, level1s, cf, bw_max, control_coef, dtype, device, worker,
         first: int = 0) -> list[H.HaaqiResult]:
    """HAAQI v1 of aligned (reference, processed) pairs with the reference's NAL-R applied, as
    pyclarity's haaqi_v1, in torch on `device`, the model's arrays in `dtype` (the filters in
    float64). The linear filters (middle ear, both gammatone passes, the gain's low-pass, the
    IHC circuit) run once over every item's rows side by side, shorter items zero-padded to the
    longest: they are causal and start from rest, so an item's first n outputs are those of its
    own n samples. What depends on an item's length or level (band levels, alignment, dB SL,
    segments, noise) is computed item by item on its own samples. `worker` draws item
    first + b's noise for item b."""
    B = len(items)
    K = H.NCHAN
    lengths = [len(x) for x, _ in items]
    N = max(lengths)
    ears = [H.Ear.from_loss(np.asarray(loss, np.float64), cf) for loss in losses]
    xy = torch.zeros(2 * B, N, dtype=torch.float64)
    for b, (x, y) in enumerate(items):
        xy[2 * b, :lengths[b]] = torch.from_numpy(np.asarray(x, np.float64))
        xy[2 * b + 1, :lengths[b]] = torch.from_numpy(np.asarray(y, np.float64))
    xy = xy.to(device=device, dtype=dtype)
    lp = butter(1, 5000 / (0.5 * H.RATE))
    hp = butter(2, 350 / (0.5 * H.RATE), "high")
    mid = lfilter_rows(*hp, lfilter_rows(*lp, xy).to(dtype)).to(dtype)
    del xy

    def rms(t: torch.Tensor) -> list[np.ndarray]:  # per item, sides x bands, over its own samples
        return [torch.sqrt(torch.mean(_item_rows(t, b, n) ** 2, -1)).cpu().numpy()
                for b, n in enumerate(lengths)]

    control, _ = gammatone(mid, np.tile(control_coef, (2 * B, 1, 1)), cf)
    control_rms = rms(control)
    coefs, bws = [], []
    for b in range(B):
        with np.errstate(divide="ignore"):
            control_db = 20 * np.log10(control_rms[b]) + level1s[b]
        frac = np.clip((control_db - 50) / 50, 0, 1)
        bw = ears[b].bw_min + frac * (bw_max - ears[b].bw_min)
        bws.append(np.where(control_db < 50, ears[b].bw_min, np.where(control_db > 100, bw_max, bw)))
        coefs += [H.gammatone_coefficients(bws[b][s], cf) for s in range(2)]
    env, bm = gammatone(mid, np.stack(coefs), cf)
    del mid
    env_rms = rms(env)
    env, bm, control = env.to(dtype), bm.to(dtype), control.to(dtype)

    for b in range(B):  # the OHC gain, in place over the item's control envelopes
        ear = ears[b]
        H.ohc_gain(control[2 * b:2 * b + 2].view(2 * K, N), np.tile(ear.low_knee, 2),
                   np.tile(1 - 1 / ear.ratio, 2), np.tile(ear.attn_ohc, 2), level1s[b])
    gain = lfilter_rows(*butter(1, 800 / (0.5 * H.RATE)), control.view(2 * B * K, N)).to(dtype)
    del control
    gain = gain.view(2 * B, K, N)
    env.mul_(gain)
    bm.mul_(gain)
    del gain

    # per item: the processed envelopes and BM lined up with the reference's, and dB SL; zeros
    # past each item's end
    db = torch.zeros_like(env)
    for b, n in enumerate(lengths):
        lags = min(int(np.rint(0.001 * H.ALIGN_RANGE_MS * H.RATE)), n)
        e, m = _item_rows(env, b, n), _item_rows(bm, b, n)
        env[2 * b + 1, :, :n] = shift_rows(e[1], H.align_lags(e[0], e[1], lags))
        bm[2 * b + 1, :, :n] = shift_rows(m[1], H.align_lags(m[0], m[1], lags))
        env[2 * b:2 * b + 2, :, n:] = 0
        bm[2 * b:2 * b + 2, :, n:] = 0
        H.db_sl(env[2 * b:2 * b + 2].view(2 * K, N), np.tile(ears[b].attn_ihc, 2), level1s[b],
                db[2 * b:2 * b + 2].view(2 * K, N))
    adapted, bm = ihc_adaptation(env.view(2 * B * K, N).to(torch.float64), bm.view(2 * B * K, N),
                                 db.view(2 * B * K, N))
    del env, db
    adapted, bm = adapted.to(dtype).view(2 * B, K, N), bm.to(dtype).view(2 * B, K, N)

    results = []
    for b, n in enumerate(lengths):
        ear, level1 = ears[b], level1s[b]
        delays = H.group_delays(bws[b][0], cf)
        advance = -np.tile(np.asarray(delays, np.int64), 2)
        a = shift_rows(_item_rows(adapted, b, n).reshape(2 * K, n), advance).view(2, K, n)
        smooth = [H.smooth_envelopes(a[s]) for s in range(2)]
        index = H.above_threshold(smooth[0])
        worker.counts[first + b].put(len(index))
        cep_high = H.cepstral_correlation_high(smooth[0], smooth[1], index)
        del a, smooth

        noise = worker.noise(first + b)
        g = 10 ** ((H.IHC_NOISE_DB - level1) / 20)
        m = _item_rows(bm, b, n)
        noisy = [shift_rows(m[s] + g * torch.from_numpy(noise[s]).to(device=device, dtype=dtype),
                            advance[:K]) for s in range(2)]
        cov, ms = bm_covariances(noisy[0], noisy[1])
        del noisy
        sync5 = H.bm_sync(cov.cpu().numpy(), ms.cpu().numpy(), cf)

        ref_sl = H.levels_to_sl(env_rms[b][0], control_rms[b][0], ear, level1)
        proc_sl = H.levels_to_sl(env_rms[b][1], control_rms[b][1], ear, level1)
        results.append(H.combine(cep_high, sync5, ref_sl, proc_sl))
    return results
