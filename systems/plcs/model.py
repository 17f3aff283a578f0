"""PLCA and PLCS (probabilistic latent component sharing) by EM, in torch, batched over recordings.

Kim & Smaragdis, ICASSP 2013 and 2016 (equations: ../shared/reference/plcs.md). Each recording
l has a magnitude spectrogram V_l (F x T, treated as counts) modelled as

    P_l(f, t) = sum_z W_l(f, z) g_l(z) H_l(z, t),   W_l = [W_C | W_I^(l)],  H_l = [H_C | H_I^(l)]

with the common components' spectra W_C = P_C(f|z) and activations H_C = P_C(t|z) shared by all
recordings, individual components W_I^(l), H_I^(l) of each recording, and per-recording weights
g_l = P^(l)(z) over all of its components. Columns of W sum to one over f, rows of H over t,
g_l over z. One EM iteration with Q_l = V_l / P_l (the E-step folded into the statistics):

    sum_t V_l P(z|f,t) = W_l g_l (Q_l H_l^T),   sum_f V_l P(z|f,t) = g_l H_l (W_l^T Q_l)

and the M-step normalises their sums over the recordings being updated (common) or per
recording (individual, weights). A prior P_prior(f|z) with weight a_i (MAP, decaying as
a_0 exp(-decay * i)) adds a_i P_prior to the spectral statistic before normalising.

Neighbourhood mode (2016): an iteration updates only a set N of recordings (the common
components from their statistics alone); `select_*` pick N by cross-entropy between each
normalised spectrogram and the normalised current source estimate, exhaustively or in two
stages with winner-take-all hash codes (popcount of AND on packed bits).

Numerical care: every division is guarded (0/0 = 0 in Q; a distribution whose statistic is all
zero, as a dead component or a band a recording lacks, becomes uniform), so silent frames and
band-limited regions never produce NaN; float32 or float64 throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from numba import njit, prange

TINY = {torch.float32: 1e-30, torch.float64: 1e-300}


def normalise(x: torch.Tensor, dim: int) -> torch.Tensor:
    """x / sum(x) along dim; an all-zero slice becomes uniform (a distribution, never NaN)."""
    s = x.sum(dim, keepdim=True)
    n = x.shape[dim]
    return torch.where(s > 0, x / torch.where(s > 0, s, torch.ones_like(s)), torch.full_like(x, 1.0 / n))


def plca(V: torch.Tensor, n_components: int, iterations: int = 100, *, generator=None,
         W_fixed: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Symmetric PLCA of one spectrogram V (F x T): returns W (F x Z), g (Z), H (Z x T).

    With W_fixed (F x Zf), the first Zf spectra are held at those values (the oracle-bases case)
    and n_components more are learned."""
    F, T = V.shape
    opts = {"dtype": V.dtype, "device": V.device}
    zf = 0 if W_fixed is None else W_fixed.shape[1]
    Z = zf + n_components
    W = normalise(torch.rand(F, Z, generator=generator, **opts) + 0.1, 0)
    if W_fixed is not None:
        W[:, :zf] = normalise(W_fixed.to(**opts), 0)
    H = normalise(torch.rand(Z, T, generator=generator, **opts) + 0.1, 1)
    g = torch.full((Z,), 1.0 / Z, **opts)
    tiny = TINY[V.dtype]
    for _ in range(iterations):
        Wg = W * g
        P = Wg @ H
        Q = V / P.clamp_min(tiny)
        sw = Wg * (Q @ H.T)
        sh = H * (Wg.T @ Q)
        counts = sw.sum(0)
        newW = normalise(sw, 0)
        if W_fixed is not None:
            newW[:, :zf] = W[:, :zf]
        W, H, g = newW, normalise(sh, 1), normalise(counts, 0)
    return W, g, H


@dataclass
class Prior:
    """Spectral bases learned beforehand (F x Z, columns sum to one) and their MAP weight."""

    bases: torch.Tensor
    weight: float = 0.0  # a_0, in counts (V is scaled so an average bin holds 1)
    decay: float = 1.0  # a_i = a_0 exp(-decay * i)
    init_only: bool = False  # True: initialise the components with the bases, no MAP term

    def weight_at(self, iteration: int) -> float:
        return 0.0 if self.init_only else self.weight * math.exp(-self.decay * iteration)


@dataclass
class PLCS:
    """The PLCS model of L recordings' spectrograms V (L x F x T, nonnegative), fitted by EM.

    Common components: `n_common` (or the source prior's bases); individual components per
    recording: the interference prior's bases (if any) followed by `n_individual` free ones.
    """

    V: torch.Tensor
    n_common: int = 50
    n_individual: int = 10
    source_prior: Prior | None = None
    interference_prior: Prior | None = None
    seed: int = 0
    scale: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        V = self.V
        if V.ndim != 3:
            raise ValueError(f"V must be L x F x T, got shape {tuple(V.shape)}")
        if not torch.isfinite(V).all() or (V < 0).any():
            raise ValueError("V must be finite and nonnegative")
        L, F, T = V.shape
        opts = {"dtype": V.dtype, "device": V.device}
        # Counts scale: the mean bin over all recordings holds 1 (relative levels are kept, as
        # in the paper's sum over l of V^(l)); prior weights are in these units.
        self.scale = V.mean().clamp_min(TINY[V.dtype])
        self.V = V / self.scale
        gen = torch.Generator().manual_seed(self.seed)

        def rand(*shape):  # drawn in float64 on the CPU: the same start in any dtype, any device
            return (torch.rand(*shape, generator=gen, dtype=torch.float64) + 0.1).to(**opts)

        if self.source_prior is not None:
            self.n_common = self.source_prior.bases.shape[1]
        self.zq = 0 if self.interference_prior is None else self.interference_prior.bases.shape[1]
        zc, zi = self.n_common, self.zq + self.n_individual
        self.Wc = normalise(rand(F, zc), 0)
        if self.source_prior is not None:
            self.Wc = normalise(self.source_prior.bases.to(**opts), 0).clone()
        self.Hc = normalise(rand(zc, T), 1)
        self.Wi = normalise(rand(L, F, zi), 1)
        if self.zq:
            self.Wi[:, :, : self.zq] = normalise(self.interference_prior.bases.to(**opts), 0)
        self.Hi = normalise(rand(L, zi, T), 2)
        self.g = torch.full((L, zc + zi), 1.0 / (zc + zi), **opts)
        self.iteration = 0

    # ------------------------------------------------------------------ pieces
    @property
    def L(self) -> int:
        return self.V.shape[0]

    def _factors(self, idx: torch.Tensor | None):
        Wi = self.Wi if idx is None else self.Wi[idx]
        Hi = self.Hi if idx is None else self.Hi[idx]
        g = self.g if idx is None else self.g[idx]
        K = Wi.shape[0]
        W = torch.cat([self.Wc.expand(K, -1, -1), Wi], dim=2)
        H = torch.cat([self.Hc.expand(K, -1, -1), Hi], dim=1)
        return W * g[:, None, :], H

    def model(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """P_l(f, t) of recordings idx (all when None): K x F x T, each summing to one."""
        Wg, H = self._factors(idx)
        return torch.bmm(Wg, H)

    def common_part(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """The common components' share of P_l(f, t): K x F x T."""
        Wg, H = self._factors(idx)
        zc = self.n_common
        return torch.bmm(Wg[:, :, :zc], H[:, :zc, :])

    def masks(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """Posterior of the common components, sum_{z in C} P_l(z|f,t): K x F x T in [0, 1]."""
        Wg, H = self._factors(idx)
        zc = self.n_common
        full = torch.bmm(Wg, H)
        common = torch.bmm(Wg[:, :, :zc], H[:, :zc, :])
        tiny = TINY[full.dtype]
        return torch.where(full > tiny, common / full.clamp_min(tiny), torch.zeros_like(full))

    def log_likelihood(self, idx: torch.Tensor | None = None) -> float:
        """sum_{l,f,t} V_l log P_l (the multinomial log-likelihood up to a constant)."""
        V = self.V if idx is None else self.V[idx]
        P = self.model(idx)
        pos = V > 0
        return float((V[pos] * torch.log(P[pos].clamp_min(TINY[P.dtype]))).sum())

    # ------------------------------------------------------------------ EM
    def step(self, idx: torch.Tensor | None = None) -> None:
        """One EM iteration over recordings idx (all when None)."""
        V = self.V if idx is None else self.V[idx]
        Wg, H = self._factors(idx)
        tiny = TINY[V.dtype]
        P = torch.bmm(Wg, H)
        Q = torch.where(V > 0, V / P.clamp_min(tiny), torch.zeros_like(V))
        del P
        sw = Wg * torch.bmm(Q, H.transpose(1, 2))  # K x F x Z: sum_t V P(z|f,t)
        sh = H * torch.bmm(Wg.transpose(1, 2), Q)  # K x Z x T: sum_f V P(z|f,t)
        del Q
        zc = self.n_common
        counts = sw.sum(1)  # K x Z
        stat_wc = sw[:, :, :zc].sum(0)
        if self.source_prior is not None:
            a = self.source_prior.weight_at(self.iteration)
            if a:
                stat_wc = stat_wc + a * self.source_prior.bases.to(stat_wc)
        self.Wc = normalise(stat_wc, 0)
        self.Hc = normalise(sh[:, :zc, :].sum(0), 1)
        stat_wi = sw[:, :, zc:]
        if self.zq:
            a = self.interference_prior.weight_at(self.iteration)
            if a:
                stat_wi = stat_wi.clone()
                stat_wi[:, :, : self.zq] += a * self.interference_prior.bases.to(stat_wi)
        new_wi, new_hi, new_g = normalise(stat_wi, 1), normalise(sh[:, zc:, :], 2), normalise(counts, 1)
        if idx is None:
            self.Wi, self.Hi, self.g = new_wi, new_hi, new_g
        else:
            self.Wi[idx], self.Hi[idx], self.g[idx] = new_wi, new_hi, new_g
        self.iteration += 1

    # ------------------------------------------------------------------ the source estimate
    def source_magnitude(self, idx: torch.Tensor | None = None) -> torch.Tensor:
        """2016's source estimate: mean over recordings idx of V_l x mask_l (F x T, V's units)."""
        V = self.V if idx is None else self.V[idx]
        return (V * self.masks(idx)).mean(0) * self.scale


# ---------------------------------------------------------------------- neighbour search
def log_normalised(source: torch.Tensor) -> torch.Tensor:
    """log Ŝ: the source estimate flattened, normalised to sum 1, floored before the log (in
    source's dtype; on the CPU by numpy, whose vectorised log is the faster one here)."""
    s = source.reshape(-1)
    if s.device.type == "cpu":  # numpy's SIMD log: 0.2 ms for 321k bins, torch's 0.9 ms here
        x = s.numpy()
        out = x * x.dtype.type(1.0 / max(float(x.sum()), TINY[s.dtype]))
        return torch.from_numpy(np.log(np.maximum(out, TINY[s.dtype], out=out), out=out))
    s = s / s.sum().clamp_min(TINY[s.dtype])
    return torch.log(s.clamp_min(TINY[s.dtype]))


@njit(parallel=True, fastmath=True, cache=True)
def _row_dots(V, rows, g):  # pragma: no cover - compiled
    """V[rows] @ g without copying the rows out, accumulated in float64, rows in parallel."""
    out = np.empty(rows.shape[0])
    for i in prange(rows.shape[0]):
        r = rows[i]
        acc = 0.0
        for j in range(V.shape[1]):
            acc += np.float64(V[r, j]) * np.float64(g[j])
        out[i] = acc
    return out


def cross_entropy(Vhat_flat: torch.Tensor, source: torch.Tensor,
                  rows: torch.Tensor | None = None) -> torch.Tensor:
    """-sum V̂_l log Ŝ for every row of Vhat_flat (rows: normalised spectrograms, flattened), or
    for the given rows only.

    On the CPU both searches read their rows with the same compiled kernel (`_row_dots`: rows in
    parallel, float64 sums, no gather copy), so the exhaustive and the two-stage search differ by
    the rows they read and nothing else; it also outran torch's float32 matrix-vector product
    over all 1000 rows (35-50 ms against 51-58 ms, benchmarks/plcs_neighbourhood.py's scene). On
    other devices a (gathered) matrix-vector product. Float64 on the CPU, else Vhat's dtype."""
    logs = log_normalised(source)
    if Vhat_flat.device.type != "cpu":
        return -((Vhat_flat if rows is None else Vhat_flat[rows]) @ logs)
    V = Vhat_flat.contiguous().numpy()
    idx = (np.arange(V.shape[0]) if rows is None else rows.numpy()).astype(np.int64)
    return -torch.from_numpy(_row_dots(V, idx, logs.numpy()))


def select_exhaustive(Vhat_flat: torch.Tensor, source: torch.Tensor, k: int) -> torch.Tensor:
    """The k recordings of lowest cross-entropy to the source estimate (indices, sorted)."""
    ce = cross_entropy(Vhat_flat, source)
    return torch.sort(torch.topk(ce, k, largest=False).indices).values


M1, M2, M4, H01 = 0x5555555555555555, 0x3333333333333333, 0x0F0F0F0F0F0F0F0F, 0x0101010101010101


def popcount64(x: torch.Tensor) -> torch.Tensor:
    """Set bits of every int64 (SWAR; the masks clear what arithmetic shifts drag in)."""
    x = x - ((x >> 1) & M1)
    x = (x & M2) + ((x >> 2) & M2)
    x = (x + (x >> 4)) & M4
    return (x * H01) >> 56


class WTAHash:
    """Winner-take-all hashing (Yagnik et al. 2011) of nonnegative F x T spectrograms.

    Q draws, each of M random positions; the code of a draw is the one-hot M-bit index of the
    largest value among them. Codes of Q draws are packed into 64-bit words; the similarity of two
    spectrograms is popcount(code_a AND code_b): the number of draws whose winners agree.

    Draws read a feature map rather than raw bins (`features`): the spectrogram average-pooled over
    `pool` = (frequency, time) blocks, each band then divided by its mean over time. On raw bins
    most random pairs compare two near-silent bins, or a low and a high band, so the codes
    measure spectral tilt and noise rather than where the source is; pooled, per-band-normalised
    maps rank the recordings as the exact cross-entropy does (benchmarks/plcs_neighbourhood.py:
    recall of the exhaustive neighbours). pool=(1, 1), whiten=False hashes the raw bins."""

    def __init__(self, shape: tuple[int, int], draws: int = 1024, m: int = 4, seed: int = 0,
                 device: str | torch.device = "cpu", pool: tuple[int, int] = (32, 32),
                 whiten: bool = True) -> None:
        if m < 2:
            raise ValueError("WTA hashing needs m >= 2 positions per draw")
        self.shape, self.pool, self.whiten = (int(shape[0]), int(shape[1])), tuple(pool), whiten
        dim = math.ceil(self.shape[0] / pool[0]) * math.ceil(self.shape[1] / pool[1])
        gen = torch.Generator().manual_seed(seed)
        self.positions = torch.randint(0, dim, (draws, m), generator=gen).to(device)
        self.draws, self.m, self.dim = draws, m, dim

    def features(self, X: torch.Tensor) -> torch.Tensor:
        """N x dim feature rows of spectrograms given as N x (F*T) rows (or one F*T vector)."""
        F, T = self.shape
        X = X.reshape(-1, 1, F, T)
        if self.pool != (1, 1):
            X = torch.nn.functional.avg_pool2d(X, self.pool, ceil_mode=True)
        if self.whiten:
            X = X / X.mean(3, keepdim=True).clamp_min(TINY[X.dtype])
        return X.reshape(X.shape[0], -1)

    def codes(self, X: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """Packed codes (N x ceil(Q*M/64) int64) of spectrogram rows (N x F*T), or of one.

        On the CPU one compiled kernel per row (features pooled in float64, then the draws'
        winners), so hashing the source each iteration costs about 0.2 ms, not 1 ms of torch
        calls; elsewhere `features` then `_codes` in torch. Either way bit b of word w is draw
        (64 w + b) // M's winner (64 w + b) % M."""
        X = X.reshape(-1, self.shape[0] * self.shape[1])
        if X.device.type == "cpu":
            (F, T), (pf, pt) = self.shape, self.pool
            words = -(-self.draws * self.m // 64)
            out = _wta_codes(X.contiguous().numpy(), F, T, pf, pt, self.whiten, TINY[X.dtype],
                             self.positions.numpy(), words)
            return torch.from_numpy(out.view(np.int64))
        return torch.cat([self._codes(self.features(X[a: a + chunk]))
                          for a in range(0, X.shape[0], chunk)])

    def _codes(self, feats: torch.Tensor) -> torch.Tensor:
        winners = feats[:, self.positions].argmax(dim=2)  # N x Q
        bits = torch.nn.functional.one_hot(winners, self.m).reshape(feats.shape[0], -1)
        pad = (-bits.shape[1]) % 64
        if pad:
            bits = torch.nn.functional.pad(bits, (0, pad))
        bits = bits.reshape(feats.shape[0], -1, 64).to(torch.int64)
        weights = torch.ones(64, dtype=torch.int64, device=feats.device) << torch.arange(
            64, device=feats.device)  # bit j of a word (1 << 63 wraps to the sign bit)
        return (bits * weights).sum(2)

    def similarity(self, codes: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """popcount(codes AND query) per row (numpy's bitwise_count on the CPU, else SWAR)."""
        both = codes & query.reshape(1, -1)
        if both.device.type == "cpu" and hasattr(np, "bitwise_count"):
            # as uint64: bitwise_count of a signed integer counts the bits of its absolute value
            return torch.from_numpy(np.bitwise_count(both.numpy().view(np.uint64)).sum(1, dtype=np.int64))
        return popcount64(both).sum(1)


@njit(parallel=True, fastmath=True, cache=True)
def _block_sums(X, F, T, pf, pt):  # pragma: no cover - compiled
    """Sums of the rows of X (N x F*T) over (pf x pt) blocks, (band, row) pairs in parallel."""
    N, nf, nt = X.shape[0], (F + pf - 1) // pf, (T + pt - 1) // pt
    out = np.zeros((N, nf * nt))
    for job in prange(N * nf):
        n, a = job // nf, job % nf
        for f in range(a * pf, min(F, (a + 1) * pf)):
            for b in range(nt):
                acc = 0.0
                for t in range(f * T + b * pt, f * T + min(T, (b + 1) * pt)):
                    acc += X[n, t]
                out[n, a * nt + b] += acc
    return out


@njit(parallel=True, cache=True)
def _wta_codes(X, F, T, pf, pt, whiten, tiny, positions, words):  # pragma: no cover - compiled
    """WTAHash.codes of the rows of X (N x F*T): block means (edge blocks over the bins they
    hold, as avg_pool2d's ceil mode), each band divided by its mean, winners packed in uint64."""
    N, (Q, m) = X.shape[0], positions.shape
    nf, nt = (F + pf - 1) // pf, (T + pt - 1) // pt
    feats = _block_sums(X, F, T, pf, pt)
    out = np.zeros((N, words), np.uint64)
    for n in prange(N):
        feat = feats[n]
        for a in range(nf):
            rows = min(F, (a + 1) * pf) - a * pf
            mean = 0.0
            for b in range(nt):
                feat[a * nt + b] /= rows * (min(T, (b + 1) * pt) - b * pt)
                mean += feat[a * nt + b]
            if whiten:
                mean = max(mean / nt, tiny)
                for b in range(nt):
                    feat[a * nt + b] /= mean
        for q in range(Q):
            best, top = 0, feat[positions[q, 0]]
            for j in range(1, m):
                v = feat[positions[q, j]]
                if v > top:  # the first of equal maxima wins, as torch's argmax
                    best, top = j, v
            bit = q * m + best
            out[n, bit >> 6] |= np.uint64(1) << np.uint64(bit & 63)
    return out


def select_two_stage(Vhat_flat: torch.Tensor, codes: torch.Tensor, hasher: WTAHash,
                     source: torch.Tensor, k: int) -> torch.Tensor:
    """Top min(3k, L) recordings by hash similarity to the source's code, then the k of lowest
    exact cross-entropy among them (indices, sorted)."""
    L = Vhat_flat.shape[0]
    sim = hasher.similarity(codes, hasher.codes(source.reshape(-1)))
    cand = torch.sort(torch.topk(sim, min(3 * k, L)).indices).values
    ce = cross_entropy(Vhat_flat, source, cand)
    return torch.sort(cand[torch.topk(ce, k, largest=False).indices.to(cand.device)]).values
