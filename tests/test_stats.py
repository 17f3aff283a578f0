"""Bootstrap CI of a mean against the closed-form normal interval and its coverage."""

from __future__ import annotations

import numpy as np
import pytest

from harness.stats import bootstrap_ci


def test_bootstrap_ci_matches_the_normal_interval():
    x = np.random.default_rng(0).normal(3.0, 2.0, 400)
    lo, hi = bootstrap_ci(x)
    half = 1.96 * x.std(ddof=1) / np.sqrt(x.size)  # mean +/- z * s / sqrt(n)
    assert lo == pytest.approx(x.mean() - half, abs=0.1 * half)
    assert hi == pytest.approx(x.mean() + half, abs=0.1 * half)


def test_bootstrap_ci_covers_the_true_mean_about_95_percent():
    rng = np.random.default_rng(1)
    hits = sum(lo <= 0.0 <= hi for lo, hi in
               (bootstrap_ci(rng.normal(0.0, 1.0, 50), n_resamples=500, seed=k) for k in range(300)))
    assert 0.90 <= hits / 300 <= 0.98  # percentile bootstrap at n=50 runs slightly narrow


def test_bootstrap_ci_needs_two_values():
    assert all(np.isnan(bootstrap_ci([1.0])))
