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

NAMES = ("sdr", "isr", "sir", "sar")


def _next_pow2(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(n)))


def _lags(Fu: torch.Tensor, Fv: torch.Tensor, n_fft: int, L: int) -> torch.Tensor:
    """R_{uv}(k) = sum_n u[n] v[n + k] for k = -(L-1)..(L-1) (last axis, index k + L - 1)."""
    r = torch.fft.irfft(torch.conj(Fu) * Fv, n=n_fft)
    return torch.cat([r[..., n_fft - (L - 1):], r[..., :L]], dim=-1)


def _solve_spd(G: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """Solve G X = D for a batch of symmetric matrices: Cholesky, LU per matrix if needed."""
    chol, info = torch.linalg.cholesky_ex(G)
    if not bool((info != 0).any()):
        return torch.cholesky_solve(D, chol)
    return torch.stack([torch.linalg.solve(G[b], D[b]) for b in range(G.shape[0])])


def distortion_filters(refs: torch.Tensor, ests: torch.Tensor, L: int = 512
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Filters of every estimate on all references (C: B x J x X x Cc x L x Co) and on its own
    source's reference (Cj: B x J x Cc x L x Co), from B x S x N x C references/estimates."""
    B, S, N, C = refs.shape
    n_fft = _next_pow2(N + L - 1)
    P = S * C
    Fs = torch.fft.rfft(refs.permute(0, 1, 3, 2).reshape(B, P, N), n=n_fft)  # B x P x F
    Fe = torch.fft.rfft(ests.permute(0, 1, 3, 2).reshape(B, P, N), n=n_fft)
    # R_{p,q}(k) for every pair of reference channels (one FFT product per pair, kept to the lags)
    R = torch.empty(B, P, P, 2 * L - 1, dtype=refs.dtype, device=refs.device)
    for p in range(P):
        R[:, p, p:] = _lags(Fs[:, p: p + 1], Fs[:, p:], n_fft, L)
        R[:, p + 1:, p] = R[:, p, p + 1:].flip(-1)  # R_{qp}(k) = R_{pq}(-k)
    a = torch.arange(L, device=refs.device)
    lag = (a[:, None] - a[None, :]) + (L - 1)  # index of a - b
    G = R[:, :, :, lag].permute(0, 1, 3, 2, 4).reshape(B, P * L, P * L)
    # D[(x,c,a), (j,o)] = R_{s_xc, e_jo}(a)
    Dl = torch.stack([_lags(Fs, Fe[:, q: q + 1], n_fft, L)[..., L - 1:] for q in range(P)], dim=-1)
    D = Dl.reshape(B, P * L, P)  # rows (x, c, a), columns (j, o)
    eps = torch.finfo(torch.float64).eps  # museval adds eps * I in float64
    eye = torch.eye(P * L, dtype=refs.dtype, device=refs.device)
    Call = _solve_spd(G + eps * eye, D).reshape(B, S, C, L, S, C)  # x, c, a, j, o
    Call = Call.permute(0, 4, 1, 2, 3, 5)  # B x J x X x Cc x L x Co
    # own-source filters: the diagonal block of source j
    CL = C * L
    Gd = G.reshape(B, S, CL, S, CL).diagonal(dim1=1, dim2=3).permute(0, 3, 1, 2)  # B x S x CL x CL
    Dd = D.reshape(B, S, CL, S, C).diagonal(dim1=1, dim2=3).permute(0, 3, 1, 2)  # B x S x CL x C
    eyej = torch.eye(CL, dtype=refs.dtype, device=refs.device)
    Cj = _solve_spd((Gd + eps * eyej).reshape(B * S, CL, CL), Dd.reshape(B * S, CL, C))
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
        T = (N - W + W) // W  # museval's Framing with hop = window
    else:
        T, W = 1, N
    fr = refs[:, :, : T * W].reshape(B, S, T, W, C)
    fe = ests[:, :, : T * W].reshape(B, S, T, W, C)
    silent = _silent(fr) | _silent(fe)  # B x T

    M = W + L - 1
    n2 = _next_pow2(M)
    Rf = torch.fft.rfft(fr, n=n2, dim=3)  # B x X x T x F x Cc
    Hall = torch.fft.rfft(Call, n=n2, dim=4)  # B x J x X x Cc x F x Co
    Hj = torch.fft.rfft(Cj, n=n2, dim=3)  # B x J x Cc x F x Co
    P_all = torch.fft.irfft(torch.einsum("bxtfc,bjxcfo->bjtfo", Rf, Hall), n=n2, dim=3)[:, :, :, :M]
    P_own = torch.fft.irfft(torch.einsum("bjtfc,bjcfo->bjtfo", Rf, Hj), n=n2, dim=3)[:, :, :, :M]
    pad = (0, 0, 0, L - 1)
    s = torch.nn.functional.pad(fr, pad)  # B x S x T x M x C
    e = torch.nn.functional.pad(fe, pad)

    def energy(x):
        return (x * x).sum((-1, -2))

    s2 = energy(s)
    out = {
        "sdr": _db(s2, energy(e - s)),
        "isr": _db(s2, energy(P_own - s)),
        "sir": _db(energy(P_own), energy(P_all - P_own)),
        "sar": _db(energy(P_all), energy(e - P_all)),
    }
    result = {}
    for k, v in out.items():
        v = torch.where(silent[:, None, :], torch.full_like(v, math.nan), v)
        v = v.cpu().numpy()
        result[k] = v[0] if single else v
    return result
