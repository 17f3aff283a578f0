"""BSSEval v4 (the "images" variant museval scores with) in torch, batched over tracks.

The same quantities as `harness.metrics.bsseval.bsseval_v4_frames` (museval's `bss_eval` with
`framewise_filters=False`, `bsseval_sources_version=False`, no permutation), computed as:

1. Distortion filters, once per track, over the whole signal. With s_{x,c} the reference of source
   x, channel c, and R_{uv}(k) = sum_n u[n] v[n + k] computed by FFT, the Gram matrix of the
   delayed references is G[(x,c,a), (y,d,b)] = R_{s_xc, s_yd}(a - b) (a, b = 0..L-1 taps) and the
   right-hand side for estimate channel e_{j,o} is D[(x,c,a), (j,o)] = R_{s_xc, e_jo}(a).
   One Cholesky factorisation of G + eps I serves every estimate (museval solves once per
   estimate); the per-source filters Cj come from G's diagonal block of source j.
2. Per 1 s frame (hop = window; a trailing partial frame is dropped, as museval's framing does),
   the windowed references are convolved with the filters (FFT, W + L - 1 output samples) to give
   the projections P_j (onto source j's own delayed channels) and P (onto all sources). With
   s the zero-padded reference of source j and e the zero-padded estimate:
   SDR = |s|^2 / |e - s|^2, ISR = |s|^2 / |P_j - s|^2, SIR = |P_j|^2 / |P - P_j|^2,
   SAR = |P|^2 / |e - P|^2, in dB; a zero denominator gives +inf and a frame where any
   reference or estimate is silent (channel sum zero throughout) gives NaN for every source.

SDR does not depend on the filters, and SAR only on the projection onto all references, so
both are well defined whatever the references. ISR and SIR depend on the own-source filters,
which are ill-determined when a reference has empty bands (its Gram block is singular up to the
eps regulariser): there museval does not agree with itself (its ISR moved by 10 dB between one
and two BLAS threads, and by 3 dB with 1e-12 noise added to the references, on the
band-limited case of tests/test_fast_bsseval.py), and no implementation can match it.

Everything is vectorised over tracks, sources, channels and frames; float64 by default (the
parity tests hold museval's numbers to 0.01 dB per frame), on any torch device.

The linear solve uses Cholesky rather than a batched LU: torch 2.13's CPU batched
`linalg.solve` can hang in MKL (see the environment notes). A Gram matrix that is not
numerically positive definite (e.g. a reference with empty bands) falls back to one LU solve
per track.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def _next_pow2(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(n)))


def _fast_len(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n (an FFT size as fast as a power of two, closer to n)."""
    best = _next_pow2(n)
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            best = min(best, p35 * _next_pow2(math.ceil(n / p35)))
            p35 *= 3
        p5 *= 5
    return best


BLOCK = 1 << 15


def _block_len(L: int) -> int:
    """FFT length of the correlation blocks: BLOCK, or more for very long filters."""
    return max(BLOCK, _next_pow2(4 * L))


def _spectra(X: torch.Tensor, L: int, spans: bool) -> torch.Tensor:
    """Block spectra of the rows of X (B x P x N) for `_correlate`: blocks of M = BLOCK - 2L + 2
    samples (spans=False), or the overlapping spans [bM - (L-1), bM + M + L - 1) (spans=True);
    returned frequency-major, B x F x P x nb (blocks) or B x F x nb x P (spans), contiguous."""
    Bt, P, N = X.shape
    block = _block_len(L)
    M = block - 2 * L + 2
    nb = max(1, math.ceil(N / M))
    if spans:
        x = torch.nn.functional.pad(X, (L - 1, nb * M - N + L - 1)).unfold(-1, M + 2 * L - 2, M)
        return torch.fft.rfft(x, n=block).permute(0, 3, 2, 1).contiguous()
    x = torch.nn.functional.pad(X, (0, nb * M - N)).reshape(Bt, P, nb, M)
    return torch.fft.rfft(x, n=block).conj().permute(0, 3, 1, 2).contiguous()


def _correlate(Fu: torch.Tensor, Fv: torch.Tensor, L: int) -> torch.Tensor:
    """R_{uv}(k) = sum_n u[n] v[n + k] for every row u behind Fu and v behind Fv (from
    `_spectra`), k = -(L-1)..(L-1): B x P x Q x (2L - 1), index k + L - 1.

    Block-wise: within one FFT of BLOCK points, the circular correlation of a block of u with the
    span of v around it equals the linear one at every wanted lag. Spectra are summed over blocks
    per pair (a small matrix product per frequency) before one inverse FFT, instead of a
    full-length FFT per pair."""
    cross = torch.matmul(Fu, Fv)  # B x F x P x Q
    return torch.fft.irfft(cross.permute(0, 2, 3, 1), n=_block_len(L))[..., : 2 * L - 1]


def _solve_spd(G: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """Solve G X = D for a batch of symmetric matrices: Cholesky, LU per matrix if needed."""
    chol, info = torch.linalg.cholesky_ex(G)  # reads the lower triangle only
    if not bool((info != 0).any()):
        return torch.cholesky_solve(D, chol)
    return torch.stack([torch.linalg.solve(torch.tril(G[b]) + torch.tril(G[b], -1).T, D[b])
                        for b in range(G.shape[0])])


def block_levinson(Rp: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """Solve T X = D for symmetric positive definite block-Toeplitz T, T[i, j] = R(i - j) with
    R(-k) = R(k)^T, in O(L^2 P^3) instead of Cholesky's O(L^3 P^3).

    Rp: Bt x L x P x P, the blocks R(0..L-1); D: Bt x L x P x Q, the right-hand side's block
    rows. Returns X as Bt x L x P x Q.

    The multichannel Levinson recursion (Whittle; Akaike 1973): with T_n a_n = e_0 V_n
    (a_n[0] = I) and T_n b_n = e_{n-1} W_n (b_n[n-1] = I),
    a_{n+1} = [a_n; 0] - [0; b_n] W_n^-1 Delta_n, b_{n+1} = [0; b_n] - [a_n; 0] V_n^-1 Nabla_n,
    where Delta_n = sum_j R(n - j) a_n[j] and Nabla_n = sum_j R(-j - 1) b_n[j]; V and W are
    updated alike, and the solution x_{n+1} = [x_n; 0] + b_{n+1} W_{n+1}^-1 (d_n - gamma_n),
    gamma_n = sum_j R(n - j) x_n[j]. b_n is kept right-aligned in its buffer so that
    [0; b_n] is a view."""
    Bt, L, P, _ = Rp.shape
    Q = D.shape[-1]
    dt, dev = Rp.dtype, Rp.device
    # [R(L-1), ..., R(1)] side by side (step n uses the last n blocks), [R(-1), ..., R(1-L)]
    r_pos = Rp[:, 1:].flip(1).permute(0, 2, 1, 3).reshape(Bt, P, (L - 1) * P)
    r_neg = Rp[:, 1:].transpose(-1, -2).permute(0, 2, 1, 3).reshape(Bt, P, (L - 1) * P)
    a = torch.zeros(Bt, L, P, P, dtype=dt, device=dev)
    b = torch.zeros(Bt, L, P, P, dtype=dt, device=dev)  # b_n[j] at b[:, L - n + j]
    x = torch.zeros(Bt, L, P, Q, dtype=dt, device=dev)
    eye = torch.eye(P, dtype=dt, device=dev)
    a[:, 0] = eye
    b[:, L - 1] = eye
    V = Rp[:, 0].clone()
    W = Rp[:, 0].clone()
    W_inv = torch.linalg.inv_ex(W)[0]
    x[:, 0] = W_inv @ D[:, 0]
    for n in range(1, L):
        row = r_pos[:, :, (L - 1 - n) * P:]
        delta = row @ a[:, :n].reshape(Bt, n * P, P)
        gamma = row @ x[:, :n].reshape(Bt, n * P, Q)
        bn = b[:, L - n:]
        nabla = r_neg[:, :, : n * P] @ bn.reshape(Bt, n * P, P)
        k_a = W_inv @ delta
        k_b = torch.linalg.inv_ex(V)[0] @ nabla
        b_update = a[:, :n] @ k_b[:, None]
        a[:, 1:n + 1] -= bn @ k_a[:, None]
        b[:, L - n - 1:L - 1] -= b_update
        V = V - nabla @ k_a
        W = W - delta @ k_b
        W_inv = torch.linalg.inv_ex(W)[0]
        x[:, :n + 1] += b[:, L - n - 1:] @ (W_inv @ (D[:, n] - gamma))[:, None]
    return x


def _toeplitz_residual(Rfull: torch.Tensor, X: torch.Tensor, D: torch.Tensor, rows: int = 16) -> float:
    """Largest relative residual |T X - D| / |D| over a few block rows (T from Rfull, the blocks
    R(-(L-1)..L-1), Bt x (2L-1) x P x P)."""
    Bt, L, P, Q = X.shape
    idx = torch.linspace(0, L - 1, min(rows, L), device=X.device).round().long()
    lag = idx[:, None] - torch.arange(L, device=X.device)[None, :] + (L - 1)  # rows x L
    blocks = Rfull[:, lag]  # Bt x rows x L x P x P
    TX = torch.einsum("brlpq,blqk->brpk", blocks, X)
    num = torch.linalg.vector_norm(TX - D[:, idx], dim=(-2, -1))
    den = torch.linalg.vector_norm(D[:, idx], dim=(-2, -1)).clamp_min(torch.finfo(X.dtype).tiny)
    return float((num / den).max())


def distortion_filters(refs: torch.Tensor, ests: torch.Tensor, L: int = 512
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Filters of every estimate on all references (C: B x J x X x Cc x L x Co) and on its own
    source's reference (Cj: B x J x Cc x L x Co), from B x S x N x C references/estimates.

    museval solves (G + eps I) C = D with G the 512-lag Gram matrix of all references. G is
    block Toeplitz (blocks of all channel pairs by lag), so it is solved by the block Levinson
    recursion; a check of the residual on 16 block rows falls back to Cholesky of the full
    matrix where the recursion lost accuracy (nearly singular G: empty bands)."""
    B, S, N, C = refs.shape
    P = S * C
    sr = refs.permute(0, 1, 3, 2).reshape(B, P, N)  # rows (source, channel)
    se = ests.permute(0, 1, 3, 2).reshape(B, P, N)
    Fs = _spectra(sr, L, spans=False)
    R = _correlate(Fs, _spectra(sr, L, spans=True), L)  # B x P x P x (2L - 1): R_pq(k) at k + L - 1
    # D[(x,c,a), (j,o)] = R_{s_xc, e_jo}(a), a = 0..L-1
    Dc = _correlate(Fs, _spectra(se, L, spans=True), L)[..., L - 1:]  # B x P x Q x L
    eps = torch.finfo(torch.float64).eps  # museval adds eps * I in float64
    Rfull = R.permute(0, 3, 1, 2).clone()  # B x (2L - 1) x P x P
    Rfull[:, L - 1].diagonal(dim1=-2, dim2=-1).add_(eps)
    Dl = Dc.permute(0, 3, 1, 2).contiguous()  # B x L x P x Q
    X = block_levinson(Rfull[:, L - 1:].contiguous(), Dl)
    a = torch.arange(L, device=refs.device)
    lag = (a[:, None] - a[None, :]) + (L - 1)  # index of lag a - b, for the dense matrices
    if _toeplitz_residual(Rfull, X, Dl) < 1e-8:
        Call = X.permute(0, 2, 1, 3).reshape(B, S, C, L, S, C)  # x, c, a, j, o
    else:
        G = R[:, :, :, lag].permute(0, 1, 3, 2, 4).reshape(B, P * L, P * L)
        G.diagonal(dim1=1, dim2=2).add_(eps)
        D = Dc.permute(0, 1, 3, 2).reshape(B, P * L, P)
        Call = _solve_spd(G, D).reshape(B, S, C, L, S, C)
    Call = Call.permute(0, 4, 1, 2, 3, 5)  # B x J x X x Cc x L x Co
    if S == 1:  # one source: its own filters are the filters (museval: SIR = +inf exactly)
        return Call, Call[:, :, 0]
    # own-source filters: source j's own channels only (small: C L x C L per source)
    CL = C * L
    Rown = R.reshape(B, S, C, S, C, 2 * L - 1).diagonal(dim1=1, dim2=3)  # B x C x C x 2L-1 x S
    Gd = Rown[:, :, :, lag].permute(0, 5, 1, 3, 2, 4).reshape(B * S, CL, CL).clone()
    Gd.diagonal(dim1=1, dim2=2).add_(eps)
    Dd = Dc.reshape(B, S, C, S, C, L).diagonal(dim1=1, dim2=3)  # B x C x C x L x S: (c, o, a, j)
    Dd = Dd.permute(0, 4, 1, 3, 2).reshape(B * S, CL, C)
    Cj = _solve_spd(Gd, Dd)
    return Call, Cj.reshape(B, S, C, L, C)


def _silent(x: torch.Tensor) -> torch.Tensor:
    """B x T: does any source have a channel sum of zero at every sample of the frame?
    x: B x S x T x W x C."""
    return (x.sum(-1) == 0).all(-1).any(1)


def _db(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    out = 10 * torch.log10(num / den)
    return torch.where(den == 0, torch.full_like(out, math.inf), out)


def bsseval_v4_frames(references, estimates, rate: int, window_s: float = 1.0, L: int = 512,
                      device: str | torch.device | None = None,
                      dtype: torch.dtype = torch.float64) -> dict[str, np.ndarray]:
    """Framewise SDR/ISR/SIR/SAR of B tracks: arrays B x S x N x C (or S x N x C for one track).
    Returns each metric as B x S x frames (S x frames for one track), like museval's."""
    single = np.ndim(references) == 3
    refs = torch.as_tensor(np.asarray(references), dtype=dtype, device=device)
    ests = torch.as_tensor(np.asarray(estimates), dtype=dtype, device=device)
    if single:
        refs, ests = refs[None], ests[None]
    if refs.shape != ests.shape:
        raise ValueError(f"references {tuple(refs.shape)} and estimates {tuple(ests.shape)} differ")
    B, S, N, C = refs.shape
    Call, Cj = distortion_filters(refs, ests, L)

    W = int(round(window_s * rate))
    if W < N:
        T = N // W  # museval's Framing with hop = window: whole frames only
    else:
        T, W = 1, N
    fr = refs[:, :, : T * W].reshape(B, S, T, W, C)
    fe = ests[:, :, : T * W].reshape(B, S, T, W, C)
    silent = _silent(fr) | _silent(fe)  # B x T

    M = W + L - 1
    n2 = _fast_len(M)
    Rf = torch.fft.rfft(fr, n=n2, dim=3).permute(0, 3, 2, 1, 4).contiguous()  # B x F x T x X x Cc
    F = Rf.shape[1]
    Hall = torch.fft.rfft(Call, n=n2, dim=4)  # B x J x X x Cc x F x Co
    Hall = Hall.permute(0, 4, 2, 3, 1, 5).reshape(B, F, S * C, S * C)  # B x F x (X Cc) x (J Co)
    Hj = torch.fft.rfft(Cj, n=n2, dim=3).permute(0, 3, 1, 2, 4)  # B x F x J x Cc x Co
    # own-source filters as a block-diagonal matrix beside the all-source ones: one product per
    # frequency gives both projections (frames x (source, channel) @ filters)
    H = Hall.new_zeros((B, F, S * C, 2 * S * C))
    H[..., : S * C] = Hall
    for j in range(S):
        H[..., j * C:(j + 1) * C, S * C + j * C:S * C + (j + 1) * C] = Hj[:, :, j]
    Y = torch.matmul(Rf.reshape(B, F, T, S * C), H).reshape(B, F, T, 2, S, C)
    P = torch.fft.irfft(Y.permute(0, 3, 4, 2, 5, 1), n=n2)[..., :M]  # B x 2 x J x T x Co x M
    P_all, P_own = P[:, 0], P[:, 1]
    # energies over the W + L - 1 samples of each frame; the reference and the estimate are zero
    # after the first W, so their terms are split rather than padded
    s = fr.transpose(-1, -2)  # B x S x T x C x W
    e = fe.transpose(-1, -2)

    def energy(x):
        return torch.linalg.vector_norm(x, dim=(-2, -1)).square()

    def energy_minus(P, x):  # |P - pad(x)|^2
        return energy(P[..., :W] - x) + energy(P[..., W:])

    s2 = energy(s)
    out = {
        "sdr": _db(s2, energy(e - s)),
        "isr": _db(s2, energy_minus(P_own, s)),
        "sir": _db(energy(P_own), energy(P_all - P_own)),
        "sar": _db(energy(P_all), energy_minus(P_all, e)),
    }
    result = {}
    for k, v in out.items():
        v = torch.where(silent[:, None, :], torch.full_like(v, math.nan), v)
        v = v.cpu().numpy()
        result[k] = v[0] if single else v
    return result
