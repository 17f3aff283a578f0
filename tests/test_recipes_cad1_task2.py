"""CAD1 Task 2 (music in a car): pyclarity 0.9.0's installed recipe run end to end against
`harness score` on the files it wrote.

`harness suites make car-music` makes songs, car-noise parameters, SNRs and head rotations with
their (synthetic) BRIRs; the test writes them in the recipe's layout (metadata JSONs, songs under
audio/music/<genre>/, BRIRs under audio/eBrird/{Car,Anechoic}/audio/), runs the recipe's own
`enhance` (its loudness-normalising baseline, 16-bit FLAC at 32 kHz) and its own
`run_calculate_audio_quality` (car noise, BRIRs, NAL-R, compressor, HAAQI, seeded per scene), then
`harness suites import cad1-task2` and `harness score` on the recipe's `enhanced_signals/`: every
per-ear HAAQI must equal the recipe's within 1e-6.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import run_cli
from helpers import assert_equal_per_ear, run_recipe, score_recipe_outputs

from harness.suites import resolve_suite

pytestmark = pytest.mark.slow

AUDIOGRAM_HZ = [250, 500, 1000, 2000, 3000, 4000, 6000, 8000]
LISTENERS = {  # asymmetric ears, so an ear mix-up shows; L0002's average loss is above 50 dB
    "L0001": ([10, 15, 20, 30, 40, 45, 50, 55], [30, 35, 40, 50, 60, 65, 70, 75]),
    "L0002": ([50, 55, 60, 65, 70, 70, 75, 80], [40, 40, 45, 50, 55, 60, 65, 70]),
}


def write_dataset(root, items) -> list[str]:
    """The generated items as a CAD1 Task 2 valid set; returns the scene ids."""
    meta, audio = root / "metadata", root / "audio"
    meta.mkdir(parents=True)
    scenes, brirs = {}, {}
    for item in items:
        md = item.metadata
        genre = md["genre"]
        song_path = f"{genre}/{md['song']}.flac"
        (audio / "music" / genre).mkdir(parents=True, exist_ok=True)
        shutil.copy(item.root / item.references["music"].path, audio / "music" / song_path)
        names = {}
        for role, ref in item.references.items():
            if role == "music":
                continue
            rel = ref.path.split("eBrird/", 1)[1]
            (audio / "eBrird" / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(item.root / ref.path, audio / "eBrird" / rel)
            names[role] = rel.rsplit("/", 1)[1][:-4]
        brirs[str(md["hr"])] = {
            room: {speaker: {side: names[f"{room}_{sp}_{ear}"]
                             for ear, side in (("left", "left_side"), ("right", "right_side"))}
                   for sp, speaker in (("ls", "left_speaker"), ("rs", "right_speaker"))}
            for room in ("car", "anechoic")}
        scenes[item.id] = {"scene": item.id, "song": md["song"], "song_path": song_path,
                           "split": "valid", "hr": md["hr"], "snr": md["snr"],
                           "car_noise_parameters": md["car_noise_parameters"]}
    (meta / "scenes.json").write_text(json.dumps(scenes, indent=1))
    (meta / "scenes_listeners.json").write_text(json.dumps({s: sorted(LISTENERS) for s in scenes}))
    (meta / "eBrird_BRIR.json").write_text(json.dumps({"valid": brirs}, indent=1))
    (meta / "listeners.valid.json").write_text(json.dumps({
        lid: {"name": lid, "audiogram_cfs": AUDIOGRAM_HZ, "audiogram_levels_l": lv[0],
              "audiogram_levels_r": lv[1]} for lid, lv in LISTENERS.items()}))
    return list(scenes)


def test_cad1_task2_recipe_and_harness_agree(tmp_path, monkeypatch):
    import recipes.cad1.task2.baseline.enhance as enhance
    import recipes.cad1.task2.baseline.evaluate as evaluate

    gen = tmp_path / "gen"
    res = run_cli("suites", "make", "car-music", "--out", str(gen), "--items", "3", "--seconds", "3",
                  "--seed", "12")
    assert res.returncode == 0, res.stderr
    items = resolve_suite(str(gen)).items
    assert len({it.metadata["hr"] for it in items}) > 1  # the head rotations differ
    root = tmp_path / "cad1t2"
    scenes = write_dataset(root, items)

    exp, theirs = run_recipe(enhance, evaluate.run_calculate_audio_quality, root, tmp_path, monkeypatch)
    assert set(theirs) == {(s, lid) for s in scenes for lid in LISTENERS}

    ours = score_recipe_outputs("cad1-task2", root, exp / "enhanced_signals",
                                root / "metadata" / "listeners.valid.json", tmp_path)
    assert_equal_per_ear(ours, theirs, lambda ear: f"haaqi_{ear}", "score", "CAD1 Task 2")
    values = [float(r["score"]) for r in theirs.values()]
    assert np.ptp(values) > 0.005  # scenes and listeners differ: the comparison is not vacuous
