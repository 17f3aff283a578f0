"""The Cadenza recipes of pyclarity 0.9.0 (installed with it under `recipes/`), run end to end
as a participant runs them, against `harness score` on the files they wrote.

For CAD1 Task 1 and ICASSP 2024 rebalancing: a small dataset in the recipe's layout, the
recipe's own `enhance` (its hydra entry point, given the config directly) with the oracle stems
in place of the separator it would download, its own `run_calculate_aq` evaluation; then the
harness imports the dataset with its importer, scores the recipe's output folder, and every
per-item value must equal the recipe's within 1e-6. The same signals rewritten in the harness's
own layout must score the same.

torchaudio is imported by the recipes' modules for the separator only; its wheel here does not
load against the CPU torch, so a stand-in module provides the two names they import (the
separator itself is replaced by the oracle stems).
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import run_cli

from harness.store import Store
from harness.suites import resolve_suite

pytestmark = pytest.mark.slow

RECIPES = Path(__import__("recipes").__file__).parent
STEMS = ("vocals", "drums", "bass", "other")
DEMUCS_ORDER = ["drums", "bass", "other", "vocals"]  # HDEMUCS_HIGH_MUSDB's sources
AUDIOGRAM_HZ = [250, 500, 1000, 2000, 3000, 4000, 6000, 8000]
LISTENERS = {  # asymmetric ears, so an ear mix-up shows
    "L0001": ([10, 15, 20, 30, 40, 45, 50, 55], [30, 35, 40, 50, 60, 65, 70, 75]),
    "L0002": ([40, 45, 50, 55, 60, 60, 65, 70], [20, 20, 25, 30, 35, 40, 45, 50]),
    "L0003": ([5, 5, 10, 10, 15, 20, 25, 30], [5, 10, 10, 15, 20, 25, 30, 35]),
}


def listeners_json(path: Path, ids) -> None:
    path.write_text(json.dumps({
        lid: {"name": lid, "audiogram_cfs": AUDIOGRAM_HZ, "audiogram_levels_l": LISTENERS[lid][0],
              "audiogram_levels_r": LISTENERS[lid][1]} for lid in ids}, indent=1))


def write_song(folder: Path, item) -> None:
    """The song's five files as 16-bit WAV at 44.1 kHz, as the challenges ship them."""
    folder.mkdir(parents=True)
    for name in ("mixture", *STEMS):
        a = item.input(name) if name == "mixture" else item.reference(name)
        sf.write(folder / f"{name}.wav", a.samples.T, a.rate, subtype="PCM_16")


@pytest.fixture
def recipe_env(monkeypatch):
    """The stand-in torchaudio, the oracle separator, and a clean import of the recipe modules."""
    ta = types.ModuleType("torchaudio")
    pipelines = types.ModuleType("torchaudio.pipelines")
    transforms = types.ModuleType("torchaudio.transforms")

    class Model:
        sources = list(DEMUCS_ORDER)

        def to(self, device):
            return self

    class Bundle:
        sample_rate = 44100

        @staticmethod
        def get_model():
            return Model()

    pipelines.HDEMUCS_HIGH_MUSDB = Bundle()
    transforms.Fade = object
    ta.pipelines, ta.transforms = pipelines, transforms
    for name, mod in (("torchaudio", ta), ("torchaudio.pipelines", pipelines),
                      ("torchaudio.transforms", transforms)):
        monkeypatch.setitem(sys.modules, name, mod)
    for name in [m for m in sys.modules if m.startswith(("recipes.cad1", "recipes.cad_icassp_2024",
                                                         "clarity.utils.source_separation_support"))]:
        monkeypatch.delitem(sys.modules, name)
    yield monkeypatch
    for name in [m for m in sys.modules if m.startswith(("recipes.cad1", "recipes.cad_icassp_2024",
                                                         "clarity.utils.source_separation_support"))]:
        del sys.modules[name]


def oracle_stems(song_dirs: list[Path]) -> dict[str, dict[str, np.ndarray]]:
    """mixture content hash -> stem -> (channels, frames) float32, read as the recipe reads."""
    out = {}
    for d in song_dirs:
        mix, _ = sf.read(d / "mixture.wav", dtype="int16")
        key = hashlib.sha256((mix / 32768.0).astype(np.float32).T.tobytes()).hexdigest()
        out[key] = {s: (sf.read(d / f"{s}.wav", dtype="int16")[0] / 32768.0).astype(np.float32).T
                    for s in DEMUCS_ORDER}
    return out


def run_recipe(monkeypatch, tmp_path: Path, enhance, evaluate, config) -> tuple[Path, list[dict]]:
    """The recipe's enhance then its evaluation, through their hydra entry points given the
    config, in a fresh experiment folder (they read and write relative to it); the rows of the
    scores.csv it writes."""
    exp = tmp_path / "exp"
    exp.mkdir()
    monkeypatch.chdir(exp)
    enhance(config)
    evaluate(config)
    with open(exp / "scores.csv") as f:
        return exp, list(csv.DictReader(f))


def stored_haaqi(out: Path) -> dict[tuple, float]:
    with Store(out) as store:
        df = store.scores(store.resolve("latest"))
    df = df[df.metric == "haaqi"]
    assert (df.status == "ok").all(), df[df.status != "ok"].reason.unique()
    return {(r.item_id, r.listener_id, r.ear, r.stem): r.value for r in df.itertuples()}


def score(submission: Path, suite: Path, panel: Path, out: Path) -> dict[tuple, float]:
    res = run_cli("score", str(submission), "--suite", str(suite), "--panel", str(panel),
                  "--out", str(out), "--quiet", "--metrics-backend", "fast")
    assert res.returncode == 0, res.stderr
    return stored_haaqi(out), res.stderr


# --------------------------------------------------------------------------- CAD1 Task 1
def test_cad1_task1_recipe_and_harness_agree(recipe_env, tmp_path):
    from omegaconf import OmegaConf

    songs = resolve_suite("music-remix-quick").items
    root = tmp_path / "cad1"
    dirs = []
    for item in songs:
        dirs.append(root / "audio" / "musdb18hq" / "train" / item.id)
        write_song(dirs[-1], item)
    (root / "metadata").mkdir(parents=True)
    (root / "metadata" / "musdb18.valid.json").write_text(json.dumps(
        [{"Track Name": it.id, "Split": "valid", "Genre": "Pop"} for it in songs]))
    listeners_json(root / "metadata" / "listeners.valid.json", ["L0001", "L0002"])

    import recipes.cad1.task1.baseline.enhance as enhance_mod
    from recipes.cad1.task1.baseline.evaluate import run_calculate_aq

    stems = oracle_stems(dirs)

    def separate(model, model_rate, signal, rate, device, sources, listener, normalise):
        found = stems[hashlib.sha256(np.asarray(signal, np.float32).tobytes()).hexdigest()]
        return enhance_mod.map_to_dict(np.stack([found[s] for s in sources]), sources)

    recipe_env.setattr(enhance_mod, "decompose_signal", separate)
    config = OmegaConf.load(RECIPES / "cad1" / "task1" / "baseline" / "config.yaml")
    config.path.root = str(root)
    config.path.music_file = str(root / "metadata" / "musdb18.valid.json")
    config.path.listeners_file = str(root / "metadata" / "listeners.valid.json")
    exp, rows = run_recipe(recipe_env, tmp_path, enhance_mod.enhance, run_calculate_aq, config)
    theirs = {(r["song"], r["listener"]): r for r in rows}
    assert len(theirs) == 4

    enhanced = exp / "enhanced_signals"
    some = next(enhanced.rglob("*_left_vocals.flac"))
    assert some.with_suffix(".txt").is_file()  # the recipe's peak-normalised stems
    assert sf.info(some).frames == 36000 + 120  # 1.5 s at 24 kHz + NAL-R's resampled tail
    res = run_cli("suites", "import", "cad1", str(root), "--split", "valid", "--out",
                  str(tmp_path / "suite"))
    assert res.returncode == 0, res.stderr
    panel = root / "metadata" / "listeners.valid.json"
    ours, log = score(enhanced, tmp_path / "suite", panel, tmp_path / "runs")
    assert "scale file" in log and "recipe's length" in log
    checked = 0
    for (song, lid), row in theirs.items():
        for ear in ("left", "right"):
            for stem in STEMS:
                assert ours[(song, lid, ear, stem)] == pytest.approx(
                    float(row[f"{ear}_{stem}"]), abs=1e-6), (song, lid, ear, stem)
                checked += 1
        mean = np.mean([ours[(song, lid, e, s)] for e in ("left", "right") for s in STEMS])
        assert mean == pytest.approx(float(row["score"]), abs=1e-6)
    assert checked == 32
    worst = max(abs(ours[(s, lid, e, st)] - float(theirs[(s, lid)][f"{e}_{st}"]))
                for (s, lid) in theirs for e in ("left", "right") for st in STEMS)
    print(f"CAD1: 32 values, largest |harness - recipe| = {worst:.2e}")

    # The same signals in the harness's own layout: 32-bit float WAV, the scale applied.
    own = tmp_path / "own"
    from clarity.utils.flac_encoder import read_flac_signal

    for flac in enhanced.rglob("*.flac"):
        x, rate = read_flac_signal(flac)
        dest = own / flac.relative_to(enhanced).with_suffix(".wav")
        dest.parent.mkdir(parents=True, exist_ok=True)
        sf.write(dest, x, int(rate), subtype="FLOAT")
    again, _ = score(own, tmp_path / "suite", panel, tmp_path / "runs-own")
    assert set(again) == set(ours)
    for key, value in ours.items():
        assert again[key] == pytest.approx(value, abs=1e-9), key


# --------------------------------------------------------------------------- ICASSP 2024
SCENES = {  # scene -> (song index, gain id, listeners): L0003 is in the panel but no scene's
    "S50001": (0, "g1", ["L0001", "L0002"]),
    "S50002": (0, "g2", ["L0002"]),
    "S50003": (1, "g3", ["L0001"]),
}
GAINS = {"g1": {"vocals": 6.0, "drums": -3.0, "bass": 0.0, "other": -6.0},
         "g2": {"vocals": -10.0, "drums": 3.0, "bass": 6.0, "other": 0.0},
         "g3": {"vocals": 0.0, "drums": -12.0, "bass": -3.0, "other": 9.0}}


def test_icassp2024_recipe_and_harness_agree(recipe_env, tmp_path):
    from omegaconf import OmegaConf

    songs = resolve_suite("music-remix-quick").items
    root = tmp_path / "icassp"
    meta = root / "metadata"
    meta.mkdir(parents=True)
    dirs, music = [], {}
    for item in songs:
        name = f"{item.id}-hlp0"
        dirs.append(root / "audio" / "at_mic_music" / "train" / name)
        write_song(dirs[-1], item)
        music[name] = {"Track Name": name, "Split": "train", "Path": f"train/{name}",
                       "Original Track Name": item.id, "Head Position": "hlp0"}
    scenes = {sid: {"music": songs[i].id, "gain": g, "head_loudspeaker_positions": "hlp0"}
              for sid, (i, g, _) in SCENES.items()}
    (meta / "scenes.train.json").write_text(json.dumps(scenes))
    (meta / "scene_listeners.train.json").write_text(json.dumps({s: v[2] for s, v in SCENES.items()}))
    (meta / "gains.json").write_text(json.dumps(GAINS))
    (meta / "at_mic_music.train.json").write_text(json.dumps(music))
    listeners_json(meta / "listeners.train.json", ["L0001", "L0002", "L0003"])

    import recipes.cad_icassp_2024.baseline.enhance as enhance_mod
    from recipes.cad_icassp_2024.baseline.evaluate import run_calculate_aq

    stems = {}
    for d in dirs:
        mix, _ = sf.read(d / "mixture.wav")
        stems[hashlib.sha256(mix.T.tobytes()).hexdigest()] = {
            s: sf.read(d / f"{s}.wav")[0].T for s in DEMUCS_ORDER}

    def separate(model, model_sample_rate, signal, signal_sample_rate, device, sources_list,
                 listener, normalise=True):
        found = stems[hashlib.sha256(np.ascontiguousarray(signal.T).tobytes()).hexdigest()]
        return {s: found[s].T for s in sources_list}

    recipe_env.setattr(enhance_mod, "decompose_signal", separate)
    config = OmegaConf.load(RECIPES / "cad_icassp_2024" / "baseline" / "config.yaml")
    config.path.root = str(root)
    exp, rows = run_recipe(recipe_env, tmp_path, enhance_mod.enhance, run_calculate_aq, config)
    theirs = {(r["scene"], r["listener"]): r for r in rows}
    assert set(theirs) == {(s, lid) for s, v in SCENES.items() for lid in v[2]}

    enhanced = exp / "enhanced_signals"
    assert sf.info(enhanced / "S50001_L0001_remix.flac").frames == 48000 + 160
    res = run_cli("suites", "import", "icassp2024", str(root), "--split", "train", "--out",
                  str(tmp_path / "suite"))
    assert res.returncode == 0, res.stderr
    panel = meta / "listeners.train.json"
    ours, log = score(enhanced, tmp_path / "suite", panel, tmp_path / "runs")
    assert "named as the official recipe writes them" in log
    assert {(s, lid) for s, lid, _, _ in ours} == set(theirs)  # the scenes' own listeners only
    for (scene, lid), row in theirs.items():
        for ear in ("left", "right"):
            assert ours[(scene, lid, ear, "")] == pytest.approx(
                float(row[f"{ear}_score"]), abs=1e-6), (scene, lid, ear)
        mean = (ours[(scene, lid, "left", "")] + ours[(scene, lid, "right", "")]) / 2
        assert mean == pytest.approx(float(row["score"]), abs=1e-6)
    worst = max(abs(ours[(s, lid, e, "")] - float(theirs[(s, lid)][f"{e}_score"]))
                for (s, lid) in theirs for e in ("left", "right"))
    print(f"ICASSP 2024: {2 * len(theirs)} values, largest |harness - recipe| = {worst:.2e}")
    values = [float(r["score"]) for r in theirs.values()]
    assert np.ptp(values) > 0.01  # scenes and listeners differ: the comparison is not vacuous

    # The same files in the harness's own layout: <listener>/<scene>/<listener>_<scene>_remix.flac
    own = tmp_path / "own"
    for (scene, lid) in theirs:
        dest = own / lid / scene / f"{lid}_{scene}_remix.flac"
        dest.parent.mkdir(parents=True)
        shutil.copy(enhanced / f"{scene}_{lid}_remix.flac", dest)
    again, _ = score(own, tmp_path / "suite", panel, tmp_path / "runs-own")
    assert again == pytest.approx(ours, abs=1e-12)
