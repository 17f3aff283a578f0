"""Dataset loaders against tiny fixtures in each real layout: the same items a hand-written
manifest gives, every problem of a broken tree reported by path, and a run on the import."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import assert_anchors_ordered, run_cli

from harness.suites import load_suite
from harness.suites.layouts import TreeProblems, import_layout

RATE = 44100
FILES = ("mixture", "vocals", "drums", "bass", "other")


def make_track(folder: Path, seconds: float, seed: int) -> None:
    """Five 16-bit stereo WAVs; the stems are band-limited noise bursts, the mixture their sum."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    stems = {}
    for i, name in enumerate(FILES[1:]):
        x = rng.standard_normal((n, 2)) * 0.05 * np.hanning(n)[:, None]
        stems[name] = np.round(np.cumsum(x, axis=0) * (0.02 if i == 2 else 0.005) * 32768) / 32768
    folder.mkdir(parents=True)
    for name, x in stems.items():
        sf.write(folder / f"{name}.wav", x, RATE, subtype="PCM_16")
    sf.write(folder / "mixture.wav", sum(stems.values()), RATE, subtype="PCM_16")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hand_entry(root: Path, rel: str, frames: int, start: int | None = None) -> dict:
    entry = {"path": rel, "rate": RATE, "channels": 2, "frames": frames, "sha256": sha(root / rel)}
    if start is not None:
        entry["start"] = start
    return entry


@pytest.fixture
def musdb(tmp_path):
    root = tmp_path / "musdb18hq"
    make_track(root / "test" / "Alpha - One", 1.0, 1)
    make_track(root / "test" / "Beta - Two", 0.8, 2)
    make_track(root / "train" / "Gamma - Three", 0.5, 3)
    return root


def test_musdb18hq_matches_a_hand_written_manifest(musdb):
    suite = import_layout("musdb18hq", musdb, split="test")
    expected = []
    for track, seconds in (("Alpha - One", 1.0), ("Beta - Two", 0.8)):
        n = int(seconds * RATE)
        files = {f: hand_entry(musdb, f"test/{track}/{f}.wav", n) for f in FILES}
        expected.append({
            "id": track,
            "inputs": {"mixture": files["mixture"]},
            "references": {s: files[s] for s in FILES[1:]},
            "metadata": {"split": "test", "dataset": "MUSDB18-HQ"},
        })
    assert suite.to_json()["items"] == expected
    assert suite.task == "music-remix"
    assert len(import_layout("musdb18hq", musdb, split="all").items) == 3


def test_musdb18hq_broken_tree_lists_every_problem(musdb):
    (musdb / "test" / "Beta - Two" / "bass.wav").unlink()
    (musdb / "test" / "Alpha - One" / "drums.wav").write_text("garbage")
    x, _ = sf.read(musdb / "train" / "Gamma - Three" / "other.wav")
    sf.write(musdb / "train" / "Gamma - Three" / "other.wav", x, 22050)
    with pytest.raises(TreeProblems) as exc:
        import_layout("musdb18hq", musdb, split="all")
    msg = str(exc.value)
    assert "3 problem(s)" in msg
    assert f"{musdb}/test/Beta - Two/bass.wav: file not found" in msg
    assert f"{musdb}/test/Alpha - One/drums.wav: not a readable audio file" in msg
    assert f"{musdb}/train/Gamma - Three/other.wav: 22050 Hz" in msg


@pytest.fixture
def cad1(tmp_path):
    root = tmp_path / "cadenza_data"
    audio = root / "audio" / "musdb18hq"
    make_track(audio / "test" / "Delta - Four", 1.5, 4)
    make_track(audio / "train" / "Eps - Five", 1.2, 5)
    meta = root / "metadata"
    meta.mkdir(parents=True)
    entry = {"Genre": "Pop", "Source": "MUSDB", "License": "CC BY", "Split": "test"}
    (meta / "musdb18.test.json").write_text(json.dumps([{"Track Name": "Delta - Four", **entry}]))
    (meta / "musdb18.valid.json").write_text(
        json.dumps([{"Track Name": "Eps - Five", **entry, "Split": "valid"}]))
    (meta / "musdb18.segments.test.json").write_text(json.dumps(
        {"Delta - Four": {"objective_evaluation": {"start": 0.1, "end": 1.3, "duration": 1.2},
                          "subjective_evaluation": {"start": 0.0, "end": 0.5, "duration": 0.5}}}))
    listeners = {lid: {"name": lid, "audiogram_cfs": [250, 500, 1000, 2000, 3000, 4000, 6000, 8000],
                       "audiogram_levels_l": lv, "audiogram_levels_r": lv}
                 for lid, lv in (("L0001", [10, 10, 15, 20, 30, 40, 50, 55]),
                                 ("L0002", [30, 35, 40, 50, 55, 60, 65, 70]))}
    for split in ("test", "valid"):
        (meta / f"listeners.{split}.json").write_text(json.dumps(listeners))
    return root


def test_cad1_test_split_uses_the_objective_segments(cad1):
    suite = import_layout("cad1", cad1, split="test")
    audio = cad1 / "audio" / "musdb18hq"
    start, end = int(0.1 * RATE), int(1.3 * RATE)  # the recipe's slice: int(start * sr):int(end * sr)
    frames = end - start
    files = {f: hand_entry(audio, f"test/Delta - Four/{f}.wav", frames, start) for f in FILES}
    assert suite.to_json()["items"] == [{
        "id": "Delta - Four",
        "inputs": {"mixture": files["mixture"]},
        "references": {s: files[s] for s in FILES[1:]},
        "metadata": {"split": "test", "genre": "Pop", "source": "MUSDB", "license": "CC BY",
                     "dataset": "CAD1", "segment_s": [0.1, 1.3]},
    }]
    # The segment read is exactly those frames of the file.
    whole, _ = sf.read(audio / "test" / "Delta - Four" / "vocals.wav", dtype="float32")
    seg = suite.items[0].reference("vocals").samples.T
    assert np.array_equal(seg, whole[start : start + frames])
    valid = import_layout("cad1", cad1, split="valid")
    assert [it.id for it in valid.items] == ["Eps - Five"]
    assert valid.items[0].references["vocals"].path == "train/Eps - Five/vocals.wav"


def test_cad1_segments_are_cut_with_the_recipes_arithmetic_on_a_grid_of_start_times():
    """recipes/cad1/task1/baseline/test.py (pyclarity 0.9.0) cuts each objective segment as
    signal[int(start * 44100) : int(end * 44100)]; the importer must select the same samples for
    every start time on the metadata's 0.1 s grid (30 s segments)."""
    from harness.suites.layouts.musdb import recipe_segment

    signal = np.arange(int(400 * RATE))
    differs_from_rounding = 0
    for k in range(3000):
        start_s = round(k * 0.1, 1)  # as json.loads reads "12.3"
        end_s = round(start_s + 30.0, 1)
        recipe = signal[int(start_s * RATE) : int(end_s * RATE)]
        first, frames = recipe_segment(start_s, end_s, RATE)
        assert np.array_equal(signal[first : first + frames], recipe), start_s
        rounded = int(round(start_s * RATE))
        differs_from_rounding += (rounded, int(round(30.0 * RATE))) != (first, frames)
    assert differs_from_rounding > 0.05 * 3000  # the old rounding cut a share of them differently


def test_cad1_broken_tree_lists_every_problem(cad1):
    (cad1 / "metadata" / "musdb18.segments.test.json").write_text("{}")
    (cad1 / "metadata" / "listeners.test.json").write_text("{oops")
    with pytest.raises(TreeProblems) as exc:
        import_layout("cad1", cad1, split="test")
    msg = str(exc.value)
    assert "listeners.test.json: not valid JSON" in msg
    (cad1 / "metadata" / "listeners.test.json").write_text((cad1 / "metadata" / "listeners.valid.json").read_text())
    with pytest.raises(TreeProblems, match="no objective_evaluation segment for 'Delta - Four'"):
        import_layout("cad1", cad1, split="test")


def test_import_cli_then_run_the_anchors(cad1, tmp_path):
    dest = tmp_path / "suite"
    res = run_cli("suites", "import", "cad1", str(cad1), "--out", str(dest))
    assert res.returncode == 0, res.stderr
    suite = load_suite(dest)
    assert suite.root == (cad1 / "audio" / "musdb18hq").resolve()
    assert suite.hash == import_layout("cad1", cad1).hash  # the root is not part of the hash
    res = run_cli("run", "--suite", str(dest), "--system", "unprocessed", "--system", "oracle",
                  "--panel", str(cad1 / "metadata" / "listeners.test.json"), "--listener", "L0001",
                  "--out", str(tmp_path / "runs"), "--quiet")
    assert res.returncode == 0, res.stderr
    assert_anchors_ordered(tmp_path / "runs")


def test_import_of_a_broken_tree_exits_with_the_report(musdb, tmp_path):
    (musdb / "test" / "Beta - Two" / "vocals.wav").unlink()
    res = run_cli("suites", "import", "musdb18hq", str(musdb), "--out", str(tmp_path / "s"))
    assert res.returncode == 2
    assert "Beta - Two/vocals.wav: file not found" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "s" / "manifest.json").exists()
