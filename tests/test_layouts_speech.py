"""VoiceBank-DEMAND and DAPS loaders against tiny fixtures in their real layouts."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import assert_anchors_ordered, run_cli

from harness.audio import resample
from harness.suites import resolve_suite
from harness.suites.layouts import TreeProblems, import_layout


def speech_at(rate: int, index: int) -> np.ndarray:
    """A real utterance from the built-in suite, at `rate`, quantised to 16-bit."""
    item = resolve_suite("speech-enhancement-quick").items[index]
    x = resample(item.reference("clean"), rate).mono().astype(np.float64)
    return np.round(x * 32768) / 32768


def noisy(x: np.ndarray, snr: float, seed: int) -> np.ndarray:
    n = np.random.default_rng(seed).standard_normal(len(x))
    n *= np.sqrt(np.sum(x**2) / np.sum(n**2) / 10 ** (snr / 10))
    return np.clip(np.round((x + n) * 32768) / 32768, -1, 1 - 2**-15)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def voicebank(tmp_path):
    root = tmp_path / "vb"
    (root / "clean_testset_wav").mkdir(parents=True)
    (root / "noisy_testset_wav").mkdir()
    (root / "logfiles").mkdir()
    utts = {"p232_001": ("cafe", 2.5), "p232_002": ("living", 17.5), "p257_001": ("bus", 7.5)}
    for i, utt in enumerate(utts):
        x = speech_at(48000, i)
        sf.write(root / "clean_testset_wav" / f"{utt}.wav", x, 48000, subtype="PCM_16")
        sf.write(root / "noisy_testset_wav" / f"{utt}.wav", noisy(x, utts[utt][1], i), 48000, subtype="PCM_16")
    (root / "logfiles" / "log_testset.txt").write_text(
        "".join(f"{u} {n} {s}\n" for u, (n, s) in utts.items()))
    return root, utts


def test_voicebank_matches_a_hand_written_manifest(voicebank):
    root, utts = voicebank
    suite = import_layout("voicebank-demand", root)
    expected = []
    for utt, (noise, snr) in utts.items():
        entries = {}
        for kind, folder in (("clean", "clean_testset_wav"), ("input", "noisy_testset_wav")):
            path = root / folder / f"{utt}.wav"
            entries[kind] = {"path": f"{folder}/{utt}.wav", "rate": 48000, "channels": 1,
                             "frames": sf.info(path).frames, "sha256": sha(path)}
        expected.append({"id": utt, "inputs": {"input": entries["input"]},
                         "references": {"clean": entries["clean"]},
                         "metadata": {"speaker": utt[:4], "noise": noise, "snr_db": snr,
                                      "dataset": "VoiceBank-DEMAND"}})
    assert suite.to_json()["items"] == expected


def test_voicebank_broken_tree(voicebank):
    root, _ = voicebank
    (root / "noisy_testset_wav" / "p232_002.wav").unlink()
    (root / "logfiles" / "log_testset.txt").write_text("p232_001 cafe 2.5\np257_001 bus\n")
    with pytest.raises(TreeProblems) as exc:
        import_layout("voicebank-demand", root)
    msg = str(exc.value)
    assert "noisy_testset_wav/p232_002.wav: file not found (its clean twin exists)" in msg
    assert "log_testset.txt:2: expected '<utt_id> <noise_type> <snr>'" in msg
    assert "log_testset.txt: no line for p257_001" in msg


@pytest.fixture
def daps(tmp_path):
    root = tmp_path / "daps"
    for d in ("clean", "ipad_office1", "iphone_balcony1"):
        (root / d).mkdir(parents=True)
    x = np.concatenate([speech_at(44100, 0), speech_at(44100, 1)])
    sf.write(root / "clean" / "f1_script1_clean.wav", x, 44100, subtype="PCM_16")
    # ipad: starts 1234 frames late (room + device colouring and noise); iphone: 500 frames early.
    from scipy.signal import butter, sosfiltfilt

    # zero-phase colouring, so the only delay is the one we put in
    coloured = sosfiltfilt(butter(2, [200, 6000], "bandpass", fs=44100, output="sos"), x)
    late = np.concatenate([np.zeros(1234), coloured, np.zeros(3000)])
    sf.write(root / "ipad_office1" / "f1_script1_ipad_office1.wav", noisy(late, 15, 1), 44100,
             subtype="PCM_16")
    early = coloured[500:]
    sf.write(root / "iphone_balcony1" / "f1_script1_iphone_balcony1.wav", noisy(early, 10, 2),
             44100, subtype="PCM_16")
    return root, len(x)


def test_daps_offsets_are_recovered_exactly(daps):
    root, n_clean = daps
    suite = import_layout("daps", root)
    by_id = {it.id: it for it in suite.items}
    ipad = by_id["f1_script1_ipad_office1"]
    assert ipad.metadata["offset_frames"] == 1234
    assert (ipad.inputs["input"].start, ipad.references["clean"].start) == (1234, 0)
    assert ipad.inputs["input"].frames == ipad.references["clean"].frames == n_clean
    iphone = by_id["f1_script1_iphone_balcony1"]
    assert iphone.metadata["offset_frames"] == -500
    assert (iphone.inputs["input"].start, iphone.references["clean"].start) == (0, 500)
    assert iphone.inputs["input"].frames == n_clean - 500
    assert [it.id for it in import_layout("daps", root, split="ipad_office1").items] == [
        "f1_script1_ipad_office1"]


def test_daps_broken_tree(daps):
    root, _ = daps
    sf.write(root / "ipad_office1" / "m3_script2_ipad_office1.wav", np.zeros(44100), 44100)
    (root / "ipad_office1" / "notes.wav").write_bytes(b"")
    with pytest.raises(TreeProblems) as exc:
        import_layout("daps", root)
    msg = str(exc.value)
    assert "clean/m3_script2_clean.wav: file not found (clean twin of m3_script2_ipad_office1.wav)" in msg
    assert "notes.wav: name is not <speaker>_<script>_ipad_office1.wav" in msg


@pytest.mark.parametrize("layout", ["voicebank-demand", "daps"])
def test_anchors_run_on_imported_speech(layout, voicebank, daps, tmp_path):
    root = voicebank[0] if layout == "voicebank-demand" else daps[0]
    dest = tmp_path / "suite"
    assert run_cli("suites", "import", layout, str(root), "--out", str(dest)).returncode == 0
    res = run_cli("run", "--suite", str(dest), "--system", "unprocessed", "--system", "oracle",
                  "--out", str(tmp_path / "runs"), "--quiet")
    assert res.returncode == 0, res.stderr
    assert_anchors_ordered(tmp_path / "runs")
