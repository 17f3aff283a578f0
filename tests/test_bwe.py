"""`sbr` (spectral band replication) for bandwidth-extension: the band below the filter edge is
kept, and the log-spectral distance to the wide-band original falls well below the spline's."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import quick_speech
from scipy import signal

from harness.metrics.spectral import lsd
from harness.suites.synth.gen_speech import spline_upsample
from systems import bwe

RATE = 16000


@pytest.mark.parametrize("ratio", [2, 4, 6])
def test_sbr_keeps_the_band_and_halves_the_log_spectral_distance(ratio):
    clean = quick_speech("se01.flac", RATE)
    clean = clean[: len(clean) // 12 * 12]
    low = signal.decimate(clean, ratio, n=8, ftype="iir", zero_phase=True)  # as the generator
    x = spline_upsample(low, ratio, len(clean))
    fc = bwe.band_edge(x, ratio)
    assert fc == pytest.approx(0.8 * RATE / 2 / ratio)
    y = bwe.replicate(x, fc)
    f, _, sx = signal.stft(x, RATE, nperseg=512, noverlap=384)
    _, _, sy = signal.stft(y, RATE, nperseg=512, noverlap=384)
    below = f < fc - 300
    inner = (slice(None), slice(3, -3))  # frames away from the signal's ends
    assert np.max(np.abs(sy[below][inner] - sx[below][inner])) < 1e-3 * np.max(np.abs(sx[below]))
    assert lsd(y, clean) < 0.6 * lsd(x, clean)
