"""DNSMOS and PLCMOS against speechmos's own calls (the shared parity tester), and their stated
behaviour for wrong-rate, clipped, over-range and multichannel estimates."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import soundfile as sf
from helpers import QUICK, Case, assert_parity, at_snr

from harness.audio import Audio, resample
from harness.metrics import INVALID, evaluate, get_metric

pytest.importorskip("speechmos")

DNSMOS_KEYS = {"dnsmos_sig": "sig_mos", "dnsmos_bak": "bak_mos", "dnsmos_ovrl": "ovrl_mos",
               "dnsmos_p808": "p808_mos"}


def speech(k: int) -> np.ndarray:
    x, rate = sf.read(QUICK / "speech-enhancement-quick" / "clean" / f"se0{k}.flac")
    assert rate == 16000
    return x


def noisy(k: int) -> np.ndarray:
    x, _ = sf.read(QUICK / "speech-enhancement-quick" / "input" / f"se0{k}.flac")
    return x


def corpus(seed: int = 1) -> list[Case]:
    rng = np.random.default_rng(seed)
    x = speech(1)
    cases = [Case(f"clean se0{k}", Audio(speech(k), 16000), None, kwargs={"seed": 7}) for k in (1, 2)]
    cases += [Case(f"noisy input se0{k}", Audio(noisy(k), 16000), None, kwargs={"seed": 7}) for k in (1, 3)]
    cases += [
        Case("white noise 0 dB", Audio(0.5 * at_snr(x, 0, rng=rng) / 1.5, 16000), None, kwargs={"seed": 7}),
        Case("clipped at full scale", Audio(np.clip(8 * x, -1, 1), 16000), None, kwargs={"seed": 7}),
        Case("short (2 s, repeated by the model)", Audio(x[:32000], 16000), None, kwargs={"seed": 7}),
        Case("beyond full scale", Audio(1.5 * x / np.abs(x).max(), 16000), None, status=INVALID),
        Case("stereo", Audio(np.stack([x, x]), 16000), None, status=INVALID),
    ]
    return cases


def speechmos_dnsmos(case: Case) -> dict:
    from speechmos import dnsmos

    with contextlib.redirect_stdout(io.StringIO()):
        return dnsmos.run(case.estimate.samples[0], 16000)


@pytest.mark.parametrize("name", list(DNSMOS_KEYS))
def test_dnsmos_equals_speechmos(name):
    got = assert_parity(get_metric(name), corpus(), lambda c: float(speechmos_dnsmos(c)[DNSMOS_KEYS[name]]),
                        1e-4, min_spread=0.5)
    assert len(got["reference"]) == 7


def test_plcmos_equals_speechmos_with_the_same_seed():
    from speechmos import plcmos

    def reference(case: Case) -> float:
        np.random.seed(case.kwargs["seed"])
        with contextlib.redirect_stdout(io.StringIO()):
            return float(plcmos.run(case.estimate.samples[0], 16000)["plcmos"])

    assert_parity(get_metric("plcmos"), corpus(), reference, 1e-4, min_spread=0.5)


def test_a_wrong_rate_is_resampled_to_16k_and_scored_as_that_signal():
    """At 48 kHz the estimate is scored as its 16 kHz version (the harness's resampler), not
    refused and not fed to a 16 kHz model at the wrong rate."""
    x48 = Audio(resample(Audio(speech(2), 16000), 48000).samples, 48000)
    x16 = resample(x48, 16000)
    for name in ("dnsmos_ovrl", "plcmos"):
        a = evaluate(get_metric(name), x48, None, seed=3)
        b = evaluate(get_metric(name), x16, None, seed=3)
        assert a.status == "ok" and a.value == b.value, (name, a, b)


def test_over_range_input_names_its_peak():
    x = speech(1)
    s = evaluate(get_metric("dnsmos_sig"), Audio(2.0 * x / np.abs(x).max(), 16000), None)
    assert s.status == INVALID and "peaks at 2" in s.reason, s


def test_clean_speech_scores_above_its_noisy_input():
    """Not parity, sense: on every quick-suite utterance DNSMOS OVRL and BAK rate the clean
    speech above the noisy, reverberant input (the models' purpose), by 0.5 MOS on average."""
    for name in ("dnsmos_ovrl", "dnsmos_bak"):
        gaps = [evaluate(get_metric(name), Audio(speech(k), 16000), None).value
                - evaluate(get_metric(name), Audio(noisy(k), 16000), None).value for k in range(1, 7)]
        assert min(gaps) > 0 and np.mean(gaps) > 0.5, (name, gaps)


def test_distillmos_equals_the_packages_own_model_call():
    """DistillMOS through the harness (16 kHz, float32, mono) against distillmos's
    ConvTransformerSQAModel called directly on the same signal (its shipped weights)."""
    import torch

    from harness.metrics.nonintrusive import _importable_torchaudio

    with _importable_torchaudio():
        import distillmos
    model = distillmos.ConvTransformerSQAModel(load_weights=True).eval()

    def reference(case: Case) -> float:
        x = torch.tensor(case.estimate.samples[0], dtype=torch.float32)[None]
        with torch.no_grad():
            return float(model(x)[0, 0])

    got = assert_parity(get_metric("distillmos"), corpus(), reference, 1e-4, min_spread=0.5)
    assert len(got["reference"]) == 7


def test_distillmos_resamples_a_wrong_rate_and_rates_clean_above_noisy():
    x48 = Audio(resample(Audio(speech(2), 16000), 48000).samples, 48000)
    a = evaluate(get_metric("distillmos"), x48, None)
    b = evaluate(get_metric("distillmos"), resample(x48, 16000), None)
    assert a.status == "ok" and a.value == b.value
    gaps = [evaluate(get_metric("distillmos"), Audio(speech(k), 16000), None).value
            - evaluate(get_metric("distillmos"), Audio(noisy(k), 16000), None).value for k in range(1, 7)]
    assert min(gaps) > 0 and np.mean(gaps) > 0.5, gaps
