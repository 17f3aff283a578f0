"""speech-restoration: PESQ/ESTOI at 16 kHz and LSD/SNR at the reference's 32 kHz, checked
against the reference packages and the closed forms; the enhancers give 32 kHz with an empty top
band; unet-sr refuses a checkpoint of another rate with one line naming the file."""

from __future__ import annotations

import numpy as np
import pytest
import soxr
from pesq import pesq
from pystoi import stoi

from harness.audio import Audio
from harness.suites.types import Item, file_ref
from harness.tasks import get_protocol


def make_item(tmp_path, input_rate: int = 16000, seconds: float = 3.0) -> Item:
    from harness.audio import write

    rng = np.random.default_rng(0)
    n = int(32000 * seconds)
    t = np.arange(n) / 32000
    # a voiced-like tone complex with a 10 kHz partial (wide-band), amplitude-modulated
    clean = (0.1 * np.sin(2 * np.pi * 220 * t) + 0.05 * np.sin(2 * np.pi * 1500 * t)
             + 0.01 * np.sin(2 * np.pi * 10000 * t)) * (1 + 0.8 * np.sin(2 * np.pi * 3 * t))
    noisy = soxr.resample(clean, 32000, input_rate, "VHQ") + 0.01 * rng.normal(size=n * input_rate // 32000)
    write(tmp_path / "clean.wav", Audio(clean, 32000))
    write(tmp_path / "input.wav", Audio(noisy, input_rate))
    return Item("r0", "speech-restoration", tmp_path,
                {"input": file_ref(tmp_path, tmp_path / "input.wav")},
                {"clean": file_ref(tmp_path, tmp_path / "clean.wav")}, {})


def test_unprocessed_scores_at_the_stated_rates(tmp_path):
    item = make_item(tmp_path)
    protocol = get_protocol("speech-restoration")
    out = protocol.anchor("unprocessed", item, None)
    est = out["enhanced"]
    assert est.rate == 32000 and est.frames == item.references["clean"].frames
    scores = {s.metric: s.value for s in protocol.score(item, out, None, ["pesq", "estoi", "snr", "lsd"])}
    ref = item.reference("clean").mono().astype(np.float64)
    e = est.mono().astype(np.float64)
    # the harness's audio is float32: resampled as such (soxr keeps the dtype)
    ref16, e16 = (soxr.resample(x.astype(np.float32), 32000, 16000, "VHQ") for x in (ref, e))
    assert scores["pesq"] == pytest.approx(pesq(16000, ref16, e16, "wb"), abs=1e-6)
    assert scores["estoi"] == pytest.approx(stoi(ref16, e16, 16000, extended=True), abs=1e-6)
    # SNR at 32 kHz, the closed form; the missing 10 kHz partial counts against it
    assert scores["snr"] == pytest.approx(10 * np.log10(np.sum(ref ** 2) / np.sum((ref - e) ** 2)), abs=1e-4)
    # LSD at 32 kHz (2048-point periodic Hann, hop 512, log10 power + 1e-10), written out here
    def logp(x):
        frames = np.lib.stride_tricks.sliding_window_view(x, 2048)[::512]
        w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(2048) / 2048)
        return np.log10(np.abs(np.fft.rfft(frames * w, axis=1)) ** 2 + 1e-10)
    lsd = np.mean(np.sqrt(np.mean((logp(ref) - logp(e.astype(np.float32).astype(np.float64))) ** 2, axis=1)))
    assert scores["lsd"] == pytest.approx(lsd, rel=1e-4)


def test_an_enhancer_returns_32k_with_an_empty_top_band(tmp_path):
    from harness.api import get_system

    item = make_item(tmp_path, input_rate=8000)
    system = get_system("mmse-lsa")
    system.prepare("cpu")
    (out,) = system.process([item], None)
    y = out["enhanced"]
    assert y.rate == 32000 and y.frames == item.references["clean"].frames
    spec = np.abs(np.fft.rfft(y.mono().astype(np.float64))) ** 2
    f = np.fft.rfftfreq(y.frames, 1 / 32000)
    assert spec[f > 8500].sum() < 1e-5 * spec.sum()  # soxr's stop band: below -50 dB


def test_unet_sr_refuses_a_checkpoint_of_another_rate(tmp_path):
    import json

    from harness import checkpoints
    from harness.api import get_system
    from harness.errors import InvalidInput
    from systems.sr import unet

    arch = {**unet.ARCH_SMALL, "filters": [4, 4, 4, 4], "bottleneck": 4}
    model = unet.UNetSR(arch)
    path = tmp_path / "u16.safetensors"
    checkpoints.save(path, dict(model.state_dict()),
                     {"architecture": {"name": "unet-sr", "config": arch}, "data": {"rate": 16000}})
    assert json.loads(path.with_suffix(".json").read_text())["data"]["rate"] == 16000
    item = make_item(tmp_path)
    system = get_system("unet-sr", checkpoint_wideband=str(path))
    system.prepare("cpu")
    with pytest.raises(InvalidInput) as err:
        system.process([item], None)
    msg = str(err.value)
    assert str(path) in msg and "16000 Hz" in msg and "32000 Hz" in msg and "\n" not in msg
