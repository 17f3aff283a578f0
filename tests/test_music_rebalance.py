"""music-rebalance (ICASSP 2024 Cadenza): the reference and the score against the task's
description written out with pyclarity and soxr, the oracle, scene gains in the remix system."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import soxr

from harness.listener import Listener, resolve_panel
from harness.tasks import get_protocol

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


def recipe_scores(scene, listener, remix_file) -> dict[str, float]:
    """The body of the scene loop of pyclarity 0.9.0's recipes/cad_icassp_2024/baseline/
    evaluate.py (`run_calculate_aq`), its own functions on the scene's files."""
    from clarity.enhancer.nalr import NALR
    from clarity.evaluator.haaqi import compute_haaqi
    from clarity.utils.file_io import read_signal
    from clarity.utils.flac_encoder import read_flac_signal
    from clarity.utils.signal_processing import compute_rms, resample
    from recipes.cad_icassp_2024.baseline.evaluate import (
        apply_gains,
        apply_ha,
        remix_stems,
        set_song_seed,
    )

    reference_stems = {s: read_signal(scene.root / scene.references[s].path)
                       for s in ("drums", "bass", "other", "vocals")}
    original_mixture = read_signal(scene.root / scene.inputs["mixture"].path)
    reference_stems = apply_gains(reference_stems, 44100, GAINS)
    reference_mixture = remix_stems(reference_stems, original_mixture, 44100)
    set_song_seed(scene.id)
    enhanced_signal, _ = read_flac_signal(remix_file)
    enhancer = NALR(nfir=220, sample_rate=44100)
    out = {}
    for ch, (ear, ag) in enumerate((("left", listener.audiogram_left),
                                    ("right", listener.audiogram_right))):
        reference = apply_ha(enhancer, None, reference_mixture[:, ch], ag, False)
        out[ear] = compute_haaqi(
            processed_signal=resample(enhanced_signal[:, ch], 32000, 24000),
            reference_signal=resample(reference, 44100, 24000),
            processed_sample_rate=24000, reference_sample_rate=24000, audiogram=ag,
            equalisation=2, level1=65 - 20 * np.log10(compute_rms(reference_mixture[:, ch])),
        )
    return out


@pytest.mark.parametrize("tail", [False, True])
def test_haaqi_equals_the_icassp2024_recipes_own_evaluation(scene, listener, tmp_path, tail):
    """The recipe's evaluation on a 16-bit FLAC remix, the mixture's length at 32 kHz or the
    recipe's own (+ NAL-R's tail), against the harness on the same file: both ears equal (the
    loudness steps, the full-convolution NAL-R, soxr HQ, level1 from the remix before NAL-R,
    the seeding by scene id)."""
    import soundfile as sf

    from harness.audio import read

    p = get_protocol("music-rebalance")
    spec = p.output_spec(scene)["remix"]
    mix = scene.input("mixture").samples.astype(np.float64)
    from clarity.enhancer.nalr import NALR
    from clarity.utils.signal_processing import resample  # the recipe's length: NAL-R's tail
    assert len(NALR(220, 44100).build(listener.audiogram_left)[0]) == 221  # np.convolve: +220
    assert spec.frames + spec.tail == len(resample(np.zeros(mix.shape[1] + 220), 44100, 32000))
    est = soxr.resample(mix.T, 44100, 32000)[: spec.frames]
    if tail:
        est = np.concatenate([np.zeros((spec.tail, 2)), est])  # a filter's delay, as NAL-R's
    est = est + 0.01 * np.random.default_rng(1).standard_normal(est.shape)
    path = tmp_path / "remix.flac"
    sf.write(path, np.clip(est, -1, 1 - 2**-15), 32000, subtype="PCM_16")
    remix = read(path)
    assert remix.frames == spec.frames + (spec.tail if tail else 0)
    ours = {r.ear: r.value for r in p.score(scene, {"remix": remix}, listener, ["haaqi"])}
    theirs = recipe_scores(scene, listener, path)
    for ear in ("left", "right"):
        assert ours[ear] == pytest.approx(theirs[ear], abs=1e-6), (ear, ours, theirs)
    assert ours["left"] > ours["right"]  # N4 hears less than N2


def test_oracle_is_the_reference(scene, listener):
    p = get_protocol("music-rebalance")
    out = p.anchor("oracle", scene, listener)
    assert p.validate_outputs(scene, out) == {}
    # Identical signals, the reference already equalised (equalisation=2): HAAQI = 1 but for the
    # resampling round trip 44.1 -> 32 -> 24 kHz against 44.1 -> 24 kHz.
    assert all(r.value > 0.99 for r in p.score(scene, out, listener, ["haaqi"]))


def test_remix_system_applies_the_scene_gains(scene, listener):
    from harness.api import get_system

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
