"""Parity of the torch STOI/ESTOI (harness.metrics.fast.stoi) with pystoi, item by item, and of
the batched PESQ (harness.metrics.fast.pesq) with the `pesq` package: the
built-in suites' speech at 8, 16 and 44.1 kHz under white and competing-talker noise from -5 to
30 dB, reverberation, clipping, band-limiting, a delay and silence gaps."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.signal
from helpers import Case, assert_parity, at_snr
from helpers import quick_speech as speech

from harness.audio import Audio
from harness.metrics import backends
from harness.metrics.fast.stoi import TooShort, stoi_scores
from harness.metrics.stoi import ESTOI, STOI


def mix(rng, x, noise, snr_db):
    return at_snr(x, snr_db, noise)


def corpus(rate: int):
    rng = np.random.default_rng(rate)
    x, other = speech("se01.flac", rate), speech("se04.flac", rate)
    other = np.resize(other, len(x))
    rir = rng.standard_normal(int(0.4 * rate)) * np.exp(-np.arange(int(0.4 * rate)) / (0.08 * rate))
    rir[0] = 4.0
    low = scipy.signal.butter(6, min(2500, 0.4 * rate), fs=rate, output="sos")
    gaps = x * (np.arange(len(x)) % rate < 0.6 * rate)  # 0.4 s of silence every second
    yield "white -5 dB", x, mix(rng, x, rng.standard_normal(len(x)), -5)
    yield "white 0 dB", x, mix(rng, x, rng.standard_normal(len(x)), 0)
    yield "talker 5 dB", x, mix(rng, x, other, 5)
    yield "white 10 dB", x, mix(rng, x, rng.standard_normal(len(x)), 10)
    yield "white 30 dB", x, mix(rng, x, rng.standard_normal(len(x)), 30)
    yield "reverberant", x, scipy.signal.fftconvolve(x, rir)[: len(x)]
    yield "clipped", x, np.clip(x, -0.2 * abs(x).max(), 0.2 * abs(x).max())
    yield "low-passed", x, scipy.signal.sosfilt(low, x)
    yield "delayed 20 ms, talker 0 dB", x, np.roll(mix(rng, x, other, 0), int(0.02 * rate))
    yield "silence gaps, white 5 dB", gaps, mix(rng, gaps, rng.standard_normal(len(x)), 5)


def pystoi_value(ref, est, rate, extended):
    from pystoi import stoi

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stoi(ref, est, rate, extended=extended))


@pytest.mark.parametrize("rate", [8000, 16000, 44100])
@pytest.mark.parametrize("extended", [False, True])
def test_parity_with_pystoi_item_by_item(rate, extended):
    items = list(corpus(rate))
    got = stoi_scores([r for _, r, _ in items], [e for _, _, e in items], rate, extended=extended)
    expected = [pystoi_value(r, e, rate, extended) for _, r, e in items]
    for (name, _, _), g, want in zip(items, got, expected, strict=True):
        assert abs(g - want) <= 1e-3, (name, g, want)
        assert abs(g - want) <= 1e-9, (name, g, want)  # in practice: equal to rounding
    assert np.ptp(expected) > 0.3  # the corpus spans intelligible and unintelligible items


@pytest.mark.gpu
@pytest.mark.parametrize("extended", [False, True])
def test_parity_with_pystoi_on_cuda(extended):
    items = list(corpus(16000))
    got = stoi_scores([r for _, r, _ in items], [e for _, _, e in items], 16000, extended=extended,
                      device="cuda")
    for (name, r, e), g in zip(items, got, strict=True):
        assert abs(g - pystoi_value(r, e, 16000, extended)) <= 1e-3, name


def test_too_little_speech_is_reported_not_scored():
    rate = 16000
    x = speech("se02.flac", rate)[: int(0.3 * rate)]  # about 20 frames at 10 kHz
    (got,) = stoi_scores([x], [x], rate)
    assert isinstance(got, TooShort)
    assert pystoi_value(x, x, rate, False) == pytest.approx(1e-5)  # pystoi's placeholder


@pytest.mark.parametrize("metric", [STOI, ESTOI])
def test_metric_parity_with_pystoi_under_every_backend(metric):
    """The registered metric, through `evaluate`, under the reference and the fast backend."""
    rate = 16000
    cases = [Case(name, Audio(est, rate), Audio(ref, rate)) for name, ref, est in corpus(rate)]
    ref = cases[0].reference
    cases += [
        Case("silent reference", ref, Audio(np.zeros_like(ref.samples), rate), "invalid"),
        Case("too short", Audio(ref.samples[:, :3000], rate), Audio(ref.samples[:, :3000], rate),
             "failed"),
    ]
    assert_parity(metric, cases, lambda c: pystoi_value(
        c.reference.mono().astype(np.float64), c.estimate.mono().astype(np.float64), rate,
        metric is ESTOI), tol=1e-6, min_spread=0.3)
    assert backends.DEFAULTS["stoi"] == backends.FAST


def test_pesq_batch_in_processes_equals_pesq_item_by_item():
    """harness.metrics.fast.pesq scores a batch in worker processes: the same C code, so the
    same numbers as the `pesq` package called directly; a bad item fails alone."""
    from pesq import pesq

    from harness.errors import MetricFailed
    from harness.metrics.fast.pesq import pesq_batch

    rate = 16000
    items = [(r, e) for _, r, e in corpus(rate)][:5]
    items.insert(2, (items[0][0][:800], items[0][1][:800]))  # 0.05 s: too short for PESQ
    got = pesq_batch([r for r, _ in items], [e for _, e in items], rate, "wb", workers=2)
    assert isinstance(got[2], MetricFailed) and "too short" in str(got[2])
    for i, (r, e) in enumerate(items):
        if i != 2:
            assert got[i] == pesq(rate, r, e, "wb")
    assert max(v for i, v in enumerate(got) if i != 2) - min(v for i, v in enumerate(got) if i != 2) > 0.3
