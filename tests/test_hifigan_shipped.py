"""The shipped HiFi-GAN checkpoint: it loads with its record, was trained on voices no suite
uses, and beats the unprocessed input on the built-in quick
suite (PESQ from the `pesq` package, ESTOI from `pystoi`, SI-SDR in closed form)."""

from __future__ import annotations

import numpy as np
import pytest
from pesq import pesq
from pystoi import stoi

from harness import checkpoints
from harness.api import get_system
from harness.metrics.snr import si_sdr_db
from harness.suites import resolve_suite
from harness.suites.synth.speech import (
    EXTRA_TRAINING_VOICES,
    TRAINING_VOICES,
    VOICES,
    WIDEBAND_TRAINING_VOICES,
)
from harness.tasks import get_protocol
from systems.speech.learned import CHECKPOINTS

SHIPPED = CHECKPOINTS / "hifigan-small.safetensors"


def test_the_shipped_checkpoint_is_small_and_says_what_it_was_trained_on():
    tensors, record = checkpoints.load(SHIPPED, "hifigan")
    assert SHIPPED.stat().st_size < 16 * 2**20
    assert record["parameters"] == sum(t.numel() for t in tensors.values())
    data = record["data"]
    training = {**TRAINING_VOICES, **WIDEBAND_TRAINING_VOICES, **EXTRA_TRAINING_VOICES}
    assert set(data["voices"]) <= set(training) and not set(data["voices"]) & set(VOICES)
    train = record["training"]
    assert train["steps"] == train["total_steps"] > 0


@pytest.mark.slow
def test_hifigan_beats_unprocessed_on_the_quick_suite():
    suite = resolve_suite("speech-enhancement-quick")
    protocol = get_protocol("speech-enhancement")
    system = get_system("hifigan")
    system.prepare("cpu")
    outs = system.process(list(suite.items), None)
    rows = []
    for item, out in zip(suite.items, outs, strict=True):
        ref = protocol.reference(item).mono().astype(np.float64)
        noisy = protocol.anchor("unprocessed", item, None)["enhanced"].mono().astype(np.float64)
        est = out["enhanced"].mono().astype(np.float64)
        rows.append((pesq(16000, ref, noisy, "wb"), pesq(16000, ref, est, "wb"),
                     si_sdr_db(noisy, ref), si_sdr_db(est, ref),
                     stoi(ref, noisy, 16000, extended=True), stoi(ref, est, 16000, extended=True)))
    r = np.array(rows)
    assert r[:, 1].mean() > r[:, 0].mean(), r  # PESQ
    assert r[:, 3].mean() > r[:, 2].mean(), r  # SI-SDR
    assert r[:, 5].mean() > r[:, 4].mean(), r  # ESTOI
    # its speed (real-time factor) is measured in benchmarks/speech_enhancement_speed.py, not here
