"""Bootstrap CI of a mean against the closed-form normal interval and its coverage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from harness.stats import bootstrap_ci, holm, paired


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


def test_median_interval_covers_the_true_median_about_95_percent():
    rng = np.random.default_rng(2)
    hits = 0
    for k in range(300):
        x = rng.exponential(1.0, 60)  # median ln 2
        lo, hi = bootstrap_ci(x, n_resamples=500, seed=k, stat="median")
        hits += lo <= np.log(2) <= hi
    assert 0.90 <= hits / 300 <= 0.99


def test_paired_interval_matches_the_t_interval_of_the_differences():
    rng = np.random.default_rng(3)
    base = rng.normal(10, 5, 200)
    cand = base + 0.4 + rng.normal(0, 1, 200)
    r = paired(base, cand)
    d = cand - base
    half = stats.t.ppf(0.975, d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
    assert r.n == 200 and r.delta == pytest.approx(d.mean())
    assert r.ci_low == pytest.approx(d.mean() - half, abs=0.1 * half)
    assert r.ci_high == pytest.approx(d.mean() + half, abs=0.1 * half)
    assert r.d_z == pytest.approx(d.mean() / d.std(ddof=1))


def test_wilcoxon_exact_case_and_rank_biserial():
    # Five positive differences: the exact two-sided p of the signed-rank test is 2 / 2^5.
    r = paired([0, 0, 0, 0, 0], [1, 2, 3, 4, 5])
    assert r.p_wilcoxon == pytest.approx(2 / 32)
    assert r.rank_biserial == 1.0
    # Ranks of |d| = 1..4 with the smallest negative: W+ = 9, W- = 1, r = 8 / 10.
    assert paired([0, 0, 0, 0], [-1, 2, 3, 4]).rank_biserial == pytest.approx(0.8)


def test_paired_tests_detect_a_1_db_shift_at_n_50():
    rng = np.random.default_rng(4)
    fired = {"wilcoxon": 0, "bootstrap": 0}
    for k in range(200):
        truth = rng.normal(8, 6, 50)  # unit difficulty varies far more than the shift
        base = truth + rng.normal(0, 1.5, 50)
        cand = truth - 1.0 + rng.normal(0, 1.5, 50)
        r = paired(base, cand, n_resamples=1000, seed=k)
        fired["wilcoxon"] += r.p_wilcoxon < 0.05
        fired["bootstrap"] += r.p_bootstrap < 0.05
    # d_z = 1 / (1.5 * sqrt 2) = 0.47: the t-test's power at n = 50 is 0.93.
    assert fired["wilcoxon"] / 200 >= 0.88 and fired["bootstrap"] / 200 >= 0.88


def test_paired_tests_hold_their_level_on_reruns():
    rng = np.random.default_rng(5)
    fired = 0
    for k in range(400):
        truth = rng.normal(8, 6, 50)
        r = paired(truth + rng.normal(0, 1.5, 50), truth + rng.normal(0, 1.5, 50),
                   n_resamples=500, seed=k)
        fired += r.p_wilcoxon < 0.05
    assert 0.02 <= fired / 400 <= 0.09
    # A deterministic rerun gives the same numbers: no difference at all.
    same = rng.normal(0, 1, 50)
    r = paired(same, same.copy())
    assert r.delta == 0 and r.p_wilcoxon == 1.0 and r.p_bootstrap == 1.0 and r.d_z == 0.0


def test_holm_textbook_case():
    # Sorted 0.005, 0.01, 0.03, 0.04 -> 4x, 3x, 2x, 1x = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06.
    adj = holm([0.01, 0.04, 0.03, 0.005])
    assert adj == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert np.isnan(holm([np.nan, 0.2])[0]) and holm([np.nan, 0.2])[1] == pytest.approx(0.2)
    assert holm([0.3, 0.4]) == pytest.approx([0.6, 0.6])  # 2 x 0.3, then max(0.6, 0.4)
