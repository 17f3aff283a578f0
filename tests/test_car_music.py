"""car-music (`cad1-task2/1`): the scene as the CAD1 Task 2 recipe's own CarSceneAcoustics builds
it, the generator's BRIRs, the anchors, and what a malformed scene or tree gives."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import run_cli

from harness.audio import Audio
from harness.suites import resolve_suite
from harness.suites.synth.tools import missing

pytestmark = pytest.mark.skipif(bool(missing(["fluidsynth"])), reason="needs fluidsynth")


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    out = tmp_path_factory.mktemp("car") / "s"
    r = run_cli("suites", "make", "car-music", "--items", "1", "--seconds", "2", "--seed", "5",
                "--out", str(out), "-q")
    assert r.returncode == 0, r.stderr
    return resolve_suite(str(out))


def test_the_scene_is_the_recipes_car_scene(suite):
    """The protocol's car, hearing aid and reference, against the recipe's CarSceneAcoustics on the
    same BRIR folder, seeded the same way: equal to float rounding."""
    from clarity.utils.audiogram import Audiogram, Listener
    from omegaconf import OmegaConf
    from recipes.cad1.task2.baseline import car_scene_acoustics as csa
    from recipes.cad1.task2.baseline.evaluate import set_scene_seed

    from harness.tasks import car_music as cm

    item = suite.items[0]
    hz = np.array([250, 500, 1000, 2000, 3000, 4000, 6000, 8000])
    listener = Listener(Audiogram(levels=np.array([20, 25, 30, 40, 50, 55, 60, 65]), frequencies=hz),
                        Audiogram(levels=np.array([35, 40, 45, 50, 55, 60, 65, 70]), frequencies=hz),
                        id="L1")
    config = OmegaConf.load(csa.__file__.replace("car_scene_acoustics.py", "config.yaml"))
    hr = {}
    for room in ("car", "anechoic"):
        hr[room] = {sp: {side: item.references[f"{room}_{s}_{ear}"].path.rsplit("/", 1)[1][:-4]
                         for ear, side in cm.SIDES.items()} for s, sp in cm.SPEAKERS.items()}
    acoustics = csa.CarSceneAcoustics(track_duration=30, sample_rate=44100,
                                      hrtf_dir=str(item.root / "eBrird"), config_nalr=config.nalr,
                                      config_compressor=config.compressor, extend_noise=0.2)
    rng = np.random.default_rng(0)
    enhanced = (0.1 * rng.standard_normal((2, 44100))).astype(np.float32)

    class Quiet:  # the recipe's AudioManager, minus the files it writes
        def add_audios_to_save(self, *a):
            pass

        def clip_audio(self, x):
            return int(np.sum(np.abs(x) > 1)), np.clip(x, -1, 1)

    set_scene_seed(item.id)
    theirs = acoustics.apply_car_acoustics_to_signal(
        enhanced, {**item.metadata, "scene": item.id}, listener, hr, Quiet(), config)
    theirs_ref = acoustics.equalise_level(
        acoustics.add_hrtf_to_stereo_signal(cm.recipe_song(item), hr["anechoic"], "Anechoic"),
        theirs, max_level=-14)
    set_scene_seed(item.id)
    ours = cm.in_the_car(item, enhanced, listener)
    ours_ref = cm.equalise_level(cm.through(cm.recipe_song(item), item, "anechoic"), ours, -14.0)
    assert ours.shape == theirs.shape and ours_ref.shape == theirs_ref.shape
    assert np.max(np.abs(ours - theirs)) <= 1e-12 * np.max(np.abs(theirs))
    assert np.max(np.abs(ours_ref - theirs_ref)) <= 1e-12 * np.max(np.abs(theirs_ref))
    assert np.std(ours[0] - ours[1]) > 1e-3  # the ears differ (BRIRs, audiograms)


def test_brirs_are_one_channel_float32_with_the_nearer_ear_first(suite):
    from scipy.io import wavfile

    from harness.tasks import car_music as cm

    item = suite.items[0]
    assert set(cm.BRIR_ROLES) <= set(item.references)
    for role in cm.BRIR_ROLES:
        h = wavfile.read(item.root / item.references[role].path)[1]
        assert h.dtype == np.float32 and h.ndim == 1
    # the -90 degree noise source (on the left): the left ear's direct path arrives first
    left = wavfile.read(item.root / item.references["noise_m90_left"].path)[1]
    right = wavfile.read(item.root / item.references["noise_m90_right"].path)[1]
    assert np.argmax(np.abs(left)) < np.argmax(np.abs(right))
    # Woodworth: (r / c)(theta + sin theta) at 90 degrees, 8.75 cm head = 0.656 ms = 29 samples
    assert np.argmax(np.abs(right)) - np.argmax(np.abs(left)) == pytest.approx(29, abs=1)


def test_anchors_score_and_oracle_equals_unprocessed(suite, tmp_path):
    r = run_cli("run", "--suite", str(suite.root), "--system", "unprocessed", "--system", "oracle",
                "--listener", "NH", "--listener", "N3", "--out", str(tmp_path / "runs"), "-q")
    assert r.returncode == 0, r.stderr
    from harness.store import Store

    with Store(tmp_path / "runs") as store:
        df = store.scores(store.resolve("latest"))
    assert (df.status == "ok").all() and len(df) == 8
    wide = df.pivot_table(index=["listener_id", "ear"], columns="system", values="value")
    assert (wide["oracle"] == wide["unprocessed"]).all()
    assert ((wide > 0) & (wide < 1)).all().all()


def test_a_malformed_scene_is_invalid_with_its_reason(suite):
    from harness.listener import resolve_panel
    from harness.tasks.car_music import CarMusic

    item = suite.items[0]
    p = CarMusic()
    listener = resolve_panel("builtin").get("N2")
    out = p.anchor("unprocessed", item, listener)
    for change, words in [({"snr": "loud"}, "metadata.snr must be a finite number of dB"),
                          ({"car_noise_parameters": None}, "metadata.car_noise_parameters is missing"),
                          ({"car_noise_parameters": {"speed": 80}}, "cannot make car noise")]:
        bad = dataclasses.replace(item, metadata={**item.metadata, **change})
        scores = p.score(bad, out, listener, ["haaqi"])
        assert [s.status for s in scores] == ["invalid", "invalid"]
        assert words in scores[0].reason and item.id in scores[0].reason
    short = {"enhanced": Audio(out["enhanced"].samples[:, :-5], 32000)}
    scores = p.score(item, short, listener, ["haaqi"])
    assert [s.status for s in scores] == ["invalid", "invalid"] and "frames" in scores[0].reason


def test_importer_names_a_missing_brir_in_one_line(tmp_path):
    from harness.errors import SuiteError
    from harness.suites.layouts.cad1_task2 import load_cad1_task2

    meta = tmp_path / "metadata"
    (tmp_path / "audio" / "music").mkdir(parents=True)
    meta.mkdir()
    (meta / "scenes.json").write_text(json.dumps({"S1": {"split": "valid"}}))
    (meta / "scenes_listeners.json").write_text("{}")
    (meta / "eBrird_BRIR.json").write_text(json.dumps({"valid": {}}))
    (meta / "listeners.valid.json").write_text(json.dumps({"L1": {
        "name": "L1", "audiogram_cfs": [250, 500, 1000, 2000, 3000, 4000, 6000, 8000],
        "audiogram_levels_l": [10] * 8, "audiogram_levels_r": [10] * 8}}))
    with pytest.raises(SuiteError) as err:
        load_cad1_task2(tmp_path)
    text = str(err.value)
    assert "HR36_E02_CH1_Left.wav: file not found" in text
    assert "scene 'S1' lacks song, song_path, hr, snr, car_noise_parameters" in text
