"""Hostile-input corpus, inputs: broken suites and hostile submissions and archives, each
generated here at test time; a bad item is invalid with its reason and every other item is
scored; nothing is written outside the output folder."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest
import soundfile as sf
from helpers.hostile import QUICK, SPEECH, cli, one_line_error, stored, tree

from harness.suites import resolve_suite

# ------------------------------------------------------------------ suites


def _hostile_suite(tmp_path: Path) -> Path:
    """A speech suite whose first item is good and each other item is wrong in one way."""
    root = tmp_path / "suite"
    root.mkdir()
    src = json.loads((QUICK / "manifest.json").read_text())
    good = src["items"][0]
    for kind in ("inputs", "references"):
        for ref in good[kind].values():
            dst = root / ref["path"]
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(QUICK / ref["path"], dst)
    outside = tmp_path / "outside.flac"
    shutil.copy(QUICK / good["references"]["clean"]["path"], outside)
    (root / "link.flac").symlink_to(outside)

    def variant(item_id, **changes):
        it = json.loads(json.dumps(good))
        it["id"] = item_id
        for path, value in changes.items():
            keys = path.split(".")
            target = it
            for k in keys[:-1]:
                target = target[k]
            if value is None:
                del target[keys[-1]]
            else:
                target[keys[-1]] = value
        return it

    clean = good["references"]["clean"]
    items = [
        good,
        variant("dotdot", **{"references.clean.path": "../outside.flac"}),
        variant("absolute", **{"references.clean.path": str(outside)}),
        variant("symlink", **{"references.clean.path": "link.flac"}),
        variant("inputs-list", inputs=[good["inputs"]["input"]]),
        variant("metadata-string", metadata="noisy"),
        variant("rate-zero", **{"inputs.input.rate": 0}),
        variant("frames-negative", **{"references.clean.frames": -5}),
        variant("rate-string", **{"inputs.input.rate": "16k"}),
        variant("file-not-object", **{"inputs.input": "se01.flac"}),
        variant("misspelt-reference", references={"clen": clean}),
        variant("no-path", **{"inputs.input.path": None}),
    ]
    manifest = {**src, "name": "hostile", "items": items}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


HOSTILE_ITEMS = {
    "dotdot": "climbs out of the suite root",
    "absolute": "is absolute",
    "symlink": "resolves outside the suite root",
    "inputs-list": "inputs must be an object",
    "metadata-string": "metadata must be an object",
    "rate-zero": "rate must be positive, got 0",
    "frames-negative": "frames must be positive, got -5",
    "rate-string": "rate must be an integer, got '16k'",
    "file-not-object": "must be an object with path/rate/channels/frames",
    "misspelt-reference": "lacks reference 'clean' (it has 'clen'",
    "no-path": "lacks key 'path'",
}


def test_a_bad_item_is_invalid_with_its_reason_and_every_other_item_is_scored(tmp_path, monkeypatch, capsys):
    root = _hostile_suite(tmp_path)
    out = tmp_path / "out"
    code, _, err = cli(monkeypatch, capsys, "run", "--suite", root, "--system", "unprocessed",
                       "--system", "oracle", "--metric", "snr", "--out", out, "--quiet", "--jobs", "1")
    assert code == 0, err
    assert "Traceback" not in err and "11 item(s) of hostile are invalid" in err
    scores, jobs = stored(out)
    assert set(jobs.item_id) == {"se01", *HOSTILE_ITEMS}
    assert len(jobs) == 2 * 12
    ok = scores[scores.item_id == "se01"]
    assert (ok.status == "ok").all() and len(ok) == 2
    for item_id, reason in HOSTILE_ITEMS.items():
        rows = scores[scores.item_id == item_id]
        assert len(rows) == 2 and (rows.status == "invalid").all(), item_id
        assert rows.value.isna().all(), item_id
        assert rows.reason.str.contains(reason, regex=False).all(), (item_id, rows.reason.iloc[0])
        assert rows.reason.str.contains(str(root / "manifest.json"), regex=False).all(), item_id


SUITE_ERRORS = [
    ("no-id", lambda m: m["items"].append({"inputs": {}}), "item 2 must be an object with an 'id'"),
    ("duplicate-id", lambda m: m["items"].append(m["items"][0]), "duplicate item id 'se01'"),
    ("items-object", lambda m: m.update(items={"a": 1}), "'items' must be a non-empty list"),
    ("root-number", lambda m: m.update(root=5), "'root' must be a string"),
    ("task", lambda m: m.update(task="karaoke"), "unknown task 'karaoke'"),
    ("name", lambda m: m.update(name=["x"]), "'name' must be a non-empty string"),
    ("id-traversal", lambda m: m["items"][1].update(id="../../x"), "item id '../../x' is not a plain name"),
    ("id-dot", lambda m: m["items"][1].update(id="."), "item id '.' is not a plain name"),
    ("name-escape", lambda m: m.update(name="q\x1b[2J"), "'name' and 'description' must hold no control characters"),
    ("description-csi", lambda m: m.update(description="ok\x9b31m"),
     "'name' and 'description' must hold no control characters"),
]


def test_a_repeated_json_key_in_a_manifest_is_refused(tmp_path, monkeypatch, capsys):
    root = tmp_path / "s"
    root.mkdir()
    text = (QUICK / "manifest.json").read_text().replace('"version":', '"name": "again", "version":', 1)
    (root / "manifest.json").write_text(text)
    code, _, err = cli(monkeypatch, capsys, "run", "--suite", root, "--out", tmp_path / "o", "--quiet")
    one_line_error(code, err, str(root / "manifest.json"), "key 'name' appears twice")


@pytest.mark.parametrize("case,change,message", SUITE_ERRORS, ids=[c[0] for c in SUITE_ERRORS])
def test_a_suite_that_cannot_be_read_is_a_one_line_error(tmp_path, monkeypatch, capsys, case, change, message):
    root = tmp_path / "s"
    root.mkdir()
    m = json.loads((QUICK / "manifest.json").read_text())
    m["items"] = m["items"][:2]
    change(m)
    (root / "manifest.json").write_text(json.dumps(m))
    code, _, err = cli(monkeypatch, capsys, "run", "--suite", root, "--out", tmp_path / "o", "--quiet")
    one_line_error(code, err, str(root / "manifest.json"), message)
    assert not (tmp_path / "o").exists()


def test_a_run_with_nothing_to_do_is_an_error_not_an_empty_success(tmp_path, monkeypatch, capsys):
    code, _, err = cli(monkeypatch, capsys, "run", "--suite", SPEECH, "--system", "remix", "--out",
                       tmp_path / "o", "--quiet")
    one_line_error(code, err, "nothing to run: remix does not do speech-enhancement")
    code, _, err = cli(monkeypatch, capsys, "run", "--suite", "", "--out", tmp_path / "o", "--quiet")
    one_line_error(code, err, "an empty suite name")
    assert not (tmp_path / "o").exists()


def test_markup_in_user_data_is_printed_not_interpreted(tmp_path, monkeypatch, capsys):
    code, _, err = cli(monkeypatch, capsys, "run", "--suite", "[/bold]x[red", "--out", tmp_path / "o")
    one_line_error(code, err, "unknown suite '[/bold]x[red'")


# ------------------------------------------------------------------ submissions


def _submission(folder: Path, short: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for it in resolve_suite(SPEECH).items:
        x = it.reference("clean").samples[0]
        if it.id == short:
            x = x[:-100]
        sf.write(str(folder / f"{it.id}.flac"), x, 16000, subtype="PCM_24")
    return folder


def test_score_refuses_an_out_folder_inside_the_submission(tmp_path, monkeypatch, capsys):
    sub = _submission(tmp_path / "sub")
    before = tree(sub)
    code, _, err = cli(monkeypatch, capsys, "score", sub, "--suite", SPEECH, "--out", sub / "o")
    one_line_error(code, err, "lies inside the submission")
    assert tree(sub) == before


def test_partial_submission_stores_the_real_reason(tmp_path, monkeypatch, capsys):
    sub = _submission(tmp_path / "sub", short="se03")
    code, _, err = cli(monkeypatch, capsys, "score", sub, "--suite", SPEECH, "--out", tmp_path / "o",
                       "--partial", "--quiet", "--jobs", "1")
    assert code == 0, err
    scores, _ = stored(tmp_path / "o")
    bad = scores[scores.item_id == "se03"]
    assert (bad.status == "invalid").all() and len(bad) == 5
    n = next(it for it in resolve_suite(SPEECH).items if it.id == "se03").references["clean"].frames
    reason = f"se03.flac: {n - 100} frames, expected {n}"
    assert bad.reason.str.contains(reason, regex=False).all(), bad.reason.iloc[0]
    assert (scores[scores.item_id != "se03"].status == "ok").all()


def _zip(path: Path, entries: list[tuple[str, bytes | None]]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries:
            if data is None:
                z.writestr(zipfile.ZipInfo(name), b"")
            else:
                z.writestr(name, data)
    return path


def _tar(path: Path, entries: list[tuple[str, bytes | None]]) -> Path:
    with tarfile.open(path, "w") as t:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                t.addfile(info)
            else:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return path


ARCHIVES = [
    ("zip-file-then-folder", _zip, [("se01", b"x"), ("se01/se01.flac", b"y")], "also holds as a file"),
    ("zip-folder-then-file", _zip, [("se01/a.flac", b"y"), ("se01", b"x")], "both a file and a folder"),
    ("tar-file-then-folder", _tar, [("se01", b"x"), ("se01/se01.flac", b"y")], "also holds as a file"),
    ("tar-folder-then-file", _tar, [("se01/", None), ("se01", b"x")], "both a file and a folder"),
    ("zip-traversal", _zip, [("../../evil.flac", b"x")], "path traversal"),
    ("tar-absolute", _tar, [("/tmp/evil.flac", b"x")], "absolute path"),
]


@pytest.mark.parametrize("case,make,entries,message", ARCHIVES, ids=[a[0] for a in ARCHIVES])
def test_a_hostile_archive_is_refused_with_nothing_written_outside(tmp_path, monkeypatch, capsys, case, make,
                                                                  entries, message):
    archive = make(tmp_path / f"sub.{'zip' if make is _zip else 'tar'}", entries)
    out = tmp_path / "o"
    before = tree(tmp_path)
    code, _, err = cli(monkeypatch, capsys, "score", archive, "--suite", SPEECH, "--out", out)
    one_line_error(code, err, str(archive), message)
    assert {p for p in tree(tmp_path) - before if not p.startswith("o")} == set()
    assert not list((out / "submissions").glob("*/*")) if (out / "submissions").exists() else True


def test_an_archive_with_an_unpacked_marker_of_its_own_is_just_an_unexpected_file(tmp_path, monkeypatch,
                                                                                 capsys):
    sub = _submission(tmp_path / "sub")
    entries = [(p.name, p.read_bytes()) for p in sorted(sub.iterdir())]
    archive = _zip(tmp_path / "sub.zip", [*entries, (".unpacked/", None), (".unpacked/x", b"x")])
    code, _, err = cli(monkeypatch, capsys, "score", archive, "--suite", SPEECH, "--out", tmp_path / "o")
    assert code == 2 and "Traceback" not in err
    assert ".unpacked/x: unexpected file" in err
    code, _, err = cli(monkeypatch, capsys, "score", archive, "--suite", SPEECH, "--out", tmp_path / "o",
                       "--partial", "--jobs", "1", "--quiet")
    assert code == 0, err
    scores, _ = stored(tmp_path / "o")
    assert (scores.status == "ok").all() and len(scores) == 30


