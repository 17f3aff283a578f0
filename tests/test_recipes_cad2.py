"""CAD2 Task 2 (classical rebalancing): pyclarity 0.9.0's installed recipe run end to end against
`harness score` on the files it wrote.

A small dataset in the recipe's layout (16-bit FLAC, metadata JSONs, the listeners' compressor
fittings; the mixture files carry a second of other music before the segment the scene names),
the recipe's own `enhance` (its hydra entry point, given the config) with the ConvTasNet
separators it would download replaced by the true sources, its own `run_calculate_aq`; then
`harness suites import cad2-task2` and `harness score` on its output folder, and every per-ear
value must equal the recipe's within 1e-6. The enhancement is not the reference: the recipe's
enhance averages the gains of two voices of one instrument, its evaluation does not, and it
clips the written signal.
"""

from __future__ import annotations

import csv
import json
import sys
import types

import numpy as np
import pytest
import soundfile as sf
from conftest import run_cli

from harness.store import Store
from harness.suites import resolve_suite

pytestmark = pytest.mark.slow

AUDIOGRAM_HZ = [250, 500, 1000, 2000, 3000, 4000, 6000, 8000]
LISTENERS = {  # asymmetric ears, so an ear mix-up shows
    "L5001": ([10, 15, 20, 30, 40, 45, 50, 55], [30, 35, 40, 50, 60, 65, 70, 75]),
    "L5002": ([40, 45, 50, 55, 60, 60, 65, 70], [20, 20, 25, 30, 35, 40, 45, 50]),
}
FITTINGS = {  # not the harness's own rule: the imported fittings must be the ones used
    "L5001": {"cr_l": [1.2, 1.3, 1.5, 1.8, 2.0, 2.0], "cr_r": [1.5, 1.7, 2.0, 2.4, 2.8, 3.0],
              "gain_l": [0, 2, 5, 8, 12, 14], "gain_r": [8, 10, 14, 18, 22, 25]},
    "L5002": {"cr_l": [2.0, 2.0, 2.2, 2.5, 2.5, 2.6], "cr_r": [1.1, 1.1, 1.3, 1.5, 1.7, 1.9],
              "gain_l": [12, 14, 16, 18, 20, 20], "gain_r": [2, 2, 4, 6, 8, 10]},
}
LEAD_S = 1.0  # seconds of other music before each mixture's segment


@pytest.fixture
def recipe_modules(monkeypatch):
    """The recipe's modules, imported with a stand-in torchaudio (its wheel does not load with
    the CPU torch here; the recipe imports only `Fade` from it, for the separator we replace)."""
    ta = types.ModuleType("torchaudio")
    transforms = types.ModuleType("torchaudio.transforms")
    transforms.Fade = object
    ta.transforms = transforms
    monkeypatch.setitem(sys.modules, "torchaudio", ta)
    monkeypatch.setitem(sys.modules, "torchaudio.transforms", transforms)
    for name in [m for m in sys.modules if m.startswith("recipes.cad2")]:
        monkeypatch.delitem(sys.modules, name)
    import recipes.cad2.task2.baseline.enhance as enhance
    import recipes.cad2.task2.baseline.evaluate as evaluate

    yield enhance, evaluate
    for name in [m for m in sys.modules if m.startswith("recipes.cad2")]:
        del sys.modules[name]


def write_dataset(root, items) -> dict:
    """The items as a CAD2 Task 2 valid set; returns the true sources per song for the
    separator stand-in (as the recipe's read_flac_signal reads them)."""
    from clarity.utils.flac_encoder import read_flac_signal

    meta, audio = root / "metadata", root / "audio"
    meta.mkdir(parents=True)
    music, scenes, gains, truth = {}, {}, {}, {}
    for k, item in enumerate(items):
        song = f"piece{k}"
        folder = audio / "valid" / song
        folder.mkdir(parents=True)
        mix = item.input("mixture")
        lead = np.flip(mix.samples[:, : int(LEAD_S * mix.rate)], axis=1) * 0.5
        sf.write(folder / "mixture.flac", np.concatenate([lead, mix.samples], axis=1).T, mix.rate,
                 subtype="PCM_16")
        music[song] = {}
        truth[song] = {}
        for s, name in item.metadata["instruments"].items():
            sf.write(folder / f"{s}.flac", item.reference(s).samples.T, mix.rate, subtype="PCM_16")
            music[song][s] = {"instrument": name, "track": f"valid/{song}/{s}.flac",
                              "start": 0.0, "duration": mix.frames / mix.rate}
            truth[song][s] = read_flac_signal(folder / f"{s}.flac")[0].T
        # last, as the challenge's music.json has it: the recipe's enhance numbers the sources by
        # their position among all entries, the mixture included
        music[song]["mixture"] = {"instrument": "Mixture", "track": f"valid/{song}/mixture.flac",
                                  "start": LEAD_S, "duration": mix.frames / mix.rate}
        gains[f"gain_{k}"] = item.metadata["gains_db"]
        scenes[f"S5000{k + 1}"] = {"music": song, "gain": f"gain_{k}"}
    (meta / "music.valid.json").write_text(json.dumps(music, indent=1))
    (meta / "scenes.valid.json").write_text(json.dumps(scenes, indent=1))
    (meta / "gains.json").write_text(json.dumps(gains, indent=1))
    (meta / "scene_listeners.valid.json").write_text(json.dumps(
        {sid: sorted(LISTENERS) for sid in scenes}))
    (meta / "compressor_params.valid.json").write_text(json.dumps(FITTINGS))
    (meta / "listeners.valid.json").write_text(json.dumps({
        lid: {"name": lid, "audiogram_cfs": AUDIOGRAM_HZ, "audiogram_levels_l": lv[0],
              "audiogram_levels_r": lv[1]} for lid, lv in LISTENERS.items()}))
    return {"truth": truth, "scenes": scenes}


def test_cad2_task2_recipe_and_harness_agree(recipe_modules, tmp_path, monkeypatch):
    from omegaconf import OmegaConf

    from harness.suites.synth.generators import get_generator

    enhance, evaluate = recipe_modules
    gen = tmp_path / "gen"
    res = run_cli("suites", "make", "classical-rebalance", "--out", str(gen), "--items", "3",
                  "--seconds", "3", "--seed", "11")
    assert res.returncode == 0, res.stderr
    items = resolve_suite(str(gen)).items
    assert get_generator("classical-rebalance").task == "classical-rebalance"
    root = tmp_path / "cad2"
    data = write_dataset(root, items)

    # The recipe processes (scene, listener) pairs in scene_listeners.json's order: the stand-in
    # separator hands out the true sources of each pair's song in that order.
    scenes = data["scenes"]
    order = iter(scenes[sid]["music"] for sid in scenes for _ in LISTENERS)

    def separate(model, signal, signal_sample_rate, device, sources_list, listener, add_residual=0.0):
        found = data["truth"][next(order)]
        assert set(found) == set(sources_list)
        return {s: found[s] for s in sources_list}

    monkeypatch.setattr(enhance, "load_separation_model", lambda *a, **k: {})
    monkeypatch.setattr(enhance, "decompose_signal", separate)
    config = OmegaConf.load(enhance.__file__.replace("enhance.py", "config.yaml"))
    config.path.root = str(root)
    exp = tmp_path / "exp"
    exp.mkdir()
    monkeypatch.chdir(exp)
    enhance.enhance(config)
    evaluate.run_calculate_aq(config)
    with open(exp / "scores.csv") as f:
        theirs = {(r["scene"], r["listener"]): r for r in csv.DictReader(f)}
    assert set(theirs) == {(s, lid) for s in scenes for lid in LISTENERS}

    res = run_cli("suites", "import", "cad2-task2", str(root), "--split", "valid", "--out",
                  str(tmp_path / "suite"))
    assert res.returncode == 0, res.stderr
    res = run_cli("score", str(exp / "enhanced_signals"), "--suite", str(tmp_path / "suite"),
                  "--panel", str(root / "metadata" / "listeners.valid.json"),
                  "--out", str(tmp_path / "runs"), "--quiet", "--metrics-backend", "fast")
    assert res.returncode == 0, res.stderr
    assert "named as the official recipe writes them" in res.stderr
    with Store(tmp_path / "runs") as store:
        df = store.scores(store.resolve("latest"))
    assert (df.status == "ok").all(), df[df.status != "ok"].reason.unique()
    ours = {(r.item_id, r.listener_id, r.ear): r.value for r in df.itertuples()}
    assert {(s, lid) for s, lid, _ in ours} == set(theirs)
    for (scene, lid), row in theirs.items():
        for ear in ("left", "right"):
            assert ours[(scene, lid, ear)] == pytest.approx(float(row[f"{ear}_haaqi"]), abs=1e-6), \
                (scene, lid, ear)
        mean = (ours[(scene, lid, "left")] + ours[(scene, lid, "right")]) / 2
        assert mean == pytest.approx(float(row["avg_haaqi"]), abs=1e-6)
    worst = max(abs(ours[(s, lid, e)] - float(theirs[(s, lid)][f"{e}_haaqi"]))
                for (s, lid) in theirs for e in ("left", "right"))
    print(f"CAD2 Task 2: {2 * len(theirs)} values, largest |harness - recipe| = {worst:.2e}")
    values = [float(r["avg_haaqi"]) for r in theirs.values()]
    assert np.ptp(values) > 0.01  # scenes and listeners differ: the comparison is not vacuous
    assert max(values) < 0.999  # and the enhanced signals are not the references
