"""lyric-intelligibility (CAD2 Task 1): the recipe's reference in closed form, the oracle and
mixture anchors, and Whisper word correctness `failed` with its reason when it cannot be computed
(never 0). The per-item equality with the installed recipe is tests/test_recipes_cad2.py (slow)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from harness.listener import resolve_panel
from harness.suites.types import Item, file_ref
from harness.tasks import get_protocol
from harness.tasks.lyric_intelligibility import WHISPER_ENV, recipe_reference

RATE = 44100


def song(tmp_path, alpha=0.5, seconds=2.0) -> Item:
    """Noise-band 'stems'; the scene is the middle second."""
    from scipy.signal import butter, sosfilt

    n = int(seconds * RATE)
    rng = np.random.default_rng(1)
    refs = {}
    total = np.zeros((n, 2))
    for name, band in (("vocals", (300, 3000)), ("drums", (60, 200)), ("bass", (40, 120)),
                       ("other", (2000, 8000))):
        x = 0.05 * sosfilt(butter(4, band, "bandpass", fs=RATE, output="sos"), rng.standard_normal((n, 2)), axis=0)
        x = np.round(x * 32768) / 32768
        sf.write(tmp_path / f"{name}.flac", x, RATE, subtype="PCM_16")
        refs[name] = file_ref(tmp_path, tmp_path / f"{name}.flac")
        total += x
    sf.write(tmp_path / "mixture.flac", total, RATE, subtype="PCM_16")
    first, end = RATE // 2, RATE // 2 + RATE
    mix = file_ref(tmp_path, tmp_path / "mixture.flac", start=first, frames=end - first)
    return Item("S50001", "lyric-intelligibility", tmp_path, {"mixture": mix}, refs,
                {"segment": [first, end], "alpha": alpha, "text": "the birch canoe slid"})


def test_reference_is_the_recipes_weighted_sum_at_minus_40_lufs_then_cut(tmp_path):
    import pyloudnorm as pyln

    item = song(tmp_path)
    stems = {s: sf.read(tmp_path / f"{s}.flac", dtype="float32")[0] for s in ("vocals", "drums", "bass", "other")}
    mix = stems["vocals"] * 10 ** (1 / 20) + (stems["drums"] + stems["bass"] + stems["other"]) * 10 ** (-1 / 20)
    mix = mix * 10 ** ((-40 - pyln.Meter(RATE).integrated_loudness(mix)) / 20)
    np.testing.assert_allclose(recipe_reference(item), mix[RATE // 2: RATE // 2 + RATE], rtol=1e-5, atol=1e-9)
    assert pyln.Meter(RATE).integrated_loudness(mix) == pytest.approx(-40, abs=1e-6)


def test_anchors_and_whisper_without_a_checkpoint(tmp_path, monkeypatch):
    proto = get_protocol("lyric-intelligibility")
    item = song(tmp_path)
    listener = resolve_panel("builtin").get("N2")
    metrics = ["haaqi", "lyrics_correct", "cad2_score"]
    monkeypatch.delenv(WHISPER_ENV, raising=False)
    haaqi = {}
    for kind in ("oracle", "unprocessed"):
        out = proto.anchor(kind, item, listener)
        assert proto.validate_outputs(item, out) == {}
        rows = proto.score(item, out, listener, metrics)
        assert [(r.metric, r.ear) for r in rows] == [
            ("haaqi", "left"), ("haaqi", "right"), ("lyrics_correct", "left"),
            ("lyrics_correct", "right"), ("cad2_score", "")]
        by = {(r.metric, r.ear): r for r in rows}
        assert by[("lyrics_correct", "left")].status == "failed"
        assert "needs a local Whisper checkpoint" in by[("lyrics_correct", "left")].reason
        assert by[("cad2_score", "")].status == "failed" and by[("cad2_score", "")].value is None
        haaqi[kind] = np.mean([by[("haaqi", e)].value for e in ("left", "right")])
    assert haaqi["oracle"] > 0.95 > haaqi["unprocessed"]
    # a checkpoint path that is not there, then one that is but without the packages
    monkeypatch.setenv(WHISPER_ENV, str(tmp_path / "nope.pt"))
    rows = proto.score(item, proto.anchor("unprocessed", item, listener), listener, ["lyrics_correct"])
    assert rows[0].status == "failed" and "nope.pt: no such file" in rows[0].reason
    (tmp_path / "base.pt").write_bytes(b"x")
    monkeypatch.setenv(WHISPER_ENV, str(tmp_path / "base.pt"))
    monkeypatch.setitem(__import__("sys").modules, "whisper", None)  # not importable
    rows = proto.score(item, proto.anchor("unprocessed", item, listener), listener, ["lyrics_correct"])
    assert rows[0].status == "failed" and "needs the openai-whisper package" in rows[0].reason


def test_a_bad_scene_is_invalid_with_its_reason(tmp_path):
    proto = get_protocol("lyric-intelligibility")
    listener = resolve_panel("builtin").get("N1")
    item = song(tmp_path, alpha=1.5)
    out = proto.anchor("unprocessed", item, listener)
    rows = proto.score(item, out, listener, ["haaqi", "cad2_score"])
    assert {r.status for r in rows} == {"invalid"}
    assert "metadata.alpha must be a number in 0..1, not 1.5" in rows[0].reason
    item.metadata.update(alpha=0.5, segment=[0, 10 * RATE])
    rows = proto.score(item, out, listener, ["haaqi"])
    assert "metadata.segment ends at frame 441000, after the song's 88200 frames" in rows[0].reason
    assert proto.recipe_path(item, "L1", "remix") == "S50001_L1_A0.5_remix"


@pytest.mark.parametrize("hypothesis, expected", [
    ("the cat sat on the mat", 1.0),
    ("the cat sat on mat", 5 / 6),        # one deletion
    ("a dog sat on the mat", 4 / 6),      # two substitutions
    ("the cat sat on the big mat", 1.0),  # an insertion costs nothing: hits / reference words
    ("", 0.0),                            # everything deleted: a real 0, not a failure
])
def test_word_correctness_is_hits_over_reference_words(hypothesis, expected):
    pytest.importorskip("jiwer")
    from harness.tasks.lyric_intelligibility import word_correctness

    assert word_correctness("the cat sat on the mat", hypothesis) == pytest.approx(expected, abs=1e-12)
