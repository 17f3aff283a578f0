"""What the Cadenza recipes write, as `harness score` validates and reads it: scale files read as
pyclarity's `read_flac_signal` reads them, the recipes' lengths and names, per-scene listener
lists; and what is still refused, each with the file named."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import soundfile as sf

from harness import submission as sub
from harness.listener import resolve_panel
from harness.suites.types import Suite


@pytest.fixture(scope="module")
def panel():
    return resolve_panel("builtin", ["NH", "N1", "N2"])


def cad1_suite(item):
    return Suite("cad1-like", "1", "music-remix", item.root, (item,))


def scene_suite(item, listeners=None):
    meta = {"gains_db": {"vocals": 3.0, "drums": 0.0, "bass": -3.0, "other": 0.0}}
    if listeners is not None:
        meta["listeners"] = listeners
    scene = dataclasses.replace(item, id="S50001", task="music-rebalance", metadata=meta)
    return Suite("icassp-like", "1", "music-rebalance", item.root, (scene,))


def write_cad1(folder, expected, frames_extra=0, scaled=True, subtype="PCM_16"):
    """Every expected stem as the CAD1 recipe writes it: peak-normalised 16-bit FLAC + scale."""
    rng = np.random.default_rng(0)
    for stem, e in expected.items():
        n = e.spec.frames + (e.spec.tail if frames_extra == "tail" else frames_extra)
        x = 0.3 * rng.standard_normal((n, e.spec.channels))
        path = folder / f"{stem}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        if scaled and e.output != "remix":
            peak = float(np.max(np.abs(x)))
            sf.write(path, x / peak, e.spec.rate, subtype=subtype)
            path.with_suffix(".txt").write_text(f"{peak}")
        else:
            sf.write(path, np.clip(x, -1, 1), e.spec.rate, subtype=subtype)


def test_scale_files_are_read_as_pyclaritys_read_flac_signal(music_item, panel, tmp_path):
    from clarity.utils.flac_encoder import read_flac_signal

    expected = sub.expected_files(cad1_suite(music_item), panel)
    assert len(expected) == 3 * 9  # 8 ear-stems and the optional remix per listener
    write_cad1(tmp_path, expected, frames_extra="tail")
    v = sub.validate(tmp_path, expected)
    assert v.ok, v.problems[:3]
    assert any("scale file" in n for n in v.notes) and any("recipe's length" in n for n in v.notes)
    for stem in list(expected)[:3]:
        path = v.found[stem]
        theirs, rate = read_flac_signal(path)
        ours = sub.read_submitted(path)
        assert ours.rate == rate
        assert np.array_equal(ours.samples.T.reshape(theirs.shape), theirs)  # bit for bit
        # the peak is back (to 16-bit precision): the scale was applied, not ignored
        assert np.max(np.abs(ours.samples)) == pytest.approx(
            float(path.with_suffix(".txt").read_text()), rel=2**-14)


def test_what_the_recipes_do_not_write_is_still_refused(music_item, panel, tmp_path):
    expected = sub.expected_files(cad1_suite(music_item), panel)
    stems = list(expected)
    write_cad1(tmp_path, expected)
    bad_txt = tmp_path / f"{stems[0]}.txt"
    bad_txt.write_text("loud")
    sf.write(tmp_path / f"{stems[1]}.flac", np.zeros((expected[stems[1]].spec.frames, 1)),
             24000, subtype="PCM_24")  # its scale file stays: 24-bit FLAC is not the recipe's
    e = expected[stems[2]]
    sf.write(tmp_path / f"{stems[2]}.flac", np.zeros((e.spec.frames + 7, 1)), 24000,
             subtype="PCM_16")
    (tmp_path / "NH" / "orphan.txt").write_text("0.5")
    v = sub.validate(tmp_path, expected)
    text = "\n".join(v.problems)
    assert f"{stems[0]}.flac: its scale file" in text and "positive number" in text
    assert f"{stems[1]}.flac: a scale file beside a PCM_24 FLAC" in text
    assert (f"{stems[2]}.flac: {e.spec.frames + 7} frames, expected {e.spec.frames} or "
            f"{e.spec.frames + e.spec.tail}") in text
    assert "NH/orphan.txt: unexpected file" in text
    assert len(v.bad) == 3


def test_icassp2024_names_and_scene_listeners(music_item, panel, tmp_path):
    suite = scene_suite(music_item, ["N1", "N2", "S9"])
    expected = sub.expected_files(suite, panel)
    assert sorted(expected) == ["N1/S50001/N1_S50001_remix", "N2/S50001/N2_S50001_remix"]
    assert {e.recipe for e in expected.values()} == {"S50001_N1_remix", "S50001_N2_remix"}
    spec = next(iter(expected.values())).spec
    x = np.zeros((spec.frames + spec.tail, 2))
    x[:, 0] = 0.1
    sf.write(tmp_path / "S50001_N1_remix.flac", x, 32000, subtype="PCM_16")
    sf.write(tmp_path / "S50001_N2_remix.flac", x, 32000, subtype="PCM_16")
    v = sub.validate(tmp_path, expected)
    assert v.ok, v.problems
    assert any("named as the official recipe writes them" in n for n in v.notes)
    assert v.found["N1/S50001/N1_S50001_remix"].name == "S50001_N1_remix.flac"
    # the same output under both names is a duplicate
    (tmp_path / "N1" / "S50001").mkdir(parents=True)
    sf.write(tmp_path / "N1" / "S50001" / "N1_S50001_remix.flac", x, 32000, subtype="PCM_16")
    v = sub.validate(tmp_path, expected)
    assert any("a second file for N1/S50001/N1_S50001_remix" in p for p in v.problems)
    # NH is in the panel but not in the scene's list: a file for it is not expected
    assert "NH/S50001/NH_S50001_remix" not in expected


def test_a_scene_without_its_own_list_is_scored_for_the_whole_panel(music_item, panel):
    expected = sub.expected_files(scene_suite(music_item), panel)
    assert sorted(k.split("/")[0] for k in expected) == ["N1", "N2", "NH"]


def test_a_malformed_listener_list_makes_the_item_invalid(tmp_path, music_item):
    from harness.suites.types import load_suite, write_manifest

    suite = scene_suite(music_item, ["N1"])
    item = dataclasses.replace(suite.items[0], metadata={**suite.items[0].metadata,
                                                         "listeners": "N1"})
    write_manifest(dataclasses.replace(suite, items=(item,)), tmp_path)
    loaded = load_suite(tmp_path).items[0]
    assert any("metadata.listeners must be a list of listener ids" in d for d in loaded.defects)


def test_icassp2024_importer_names_every_broken_entry(music_item, tmp_path):
    import json

    from harness.suites.layouts import TreeProblems, import_layout

    song = tmp_path / "audio" / "at_mic_music" / "train" / "song-hlp0"
    song.mkdir(parents=True)
    for name in ("mixture", "vocals", "drums", "bass", "other"):
        a = music_item.input(name) if name == "mixture" else music_item.reference(name)
        sf.write(song / f"{name}.wav", a.samples.T, a.rate, subtype="PCM_16")
    meta = tmp_path / "metadata"
    meta.mkdir()
    hz = [250, 500, 1000, 2000, 4000, 6000]
    (meta / "listeners.train.json").write_text(json.dumps({"L1": {
        "name": "L1", "audiogram_cfs": hz, "audiogram_levels_l": [20] * 6,
        "audiogram_levels_r": [30] * 6}}))
    (meta / "gains.json").write_text(json.dumps({"g1": dict.fromkeys(
        ("vocals", "drums", "bass", "other"), 0.0)}))
    (meta / "at_mic_music.train.json").write_text(json.dumps({"song-hlp0": {"Path": "train/song-hlp0"}}))
    scene = {"music": "song", "head_loudspeaker_positions": "hlp0"}
    (meta / "scenes.train.json").write_text(json.dumps({
        "S1": {**scene, "gain": "g1"}, "S2": {**scene, "gain": "g9"}, "S3": {**scene, "gain": "g1"}}))
    (meta / "scene_listeners.train.json").write_text(json.dumps({"S1": ["L1"], "S2": ["L1"],
                                                                 "S3": ["L1", "L7"]}))
    with pytest.raises(TreeProblems) as exc:
        import_layout("icassp2024", tmp_path, split="train")
    text = str(exc.value)
    assert "gains.json: gain 'g9' (of scene 'S2')" in text
    assert "scene_listeners.train.json: scene 'S3' names listener(s) L7" in text
    (meta / "scenes.train.json").write_text(json.dumps({"S1": {**scene, "gain": "g1"}}))
    suite = import_layout("icassp2024", tmp_path, split="train")
    (item,) = suite.items
    assert (item.id, item.task, item.metadata["listeners"]) == ("S1", "music-rebalance", ["L1"])
    assert item.metadata["gains_db"]["vocals"] == 0.0
