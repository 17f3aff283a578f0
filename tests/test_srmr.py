"""SRMR against torchmetrics' own `speech_reverberation_modulation_energy_ratio` (the shared
parity tester), and its stated behaviour for wrong-rate, over-range, silent, short and
multichannel estimates.

torchmetrics imports `lfilter` from torchaudio, whose binary does not load against this torch
(its newest wheel lags torch's). Where it does not, the test gives torchmetrics a stand-in
`torchaudio.functional.filtering.lfilter` with torchaudio's documented contract (2-D
coefficients applied row by row with `batching`, normalised by a0, output clamped to [-1, 1]
unless `clamp=False`) computed by scipy's `lfilter`. Everything else is torchmetrics' code.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import scipy.signal
import torch
from helpers import Case, assert_parity, at_snr
from test_nonintrusive import noisy, speech

from harness.audio import Audio, resample
from harness.metrics import INVALID, OK, evaluate, get_metric
from harness.metrics.srmr import modulation_filterbank

pytest.importorskip("gammatone")
srmr_module = pytest.importorskip("torchmetrics.functional.audio.srmr")


def scipy_lfilter(waveform, a_coeffs, b_coeffs, clamp: bool = True, batching: bool = True):
    """torchaudio.functional.lfilter's contract, by scipy (float64)."""
    a = a_coeffs.detach().cpu().numpy()
    b = b_coeffs.detach().cpu().numpy()
    x = waveform.detach().cpu().numpy()
    if a.ndim == 1:
        y = scipy.signal.lfilter(b, a, x, axis=-1)
    else:
        if not batching:
            x = np.stack([x] * a.shape[0], -2)
        y = np.stack([scipy.signal.lfilter(b[i], a[i], x[..., i, :], axis=-1) for i in range(a.shape[0])], -2)
    out = torch.from_numpy(np.ascontiguousarray(y)).to(waveform.dtype)
    return out.clamp(-1.0, 1.0) if clamp else out


@pytest.fixture(scope="module")
def torchmetrics_srmr():
    try:
        from torchaudio.functional.filtering import lfilter  # noqa: F401

        yield srmr_module.speech_reverberation_modulation_energy_ratio
        return
    except (ImportError, OSError):
        pass
    saved = {k: sys.modules.get(k) for k in ("torchaudio", "torchaudio.functional",
                                             "torchaudio.functional.filtering")}
    pkg, fun, filt = (types.ModuleType(k) for k in saved)
    filt.lfilter = scipy_lfilter
    pkg.functional, fun.filtering = fun, filt
    sys.modules.update({"torchaudio": pkg, "torchaudio.functional": fun,
                        "torchaudio.functional.filtering": filt})
    available = srmr_module._TORCHAUDIO_AVAILABLE
    srmr_module._TORCHAUDIO_AVAILABLE = True
    try:
        yield srmr_module.speech_reverberation_modulation_energy_ratio
    finally:
        srmr_module._TORCHAUDIO_AVAILABLE = available
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def reverberant(x: np.ndarray, rt60: float, seed: int = 0) -> np.ndarray:
    """x through an exponentially decaying noise tail of the given RT60 (16 kHz)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rt60 * 16000)) / 16000
    h = rng.standard_normal(len(t)) * 10 ** (-3 * t / rt60)
    h[0] = 1.0
    y = scipy.signal.fftconvolve(x, h)[: len(x)]
    return 0.5 * y / np.abs(y).max()


def corpus() -> list[Case]:
    rng = np.random.default_rng(3)
    x = speech(1)
    cases = [Case(f"clean se0{k}", Audio(speech(k), 16000), None) for k in (1, 2)]
    cases += [Case(f"noisy input se0{k}", Audio(noisy(k), 16000), None) for k in (1, 3)]
    cases += [Case(f"reverberant RT60 {rt} s", Audio(reverberant(x, rt), 16000), None) for rt in (0.3, 1.0)]
    cases += [
        Case("white noise 5 dB", Audio(0.5 * at_snr(x, 5, rng=rng) / 1.5, 16000), None),
        Case("clipped at full scale", Audio(np.clip(8 * x, -1, 1), 16000), None),
        Case("beyond full scale (scaled to peak 1, as the reference)", Audio(3 * x / np.abs(x).max(), 16000),
             None),
        Case("silent", Audio(np.zeros(16000), 16000), None, status=INVALID),
        Case("shorter than one 256 ms frame", Audio(x[:3000], 16000), None, status=INVALID),
        Case("stereo", Audio(np.stack([x, x]), 16000), None, status=INVALID),
    ]
    return cases


def test_srmr_equals_torchmetrics(torchmetrics_srmr):
    def reference(case: Case) -> float:
        x = torch.from_numpy(np.asarray(case.estimate.samples[0], dtype=np.float64))
        return float(torchmetrics_srmr(x, 16000))

    got = assert_parity(get_metric("srmr"), corpus(), reference, 1e-6, min_spread=5.0)
    values = dict(zip([c.name for c in corpus() if c.status == OK], got["reference"], strict=True))
    # reverberation lowers the ratio, more for a longer tail (the metric's purpose)
    assert values["clean se01"] > values["reverberant RT60 0.3 s"] > values["reverberant RT60 1.0 s"]


def test_a_wrong_rate_is_resampled_to_16k_and_scored_as_that_signal():
    x48 = resample(Audio(speech(2), 16000), 48000)
    a = evaluate(get_metric("srmr"), x48, None)
    b = evaluate(get_metric("srmr"), resample(x48, 16000), None)
    assert a.status == OK and a.value == b.value


def test_modulation_filters_have_their_stated_centres_and_q():
    """Each band-pass peaks at unit gain at its centre (4 to 128 Hz, geometric) with Q 2."""
    fs = 16000.0
    b, a, low = modulation_filterbank(fs)
    centres = 4.0 * 2 ** (5 * np.arange(8) / 7)
    for m, cf in enumerate(centres):
        w, h = scipy.signal.freqz(b[m], a[m], worN=[cf], fs=fs)
        assert abs(abs(h[0]) - 1.0) < 1e-9
        half = np.abs(scipy.signal.freqz(b[m], a[m], worN=np.linspace(0.5, 4 * cf, 40000), fs=fs)[1])
        f = np.linspace(0.5, 4 * cf, 40000)[half >= 1 / np.sqrt(2)]
        assert abs(cf / (f[-1] - f[0]) - 2.0) < 0.05  # Q = centre / -3 dB bandwidth
        assert low[m] < cf
