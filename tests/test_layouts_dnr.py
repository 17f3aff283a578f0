"""Divide and Remaster v2 loader against a tiny fixture in its real layout; cocktail-fork scoring."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import run_cli

from harness.audio import Audio
from harness.metrics.snr import si_sdr_db
from harness.suites.layouts import TreeProblems, import_layout
from harness.tasks import get_protocol

RATE = 44100


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stems(seed: int, n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE
    speech = 0.1 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 3 * t) > 0)
    music = 0.05 * np.sin(2 * np.pi * 440 * t) + 0.03 * np.sin(2 * np.pi * 660 * t)
    sfx = 0.02 * rng.standard_normal(n)
    return {"speech": speech, "music": music, "sfx": sfx}


@pytest.fixture
def dnr(tmp_path):
    root = tmp_path / "dnr"
    mixes = {"1001": 2 * RATE, "1002": RATE + 123}
    for seed, (mid, n) in enumerate(mixes.items()):
        folder = root / "tt" / mid
        folder.mkdir(parents=True)
        s = stems(seed, n)
        for name, x in s.items():
            sf.write(folder / f"{name}.wav", x, RATE, subtype="FLOAT")
        # as in DnR, the mixture is close to, not exactly, the sum of the stems
        sf.write(folder / "mix.wav", sum(s.values()) * 0.999, RATE, subtype="FLOAT")
    (root / "tt" / "1001" / "annots.csv").write_text(
        "file,class,start,end\nspeech_a.flac,speech,0.0,1.0\nmusic_b.flac,music,0.5,2.0\n")
    return root, mixes


def test_dnr_matches_a_hand_written_manifest(dnr):
    root, mixes = dnr
    suite = import_layout("dnr", root)
    expected = []
    for mid, n in mixes.items():
        def entry(stem: str, mid=mid, n=n) -> dict:
            path = root / "tt" / mid / f"{stem}.wav"
            return {"path": f"tt/{mid}/{stem}.wav", "rate": RATE, "channels": 1, "frames": n,
                    "sha256": sha(path)}
        meta = {"split": "test", "dataset": "Divide and Remaster v2"}
        if mid == "1001":
            meta.update({"annotations": "annots.csv", "annotation_rows": 2,
                         "annotation_columns": ["file", "class", "start", "end"]})
        expected.append({"id": mid, "inputs": {"mixture": entry("mix")},
                         "references": {s: entry(s) for s in ("speech", "music", "sfx")},
                         "metadata": meta})
    assert suite.task == "cocktail-fork"
    assert suite.to_json()["items"] == expected


def test_dnr_broken_tree_lists_every_problem(dnr):
    root, _ = dnr
    (root / "tt" / "1001" / "sfx.wav").unlink()
    sf.write(root / "tt" / "1002" / "music.wav", np.zeros((RATE, 2)), RATE)
    (root / "tt" / "1003").mkdir()
    (root / "tt" / "1003" / "mix.wav").write_bytes(b"not audio")
    with pytest.raises(TreeProblems) as exc:
        import_layout("dnr", root)
    msg = str(exc.value)
    assert "tt/1001/sfx.wav: file not found" in msg
    assert "tt/1002/music.wav: 2 channels, expected mono" in msg
    assert "tt/1003/mix.wav: not a readable audio file" in msg
    assert "tt/1003/speech.wav: file not found" in msg
    with pytest.raises(TreeProblems, match="unknown split 'xx'"):
        import_layout("dnr", root, split="xx")


def test_cocktail_fork_scores_against_closed_forms(dnr):
    """SI-SDRi of the mixture is 0 by definition; of a stem plus 10 dB-down noise it is
    10 dB minus the mixture's SI-SDR (computed here from the closed form)."""
    root, _ = dnr
    item = import_layout("dnr", root).items[0]
    proto = get_protocol("cocktail-fork")
    mix = item.input("mixture")
    rows = proto.score(item, proto.anchor("unprocessed", item, None), None, ["si_sdr", "si_sdri"])
    assert all(r.status == "ok" for r in rows)
    for r in rows:
        if r.metric == "si_sdri":
            assert r.value == pytest.approx(0.0, abs=1e-9)
    rng = np.random.default_rng(5)
    outputs = {}
    for stem in ("speech", "music", "sfx"):
        ref = item.reference(stem).mono().astype(np.float64)
        noise = rng.standard_normal(len(ref))
        noise -= np.dot(noise, ref) / np.dot(ref, ref) * ref  # orthogonal: SI-SDR is exactly 10
        noise *= np.sqrt(np.dot(ref, ref) / np.dot(noise, noise) / 10)
        outputs[stem] = Audio((ref + noise)[None], RATE)
    rows = {(r.metric, r.stem): r for r in proto.score(item, outputs, None, ["si_sdr", "si_sdri"])}
    for stem in ("speech", "music", "sfx"):
        ref = item.reference(stem).mono()
        base = si_sdr_db(mix.mono(), ref)
        assert rows["si_sdr", stem].value == pytest.approx(10.0, abs=1e-3)
        assert rows["si_sdri", stem].value == pytest.approx(10.0 - base, abs=1e-3)


def test_dnr_import_then_run_anchors(dnr, tmp_path):
    root, _ = dnr
    dest = tmp_path / "suite"
    r = run_cli("suites", "import", "dnr", str(root), "--out", str(dest))
    assert r.returncode == 0, r.stderr
    r = run_cli("run", "--suite", str(dest), "--system", "unprocessed", "--system", "oracle",
                "--out", str(tmp_path / "store"), "-q")
    assert r.returncode == 0, r.stderr
    from harness.store import Store

    store = Store(tmp_path / "store")
    df = store.scores(store.resolve("latest"))
    store.close()
    assert (df.status == "ok").all()
    means = df.groupby(["system", "metric"]).value.mean().unstack()
    assert means.loc["oracle", "si_sdr"] == 100.0
    assert means.loc["unprocessed", "si_sdri"] == pytest.approx(0.0, abs=1e-9)
    assert means.loc["oracle", "si_sdri"] > 50
