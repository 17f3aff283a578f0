"""The speech-enhancement DSP baselines: the MMSE-LSA gain against its integral definition, the
minimum-statistics noise tracker against the noise it tracks, and each system's effect measured
with the reference metric packages (pesq, the closed-form SI-SDR)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.integrate
import scipy.signal
from helpers import at_snr, quick_speech
from pesq import pesq

from harness.metrics.snr import si_sdr_db
from systems.speech import dsp

RATE = 16000


@pytest.mark.parametrize("xi, gamma", [(0.01, 0.5), (0.3, 2.0), (1.0, 1.0), (10.0, 12.0), (3.0, 0.2)])
def test_lsa_gain_equals_its_integral_definition(xi, gamma):
    """Ephraim & Malah (1985) eq. 20: G = xi/(1+xi) exp(1/2 int_v^inf e^-t / t dt), v = xi gamma
    / (1+xi); the first frame's a-priori SNR is alpha + (1 - alpha) max(gamma - 1, 0)."""
    alpha = 0.98
    xi0 = alpha * 1.0 + (1 - alpha) * max(gamma - 1, 0)  # decision-directed, previous G^2 gamma = 1
    v = xi0 / (1 + xi0) * gamma
    integral, _ = scipy.integrate.quad(lambda t: np.exp(-t) / t, v, np.inf)
    want = min(1.0, xi0 / (1 + xi0) * np.exp(0.5 * integral))
    power = np.array([[gamma]])
    got = dsp.mmse_gain(power, np.ones_like(power), "lsa", alpha, xi_min_db=-100, floor_db=-100)
    assert got[0, 0] == pytest.approx(want, rel=1e-6)
    wiener = dsp.mmse_gain(power, np.ones_like(power), "wiener", alpha, -100, -100)
    assert wiener[0, 0] == pytest.approx(xi0 / (1 + xi0), rel=1e-9)
    del xi  # the first frame's xi is set by the recursion, not by the caller


def test_minimum_statistics_tracks_stationary_noise_within_2_db():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(8 * RATE) * 0.05
    _, _, spec = scipy.signal.stft(noise, RATE, nperseg=512, noverlap=384)
    power = np.abs(spec) ** 2
    est = dsp.minimum_statistics(power, 128 / RATE)
    true = power[:, 20:].mean()  # the periodogram's mean: unbiased for white noise
    ratio_db = 10 * np.log10(np.median(est[5:-5, 200:]) / true)
    assert abs(ratio_db) < 2.0, ratio_db


@pytest.fixture(scope="module")
def noisy():
    clean = quick_speech("se01.flac", RATE)
    return clean, at_snr(clean, 5.0, rng=3)


@pytest.mark.parametrize("system", ["mmse-lsa", "spectral-gating", "wpe"])
def test_each_baseline_improves_white_noise(noisy, system):
    """At 5 dB SNR each gains > 1.5 dB SI-SDR; at 20 dB each raises wide-band PESQ by > 0.05."""
    from harness.api import get_system

    clean, x = noisy
    y = get_system(system).enhance(x)
    assert y.shape == x.shape and np.all(np.isfinite(y))
    assert si_sdr_db(y, clean) > si_sdr_db(x, clean) + 1.5
    x20 = at_snr(clean, 20.0, rng=3)
    assert pesq(RATE, clean, get_system(system).enhance(x20), "wb") > pesq(RATE, clean, x20, "wb") + 0.05


def test_wpe_removes_late_reverberation():
    rng = np.random.default_rng(1)
    clean = quick_speech("se02.flac", RATE)
    t = np.arange(int(0.6 * RATE)) / RATE
    rir = rng.standard_normal(len(t)) * np.exp(-6.9 * t / 0.6)  # RT60 0.6 s
    rir[0] = 6.0  # the direct path
    wet = scipy.signal.fftconvolve(clean, rir)[: len(clean)]
    from harness.api import get_system

    dry = get_system("wpe", then="none").enhance(wet)
    # WPE keeps the direct path and early reflections (its delay) and removes the tail: the
    # estimate is closer to the early-reverberant signal (the first 50 ms of the RIR) than the
    # input is.
    early = rir.copy()
    early[int(0.05 * RATE):] = 0
    target = scipy.signal.fftconvolve(clean, early)[: len(clean)]
    assert si_sdr_db(dry, target) > si_sdr_db(wet, target) + 1.0
