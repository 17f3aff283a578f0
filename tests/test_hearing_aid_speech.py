"""hearing-aid-speech (CEC2) and hearing-aid-enhancement (ICASSP 2023): the recipes' reference
in closed form, better-ear aggregation, the combined score's arithmetic, the anchors' order and
the importer's one-line problems (per-item equality with the installed recipes:
tests/test_recipes_clarity.py, slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from harness.errors import SuiteError
from harness.listener import resolve_panel
from harness.metrics import Score
from harness.suites.types import Item, file_ref
from harness.tasks import get_protocol
from harness.tasks.hearing_aid_speech import recipe_reference

RATE = 44100


def scene(folder, sid="S06001") -> Item:
    """A target (noise-excited formant-ish band) and a louder reverberant version, and a mix."""
    from scipy.signal import butter, sosfilt

    rng = np.random.default_rng(5)
    n = int(1.2 * RATE)
    env = (np.sin(2 * np.pi * 4 * np.arange(n) / RATE) > 0).astype(float)
    dry = 0.1 * env[:, None] * sosfilt(butter(4, [300, 3000], "bandpass", fs=RATE, output="sos"),
                                       rng.standard_normal((n, 2)), axis=0)
    wet = 1.6 * dry + 0.02 * sosfilt(butter(2, 2000, fs=RATE, output="sos"), rng.standard_normal((n, 2)), axis=0)
    mix = wet + 0.05 * rng.standard_normal((n, 2))
    refs = {}
    for name, x in (("mix_CH1", mix), ("target_anechoic", dry), ("target", wet)):
        sf.write(folder / f"{sid}_{name}.wav", x, RATE, subtype="PCM_16")
        refs[name] = file_ref(folder, folder / f"{sid}_{name}.wav")
    return Item(sid, "hearing-aid-speech", folder, {"mix_CH1": refs.pop("mix_CH1")}, refs, {})


def test_reference_is_the_anechoic_target_at_the_reverberant_rms(tmp_path):
    item = scene(tmp_path)
    ref = recipe_reference(item)
    wet = sf.read(tmp_path / "S06001_target.wav")[0]
    assert np.sqrt(np.mean(ref**2, axis=0)) == pytest.approx(np.sqrt(np.mean(wet**2, axis=0)), rel=1e-12)
    dry = sf.read(tmp_path / "S06001_target_anechoic.wav")[0]
    assert np.corrcoef(ref[:, 0], dry[:, 0])[0, 1] == pytest.approx(1.0, abs=1e-12)


def test_better_ear_units_and_the_icassp2023_combination(tmp_path):
    cec2 = get_protocol("hearing-aid-speech")
    rows = [Score("haspi", 0.4, "ok", ear="left"), Score("haspi", 0.7, "ok", ear="right")]
    assert cec2.unit(rows) == (0.7, "ok")
    assert cec2.unit([rows[0], Score("haspi", None, "failed", "x", ear="right")]) == (None, "failed")
    icassp = get_protocol("hearing-aid-enhancement")
    item = scene(tmp_path)
    listener = resolve_panel("builtin").get("N2")
    got = {}
    for kind in ("oracle", "unprocessed"):
        out = icassp.anchor(kind, item, listener)
        assert icassp.validate_outputs(item, out) == {}
        res = {(r.metric, r.ear): r.value for r in icassp.score(item, out, listener,
                                                                ["haspi", "hasqi", "icassp2023_score"])}
        be = {m: max(res[(m, "left")], res[(m, "right")]) for m in ("haspi", "hasqi")}
        assert res[("icassp2023_score", "")] == pytest.approx(0.5 * (be["haspi"] + be["hasqi"]), abs=1e-12)
        got[kind] = res[("icassp2023_score", "")]
    assert got["oracle"] > got["unprocessed"]
    # CEC2 takes the output at the recipe's NAL-R length (+220 samples) as well
    spec = cec2.output_spec(item)["ha_output"]
    assert spec.length_problem(item.inputs["mix_CH1"].frames + 220) is None
    assert spec.length_problem(item.inputs["mix_CH1"].frames + 1) is not None
    assert cec2.recipe_path(item, "L1", "ha_output") == "S06001_L1_HA-output"
    assert icassp.recipe_path(item, "L1", "enhanced") == "S06001_L1_enhanced"


def test_the_importer_names_every_problem(tmp_path):
    from harness.suites.layouts import import_layout

    root = tmp_path / "c"
    scenes = root / "clarity_data" / "dev" / "scenes"
    meta = root / "clarity_data" / "metadata"
    scenes.mkdir(parents=True)
    meta.mkdir(parents=True)
    scene(scenes)
    (scenes / "S06001_target.wav").rename(scenes / "S06001_target_CH1.wav")
    (scenes / "S06001_target_anechoic.wav").rename(scenes / "S06001_target_anechoic_CH1.wav")
    (meta / "scenes_listeners.dev.json").write_text(json.dumps({"S06001": ["L1"], "S06002": ["L9"]}))
    (meta / "listeners.json").write_text(json.dumps({"L1": {
        "name": "L1", "audiogram_cfs": [250, 500, 1000, 2000, 4000, 6000],
        "audiogram_levels_l": [10] * 6, "audiogram_levels_r": [20] * 6}}))
    with pytest.raises(SuiteError) as err:
        import_layout("cec2", root)
    assert "scene 'S06002' names listener(s) L9 that listeners.json lacks" in str(err.value)
    (meta / "scenes_listeners.dev.json").write_text(json.dumps({"S06001": ["L1"], "S06003": ["L1"]}))
    with pytest.raises(SuiteError, match=r"S06003_mix_CH1\.wav: file not found"):
        import_layout("cec2", root)
    (meta / "scenes_listeners.dev.json").write_text(json.dumps({"S06001": ["L1"]}))
    suite = import_layout("icassp2023", root)
    assert suite.task == "hearing-aid-enhancement" and [i.id for i in suite.items] == ["S06001"]
    assert suite.items[0].metadata["listeners"] == ["L1"]
