"""The hostile-input corpus: bad suites, panels, configs, stores, submissions, misbehaving systems
and kills, each generated here at test time. Every case checks the exit code, the one-line
message (no traceback), the stored statuses and reasons, that the other items were scored, and
that nothing was written outside the output folder.

Most cases run the CLI in this process (`cli`), which is what `harness` runs, without a fresh
interpreter per case; the signal and kill cases run it as a subprocess and are marked slow.
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT, descendants, jobs_stored

from harness import registry
from harness import workers as workers_mod
from harness.cli import main as cli_main
from harness.config import RunConfig
from harness.planning import plan
from harness.runner import execute
from harness.store import Store
from harness.suites import resolve_suite
from harness.tasks import get_protocol

SPEECH = "speech-enhancement-quick"
QUICK = ROOT / "harness" / "suites" / "quick" / SPEECH


# ------------------------------------------------------------------ helpers


def cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Run `harness ARGS` in this process; (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["harness", *map(str, args)])
    code = 0
    try:
        cli_main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(code: int, err: str, *fragments: str, exit_code: int = 2) -> str:
    """The command failed with `exit_code` and said why in one line, its last, with no traceback
    (lines before it are the command's own progress: the plan, a validation report)."""
    assert code == exit_code, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("error:", "interrupted"))]
    assert len(errors) == 1 and errors[0] == lines[-1], err
    for f in fragments:
        assert f in errors[0], (f, errors[0])
    return errors[0]


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


def stored(folder: Path):
    with Store(folder, create=False) as s:
        rid = s.resolve("latest")
        return s.scores(rid), s.jobs(rid)


def speech_run(tmp_path: Path, **kw):
    """An in-process run on the speech quick suite with the fast SNR metric only."""
    cfg = RunConfig(out=str(tmp_path / "out"), jobs=1, quiet=True, suites=[kw.pop("suite", SPEECH)],
                    metrics=["snr"], **kw)
    p = plan(cfg)
    execute(p, progress=False)
    return stored(tmp_path / "out")


@pytest.fixture(scope="module")
def oracle_store(tmp_path_factory) -> Path:
    """A results store holding one small run (oracle on the speech suite, SNR)."""
    folder = tmp_path_factory.mktemp("store")
    execute(plan(RunConfig(out=str(folder), jobs=1, quiet=True, suites=[SPEECH], systems=["oracle"],
                           metrics=["snr"])), progress=False)
    return folder


def store_digest(folder: Path) -> tuple[int, int]:
    con = sqlite3.connect(folder / "harness.sqlite")
    try:
        n = con.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
        ok = con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
    return n, ok


# ------------------------------------------------------------------ misbehaving systems


class FaultSystem:
    """The oracle, except on item `on`, where it misbehaves as `mode` says."""

    name, task, version = "fault", "*", "1"

    def __init__(self, mode: str = "", on: str = "se02", log: str = "") -> None:
        self.params = {"mode": mode, "on": on, "log": log}
        self.mode, self.on, self.log = mode, on, log

    def identity(self) -> str:
        return json.dumps(self.params, sort_keys=True)

    def supports(self, task: str) -> bool:
        return True

    def prepare(self, device: str) -> None:
        if self.log:
            with open(self.log, "a") as fh:
                fh.write("prepare\n")
        if self.mode == "prepare-raise":
            raise RuntimeError("weights are corrupt")
        if self.mode == "prepare-hang":
            time.sleep(3600)

    def process(self, items, listener):
        outs = []
        for it in items:
            oracle = get_protocol(it.task).anchor("oracle", it, listener)
            if it.id != self.on:
                outs.append(oracle)
                continue
            m = self.mode
            if m == "hang":
                time.sleep(3600)
            elif m == "exit0":
                sys.exit(0)
            elif m == "exit3":
                os._exit(3)
            elif m == "segv":
                ctypes.string_at(0)
            elif m == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            elif m == "keyboard":
                raise KeyboardInterrupt
            elif m == "spawn-hang":  # starts a process of its own, then hangs
                child = subprocess.Popen(["sleep", "600"])
                with open(self.log, "a") as fh:
                    fh.write(f"{child.pid}\n")
                time.sleep(3600)
            elif m == "bare":
                outs.append(oracle["enhanced"].samples[0])
                continue
            elif m == "bare-value":
                outs.append({"enhanced": oracle["enhanced"].samples[0]})
                continue
            elif m == "unpicklable":
                outs.append({"enhanced": lambda: 0})
                continue
            elif m == "count":
                return outs
            outs.append(oracle)
        return outs


class Unpicklable(FaultSystem):
    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.lock = __import__("threading").Lock()


registry.register("harness.systems", "fault", "test_hostile:FaultSystem")
registry.register("harness.systems", "unpicklable", "test_hostile:Unpicklable")

FAULTS = [
    ("hang", "failed", "system fault: timed out after 3 s"),
    ("exit0", "failed", "system fault: system process exited with code 0"),
    ("exit3", "failed", "system fault: system process exited with code 3"),
    ("segv", "failed", "system fault: system process killed by signal 11 (SIGSEGV)"),
    ("kill", "failed", "system fault: system process killed by signal 9 (SIGKILL"),
    ("keyboard", "failed", "system fault raised KeyboardInterrupt"),
    ("bare", "invalid", "system returned ndarray, expected a dict of Audio"),
    ("bare-value", "invalid", "output 'enhanced' is ndarray, not Audio"),
    ("unpicklable", "failed", "its outputs cannot be sent back"),
    ("count", "failed", "returned 0 outputs for 1 items"),
]


@pytest.mark.parametrize("mode,status,reason", FAULTS, ids=[f[0] for f in FAULTS])
def test_a_misbehaving_system_fails_its_item_and_the_run_goes_on(tmp_path, mode, status, reason):
    scores, jobs = speech_run(tmp_path, systems=["fault"], batch_size=2, system_timeout=3,
                              system_params={"fault": {"mode": mode}})
    assert len(jobs) == 6 and len(scores) == 6  # every item stored once, none dropped
    bad = scores[scores.item_id == "se02"].iloc[0]
    assert bad.status == status and reason in bad.reason, (bad.status, bad.reason)
    assert bad.value is None or np.isnan(bad.value)  # never a silent 0
    good = scores[scores.item_id != "se02"]  # se01 shared se02's batch: retried alone, it scores
    assert (good.status == "ok").all(), good[["item_id", "status", "reason"]]
    assert (good.value == 100.0).all()  # the oracle's ceiling: the others really were scored


def test_what_a_hung_system_started_is_killed_with_it(tmp_path):
    log = tmp_path / "pids"
    scores, _ = speech_run(tmp_path, systems=["fault"], batch_size=1, system_timeout=2,
                           system_params={"fault": {"mode": "spawn-hang", "log": str(log)}})
    assert list(scores.status) == ["ok", "failed", "ok", "ok", "ok", "ok"]
    pid = next(int(w) for w in log.read_text().split() if w.isdigit())
    time.sleep(0.5)
    alive = workers_mod._alive(pid)
    if alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "the system's own subprocess outlived its killed process"


def test_prepare_that_fails_fails_every_item_once_without_retrying(tmp_path):
    log = tmp_path / "prepare.log"
    scores, _ = speech_run(tmp_path, systems=["fault"], batch_size=2,
                           system_params={"fault": {"mode": "prepare-raise", "log": str(log)}})
    assert (scores.status == "failed").all() and len(scores) == 6
    assert scores.reason.str.contains("prepare failed: RuntimeError: weights are corrupt").all()
    assert log.read_text() == "prepare\n"  # loaded once, not once per batch


def test_prepare_that_hangs_times_out(tmp_path, monkeypatch):
    monkeypatch.setattr(workers_mod, "PREPARE_TIMEOUT_S", 2.0)
    t0 = time.time()
    scores, _ = speech_run(tmp_path, systems=["fault"], batch_size=2, system_timeout=1,
                           system_params={"fault": {"mode": "prepare-hang"}})
    assert time.time() - t0 < 30
    assert (scores.status == "failed").all() and len(scores) == 6
    assert scores.reason.str.contains("prepare failed: prepare timed out after 2 s").all()


def test_a_system_process_is_reused_across_batches(tmp_path):
    log = tmp_path / "prepare.log"
    scores, _ = speech_run(tmp_path, systems=["fault"], batch_size=1,
                           system_params={"fault": {"mode": "", "log": str(log)}})
    assert (scores.status == "ok").all()
    assert log.read_text() == "prepare\n"  # six batches, one process, one prepare


def test_a_crashed_system_process_is_restarted_for_the_next_items(tmp_path):
    log = tmp_path / "prepare.log"
    scores, _ = speech_run(tmp_path, systems=["fault"], batch_size=1,
                           system_params={"fault": {"mode": "segv", "log": str(log)}})
    assert list(scores.status) == ["ok", "failed", "ok", "ok", "ok", "ok"]
    assert log.read_text() == "prepare\n" * 2  # the first process died on se02; a second one ran


def test_a_system_that_cannot_be_sent_to_its_process_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    code, _, err = cli(monkeypatch, capsys, "run", "--suite", SPEECH, "--system", "unpicklable",
                       "--out", tmp_path / "o", "--quiet", "--metric", "snr", "--jobs", "1")
    one_line_error(code, err, "system 'unpicklable' cannot be sent to its own process")


def test_system_timeout_flag_and_key_are_checked(tmp_path, monkeypatch, capsys):
    for bad in ("soon", "-1", "0", "inf"):
        code, _, err = cli(monkeypatch, capsys, "run", "--suite", SPEECH, "--out", tmp_path / "o",
                           "--system-timeout", bad, "--quiet")
        one_line_error(code, err, "system_timeout")
    assert not (tmp_path / "o").exists()


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


def test_score_refuses_an_out_folder_inside_the_submission(tmp_path, monkeypatch, capsys):
    sub = _submission(tmp_path / "sub")
    before = tree(sub)
    code, _, err = cli(monkeypatch, capsys, "score", sub, "--suite", SPEECH, "--out", sub / "o")
    one_line_error(code, err, "lies inside the submission")
    assert tree(sub) == before


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


# ------------------------------------------------------------------ signals and kills (subprocess)


KILL_ARGS = ["run", "--suite", "music-remix-quick", "--suite", SPEECH, "--metric", "sdr", "--metric",
             "pesq", "--listener", "NH", "--listener", "N1", "--listener", "N2", "--jobs", "2",
             "--batch-size", "1", "--quiet"]


def _alive(pid: int) -> bool:
    return workers_mod._alive(pid)


def _start(out: Path) -> tuple[subprocess.Popen, Path]:
    """The run in its own session; its stderr goes to a file, not a pipe (a pipe held open by an
    orphaned child would make waiting for the driver hang instead of failing the test)."""
    log = out.parent / f"{out.name}.stderr"
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *KILL_ARGS, "--out", str(out)],
                                cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=fh)
    return proc, log


@pytest.mark.slow
@pytest.mark.parametrize("when", ["children-starting", "first-job", "mid-run"])
def test_no_process_outlives_a_killed_driver(tmp_path, when):
    out = tmp_path / "o"
    proc, _ = _start(out)
    seen: set[int] = set()
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        seen |= descendants(proc.pid)
        n = jobs_stored(out / "harness.sqlite")
        if (when == "children-starting" and seen) or (when == "first-job" and n >= 1) or n >= 8:
            break
        time.sleep(0.01)
    seen |= descendants(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert seen, "the run had child processes"
    t0 = time.time()
    while any(_alive(p) for p in seen) and time.time() - t0 < 15:
        time.sleep(0.1)
    alive = [p for p in seen if _alive(p)]
    for p in alive:
        os.kill(p, signal.SIGKILL)
    assert not alive, f"{len(alive)} of {len(seen)} processes outlived the driver ({when})"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_run_says_so_and_resumes(tmp_path, sig):
    out = tmp_path / "o"
    proc, log = _start(out)
    deadline = time.time() + 240
    while jobs_stored(out / "harness.sqlite") < 4 and time.time() < deadline:
        time.sleep(0.05)
    kids = descendants(proc.pid)
    # Ctrl-C in a terminal reaches the whole foreground process group; SIGTERM the driver alone.
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)
    else:
        os.kill(proc.pid, sig)
    proc.wait(timeout=120)
    err = log.read_text()
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    line = one_line_error(130, err, "interrupted:", "run the same command again to resume",
                          exit_code=130)
    n = jobs_stored(out / "harness.sqlite")
    assert f" {n} of 24 jobs" in line, (n, line)
    time.sleep(1)
    assert not [p for p in kids if _alive(p)], "children outlived the interrupted run"
    res = subprocess.run([sys.executable, "-m", "harness.cli", *KILL_ARGS, "--out", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert f"resumed: {n} of 24 jobs" in res.stderr
    assert jobs_stored(out / "harness.sqlite") == 24
