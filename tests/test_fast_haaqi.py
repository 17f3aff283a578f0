"""Parity of the fast HAAQI (harness.metrics.fast.haaqi) with pyclarity's `haaqi_v1`, item by
item with the same internal-noise draws, on speech and music from the built-in suites, every
built-in audiogram, SNRs from -5 to 30 dB, NAL-R, clipping, band-limiting, delay and silence."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import torch
from helpers import at_snr

from harness.listener import audiogram, haaqi_audiogram, resolve_panel
from harness.metrics import backends
from harness.metrics.fast.haaqi import AUDIOGRAM_FREQUENCIES, RATE, haaqi_v1_batch
from harness.metrics.haaqi import haaqi_score

QUICK = Path(__file__).resolve().parents[1] / "harness" / "suites" / "quick"


def load(rel: str, seconds: float = 1.5) -> np.ndarray:
    x, rate = sf.read(QUICK / rel, always_2d=True)
    x = scipy.signal.resample_poly(x[:, 0], RATE, rate)
    return x[: int(seconds * RATE)]


def nalr(x: np.ndarray, loss: np.ndarray) -> np.ndarray:
    from clarity.enhancer.nalr import NALR
    from clarity.utils.audiogram import Audiogram

    enhancer = NALR(140, RATE)
    fir, _ = enhancer.build(Audiogram(levels=loss, frequencies=AUDIOGRAM_FREQUENCIES))
    return enhancer.apply(fir, x)[: len(x)]


def corpus():
    """(name, reference, processed, loss, equalisation) items: one per built-in audiogram,
    cycling through the degradations."""
    rng = np.random.default_rng(7)
    speech = load("speech-enhancement-quick/clean/se01.flac")
    music = load("music-remix-quick/song02-minor/mixture.flac")
    vocals = load("music-remix-quick/song02-minor/vocals.flac")
    lowpass = scipy.signal.butter(6, 3000, fs=RATE, output="sos")
    highpass = scipy.signal.butter(4, 500, fs=RATE, btype="high", output="sos")
    panel = resolve_panel("builtin")
    losses = [haaqi_audiogram(audiogram(li, "left")).levels.astype(float) for li in panel.listeners]
    cases = [
        ("speech snr -5", lambda x, loss: at_snr(x, -5, rng=rng), speech, 1),
        ("music snr 0", lambda x, loss: at_snr(x, 0, rng=rng), music, 1),
        ("speech snr 10, nal-r", lambda x, loss: nalr(at_snr(x, 10, rng=rng), loss), speech, 1),
        ("music snr 30", lambda x, loss: at_snr(x, 30, rng=rng), music, 1),
        ("music clipped", lambda x, loss: np.clip(x, -0.3 * abs(x).max(), 0.3 * abs(x).max()),
         music, 1),
        ("speech low-passed 3 kHz", lambda x, loss: scipy.signal.sosfilt(lowpass, x), speech, 1),
        ("music vocals vs mix, high-passed", lambda x, loss: scipy.signal.sosfilt(highpass, x + music),
         vocals, 1),
        ("speech delayed 25 ms, snr 5", lambda x, loss: np.roll(at_snr(x, 5, rng=rng), 600), speech, 1),
        ("music nal-r reference (eq 2)", lambda x, loss: at_snr(x, 15, rng=rng), music, 2),
        ("speech silent estimate", lambda x, loss: np.zeros_like(x), speech, 1),
        ("music low-passed + clipped", lambda x, loss: np.clip(scipy.signal.sosfilt(lowpass, x),
                                                               -0.05, 0.05), music, 1),
    ]
    for i, loss in enumerate(losses):
        name, make, ref, eq = cases[i % len(cases)]
        if eq == 2:
            ref = nalr(ref, loss)
        yield f"{panel.listeners[i].id}: {name}", ref, make(ref, loss), loss, eq


def level1(ref: np.ndarray) -> float:
    return 65.0 - 20.0 * np.log10(np.sqrt(np.mean(ref ** 2)))


def reference_haaqi(ref, proc, loss, eq, seed) -> float:
    from clarity.evaluator.haaqi import haaqi_v1
    from clarity.utils.audiogram import Audiogram

    np.random.seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):
        return haaqi_v1(ref, RATE, proc, RATE, Audiogram(levels=loss, frequencies=AUDIOGRAM_FREQUENCIES),
                        eq, level1(ref))[0]


@pytest.fixture(scope="module")
def scored():
    items = list(corpus())
    expected = [reference_haaqi(r, p, loss, eq, 100 + i) for i, (_, r, p, loss, eq) in enumerate(items)]
    return items, np.array(expected)


@pytest.mark.parametrize("engine", ["compiled", "torch"])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 0.001), (torch.float32, 0.01)])
def test_parity_with_pyclarity_item_by_item(scored, dtype, tol, engine):
    """Both engines: the compiled CPU kernels and the torch-only model (the GPU's path, run here
    on the CPU)."""
    items, expected = scored
    for eq in (1, 2):
        idx = [i for i, it in enumerate(items) if it[4] == eq]
        got = haaqi_v1_batch([items[i][1] for i in idx], [items[i][2] for i in idx],
                             [items[i][3] for i in idx], [level1(items[i][1]) for i in idx],
                             equalisation=eq, seeds=[100 + i for i in idx], dtype=dtype,
                             engine=engine)
        for i, g in zip(idx, got, strict=True):
            assert abs(g.score - expected[i]) <= tol, (items[i][0], g.score, expected[i])
    assert np.ptp(expected) > 0.3  # the corpus spans good and bad items


def test_shared_generator_is_consumed_in_order_like_consecutive_calls():
    """One RandomState for three items equals three pyclarity calls after one seeding (the CAD1
    recipe's per-song seed), including the mel-cepstrum draws between items."""
    items = list(corpus())[:3]
    np.random.seed(11)
    from clarity.evaluator.haaqi import haaqi_v1
    from clarity.utils.audiogram import Audiogram

    expected = []
    with contextlib.redirect_stdout(io.StringIO()):
        for _, r, p, loss, eq in items:
            ag = Audiogram(levels=loss, frequencies=AUDIOGRAM_FREQUENCIES)
            expected.append(haaqi_v1(r, RATE, p, RATE, ag, eq, level1(r))[0])
    after = np.random.get_state()[1].copy()
    rs = np.random.RandomState(11)
    got = haaqi_v1_batch([it[1] for it in items], [it[2] for it in items], [it[3] for it in items],
                         [level1(it[1]) for it in items], seeds=rs)
    np.testing.assert_allclose([g.score for g in got], expected, atol=1e-9)
    assert np.array_equal(rs.get_state()[1], after)  # the generator ends where pyclarity left it


def test_harness_score_backends_agree():
    _, ref, proc, loss, _ = next(corpus())
    from clarity.utils.audiogram import Audiogram

    ag = Audiogram(levels=loss, frequencies=AUDIOGRAM_FREQUENCIES)
    values = {}
    for name in (backends.REFERENCE, backends.FAST):
        values[name] = haaqi_score(proc, ref, RATE, ag, seed=5, backend=name)
    assert abs(values["fast"] - values["reference"]) < 1e-9
    assert backends.DEFAULTS["haaqi"] == backends.FAST


@pytest.mark.parametrize("extra", [120, -120])
def test_processed_of_another_length_scores_as_pyclarity(extra):
    """A Cadenza recipe's output carries NAL-R's full-convolution tail (longer than the reference;
    a submission without it is shorter against the ICASSP 2024 reference, which has the tail).
    pyclarity's ear model trims the pair to the shorter first: the fast backend gives its number."""
    _, ref, proc, loss, _ = next(corpus())
    from clarity.utils.audiogram import Audiogram

    rng = np.random.default_rng(3)
    delayed = np.concatenate([np.zeros(abs(extra)), proc])  # a filter delay, as NAL-R's
    proc = (delayed + 0.01 * rng.standard_normal(len(delayed)))[: len(ref) + extra]
    ag = Audiogram(levels=loss, frequencies=AUDIOGRAM_FREQUENCIES)
    expected = reference_haaqi(ref, proc, loss, 1, 9)
    got = haaqi_score(proc, ref, RATE, ag, seed=9, level1=level1(ref), backend=backends.FAST)
    assert abs(got - expected) < 1e-6, (got, expected)


@pytest.mark.parametrize("n, lags, shift", [(5000, 300, 37), (9000, 240, -120), (700, 300, 0)])
def test_align_lags_matches_the_direct_cross_correlation(n, lags, shift):
    from harness.metrics.fast.haaqi.model import align_lags

    rng = np.random.default_rng(n)
    ref = np.abs(rng.standard_normal((3, n))) + 0.5  # envelope-like: positive, a large mean
    out = np.roll(ref, shift, axis=1) + 0.3 * rng.standard_normal((3, n))
    out[2] = rng.standard_normal(n)  # a row with no true lag
    got = align_lags(torch.from_numpy(ref), torch.from_numpy(out), lags)
    for k in range(3):
        # R(d) = sum_n ref[n - d] out[n] by direct sums, d from lags - 1 down to -lags
        ds = np.arange(lags - 1, -lags - 1, -1)
        R = [np.dot(ref[k, max(0, -d):n - max(0, d)], out[k, max(0, d):n - max(0, -d)]) for d in ds]
        assert got[k] == ds[int(np.argmax(R))]
    if abs(shift) < lags:
        assert got[0] == shift and got[1] == shift


@pytest.mark.parametrize("seed, sizes", [(0, [7, 1, 32 * 1001]), (12345, [3, 5, 2]), (2**31, [1, 1, 999])])
def test_compiled_legacy_gaussian_draws_numpys_numbers_and_leaves_the_same_state(seed, sizes):
    from harness.metrics.fast.haaqi.model import standard_normal_into

    ours, theirs = np.random.RandomState(seed), np.random.RandomState(seed)
    for n in sizes:  # odd sizes leave a cached second normal for the next call
        got = standard_normal_into(ours, np.empty(n))
        assert np.array_equal(got, theirs.standard_normal(n))
    assert np.array_equal(ours.standard_normal(5), theirs.standard_normal(5))
    assert ours.randint(0, 2**30, 4).tolist() == theirs.randint(0, 2**30, 4).tolist()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bm_covariances_form_noise_and_band_delays_as_the_explicit_signals(dtype):
    """The kernel's on-the-fly x + g n, band k delayed by d_k (zeros first), against the
    covariances of those signals built with numpy and passed in plain."""
    from harness.metrics.fast.haaqi.compiled import bm_covariances

    rng = np.random.default_rng(7)
    K, N = 5, 9000
    x, y = rng.standard_normal((2, K, N)).astype(dtype)
    y = (0.6 * x + 0.4 * y).astype(dtype)
    nx, ny = rng.standard_normal((2, K, N)).astype(dtype)
    gain, delays = 0.3, np.array([0, 3, 17, 600, 1])

    def built(s, n):
        full = s + dtype(gain) * n
        return np.stack([np.concatenate((np.zeros(d, dtype), full[k, :N - d]))
                         for k, d in enumerate(delays)])

    cov, ms = bm_covariances(x, y, noise=(nx, ny), noise_gain=gain, delays=delays)
    want_cov, want_ms = bm_covariances(built(x, nx), built(y, ny))
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(cov, want_cov, rtol=tol, atol=tol)
    np.testing.assert_allclose(ms, want_ms, rtol=tol, atol=tol)
    assert np.all(cov[3, :2] == 0)  # segments 0-1 (samples 0-575) of band 3 are the delay's zeros


def test_shift_rows_advances_and_delays_in_place_with_zeros():
    from harness.metrics.fast._numba import shift_rows

    x = np.arange(1.0, 1.0 + 6 * 10).reshape(6, 10).astype(np.float32)
    advance = np.array([0, 3, -3, 10, -12, 9])
    want = np.zeros_like(x)
    for r, d in enumerate(advance):  # by index arithmetic: out[n] = x[n + d] where it exists
        for n in range(10):
            if 0 <= n + d < 10:
                want[r, n] = x[r, n + d]
    shift_rows(x, advance)
    np.testing.assert_array_equal(x, want)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [1, 1030, 5000])  # one sample, a tile boundary crossed, several
def test_band_vectorised_gammatone_matches_pyclarity_filter(dtype, n):
    """The 32 bands side by side (tiles of 1024 samples, vectorised across bands) against
    pyclarity's own gammatone_basilar_membrane, band by band, for two signals with different
    bandwidths: the time-major envelopes, and the band-major envelopes and BM motion times a
    compression gain low-passed by scipy's lfilter; the envelopes' RMS against numpy's."""
    from clarity.evaluator.haspi.eb import gammatone_basilar_membrane
    from scipy.signal import butter, lfilter

    from harness.metrics.fast._numba import gammatone_bands, gammatone_envelopes
    from harness.metrics.fast.haaqi import centre_frequencies, gammatone_coefficients

    rng = np.random.default_rng(n)
    x = rng.standard_normal((2, n)) * np.linspace(0.1, 1, n)
    cf = centre_frequencies()
    bw = np.stack([1 + cf / 4000, 2.5 - cf / 8000])
    coef = np.stack([gammatone_coefficients(bw[s], cf) for s in range(2)])
    xd = x.astype(dtype)
    tm = np.zeros((2, n * 32), dtype)
    tm_rms = np.zeros(64)
    gammatone_envelopes(xd, coef, tm, tm_rms)
    gain = rng.uniform(0.2, 1.0, (2, n, 32)).astype(dtype)  # time-major, as the model's
    b, a = butter(1, 800 / 12000)
    env = np.zeros((64, n), dtype)
    bm = np.zeros((64, n), dtype)
    rms = np.zeros(64)
    gammatone_bands(xd, coef, env, bm, rms, gain.reshape(2, -1), np.array([b[0], b[1], a[1]]))
    tol = 1e-9 if dtype == np.float64 else 2e-5
    for k in (0, 7, 19, 31):
        want = gammatone_basilar_membrane(xd[0].astype(np.float64), bw[0, k],
                                          xd[1].astype(np.float64), bw[1, k], RATE, cf[k])
        for s in range(2):
            want_env, want_bm = want[2 * s], want[2 * s + 1]
            g = lfilter(b, a, gain[s, :, k].astype(np.float64))
            scale = np.abs(want_env).max()
            np.testing.assert_allclose(tm.reshape(2, n, 32)[s, :, k], want_env, rtol=tol,
                                       atol=tol * scale)
            np.testing.assert_allclose(env[32 * s + k], want_env * g, rtol=tol, atol=tol * scale)
            np.testing.assert_allclose(bm[32 * s + k], want_bm * g, rtol=tol,
                                       atol=tol * np.abs(want_bm).max())
    want_rms = np.sqrt(np.mean(tm.reshape(2, n, 32).astype(np.float64) ** 2, axis=1)).ravel()
    np.testing.assert_allclose(tm_rms, want_rms, rtol=1e-12)
    np.testing.assert_allclose(rms, want_rms, rtol=1e-12)  # of the envelopes before the gain


@pytest.mark.parametrize("order", ["lowpass", "highpass", "gammatone"])
def test_block_scan_filter_matches_scipy_lfilter(order):
    """The torch path's block-and-prefix-scan state-space filter over several blocks and a
    ragged end: a Butterworth low-pass and high-pass in direct form against scipy's lfilter,
    and the gammatone's lowest band (a four-fold pole at 0.991, DC gain 1.6e8) as its one-pole
    cascade against the same recursion in 80-bit long double (scipy's direct form is itself
    4e-8 off there)."""
    from scipy.signal import butter, lfilter

    from harness.metrics.fast.haaqi import centre_frequencies, gammatone_coefficients, torch_engine

    x = np.random.default_rng(3).standard_normal((3, 64 * 37 + 5))
    if order == "gammatone":
        a = gammatone_coefficients(np.ones(1), centre_frequencies()[:1])[0, 2] / 4
        A = a * np.tril(np.ones((4, 4)))[None].repeat(3, 0)
        got = torch_engine.lti_filter(torch.from_numpy(x), A, np.ones((3, 4)), A[:, 3, :],
                                     np.ones(3)).numpy()
        al = np.longdouble(a)
        want = np.zeros(x.shape, np.longdouble)
        for r in range(len(x)):
            y = [np.longdouble(0)] * 4
            for n in range(x.shape[1]):
                v = np.longdouble(x[r, n])
                for k in range(4):
                    y[k] = al * y[k] + v
                    v = y[k]
                want[r, n] = v
        want = want.astype(np.float64)
        tol = 1e-13
    else:
        b, den = butter(2, 0.1, "low" if order == "lowpass" else "high")
        got = torch_engine.lfilter_rows(b, den, torch.from_numpy(x)).numpy()
        want = lfilter(b, den, x, axis=-1)
        tol = 1e-12
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * np.abs(want).max())


def test_noise_threads_draw_each_items_numbers_as_numpy_would():
    """Several noise threads (the torch engine's) over items with generators of their own: each
    item's BM noise is numpy's own draws from its RandomState, and each generator ends where
    pyclarity's draws (BM noise, then the two mel-cepstrum draws) would leave it."""
    from harness.metrics.fast.haaqi.model import NoiseWorker

    lengths = [700, 1300, 50, 900, 1100]
    counts = [4, 0, 7, 2, 3]
    rngs = [np.random.RandomState(40 + b) for b in range(5)]
    worker = NoiseWorker(rngs, lengths, 32, np.float64, threads=3)
    assert len(worker.threads) == 3
    for b, n in enumerate(lengths):
        ref, proc = (v.copy() for v in worker.noise(b))  # copies: the buffers are reused
        worker.counts[b].put(counts[b])
        want = np.random.RandomState(40 + b)
        np.testing.assert_array_equal(ref, want.standard_normal((32, n)))
        np.testing.assert_array_equal(proc, want.standard_normal((32, n)))
    for thread in worker.threads:
        thread.join(10)
    for b, n in enumerate(lengths):
        want = np.random.RandomState(40 + b)
        for size in [(32, n)] * 2 + ([(32, counts[b])] * 2 if counts[b] > 1 else []):
            want.standard_normal(size)
        got, exp = rngs[b].get_state(), want.get_state()
        assert np.array_equal(got[1], exp[1]) and got[2:] == exp[2:]
    shared = np.random.RandomState(1)  # items sharing a generator: one thread, in item order
    assert len(NoiseWorker([shared] * 3, [10, 10, 10], 32, threads=4).threads) == 1


@pytest.mark.gpu
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 0.001), (torch.float32, 0.01)])
def test_parity_with_pyclarity_on_cuda(scored, dtype, tol):
    """The torch engine on the GPU (its default there), item by item against pyclarity."""
    items, expected = scored
    for eq in (1, 2):
        idx = [i for i, it in enumerate(items) if it[4] == eq]
        got = haaqi_v1_batch([items[i][1] for i in idx], [items[i][2] for i in idx],
                             [items[i][3] for i in idx], [level1(items[i][1]) for i in idx],
                             equalisation=eq, seeds=[100 + i for i in idx], dtype=dtype, device="cuda")
        for i, g in zip(idx, got, strict=True):
            assert abs(g.score - expected[i]) <= tol, (items[i][0], g.score, expected[i])
