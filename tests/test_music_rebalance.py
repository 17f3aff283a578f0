"""music-rebalance (ICASSP 2024 Cadenza): the reference and the score against the task's
description written out with pyclarity and soxr, the oracle, scene gains in the remix system."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest
import soxr

from harness.audio import Audio
from harness.listener import Listener, resolve_panel
from harness.protocols import get_protocol

STEMS = ("vocals", "drums", "bass", "other")
GAINS = {"vocals": 6.0, "drums": -4.5, "bass": 2.0, "other": -9.0}


@pytest.fixture(scope="module")
def scene(music_item):
    return dataclasses.replace(music_item, task="music-rebalance",
                               metadata={**music_item.metadata, "gains_db": GAINS})


@pytest.fixture(scope="module")
def listener():
    panel = resolve_panel("builtin")  # left N2, right N4: an ear mix-up would show
    return Listener(audiogram_left=panel.get("N2").audiogram_left,
                    audiogram_right=panel.get("N4").audiogram_right, id="N2|N4")


def f32(x: np.ndarray) -> np.ndarray:
    """Harness audio is float32."""
    return np.asarray(x, dtype=np.float32).astype(np.float64)


def test_score_matches_the_task_description(scene, listener):
    from clarity.enhancer.nalr import NALR
    from clarity.evaluator.haaqi import compute_haaqi

    from harness.listener import haaqi_audiogram

    p = get_protocol("music-rebalance")
    mix = scene.input("mixture").samples.astype(np.float64)
    n32 = p.output_spec(scene)["remix"].frames
    est32 = soxr.resample(mix.T, 44100, 32000, quality="VHQ")[:n32]
    est32 = est32 + 0.01 * np.random.default_rng(1).standard_normal(est32.shape)
    ours = {r.ear: r.value for r in p.score(scene, {"remix": Audio(est32.T, 32000)}, listener,
                                            ["haaqi"])}
    # The task: gained sum of the stems, NAL-R (pyclarity, 220 taps, delay 110 removed) per ear,
    # 44.1 -> 24 kHz; the remix 32 -> 24 kHz; HAAQI equalisation=2, level1 from the reference
    # RMS, numpy seeded once with md5(song) mod 1e8, left ear first.
    gained = sum(10 ** (GAINS[s] / 20) * scene.reference(s).samples.astype(np.float64) for s in STEMS)
    est24 = f32(soxr.resample(f32(est32), 32000, 24000, quality="VHQ"))
    np.random.seed(int(hashlib.md5(scene.id.encode()).hexdigest(), 16) % 10**8)
    for ch, (ear, ag) in enumerate((("left", listener.audiogram_left),
                                    ("right", listener.audiogram_right))):
        fir, _ = NALR(220, 44100).build(ag)
        ref44 = np.convolve(gained[ch], fir)[110: 110 + gained.shape[1]]
        ref24 = f32(soxr.resample(f32(ref44), 44100, 24000, quality="VHQ"))
        level1 = 65 - 20 * np.log10(np.sqrt(np.mean(ref24**2)))
        theirs = compute_haaqi(est24[:, ch], ref24, 24000, 24000, haaqi_audiogram(ag), 2, level1)
        # 1e-6: the harness convolves by FFT (np.convolve here), a last-bit difference that the
        # float32 rounding of the reference can carry into the 9th decimal of HAAQI
        assert ours[ear] == pytest.approx(theirs, abs=1e-6), ear
    assert ours["left"] > ours["right"]  # N4 hears less than N2


def test_oracle_is_the_reference(scene, listener):
    p = get_protocol("music-rebalance")
    out = p.anchor("oracle", scene, listener)
    assert p.validate_outputs(scene, out) == {}
    # Identical signals, the reference already equalised (equalisation=2): HAAQI = 1 but for the
    # resampling round trip 44.1 -> 32 -> 24 kHz against 44.1 -> 24 kHz.
    assert all(r.value > 0.99 for r in p.score(scene, out, listener, ["haaqi"]))


def test_remix_system_applies_the_scene_gains(scene, listener):
    from systems.base import get_system

    p = get_protocol("music-rebalance")
    plain = dict(separator="oracle", nalr_design="clarity", bandpass=None, soft_clip_knee=100.0)
    follows = get_system("remix", **plain).process([scene], listener)[0]
    assert set(follows) == {"remix"}
    undone = get_system("remix", **plain, gains_db={s: -g for s, g in GAINS.items()})
    ignores = undone.process([scene], listener)[0]  # configured gains cancel the scene's
    good = [r.value for r in p.score(scene, follows, listener, ["haaqi"])]
    bad = [r.value for r in p.score(scene, ignores, listener, ["haaqi"])]
    assert min(good) > 0.99 and max(bad) < 0.9, (good, bad)


def test_a_scene_without_gains_is_invalid_with_its_reason(music_item, listener):
    p = get_protocol("music-rebalance")
    scene = dataclasses.replace(music_item, task="music-rebalance",
                                metadata={"gains_db": {"vocals": 1.0, "drums": "loud"}})
    out = p.anchor("unprocessed", scene, listener)
    rows = p.score(scene, out, listener, ["haaqi"])
    assert [r.status for r in rows] == ["invalid", "invalid"]
    assert music_item.id in rows[0].reason and "gains_db" in rows[0].reason
    assert "missing bass, other" in rows[0].reason
