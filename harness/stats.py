"""Statistics for summaries: bootstrap confidence intervals of a mean.

Later releases add paired comparisons and multiple-comparison correction here.
"""

from __future__ import annotations

import numpy as np


def bootstrap_ci(
    values, level: float = 0.95, n_resamples: int = 2000, seed: int = 0, stat=np.mean
) -> tuple[float, float]:
    """Percentile bootstrap CI of `stat` (fixed seed: the same data gives the same interval).

    With fewer than two values the interval is (nan, nan): there is no spread to resample.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_resamples, x.size))
    stats = stat(x[idx], axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return float(lo), float(hi)
