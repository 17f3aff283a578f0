"""Statistics for reports, gates and leaderboards.

- `bootstrap_ci`: percentile bootstrap interval of a mean or a median.
- `paired`: two systems over the same units (item x listener): the mean difference with its
  paired-bootstrap interval, the paired-bootstrap and Wilcoxon signed-rank p-values, and two
  effect sizes (Cohen's d_z and the matched-pairs rank-biserial correlation).
- `holm`: Holm's step-down adjustment of a family of p-values.

Every resampling uses a fixed seed, so the same data gives the same interval in every report.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sps

DEFAULT_RESAMPLES = 2000


def _stat_fn(stat):
    if stat in ("mean", None):
        return np.mean
    if stat == "median":
        return np.median
    return stat


def bootstrap_ci(
    values, level: float = 0.95, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0, stat=np.mean
) -> tuple[float, float]:
    """Percentile bootstrap CI of `stat` ("mean", "median" or a numpy reducer taking `axis`).

    Non-finite values are dropped. With fewer than two values the interval is (nan, nan): there
    is no spread to resample.
    """
    fn = _stat_fn(stat)
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_resamples, x.size))
    boot = fn(x[idx], axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    return float(lo), float(hi)


@dataclass(frozen=True)
class Paired:
    """Candidate minus baseline over n paired units."""

    n: int
    mean_baseline: float
    mean_candidate: float
    delta: float  # mean of (candidate - baseline)
    ci_low: float
    ci_high: float
    p_bootstrap: float  # two-sided, paired bootstrap of the mean difference
    p_wilcoxon: float  # two-sided Wilcoxon signed-rank (zero differences dropped)
    d_z: float  # mean difference / SD of the differences (0 when every difference is 0)
    rank_biserial: float  # (W+ - W-) / (W+ + W-) over the non-zero differences

    @property
    def p(self) -> float:
        """The p-value gates and rank groups use: the Wilcoxon signed-rank test's."""
        return self.p_wilcoxon

    def as_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in asdict(self).items()}


def wilcoxon_p(d: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of differences d (1.0 when all are zero)."""
    nz = d[d != 0]
    if nz.size == 0:
        return 1.0
    res = sps.wilcoxon(nz, zero_method="wilcox", alternative="two-sided")
    return float(res.pvalue)


def rank_biserial(d: np.ndarray) -> float:
    nz = d[d != 0]
    if nz.size == 0:
        return 0.0
    ranks = sps.rankdata(np.abs(nz))
    w_plus = ranks[nz > 0].sum()
    w_minus = ranks[nz < 0].sum()
    return float((w_plus - w_minus) / (w_plus + w_minus))


def paired(
    baseline, candidate, level: float = 0.95, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> Paired:
    """Paired comparison of equal-length arrays (unit i of one is unit i of the other).

    Pairs with a non-finite value on either side are dropped before anything is computed.
    """
    a = np.asarray(baseline, dtype=np.float64)
    b = np.asarray(candidate, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired arrays differ in shape: {a.shape} vs {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    d = b - a
    n = int(d.size)
    nan = float("nan")
    if n == 0:
        return Paired(0, nan, nan, nan, nan, nan, nan, nan, nan, nan)
    delta = float(d.mean())
    if n < 2:
        return Paired(n, float(a.mean()), float(b.mean()), delta, nan, nan, nan, nan, nan,
                      rank_biserial(d))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    boot = d[idx].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    if np.all(d == 0):
        p_boot = 1.0
    else:
        # Two-sided: how often the resampled mean lands on the other side of zero, doubled
        # (with the +1 correction, so a p-value is never exactly 0).
        below = (np.count_nonzero(boot <= 0) + 1) / (n_resamples + 1)
        above = (np.count_nonzero(boot >= 0) + 1) / (n_resamples + 1)
        p_boot = float(min(1.0, 2 * min(below, above)))
    sd = float(d.std(ddof=1))
    d_z = 0.0 if sd == 0 else delta / sd
    return Paired(n, float(a.mean()), float(b.mean()), delta, float(lo), float(hi), p_boot,
                  wilcoxon_p(d), d_z, rank_biserial(d))


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaNs stay NaN and do not count in the family)."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out
