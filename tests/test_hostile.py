"""The hostile-input corpus (with test_hostile_systems.py and test_hostile_inputs.py): stores,
output files, metrics, panels and configs, each generated here at test time. Every case checks
the exit code, the one-line message (no traceback), the stored statuses and reasons, and that
nothing was written outside the output folder. The cases run the CLI in this process (`cli`),
which is what `harness` runs, without a fresh interpreter per case.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from helpers.hostile import SPEECH, cli, one_line_error, store_digest, tree

from harness.config import RunConfig
from harness.planning import plan
from harness.runner import execute


@pytest.fixture(scope="module")
def oracle_store(tmp_path_factory) -> Path:
    """A results store holding one small run (oracle on the speech suite, SNR)."""
    folder = tmp_path_factory.mktemp("store")
    execute(plan(RunConfig(out=str(folder), jobs=1, quiet=True, suites=[SPEECH], systems=["oracle"],
                           metrics=["snr"])), progress=False)
    return folder

# ------------------------------------------------------------------ results destroyed, files outside


def test_export_never_writes_over_a_results_store(oracle_store, tmp_path, monkeypatch, capsys):
    before = store_digest(oracle_store)
    for target in ("harness.sqlite", "harness.sqlite-wal"):
        code, _, err = cli(monkeypatch, capsys, "export", "latest", "--store", oracle_store,
                           "--out", oracle_store / target, "--force")
        one_line_error(code, err, "refusing to write the export over")
    assert store_digest(oracle_store) == before == (6, True)


def test_export_refuses_an_existing_file_without_force(oracle_store, tmp_path, monkeypatch, capsys):
    dest = tmp_path / "scores.csv"
    dest.write_text("keep me\n")
    code, _, err = cli(monkeypatch, capsys, "export", "latest", "--store", oracle_store, "--out", dest)
    one_line_error(code, err, "already exists (--force overwrites it)")
    assert dest.read_text() == "keep me\n"
    code, _, err = cli(monkeypatch, capsys, "export", "latest", "--store", oracle_store, "--out", dest,
                       "--force")
    assert code == 0, err
    assert len(dest.read_text().splitlines()) == 7  # header + 6 SNR scores


@pytest.mark.parametrize(("args", "message"), [
    # each ran before: a negative count of worst units or report audio items was taken as none, a
    # --max-ratio below 1 would refuse every archive, a negative seed was numpy's complaint
    (["compare", "{store}", "{store}", "--worst", "-2"], "--worst must be >= 0, not -2"),
    (["report", "{store}", "--audio-items", "-1", "--out", "{tmp}/r.html"], "--audio-items must be >= 0, not -1"),
    (["score", "{tmp}", "--suite", SPEECH, "--max-ratio", "0.5", "--out", "{tmp}/s"], "--max-ratio must be >= 1, not 0.5"),
    (["suites", "make", "speech-enhancement", "--seed", "-5", "--out", "{tmp}/m"], "--seed must be >= 0, not -5"),
    (["suites", "make", "speech-enhancement", "--seconds", "0.5", "--out", "{tmp}/m"], "--seconds must be >= 1, not 0.5"),
    (["train", "hifigan", "--threads", "-1", "--out", "{tmp}/x.safetensors"], "--threads must be >= 0, not -1"),
])
def test_a_flag_below_its_least_value_is_one_line_and_writes_nothing(args, message, oracle_store, tmp_path,
                                                                     monkeypatch, capsys):
    before = store_digest(oracle_store)
    args = [a.format(store=oracle_store, tmp=tmp_path) for a in args]
    code, _, err = cli(monkeypatch, capsys, *args)
    one_line_error(code, err, message)
    assert store_digest(oracle_store) == before
    assert list(tmp_path.iterdir()) == []


def test_names_with_control_characters_are_refused_before_anything_is_written(oracle_store, tmp_path,
                                                                               monkeypatch, capsys):
    """A run or leaderboard entry name is printed on terminals: an ESC in it would act there (clear
    the screen, recolour what follows); before, both were stored and printed raw."""
    from harness.suites.types import control_free

    assert control_free("a b/é\u00a0") and not control_free("a\x1b[2J") and not control_free("\x7f")
    assert not control_free("\x9b31m") and control_free("line\nnext", "\n") and not control_free("line\nnext")
    code, _, err = cli(monkeypatch, capsys, "run", "--suite", SPEECH, "--system", "oracle", "--metric", "snr",
                       "--run-name", "a\x1b[31mred", "--out", tmp_path / "r")
    one_line_error(code, err, "run_name 'a\\x1b[31mred' holds control characters")
    code, _, err = cli(monkeypatch, capsys, "leaderboard", "add", str(oracle_store), "--name", "x\x1b[2J",
                       "--db", tmp_path / "lb.sqlite")
    one_line_error(code, err, "entry name 'x\\x1b[2J': must be non-empty and hold no control characters")
    assert list(tmp_path.iterdir()) == []


def test_report_and_compare_never_write_over_a_store(oracle_store, monkeypatch, capsys):
    before = store_digest(oracle_store)
    db = oracle_store / "harness.sqlite"
    code, _, err = cli(monkeypatch, capsys, "report", str(oracle_store), "--format", "md", "--out", db,
                       "--force")
    one_line_error(code, err, "refusing to write the report over")
    code, _, err = cli(monkeypatch, capsys, "compare", str(oracle_store), str(oracle_store), "--json", db,
                       "--overwrite")
    one_line_error(code, err, "refusing to write the JSON result over")
    assert store_digest(oracle_store) == before


def test_a_leaderboard_never_opens_a_results_store(oracle_store, monkeypatch, capsys):
    before = store_digest(oracle_store)
    code, _, err = cli(monkeypatch, capsys, "leaderboard", "add", str(oracle_store), "--name", "x",
                       "--db", oracle_store / "harness.sqlite")
    one_line_error(code, err, "not a leaderboard")
    con = sqlite3.connect(oracle_store / "harness.sqlite")
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    con.close()
    assert tables == {"runs", "jobs", "scores"} and store_digest(oracle_store) == before


def test_leaderboard_build_and_suites_import_do_not_overwrite(oracle_store, tmp_path, monkeypatch, capsys):
    db = tmp_path / "lb.sqlite"
    code, _, err = cli(monkeypatch, capsys, "leaderboard", "add", str(oracle_store), "--name", "e1",
                       "--db", db)
    assert code == 0, err
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("mine")
    code, _, err = cli(monkeypatch, capsys, "leaderboard", "build", "--out", site, "--db", db)
    one_line_error(code, err, "index.html: already exists")
    assert (site / "index.html").read_text() == "mine"
    dest = tmp_path / "imported"
    dest.mkdir()
    (dest / "manifest.json").write_text("{}")
    code, _, err = cli(monkeypatch, capsys, "suites", "import", "vctk-demand", tmp_path, "--out", dest)
    one_line_error(code, err, "manifest.json: already exists")
    assert (dest / "manifest.json").read_text() == "{}"


@pytest.mark.parametrize("name", ["../../../x", "a/b", "", ".", "..", "/abs", "x\\y", "bad\nname"])
def test_score_name_must_be_one_plain_component(tmp_path, monkeypatch, capsys, name):
    sub = tmp_path / "sub"
    sub.mkdir()
    out = tmp_path / "deep" / "er" / "out"
    before = tree(tmp_path)
    code, _, err = cli(monkeypatch, capsys, "score", sub, "--suite", SPEECH, "--out", out, "--name", name)
    one_line_error(code, err, "--name", "plain name")
    assert tree(tmp_path) == before  # nothing written anywhere


@pytest.mark.parametrize("command", [["runs"], ["summary"], ["export", "latest"],
                                     ["report", "latest", "--format", "md"]])
def test_read_only_commands_create_no_store(tmp_path, monkeypatch, capsys, command):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "empty"
    folder.mkdir()
    code, _, err = cli(monkeypatch, capsys, *command, "--store", folder)
    one_line_error(code, err, "not a results store")
    assert tree(tmp_path) == {"empty"}


def test_a_store_of_another_schema_or_not_sqlite_is_refused_untouched(tmp_path, monkeypatch, capsys):
    other = tmp_path / "other"
    other.mkdir()
    con = sqlite3.connect(other / "harness.sqlite")
    con.execute("CREATE TABLE scores (a, b)")
    con.commit()
    con.close()
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "harness.sqlite").write_bytes(b"not a database at all " * 100)
    for folder in (other, garbage):
        data = (folder / "harness.sqlite").read_bytes()
        for args in (["runs", "--store", folder],
                     ["run", "--suite", SPEECH, "--system", "oracle", "--metric", "snr", "--out", folder,
                      "--quiet"]):
            code, _, err = cli(monkeypatch, capsys, *args)
            one_line_error(code, err, str(folder / "harness.sqlite"))
        assert (folder / "harness.sqlite").read_bytes() == data


def test_an_output_that_cannot_be_written_is_one_line_naming_it(oracle_store, tmp_path, monkeypatch, capsys):
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    code, _, err = cli(monkeypatch, capsys, "export", "latest", "--store", oracle_store, "--out", "/dev/full",
                       "--force")
    one_line_error(code, err, "/dev/full: cannot write the export (No space left on device)")


def test_suites_make_into_a_file_or_a_full_folder_is_refused(tmp_path, monkeypatch, capsys):
    f = tmp_path / "f"
    f.write_text("x")
    code, _, err = cli(monkeypatch, capsys, "suites", "make", "speech-enhancement", "--out", f, "--quiet")
    one_line_error(code, err, str(f), "is a file")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep").write_text("x")
    code, _, err = cli(monkeypatch, capsys, "suites", "make", "speech-enhancement", "--out", full, "--quiet")
    one_line_error(code, err, "not empty")
    assert f.read_text() == "x" and tree(full) == {"keep"}


def test_a_store_path_that_is_a_file_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    code, _, err = cli(monkeypatch, capsys, "run", "--suite", SPEECH, "--out", f, "--quiet")
    one_line_error(code, err, "is a file, not a folder")
    assert f.read_text() == "x"


def test_a_full_disk_stops_the_run_with_one_line_and_keeps_what_is_stored(tmp_path, monkeypatch, capsys):
    import errno

    from harness import audio

    real, calls = audio.write, [0]

    def write(path, a, subtype="FLOAT"):
        calls[0] += 1
        if calls[0] > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, a, subtype)

    monkeypatch.setattr(audio, "write", write)
    args = ["run", "--suite", SPEECH, "--system", "oracle", "--metric", "snr", "--out", tmp_path / "o",
            "--quiet", "--jobs", "1", "--batch-size", "1"]
    code, _, err = cli(monkeypatch, capsys, *args)
    one_line_error(code, err, "cannot write a system output (No space left on device)",
                   "the same command resumes")
    assert store_digest(tmp_path / "o") == (3, True)  # the three jobs before the failure are kept
    assert not list((tmp_path / "o" / "cache").rglob("*.tmp.wav"))  # no partial file left
    monkeypatch.setattr(audio, "write", real)
    code, _, err = cli(monkeypatch, capsys, *args)
    assert code == 0 and "resumed: 3 of 6 jobs" in err, err


# ------------------------------------------------------------------ metrics and listeners


def test_a_misspelt_metric_is_an_error_naming_the_closest(tmp_path, monkeypatch, capsys):
    code, _, err = cli(monkeypatch, capsys, "run", "--metric", "snr", "--metric", "stoii", "--out",
                       tmp_path / "o", "--quiet")
    one_line_error(code, err, "unknown metric 'stoii'", "did you mean 'stoi'?")
    assert not (tmp_path / "o").exists()


def test_system_params_for_a_system_not_run_are_named_in_the_plan():
    p = plan(RunConfig(suites=[SPEECH], systems=["oracle"], jobs=1, system_params={"remx": {"a": 1}}))
    assert p.skipped == ["system_params for 'remx' are not used: no system 'remx' is run (systems: oracle)"]


def test_a_metric_a_task_cannot_compute_is_named_in_the_plan():
    p = plan(RunConfig(metrics=["haaqi", "snr", "snr"], listeners=["NH", "NH"], jobs=1))
    assert any(s.startswith("haaqi not computed on speech-enhancement-quick") for s in p.skipped), p.skipped
    assert any(s.startswith("snr not computed on music-remix-quick") for s in p.skipped), p.skipped
    # -m snr -m snr and -l NH -l NH: each once in the plan
    assert p.manifest["suites"][SPEECH]["metrics"] == ["snr"]
    assert len(p.panel.listeners) == 1
    keys = [j.key for j in p.jobs]
    assert len(keys) == len(set(keys)) == 2 * (6 + 2)  # 2 systems x (6 utterances + 2 songs x NH)


def _panel(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "listeners.json"
    path.write_text(text)
    return path


def _entry(name: str, left) -> str:
    return json.dumps({"name": name, "audiogram_cfs": [250, 500, 1000, 2000, 4000, 6000],
                       "audiogram_levels_l": left, "audiogram_levels_r": [0, 0, 0, 0, 0, 0]})


def _one(name: str, left) -> str:
    return f'{{"A": {_entry(name, left)}}}'


PANELS = [
    ("minus50", _one("A", [-50, 0, 0, 0, 0, 0]), "threshold -50 dB HL at 250 Hz is outside"),
    ("two-hundred", _one("A", [0, 0, 0, 0, 200, 0]), "threshold 200 dB HL at 4000 Hz is outside"),
    ("duplicate-key", f'{{"A": {_entry("A", [0] * 6)}, "A": {_entry("A", [9] * 6)}}}',
     "listener 'A' is given twice"),
    ("strings", _one("A", ["x", 0, 0, 0, 0, 0]), "listener 'A'"),
    ("short", _one("A", [0, 0, 0]), "3 thresholds for 6 frequencies"),
    ("missing-ear", '{"A": {"name": "A", "audiogram_cfs": [250], "audiogram_levels_l": [0]}}',
     "lacks audiogram_levels_r"),
    ("not-object", "[1, 2]", "expected a non-empty JSON object"),
    ("name-differs", _one("B", [0] * 6), "differs from its name 'B'"),
    ("id-path", f'{{"a/../b": {_entry("a/../b", [0] * 6)}}}', "listener id 'a/../b' is not a plain name"),
]


@pytest.mark.parametrize("case,text,message", PANELS, ids=[p[0] for p in PANELS])
def test_an_impossible_panel_is_refused_naming_file_and_listener(tmp_path, monkeypatch, capsys, case, text,
                                                                message):
    path = _panel(tmp_path, text)
    code, _, err = cli(monkeypatch, capsys, "run", "--suite", "music-remix-quick", "--panel", path,
                       "--out", tmp_path / "o", "--quiet")
    one_line_error(code, err, str(path), message)
    assert not (tmp_path / "o").exists()


# ------------------------------------------------------------------ configs


CONFIGS = [
    ("jobs-string", 'jobs = "two"', "key 'jobs' must be an integer"),
    ("jobs-bool", "jobs = true", "key 'jobs' must be an integer"),
    ("suites-number", "suites = 3", "key 'suites' must be a list of strings"),
    ("device-number", "device = 1", "key 'device' must be a string"),
    ("quiet-string", 'quiet = "yes"', "key 'quiet' must be true or false"),
    ("params-not-table", "[system_params]\nremix = 3", "key 'system_params' must be a table of tables"),
    ("param-type", '[system_params.remix]\nchunk_s = "ten"', "key 'system_params.remix.chunk_s' must be a number"),
    ("timeout", 'system_timeout = "soon"', "system_timeout must be 'auto' or seconds"),
    ("backend", "metrics_backend = 3", "key 'metrics_backend' must be a string or a table of strings"),
    ("unknown-key", "jobz = 2", "unknown key(s) jobz"),
    ("param-unknown", "[system_params.remix]\nseperator = \"dsp\"", "system_params.remix: unknown parameter(s) seperator"),
    ("param-anchor", "[system_params.oracle]\ngain = 2", "system_params.oracle: unknown parameter(s) gain (known: none)"),
    ("not-toml", "jobs = = 2", "not valid TOML"),
]


@pytest.mark.parametrize("case,text,message", CONFIGS, ids=[c[0] for c in CONFIGS])
def test_a_config_of_the_wrong_type_is_a_one_line_error(tmp_path, monkeypatch, capsys, case, text, message):
    path = tmp_path / "run.toml"
    path.write_text(f'systems = ["remix"]\nsuites = ["music-remix-quick"]\n{text}\n'
                    if case.startswith("param") else text + "\n")
    code, _, err = cli(monkeypatch, capsys, "run", "--config", path, "--out", tmp_path / "o")
    one_line_error(code, err, str(path), message)
    assert not (tmp_path / "o").exists()


