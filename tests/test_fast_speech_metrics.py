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


@pytest.mark.parametrize("rate", [8000, 16000, 44100])
def test_the_torch_resampler_equals_scipys_resample_poly(rate):
    import torch

    from harness.metrics.fast.stoi import octave_filter, resample_to_10k_torch

    rng = np.random.default_rng(rate)
    for n in (rate, rate + 1, rate - 3):
        x = rng.standard_normal(n)
        g = np.gcd(10000, rate)
        want = scipy.signal.resample_poly(x, 10000 // g, rate // g, window=octave_filter(10000, rate))
        got = resample_to_10k_torch(torch.tensor(x)[None], rate)[0].numpy()
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_the_differentiable_estoi_equals_pystoi_and_its_gradient_raises_it():
    """The training loss `neg_estoi` is minus pystoi's ESTOI (mean over the batch), and one
    gradient step on the estimate raises pystoi's score."""
    import torch

    from harness.training.losses import neg_estoi

    rate = 16000
    items = [(r, e) for name, r, e in corpus(rate) if name in ("white 0 dB", "reverberant", "low-passed")]
    n = min(len(r) for r, _ in items)
    ref = torch.tensor(np.stack([r[:n] for r, _ in items]))
    est = torch.tensor(np.stack([e[:n] for _, e in items]), requires_grad=True)
    want = [pystoi_value(r[:n], e[:n], rate, True) for r, e in items]
    loss = neg_estoi(est, ref, rate)
    assert float(loss.detach()) == pytest.approx(-np.mean(want), abs=1e-6)
    loss.backward()
    assert torch.isfinite(est.grad).all() and float(est.grad.abs().max()) > 0
    step = est.detach() - 1e-4 * est.grad  # a small step: the low-passed item's empty bands make ESTOI steep
    after = [pystoi_value(r[:n], s, rate, True) for (r, _), s in zip(items, step.numpy(), strict=True)]
    assert np.mean(after) > np.mean(want) + 2e-4


def test_the_training_losses_stay_float32_inside_a_bfloat16_autocast():
    """A `precision = "bfloat16"` training step runs its losses under autocast: they must give
    the float32 values (ESTOI's band matrix products would otherwise run in bfloat16, 8 bits of
    mantissa), and take bfloat16 inputs (cast up)."""
    import torch

    from harness.training.losses import neg_estoi, neg_si_sdr, neg_snr
    from systems.speech.hifigan import l1_loss, spectrogram_loss
    from systems.sr.train import lsd_loss

    rate = 16000
    items = [(r, e) for name, r, e in corpus(rate) if name in ("white 0 dB", "reverberant")]
    n = min(len(r) for r, _ in items)
    ref = torch.tensor(np.stack([r[:n] for r, _ in items]), dtype=torch.float32)
    est = torch.tensor(np.stack([e[:n] for _, e in items]), dtype=torch.float32)
    want = [pystoi_value(r[:n], e[:n], rate, True) for r, e in items]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = float(neg_estoi(est, ref, rate))
        values = [float(f(est, ref)) for f in (neg_si_sdr, neg_snr, lsd_loss)]
        values += [float(f(est[:, None], ref[:, None])) for f in (l1_loss, spectrogram_loss)]
        half = float(neg_si_sdr(est.bfloat16(), ref))
    assert got == pytest.approx(-np.mean(want), abs=1e-5)
    plain = [float(f(est, ref)) for f in (neg_si_sdr, neg_snr, lsd_loss)]
    plain += [float(f(est[:, None], ref[:, None])) for f in (l1_loss, spectrogram_loss)]
    assert values == pytest.approx(plain, rel=1e-6)
    # a bfloat16 estimate is cast up: only its own rounding (-48 dB re the signal) shows
    assert half == pytest.approx(plain[0], abs=0.05)


def test_the_estoi_loss_leaves_out_items_with_too_little_speech():
    import torch

    from harness.training.losses import neg_estoi

    rate = 16000
    x = speech("se01.flac", rate)[: 2 * rate]
    noisy = mix(None, x, np.random.default_rng(3).standard_normal(len(x)), 0)
    short = np.zeros(len(x))
    short[: int(0.2 * rate)] = x[: int(0.2 * rate)]  # under 30 frames above the silence floor
    got = neg_estoi(torch.tensor(np.stack([noisy, short])), torch.tensor(np.stack([x, short])), rate)
    assert float(got) == pytest.approx(-pystoi_value(x, noisy, rate, True), abs=1e-6)
    only_short = neg_estoi(torch.tensor(short[None], requires_grad=True), torch.tensor(short[None]), rate)
    assert float(only_short) == 0.0
