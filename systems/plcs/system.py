"""crowd-enhancement systems: PLCS (Kim & Smaragdis 2013, with the 2016 neighbourhood mode) and
its baselines (median, mean, best single recording, oracle PLCA).

All share the pre-stage (systems.plcs.align): recordings resampled to the output rate and
aligned to the first recording's clock (the scene's clock: in generated scenes rec000 starts at
source time 0), then a Hann STFT. Estimated lags are kept in `system.lags[item_id]`.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import torch

from harness.api import BaseSystem, Output
from harness.errors import ConfigError
from harness.suites.types import Item
from systems.plcs import align
from systems.plcs.model import (
    PLCS,
    Prior,
    WTAHash,
    plca,
    select_exhaustive,
    select_two_stage,
)

log = logging.getLogger("harness.plcs")

COMMON = {
    "n_fft": 1024,
    "hop": 512,
    "align": True,  # estimate offsets (False: take the recordings as synchronised)
    "max_offset_s": 1.0,
    "dtype": "float32",
}
COMMON_LIMITS: dict[str, Any] = {"n_fft": "[16, inf)", "hop": "[1, inf)", "max_offset_s": "[0, inf)",
                                 "dtype": ("float32", "float64")}


def _check(name: str, params: dict, defaults: dict) -> dict:
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ConfigError(f"{name}: unknown parameter(s) {', '.join(unknown)} (known: {', '.join(defaults)})")
    return {**defaults, **params}


class CrowdSystem(BaseSystem):
    """Pre-stage and reconstruction shared by the crowd-enhancement systems."""

    task = "crowd-enhancement"
    defaults: dict[str, Any] = COMMON
    limits: dict[str, Any] = COMMON_LIMITS

    def __init__(self, **params: Any) -> None:
        cfg = _check(self.name, params, self.defaults)
        super().__init__(**cfg)
        self.cfg = cfg
        self.lags: dict[str, list[int]] = {}

    @property
    def torch_dtype(self) -> torch.dtype:
        return torch.float32 if self.cfg["dtype"] == "float32" else torch.float64

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device if self.device != "auto" else "cpu")

    # ---- pre-stage
    def aligned(self, item: Item) -> tuple[np.ndarray, int, int]:
        """L x N recordings on the first one's clock at the output rate; rate; N."""
        ref = item.references["source"]  # rate and length from the manifest, not the audio
        rate, n = ref.rate, ref.frames
        roles = align.recordings(item)
        signals = align.load_on_rate(item, roles, rate)
        max_lag = int(self.cfg["max_offset_s"] * rate)
        lags = None if self.cfg["align"] else [0] * len(roles)
        x, lags = align.align(signals, n, max_lag, lags)
        self.lags[item.id] = lags
        log.info("%s %s: estimated lags (samples at %d Hz) %s", self.name, item.id, rate, lags)
        return x, rate, n

    def stft(self, x: np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(x, dtype=self.torch_dtype, device=self.torch_device)
        win = torch.hann_window(self.cfg["n_fft"], dtype=self.torch_dtype, device=self.torch_device)
        return torch.stft(t, self.cfg["n_fft"], self.cfg["hop"], window=win, return_complex=True)

    def istft(self, S: torch.Tensor, n: int) -> np.ndarray:
        win = torch.hann_window(self.cfg["n_fft"], dtype=self.torch_dtype, device=self.torch_device)
        y = torch.istft(S, self.cfg["n_fft"], self.cfg["hop"], window=win, length=n)
        return y.detach().cpu().numpy().astype(np.float64)

    @staticmethod
    def consolidate(S: torch.Tensor) -> torch.Tensor:
        """Bandwidth consolidation (2013, eq. 7) of per-recording estimates S (L x F x T):
        y_f^l = sum_t |S^l| / sum_ft |S^l|, w_f = sum_l y_f^l / max_l y_f^l, S = sum_l S^l / w_f."""
        mag = S.abs()
        tot = mag.sum((1, 2), keepdim=True)
        y = torch.where(tot > 0, mag.sum(2, keepdim=True) / torch.where(tot > 0, tot, 1), 0)  # L x F x 1
        peak = y.max(0).values
        w = torch.where(peak > 0, y.sum(0) / torch.where(peak > 0, peak, 1), 1)  # F x 1
        return S.sum(0) / w

    def process(self, items: list[Item], listener: Any | None) -> list[Output]:
        return [self.process_item(it) for it in items]

    def process_item(self, item: Item) -> Output:
        raise NotImplementedError


class Median(CrowdSystem):
    name = "crowd-median"
    description = "Median of the aligned magnitude spectrograms (phase of their sum)"
    statistic = "median"

    def process_item(self, item: Item) -> Output:
        x, rate, n = self.aligned(item)
        X = self.stft(x)
        mag = X.abs().median(0).values if self.statistic == "median" else X.abs().mean(0)
        phase = torch.angle(X.sum(0))
        return {"enhanced": align.as_audio(self.istft(torch.polar(mag, phase), n), rate)}


class Mean(Median):
    name = "crowd-mean"
    description = "Mean of the aligned magnitude spectrograms (phase of their sum)"
    statistic = "mean"


class BestSingle(CrowdSystem):
    name = "crowd-best"
    description = ("Upper anchor of selection: the recording with the highest SDR against the "
                   "source (oracle choice, true offsets)")
    defaults = {"dtype": "float32"}

    def process_item(self, item: Item) -> Output:
        from harness.metrics.bsseval import bsseval_v4
        from harness.tasks.crowd_enhancement import aligned

        src = item.reference("source")
        best, best_sdr = None, -math.inf
        for role in align.recordings(item):
            a = aligned(item, role)
            try:
                sdr = float(bsseval_v4([src], [a])["sdr"][0])
            except Exception:  # a recording without a defined SDR is never the best
                continue
            if np.isfinite(sdr) and sdr > best_sdr:
                best, best_sdr = a, sdr
        if best is None:
            raise RuntimeError("no recording has a defined SDR against the source")
        return {"enhanced": best}


class OraclePLCA(CrowdSystem):
    name = "plca-oracle"
    description = ("Oracle PLCA: source bases learned from the clean source, held fixed; each "
                   "recording separated on its own, then consolidated (eq. 7)")
    defaults = {**COMMON, "n_source": 100, "n_individual": 50, "iterations": 100, "seed": 0}
    limits = {**COMMON_LIMITS, "n_source": "[1, inf)", "n_individual": "[1, inf)", "iterations": "[1, inf)"}

    def process_item(self, item: Item) -> Output:
        x, rate, n = self.aligned(item)
        X = self.stft(x)
        src = self.stft(item.reference("source").mono().astype(np.float64)[None])[0].abs()
        gen = torch.Generator().manual_seed(self.cfg["seed"])
        Wsrc, _, _ = plca(src, self.cfg["n_source"], self.cfg["iterations"], generator=gen)
        out = []
        zs = self.cfg["n_source"]
        for l_ in range(X.shape[0]):
            V = X[l_].abs()
            W, g, H = plca(V, self.cfg["n_individual"], self.cfg["iterations"], generator=gen, W_fixed=Wsrc)
            Wg = W * g
            full = Wg @ H
            common = Wg[:, :zs] @ H[:zs]
            mask = torch.where(full > 0, common / torch.where(full > 0, full, 1), 0)
            out.append(X[l_] * mask)
        return {"enhanced": align.as_audio(self.istft(self.consolidate(torch.stack(out)), n), rate)}


class PLCSSystem(CrowdSystem):
    name = "plcs"
    description = ("PLCS (Kim & Smaragdis 2013): shared common components across recordings, "
                   "optional source/interference priors; 2016 neighbourhood mode with WTA hashing")
    defaults = {
        **COMMON,
        "n_common": 100,  # used without a source prior; with one, its bases are the common set
        "n_individual": 50,
        "iterations": 50,  # see the README: fixed count (no early stopping), chosen on 2013 scenes
        "priors": "both",  # none | init (prior bases as initialisation only) | source | both
        "n_prior_source": 100,
        "n_prior_interference": 50,
        "prior_weight": 1000.0,  # a_0 in counts (the mean bin of V holds 1)
        "prior_decay": 0.02,  # a_i = a_0 exp(-decay i)
        "prior_iterations": 100,
        "neighbours": None,  # None: all recordings; int K or a fraction of L (0 < K < 1)
        "search": "exhaustive",  # or "hash": WTA codes, then exact cross-entropy on 3K
        "hash_draws": 1024,  # Q
        "hash_m": 4,  # M positions per draw
        "hash_pool": [32, 32],  # codes of the spectrogram pooled over (bins, frames) blocks...
        "hash_whiten": True,  # ...each band divided by its mean (see model.WTAHash)
        "seed": 0,
    }
    limits = {**COMMON_LIMITS, "n_common": "[1, inf)", "n_individual": "[1, inf)", "iterations": "[1, inf)",
              "priors": ("none", "init", "source", "both"), "n_prior_source": "[1, inf)",
              "n_prior_interference": "[1, inf)", "prior_weight": "[0, inf)", "prior_decay": "[0, inf)",
              "prior_iterations": "[1, inf)", "neighbours": "(0, inf)", "search": ("exhaustive", "hash"),
              "hash_draws": "[1, inf)", "hash_m": "[2, inf)", "hash_pool": "[1, inf)"}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        c = self.cfg
        pool = c["hash_pool"]
        if (not isinstance(pool, (list, tuple)) or len(pool) != 2
                or not all(isinstance(p, int) and p >= 1 for p in pool)):
            raise ConfigError(f"plcs: hash_pool must be two positive integers (bins, frames), got {pool!r}")

    def neighbour_count(self, L: int) -> int | None:
        k = self.cfg["neighbours"]
        if k is None:
            return None
        k = int(round(k * L)) if 0 < k < 1 else int(k)
        return None if k >= L else max(1, k)

    def priors(self, item: Item, rate: int) -> tuple[Prior | None, Prior | None]:
        c = self.cfg
        if c["priors"] == "none":
            return None, None
        gen = torch.Generator().manual_seed(c["seed"] + 1)
        out = []
        for role, count, wanted in (("prior_source", c["n_prior_source"], True),
                                    ("prior_interference", c["n_prior_interference"],
                                     c["priors"] in ("both", "init"))):
            if not wanted or role not in item.inputs:
                out.append(None)
                continue
            from harness.audio import resample

            x = resample(item.input(role), rate).mono().astype(np.float64)
            W, _, _ = plca(self.stft(x[None])[0].abs(), count, c["prior_iterations"], generator=gen)
            out.append(Prior(W, weight=c["prior_weight"], decay=c["prior_decay"],
                             init_only=c["priors"] == "init"))
        return out[0], out[1]

    def hasher(self, shape: tuple[int, int], device) -> WTAHash:
        """The WTA hash of this configuration for F x T spectrograms."""
        c = self.cfg
        return WTAHash(shape, c["hash_draws"], c["hash_m"], c["seed"], device,
                       pool=tuple(c["hash_pool"]), whiten=c["hash_whiten"])

    def fit(self, X: torch.Tensor, source_prior: Prior | None, interference_prior: Prior | None,
            iterations: int | None = None, on_iteration=None) -> tuple[PLCS, torch.Tensor | None]:
        """EM on the magnitudes of X (L x F x T); returns the model and the last neighbour set."""
        c = self.cfg
        V = X.abs()
        m = PLCS(V, n_common=c["n_common"], n_individual=c["n_individual"],
                 source_prior=source_prior, interference_prior=interference_prior, seed=c["seed"])
        L = V.shape[0]
        k = self.neighbour_count(L)
        idx = None
        if k is not None:
            Vhat = (m.V / m.V.sum((1, 2), keepdim=True).clamp_min(1e-30)).reshape(L, -1)
            hasher = codes = None
            if c["search"] == "hash":
                hasher = self.hasher(tuple(V.shape[1:]), Vhat.device)
                codes = hasher.codes(Vhat)
            source = Vhat.mean(0)  # before any update: the mean normalised spectrogram
        for i in range(iterations or c["iterations"]):
            if k is not None:
                idx = (select_two_stage(Vhat, codes, hasher, source, k) if hasher is not None
                       else select_exhaustive(Vhat, source, k))
            m.step(idx)
            if k is not None:
                source = m.source_magnitude(idx).reshape(-1)
            if on_iteration is not None:
                on_iteration(i, m, idx)
        return m, idx

    def reconstruct(self, m: PLCS, X: torch.Tensor, idx: torch.Tensor | None, n: int) -> np.ndarray:
        """Posterior-masked recordings (the neighbour set in neighbourhood mode), consolidated by
        eq. 7, to the time domain; masks computed in chunks to bound memory."""
        rows = torch.arange(X.shape[0], device=X.device) if idx is None else idx
        parts = [X[rows[a: a + 64]] * m.masks(rows[a: a + 64]) for a in range(0, len(rows), 64)]
        return self.istft(self.consolidate(torch.cat(parts)), n)

    def process_item(self, item: Item) -> Output:
        x, rate, n = self.aligned(item)
        X = self.stft(x)
        sp, ip = self.priors(item, rate)
        m, idx = self.fit(X, sp, ip)
        return {"enhanced": align.as_audio(self.reconstruct(m, X, idx, n), rate)}
