"""classical-rebalance (CAD2 Task 2): the recipe's level adjustment and the harness's fitting rule
in closed form, the compressor equal to pyclarity's, the anchors' order, and the importer's
one-line problems. (The per-item equality with the installed recipe is tests/test_recipes_cad2.py,
slow.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from harness.audio import Audio
from harness.errors import SuiteError
from harness.listener import resolve_panel
from harness.suites.types import Item, file_ref
from harness.tasks import get_protocol
from harness.tasks.classical_rebalance import adjust_level, fitting, hearing_aid, sources

RATE = 44100


def tone_item(tmp_path, gains=None, seconds=1.5) -> Item:
    """Two sources (low-band and high-band noise, each with its own tremolo) and their sum."""
    from scipy.signal import butter, sosfilt

    t = np.arange(int(seconds * RATE)) / RATE
    noise = np.random.default_rng(3).standard_normal((2, t.size))
    s1 = 0.1 * (0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t)) * sosfilt(
        butter(4, [200, 1000], "bandpass", fs=RATE, output="sos"), noise[0])
    s2 = 0.05 * (0.6 + 0.4 * np.sin(2 * np.pi * 2.3 * t)) * sosfilt(
        butter(4, [1500, 6000], "bandpass", fs=RATE, output="sos"), noise[1])
    refs = {}
    for name, x in (("source_1", s1), ("source_2", s2), ("mixture", s1 + s2)):
        sf.write(tmp_path / f"{name}.flac", np.stack([x, 0.8 * x], axis=1), RATE, subtype="PCM_16")
        refs[name] = file_ref(tmp_path, tmp_path / f"{name}.flac")
    return Item("S50001", "classical-rebalance", tmp_path, {"mixture": refs.pop("mixture")}, refs,
                {"gains_db": gains or {"source_1": 6.0, "source_2": -6.0}})


def test_adjust_level_is_the_power_mean_of_the_gains():
    x = np.ones((4, 2))
    assert adjust_level(x, {"a": 0.0, "b": 0.0}) == pytest.approx(x)
    assert adjust_level(x, {"a": 10.0, "b": 10.0}) == pytest.approx(x * 10 ** (-10 / 20))
    # -10 log10((10 + 0.1) / 2) dB
    assert adjust_level(x, {"a": 10.0, "b": -10.0})[0, 0] == pytest.approx(10 ** (-np.log10(5.05) / 2))


def test_the_harness_fitting_rule_in_closed_form():
    li = resolve_panel("builtin").get("N2")
    fit = fitting(li)
    hl = np.interp([250, 500, 1000, 2000, 4000, 6000], li.audiogram_left.frequencies,
                   li.audiogram_left.levels)
    assert fit["gain_l"] == pytest.approx(np.maximum(hl - 20, 0) / 2, abs=1e-3)
    assert fit["cr_l"] == pytest.approx(np.minimum(1 + np.maximum(hl - 20, 0) / 40, 3), abs=1e-3)
    nh = fitting(resolve_panel("builtin").get("NH"))
    assert nh["gain_l"] == [0.0] * 6 and nh["cr_r"] == [1.0] * 6


def test_the_hearing_aid_is_pyclaritys_multiband_compressor():
    from clarity.enhancer.multiband_compressor import MultibandCompressor

    x = np.random.default_rng(0).standard_normal(RATE // 2) * 0.1
    fit = {"cr_l": [1, 2, 3, 2, 1.5, 1.2], "gain_l": [0, 3, 6, 9, 12, 15], "cr_r": 1.0, "gain_r": 0.0}
    mbc = MultibandCompressor(crossover_frequencies=[353.55, 707.11, 1414.21, 2828.43, 5656.85],
                              sample_rate=RATE)
    mbc.set_compressors(attack=[11, 11, 14, 13, 11, 11], release=[80, 80, 80, 80, 100, 100],
                        threshold=[-30] * 6, ratio=fit["cr_l"], makeup_gain=fit["gain_l"])
    np.testing.assert_array_equal(hearing_aid(x, RATE, fit, "left"), mbc(x)[0])


def test_oracle_beats_unprocessed_and_scores_near_one(tmp_path):
    item = tone_item(tmp_path)
    proto = get_protocol("classical-rebalance")
    assert sources(item) == ["source_1", "source_2"]
    listener = resolve_panel("builtin").get("N1")
    values = {}
    for kind in ("oracle", "unprocessed"):
        out = proto.anchor(kind, item, listener)
        assert proto.validate_outputs(item, out) == {}
        rows = proto.score(item, out, listener, ["haaqi"])
        assert [r.status for r in rows] == ["ok", "ok"], rows
        values[kind] = np.mean([r.value for r in rows])
    assert values["oracle"] > 0.95
    assert values["unprocessed"] < values["oracle"] - 0.05  # +-6 dB gains were not applied


def test_a_bad_scene_is_invalid_with_its_reason(tmp_path):
    proto = get_protocol("classical-rebalance")
    listener = resolve_panel("builtin").get("N1")
    item = tone_item(tmp_path, gains={"source_1": 3.0})
    out = proto.anchor("unprocessed", item, listener)
    rows = proto.score(item, out, listener, ["haaqi"])
    assert {r.status for r in rows} == {"invalid"}
    assert "metadata.gains_db lacks source_2" in rows[0].reason
    bad_fit = tone_item(tmp_path)
    bad_fit.metadata["compressor"] = {"N1": {"cr_l": [1, 2], "cr_r": 1, "gain_l": 0, "gain_r": 0}}
    rows = proto.score(bad_fit, out, listener, ["haaqi"])
    assert "metadata.compressor.N1.cr_l must be 1 or 6 finite numbers" in rows[0].reason
    no_sources = Item("S1", "classical-rebalance", tmp_path, item.inputs, {}, {})
    assert any("has no reference source_1" in p for p in proto.item_problems(no_sources))
    short = Audio(np.zeros((2, 10)), 32000)
    assert "frames, expected" in proto.validate_outputs(item, {"remix": short})["remix"]


def test_the_importer_names_every_problem(tmp_path):
    from harness.suites.layouts import import_layout

    root = tmp_path / "cad2"
    (root / "audio" / "p").mkdir(parents=True)
    meta = root / "metadata"
    meta.mkdir()
    item = tone_item(root / "audio" / "p")
    music = {"p": {"source_1": {"instrument": "Violin_1", "track": "p/source_1.flac"},
                   "source_2": {"instrument": "Cello_2", "track": "p/missing.flac"},
                   "mixture": {"instrument": "Mixture", "track": "p/mixture.flac", "start": 0.5,
                               "duration": 1.0}}}
    (meta / "music.valid.json").write_text(json.dumps(music))
    (meta / "scenes.valid.json").write_text(json.dumps({"S50001": {"music": "p", "gain": "g1"},
                                                        "S50002": {"music": "p"}}))
    (meta / "gains.json").write_text(json.dumps({"g1": item.metadata["gains_db"]}))
    (meta / "scene_listeners.valid.json").write_text(json.dumps({"S50001": ["L1"], "S50002": ["L1"]}))
    (meta / "compressor_params.valid.json").write_text(json.dumps({"L1": {"cr_l": 1}}))
    (meta / "listeners.valid.json").write_text(json.dumps({"L1": {
        "name": "L1", "audiogram_cfs": [250, 500, 1000, 2000, 4000, 6000],
        "audiogram_levels_l": [10] * 6, "audiogram_levels_r": [20] * 6}}))
    with pytest.raises(SuiteError) as err:
        import_layout("cad2-task2", root)
    text = str(err.value)
    assert "scene 'S50002' needs music and gain" in text
    assert "listener 'L1' (of scene 'S50001') lacks cr_r, gain_l, gain_r" in text
    fits = {"L1": {"cr_l": 1, "cr_r": 1, "gain_l": 0, "gain_r": 0}}
    (meta / "compressor_params.valid.json").write_text(json.dumps(fits))
    (meta / "scenes.valid.json").write_text(json.dumps({"S50001": {"music": "p", "gain": "g1"}}))
    with pytest.raises(SuiteError, match=r"missing\.flac: file not found"):
        import_layout("cad2-task2", root)
    music["p"]["source_2"]["track"] = "p/source_2.flac"
    (meta / "music.valid.json").write_text(json.dumps(music))
    suite = import_layout("cad2-task2", root)
    (got,) = suite.items
    assert got.inputs["mixture"].start == RATE // 2 and got.inputs["mixture"].frames == RATE
    assert got.metadata["compressor"] == fits and got.metadata["listeners"] == ["L1"]
    assert get_protocol("classical-rebalance").recipe_path(got, "L1", "remix") == \
        "valid/S50001_L1_remix"
