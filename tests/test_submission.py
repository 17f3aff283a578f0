"""Submission scoring (`harness pack`, `harness score`) and the regression gate (`harness compare`).

One run of the anchors on the speech quick suite is packed as a submission; the submission,
as a folder and as an archive, must score what the run scored; broken and hostile submissions
are each refused with their own message, and nothing lands outside the work folder.
"""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import run_cli

from harness import submission as sub
from harness.store import Store
from harness.suites import resolve_suite

SUITE = "speech-enhancement-quick"


def scores_of(folder: Path) -> dict[tuple[str, str], float]:
    s = Store(folder)
    try:
        df = s.scores(s.resolve("latest"))
    finally:
        s.close()
    assert (df.status == "ok").all(), df[df.status != "ok"].reason.unique()
    return {(r.item_id, r.metric): r.value for r in df.itertuples()}


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A run of `oracle` on the speech suite, packed as float WAV and as 24-bit FLAC."""
    root = tmp_path_factory.mktemp("submission")
    res = run_cli("run", "--suite", SUITE, "--system", "oracle", "--out", str(root / "base"), "-q", "-j", "1")
    assert res.returncode == 0, res.stderr
    for fmt in ("wav", "flac"):
        res = run_cli("pack", str(root / "base"), "--out", str(root / f"sub-{fmt}"), "--format", fmt)
        assert res.returncode == 0, res.stderr
    return root


def snapshot(folder: Path, exclude: Path) -> set[str]:
    return {str(p) for p in folder.rglob("*") if exclude not in p.parents and p != exclude}


def test_folder_and_archive_score_what_the_run_scored(work, tmp_path):
    base = scores_of(work / "base")
    files = sorted((work / "sub-wav").rglob("*.wav"))
    assert [f.name for f in files] == sorted(f"{it.id}.wav" for it in resolve_suite(SUITE).items)
    res = run_cli("score", str(work / "sub-wav"), "--suite", SUITE, "--out", str(tmp_path / "a"), "-q", "-j", "1")
    assert res.returncode == 0, res.stderr
    assert "valid" in res.stderr
    assert scores_of(tmp_path / "a") == base  # float WAV holds the exact samples: the same numbers

    archive = tmp_path / "entry.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(work / "sub-wav", arcname="entry")  # a top folder level is common in uploads
    res = run_cli("score", str(archive), "--suite", SUITE, "--out", str(tmp_path / "b"), "-q", "-j", "1")
    # The top folder is an unexpected layout: refused, with the file named.
    assert res.returncode == 2 and "entry/" in res.stderr and "unexpected file" in res.stderr
    archive = tmp_path / "entry.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            zf.write(f, f.name)
    res = run_cli("score", str(archive), "--suite", SUITE, "--out", str(tmp_path / "c"), "-q", "-j", "1")
    assert res.returncode == 0, res.stderr
    assert scores_of(tmp_path / "c") == base

    # 24-bit FLAC quantises the samples (step 2^-23): the scores move by far less than any
    # metric's resolution, and by the amount 24-bit noise predicts for the dB metrics.
    res = run_cli("score", str(work / "sub-flac"), "--suite", SUITE, "--out", str(tmp_path / "d"), "-q", "-j", "1")
    assert res.returncode == 0, res.stderr
    flac = scores_of(tmp_path / "d")
    for key, v in base.items():
        if key[1] in ("pesq", "stoi", "estoi"):
            assert flac[key] == pytest.approx(v, abs=1e-3), key
        else:  # oracle: +inf -> the 100 dB ceiling; 24-bit quantisation of -26 dBFS speech ~ 120 dB
            assert 95 <= flac[key] <= 100.0 + 1e-9, key


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _score_fails(path: Path, out: Path, *needles: str):
    res = run_cli("score", str(path), "--suite", SUITE, "--out", str(out), "-q", "-j", "1")
    assert res.returncode == 2, res.stdout + res.stderr
    for n in needles:
        assert n in res.stderr, (n, res.stderr)
    assert "Traceback" not in res.stderr
    assert not (out / "harness.sqlite").exists()  # nothing scored
    return res


def test_broken_submissions_are_refused_by_name(work, tmp_path):
    items = [it.id for it in resolve_suite(SUITE).items]
    missing = _copy(work / "sub-flac", tmp_path / "missing")
    (missing / f"{items[0]}.flac").unlink()
    _score_fails(missing, tmp_path / "o1", f"{items[0]}.flac: missing")

    extra = _copy(work / "sub-flac", tmp_path / "extra")
    (extra / "notes.txt").write_text("hello")
    _score_fails(extra, tmp_path / "o2", "notes.txt: unexpected file")

    rate = _copy(work / "sub-flac", tmp_path / "rate")
    x, _ = sf.read(rate / f"{items[1]}.flac")
    sf.write(rate / f"{items[1]}.flac", x[::2], 8000, subtype="PCM_24")
    _score_fails(rate, tmp_path / "o3", f"{items[1]}.flac", "rate 8000 Hz, expected 16000 Hz")

    nan = _copy(work / "sub-wav", tmp_path / "nan")
    x, r = sf.read(nan / f"{items[2]}.wav", dtype="float32")
    x[100] = np.nan
    sf.write(nan / f"{items[2]}.wav", x, r, subtype="FLOAT")
    _score_fails(nan, tmp_path / "o4", f"{items[2]}.wav", "1 non-finite sample(s)")

    link = _copy(work / "sub-flac", tmp_path / "link")
    (link / f"{items[3]}.flac").unlink()
    os.symlink(work / "sub-flac" / f"{items[3]}.flac", link / f"{items[3]}.flac")
    _score_fails(link, tmp_path / "o5", f"{items[3]}.flac: a link or special file")


def test_partial_scores_the_valid_files_and_marks_the_rest_invalid(work, tmp_path):
    items = [it.id for it in resolve_suite(SUITE).items]
    missing = _copy(work / "sub-wav", tmp_path / "missing")
    (missing / f"{items[0]}.wav").unlink()
    res = run_cli("score", str(missing), "--suite", SUITE, "--out", str(tmp_path / "o"), "-q",
                  "-j", "1", "--partial")
    assert res.returncode == 0, res.stderr
    s = Store(tmp_path / "o")
    df = s.scores(s.resolve("latest"))
    s.close()
    bad = df[df.item_id == items[0]]
    assert (bad.status == "invalid").all() and bad.reason.str.contains("missing").all()
    assert (df[df.item_id != items[0]].status == "ok").all()


def _zip_with(path: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return path


@pytest.mark.slow  # about 20-30 s: runs in the slow set (CI runs both)
def test_hostile_archives_are_refused_and_write_nothing_outside(work, tmp_path):
    wav = (work / "sub-wav" / f"{resolve_suite(SUITE).items[0].id}.wav").read_bytes()
    before = snapshot(tmp_path, tmp_path / "out")

    trav = _zip_with(tmp_path / "trav.zip", [("../../evil.wav", wav)])
    _score_fails(trav, tmp_path / "out", "'../../evil.wav'", "path traversal")
    absolute = _zip_with(tmp_path / "abs.zip", [("/tmp/evil.wav", wav)])
    _score_fails(absolute, tmp_path / "out", "absolute path")

    info = zipfile.ZipInfo("se01.wav")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    link = _zip_with(tmp_path / "link.zip", [(info, b"/etc/passwd")])
    _score_fails(link, tmp_path / "out", "'se01.wav' is a symbolic link")

    tlink = tmp_path / "link.tar"
    with tarfile.open(tlink, "w") as tf:
        ti = tarfile.TarInfo("se01.wav")
        ti.type, ti.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(ti)
    _score_fails(tlink, tmp_path / "out", "symbolic link")
    ttrav = tmp_path / "trav.tar"
    with tarfile.open(ttrav, "w") as tf:
        ti = tarfile.TarInfo("../evil.wav")
        ti.size = len(wav)
        tf.addfile(ti, io.BytesIO(wav))
    _score_fails(ttrav, tmp_path / "out", "path traversal")

    # Zip bomb: 24 MB of zeros deflates ~1000:1, over the 200:1 limit.
    bomb = _zip_with(tmp_path / "bomb.zip", [("se01.wav", bytes(24 << 20))])
    assert bomb.stat().st_size < 100_000
    _score_fails(bomb, tmp_path / "out", "refused as a bomb")
    # A big total even at a modest ratio: over what a valid submission can need.
    expected = sub.expected_files(resolve_suite(SUITE), None)
    limits = sub.limits_for(expected)
    rng = np.random.default_rng(0)
    big = _zip_with(tmp_path / "big.zip", [(f"f{k}.bin", rng.integers(0, 4, 4 << 20, dtype=np.uint8).tobytes())
                                            for k in range(limits.max_bytes // (4 << 20) + 1)])
    _score_fails(big, tmp_path / "out", "bytes uncompressed, more than the limit")

    after = snapshot(tmp_path, tmp_path / "out")
    assert after - before == {str(p) for p in (trav, absolute, link, tlink, ttrav, bomb, big)}
    assert not (tmp_path.parent / "evil.wav").exists() and not Path("/tmp/evil.wav").exists()
    # Refused archives leave no half-unpacked folder behind.
    assert not any((tmp_path / "out" / "submissions").glob("*/*.wav"))


def test_bounds_hold_on_the_bytes_actually_read(tmp_path):
    """Extraction streams each entry with the bounds enforced on bytes read, not only on what
    the headers claim: an entry longer than declared, or past the size budget, is refused."""
    data = bytes(range(256)) * 64
    with pytest.raises(sub.SubmissionError, match="more bytes than its header says"):
        sub._copy_bounded(io.BytesIO(data), tmp_path / "a", len(data) - 1, [10**9], Path("x.zip"), "a")
    with pytest.raises(sub.SubmissionError, match="exceeds the limit"):
        sub._copy_bounded(io.BytesIO(data), tmp_path / "b", len(data), [len(data) - 1], Path("x.zip"), "b")
    path = tmp_path / "t.tar"
    with tarfile.open(path, "w") as tf:
        ti = tarfile.TarInfo("a.bin")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    with pytest.raises(sub.SubmissionError, match="more than the limit"):
        sub.extract(path, tmp_path / "x", sub.Limits(max_files=10, max_bytes=1000))
    assert not (tmp_path / "x").exists()


def test_compare_fails_a_degraded_candidate_and_passes_itself(work, tmp_path):
    """Oracle outputs plus white noise at 20 dB SNR: SI-SDR falls from the 100 dB ceiling to
    20 dB (closed form for noise orthogonal to the signal), and the gate fires on si_sdr."""
    deg = _copy(work / "sub-wav", tmp_path / "deg")
    rng = np.random.default_rng(7)
    for f in deg.glob("*.wav"):
        x, r = sf.read(f, dtype="float64")
        n = rng.standard_normal(x.size)
        n -= x * (n @ x) / (x @ x)  # orthogonal to the signal
        n *= np.sqrt((x @ x) / (n @ n) / 100.0)  # 20 dB below it
        sf.write(f, x + n, r, subtype="FLOAT")
    res = run_cli("score", str(deg), "--suite", SUITE, "--out", str(tmp_path / "cand"), "-q", "-j", "1",
                  "--name", "degraded")
    assert res.returncode == 0, res.stderr
    cand = scores_of(tmp_path / "cand")
    for (item, metric), v in cand.items():
        if metric == "si_sdr":
            assert v == pytest.approx(20.0, abs=0.01), item

    out_json = tmp_path / "gate.json"
    res = run_cli("compare", str(work / "base"), str(tmp_path / "cand"), "--fail-on", "si_sdr:-1",
                  "--json", str(out_json))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "regression" in res.stderr and "si_sdr" in res.stderr
    payload = json.loads(out_json.read_text())
    assert payload["exit_code"] == 1 and [r["metric"] for r in payload["regressions"]] == ["si_sdr"]
    row = next(r for r in payload["results"] if r["metric"] == "si_sdr")
    assert row["delta"] == pytest.approx(-80.0, abs=0.05) and row["n"] == 6
    assert len(payload["worst_units"]["speech-enhancement-quick/si_sdr/oracle->submission/degraded"]) == 5

    res = run_cli("compare", str(work / "base"), str(work / "base"), "--fail-on", "si_sdr:-1")
    assert res.returncode == 0 and "no significant regression" in res.stderr


@pytest.mark.slow  # about 20-30 s: runs in the slow set (CI runs both)
def test_compare_refuses_different_suites_or_panels(work, tmp_path):
    res = run_cli("run", "--suite", "music-remix-quick", "--system", "unprocessed", "--listener", "NH",
                  "--metric", "sdr", "--out", str(tmp_path / "m1"), "-q", "-j", "1")
    assert res.returncode == 0, res.stderr
    res = run_cli("run", "--suite", "music-remix-quick", "--system", "unprocessed", "--listener", "N1",
                  "--metric", "sdr", "--out", str(tmp_path / "m2"), "-q", "-j", "1")
    assert res.returncode == 0, res.stderr
    res = run_cli("compare", str(tmp_path / "m1"), str(tmp_path / "m2"))
    assert res.returncode == 2 and "panels differ" in res.stderr and "listeners N1, NH in one only" in res.stderr
    res = run_cli("compare", str(tmp_path / "m1"), str(work / "base"))
    assert res.returncode == 2 and "no suite in common" in res.stderr
    res = run_cli("compare", str(tmp_path / "m1"), str(tmp_path / "m2"), "--force", "--system", "unprocessed")
    assert res.returncode == 0 and "compared anyway" in res.stderr
    res = run_cli("compare", str(tmp_path / "m1"), str(tmp_path / "m2"), "--fail-on", "nonsense:1")
    assert res.returncode == 2 and "unknown metric 'nonsense'" in res.stderr


def test_differences_name_protocol_suite_hash_and_panel():
    from harness.runs import RunData, differences

    def run(protocol, suite_hash, audiogram):
        manifest = {"suites": {"s": {"protocol": protocol, "hash": suite_hash}},
                    "panel": {"name": "p", "listeners": {"L1": audiogram}}}
        return RunData(Path("x"), "id", "n", manifest, None, None)

    base = run("cad1-task1/2", "a" * 64, [10, 20])
    assert differences(base, run("cad1-task1/2", "a" * 64, [10, 20])) == []
    found = differences(base, run("cad1-task1/1", "b" * 64, [10, 30]))
    assert found == ["suite s: protocol cad1-task1/2 vs cad1-task1/1",
                     "suite s: suite hash aaaaaaaaaaaa vs bbbbbbbbbbbb",
                     "panels differ (p vs p: audiograms of L1)"]
