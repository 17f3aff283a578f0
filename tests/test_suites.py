"""Suites: built-in quick suites' content, manifest hashing, and malformed manifests."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from harness.audio import loudness
from harness.errors import AudioError, SuiteError
from harness.suites import builtin_suites, load_suite, resolve_suite
from harness.suites.types import MANIFEST_FORMAT


def test_quick_suites_are_built_in_and_small():
    found = builtin_suites()
    assert set(found) >= {"speech-enhancement-quick", "music-remix-quick"}
    size = sum(f.stat().st_size for d in found.values() for f in d.rglob("*.flac"))
    assert size < 5e6


def test_music_quick_suite_mixture_is_the_sum_of_its_stems():
    suite = resolve_suite("music-remix-quick")
    assert suite.task == "music-remix" and len(suite.items) >= 2
    for it in suite.items:
        stems = [it.reference(s).samples.astype(np.float64) for s in ("vocals", "drums", "bass", "other")]
        mix = it.input("mixture").samples.astype(np.float64)
        assert mix.shape[0] == 2 and it.input("mixture").rate == 44100
        assert np.max(np.abs(mix - sum(stems))) < 1e-6
        for s in stems:  # each stem carries signal in both channels
            assert np.all(np.sqrt(np.mean(s**2, axis=1)) > 1e-3)


def test_speech_quick_suite_levels_and_metadata():
    # The renderer sets clean speech to -26 dBFS RMS before 16-bit storage; check it from the
    # files, and that the input is a different, louder-or-equal signal of the same length.
    suite = resolve_suite("speech-enhancement-quick")
    for it in suite.items:
        clean, noisy = it.reference("clean"), it.input("input")
        assert clean.rate == noisy.rate == 16000 and clean.frames == noisy.frames
        rms_db = 20 * np.log10(np.sqrt(np.mean(clean.mono().astype(np.float64) ** 2)))
        assert rms_db == pytest.approx(-26.0, abs=0.01)
        assert np.isfinite(loudness(clean)) and loudness(clean) < -20
        assert {"snr_db", "rt60_s", "drr_db", "band_hz", "noise", "voice"} <= set(it.metadata)
    voices = {it.metadata["voice"] for it in suite.items}
    assert len(voices) >= 4


def test_speech_quick_suite_input_is_aligned_with_its_reference():
    """Room (direct path at sample 0) and zero-phase band-pass add no delay, so the input's
    cross-correlation with the dry reference peaks at lag 0 on every item (version 1's causal
    filter put the peak 8-124 samples late, and SI-SDR measured that)."""
    from scipy.signal import correlate

    suite = resolve_suite("speech-enhancement-quick")
    for it in suite.items:
        clean = it.reference("clean").mono().astype(np.float64)
        noisy = it.input("input").mono().astype(np.float64)
        c = correlate(noisy, clean, mode="full", method="fft")
        assert int(np.argmax(np.abs(c))) - (len(clean) - 1) == 0, it.id


def test_suite_hash_changes_with_content_and_sha_mismatch_is_caught(tmp_path):
    src = builtin_suites()["speech-enhancement-quick"]
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    a = load_suite(dst)
    assert a.hash == resolve_suite("speech-enhancement-quick").hash
    # Swap two files: the manifest's sha256 catches it on read, naming the file.
    (dst / "clean" / "se01.flac").write_bytes((dst / "clean" / "se02.flac").read_bytes())
    with pytest.raises(AudioError, match="se01.flac: content differs from the suite manifest"):
        load_suite(dst).items[0].reference("clean")
    raw = json.loads((dst / "manifest.json").read_text())
    raw["items"][0]["metadata"]["snr_db"] = 99
    (dst / "manifest.json").write_text(json.dumps(raw))
    assert load_suite(dst).hash != a.hash


@pytest.mark.parametrize(
    "manifest,message",
    [
        ("{broken", "not valid JSON"),
        ('{"format": "other"}', "not a suite manifest"),
        (json.dumps({"format": MANIFEST_FORMAT, "name": "x", "task": "juggling", "items": [1]}), "unknown task"),
        (json.dumps({"format": MANIFEST_FORMAT, "name": "x", "task": "speech-enhancement", "items": []}), "non-empty list"),
        (json.dumps({"format": MANIFEST_FORMAT, "name": "x", "task": "speech-enhancement",
                     "items": [{"id": "a"}, {"id": "a"}]}), "duplicate item id"),
    ],
)
def test_malformed_manifests_give_one_line_errors(tmp_path, manifest, message):
    (tmp_path / "manifest.json").write_text(manifest)
    with pytest.raises(SuiteError, match=message) as exc:
        load_suite(tmp_path)
    assert "manifest.json" in str(exc.value) and "\n" not in str(exc.value)


def test_a_malformed_item_is_loaded_with_its_defects_not_refused(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({
        "format": MANIFEST_FORMAT, "name": "x", "task": "speech-enhancement",
        "items": [{"id": "a", "inputs": {"input": {"path": "a.wav"}}}, {"id": "b"}]}))
    a, b = load_suite(tmp_path).items
    assert len(a.defects) == 1 and "item 'a' input 'input' lacks key 'rate'" in a.defects[0]
    assert str(tmp_path / "manifest.json") in a.defects[0]
    assert b.defects == () and a.problems()[0] == a.defects[0]
