"""music-remix (CAD1) end to end on the quick suite: anchors and the hearing-loss ordering."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import soxr
from conftest import run_cli

from harness.store import Store
from harness.suites import resolve_suite
from harness.tasks.music_remix import MusicRemix


def test_anchor_outputs_meet_the_cad1_output_spec(music_item):
    p = MusicRemix()
    for kind in ("unprocessed", "oracle"):
        out = p.anchor(kind, music_item, None)
        assert p.validate_outputs(music_item, out) == {}
        assert len([k for k in out if k != "remix"]) == 8
    oracle = p.anchor("oracle", music_item, None)
    unproc = p.anchor("unprocessed", music_item, None)
    # The unprocessed "vocals" for the left ear is the left channel of the mixture.
    assert np.allclose(unproc["left_vocals"].mono(), unproc["left_drums"].mono())
    assert not np.allclose(oracle["left_vocals"].mono(), oracle["left_drums"].mono())


@pytest.mark.slow
def test_haaqi_of_oracle_falls_with_hearing_loss_and_beats_unprocessed(tmp_path):
    res = run_cli("run", "--suite", "music-remix-quick", "--listener", "NH", "--listener", "N1",
                  "--listener", "N2", "--listener", "N4", "--out", str(tmp_path), "--quiet")
    assert res.returncode == 0, res.stderr
    store = Store(tmp_path)
    df = store.scores(store.resolve("latest"))
    store.close()
    assert (df.status == "ok").all(), df[df.status != "ok"].reason.unique()
    unit = df.groupby(["system", "metric", "listener_id", "item_id"]).value.mean()
    haaqi = unit.loc["oracle", "haaqi"].groupby("listener_id").mean()
    assert haaqi["NH"] > haaqi["N1"] > haaqi["N2"] > haaqi["N4"], haaqi
    assert 0.7 < haaqi["NH"] < 1.0  # identical signals are not 1 (about 0.88 at 65 dB SPL)
    means = unit.groupby(["system", "metric"]).mean().unstack()
    assert (means.loc["oracle"] > means.loc["unprocessed"]).all(), means
    assert len(resolve_suite("music-remix-quick").items) * 4 * 2 * 8 == (df.metric == "haaqi").sum()


# ------------------------------------------------------------------ CAD1 HAAQI seeding
def asymmetric_listener():
    """Left ear N2, right ear N4 (standard audiograms): catches an ear mix-up."""
    from harness.listener import Listener, resolve_panel

    panel = resolve_panel("builtin")
    return Listener(audiogram_left=panel.get("N2").audiogram_left,
                    audiogram_right=panel.get("N4").audiogram_right, id="N2|N4")


def noisy(x: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    n = np.random.default_rng(seed).standard_normal(x.shape)
    return x + n * np.sqrt(np.mean(x**2) / np.mean(n**2) / 10 ** (snr_db / 10))


def test_haaqi_equals_the_cad1_recipes_own_evaluation(music_item, tmp_path):
    """pyclarity 0.9.0's recipes/cad1/task1/baseline/evaluate.py, its own `_evaluate_song_listener`,
    run on files in the recipe's layout (16-bit WAV references, 16-bit FLAC ear stems), against the
    harness's CAD1 protocol on the same files: every one of the 8 values equal (the recipe's
    seeding, resampler, level1 and audiogram per ear reproduced)."""
    import soundfile as sf
    from omegaconf import OmegaConf
    from recipes.cad1.task1.baseline.evaluate import _evaluate_song_listener

    from harness.audio import read
    from harness.suites.types import Suite, file_ref, load_suite, write_manifest

    song = music_item.id
    music = tmp_path / "music"
    folder = music / "test" / song
    folder.mkdir(parents=True)
    for name in ("mixture", "vocals", "drums", "bass", "other"):
        x = (music_item.input(name) if name == "mixture" else music_item.reference(name)).samples.T
        sf.write(folder / f"{name}.wav", x, 44100, subtype="PCM_16")
    refs = {n: file_ref(music, folder / f"{n}.wav") for n in ("vocals", "drums", "bass", "other")}
    item = dataclasses.replace(music_item, root=music, inputs={"mixture": file_ref(music, folder / "mixture.wav")},
                               references=refs)
    write_manifest(Suite("recipe", "1", "music-remix", music, (item,)))
    item = load_suite(music).items[0]

    li = asymmetric_listener()
    enhanced = tmp_path / "enhanced"
    out_dir = enhanced / li.id / song
    out_dir.mkdir(parents=True)
    outputs = {}
    for i, s in enumerate(("vocals", "drums", "bass", "other")):
        ref24 = soxr.resample(item.reference(s).samples.T.astype(np.float64), 44100, 24000)
        for ch, ear in enumerate(("left", "right")):
            path = out_dir / f"{li.id}_{song}_{ear}_{s}.flac"
            sf.write(path, np.clip(noisy(ref24[:, ch], 5 + 3 * ch, i), -1, 1 - 2**-15), 24000,
                     subtype="PCM_16")
            outputs[f"{ear}_{s}"] = read(path)

    config = OmegaConf.create({"path": {"music_dir": str(music)}, "evaluate": {"set_random_seed": True},
                               "stem_sample_rate": 24000, "sample_rate": 44100})
    _, theirs = _evaluate_song_listener(song, li, config, "test", enhanced)
    ours = {f"{r.ear}_{r.stem}": r.value for r in MusicRemix().score(item, outputs, li, ["haaqi"])}
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=1e-6), key
    # The right ear (N4) hears less than the left (N2): HAAQI follows the ear's own audiogram.
    assert np.mean([v for k, v in ours.items() if k.startswith("left")]) > np.mean(
        [v for k, v in ours.items() if k.startswith("right")])
