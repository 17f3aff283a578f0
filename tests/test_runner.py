"""The runner end to end: anchors, bad inputs, broken systems, kill and resume, determinism."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import ROOT, descendants, jobs_stored, run_cli
from helpers import stored_scores

from harness import registry
from harness.audio import Audio
from harness.config import RunConfig
from harness.planning import plan
from harness.runner import execute
from harness.store import Store
from harness.suites import Item, Suite, resolve_suite, write_manifest
from harness.suites.types import file_ref

SPEECH = "speech-enhancement-quick"




def run_inprocess(tmp_path: Path, **kw) -> pd.DataFrame:
    cfg = RunConfig(out=str(tmp_path), jobs=1, quiet=True, **kw)
    execute(plan(cfg), progress=False)
    return stored_scores(tmp_path)


def test_speech_anchors_order_and_summary_via_cli(tmp_path):
    res = run_cli("run", "--suite", SPEECH, "--out", str(tmp_path), "--quiet", "--jobs", "2")
    assert res.returncode == 0, res.stderr
    for metric in ("pesq", "stoi", "estoi", "si_sdr", "snr"):
        assert metric in res.stdout
    df = stored_scores(tmp_path)
    assert (df.status == "ok").all()
    means = df.groupby(["system", "metric"]).value.mean().unstack()
    assert (means.loc["oracle"] > means.loc["unprocessed"]).all(), means


def test_two_runs_with_the_same_config_are_identical(tmp_path):
    a = run_inprocess(tmp_path / "a", suites=[SPEECH])
    b = run_inprocess(tmp_path / "b", suites=[SPEECH])
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    res = run_cli("run", "--suite", SPEECH, "--out", str(tmp_path / "a"), "--quiet")
    assert "resumed: 12 of 12" in res.stderr


# ------------------------------------------------------------------ bad inputs
def _bad_suite(root: Path) -> Suite:
    """A speech suite with one item per kind of broken file, plus one good item."""
    src = resolve_suite(SPEECH).items[0]
    clean = src.reference("clean").mono()
    noisy = src.input("input").mono()
    root.mkdir(parents=True)
    sf.write(root / "clean.wav", clean, 16000, subtype="FLOAT")
    sf.write(root / "noisy.wav", noisy, 16000, subtype="FLOAT")
    good = {"input": file_ref(root, root / "noisy.wav")}
    ref = {"clean": file_ref(root, root / "clean.wav")}

    def write(name, data, rate=16000, subtype="FLOAT"):
        sf.write(root / name, data, rate, subtype=subtype)
        return file_ref(root, root / name)

    items = {"good": (good, ref)}
    items["nan"] = ({"input": write("nan.wav", np.where(np.arange(len(noisy)) == 5, np.nan, noisy))}, ref)
    items["silent-ref"] = (good, {"clean": write("zero.wav", np.zeros_like(clean))})
    items["wrong-rate"] = ({"input": write("rate.wav", noisy, 22050)}, ref)
    items["wrong-channels"] = ({"input": write("stereo.wav", np.stack([noisy, noisy], 1))}, ref)
    items["wrong-length"] = ({"input": write("short.wav", noisy[:-100])}, ref)
    # Files whose manifest entry is right but whose content is broken on disk:
    fake = write("fake.wav", noisy)
    (root / "fake.wav").write_text("not audio at all")
    items["not-audio"] = ({"input": fake}, ref)
    trunc = write("trunc.wav", noisy, subtype="PCM_16")
    data = (root / "trunc.wav").read_bytes()
    (root / "trunc.wav").write_bytes(data[: len(data) // 2])
    items["truncated"] = ({"input": trunc}, ref)
    items["missing-ref"] = (good, {"clean": write("gone.wav", clean)})
    (root / "gone.wav").unlink()
    # wrong-rate / wrong-channels / wrong-length: the manifest promises 16 kHz mono, full length
    promised = good["input"]
    for key in ("wrong-rate", "wrong-channels", "wrong-length"):
        real = items[key][0]["input"]
        items[key] = ({"input": type(promised)(real.path, promised.rate, promised.channels,
                                               promised.frames, real.sha256)}, ref)
    for key in ("not-audio", "truncated"):
        real = items[key][0]["input"]
        items[key] = ({"input": type(real)(real.path, real.rate, real.channels, real.frames, "")}, ref)
    suite = Suite("bad", "1", "speech-enhancement", root, tuple(
        Item(k, "speech-enhancement", root, i, r) for k, (i, r) in items.items()))
    write_manifest(suite)
    return suite


EXPECTED_REASONS = {
    "nan": "nan.wav: 1 NaN and 0 Inf samples",
    "silent-ref": "reference is silent",
    "wrong-rate": "rate.wav: sample rate 22050 Hz, expected 16000 Hz",
    "wrong-channels": "stereo.wav: 2 channel(s), expected 1",
    "wrong-length": "short.wav:",
    "not-audio": "fake.wav: not a readable audio file",
    "truncated": "trunc.wav: truncated file",
    "missing-ref": "gone.wav: file not found",
}


def test_each_bad_input_gets_a_status_and_a_reason_naming_the_file(tmp_path):
    suite = _bad_suite(tmp_path / "bad")
    res = run_cli("run", "--suite", str(suite.root), "--system", "unprocessed",
                  "--out", str(tmp_path / "out"), "--quiet")
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    df = stored_scores(tmp_path / "out")
    assert set(df.item_id) == {"good", *EXPECTED_REASONS}
    assert (df[df.item_id == "good"].status == "ok").all()
    for item_id, reason in EXPECTED_REASONS.items():
        rows = df[df.item_id == item_id]
        assert len(rows) == 5, item_id  # every expected score is stored, none dropped
        assert rows.value.isna().all(), item_id  # never a silent 0
        assert (rows.status == "invalid").all(), (item_id, rows.status.tolist())
        assert rows.reason.str.contains(reason, regex=False).all(), (item_id, rows.reason.iloc[0])
    assert "units not ok" in res.stdout


@pytest.mark.parametrize(
    "args,message",
    [
        (["--listener", "L0099"], "unknown listener id 'L0099'"),
        (["--panel", "BROKEN"], "not valid JSON"),
        (["--suite", "no-such-suite"], "unknown suite 'no-such-suite'"),
        (["--system", "no-such-system"], "unknown system 'no-such-system'"),
        (["--metric", "nonsense"], "unknown metric 'nonsense'"),
    ],
)
def test_user_mistakes_give_one_line_errors(tmp_path, args, message):
    broken = tmp_path / "listeners.json"
    broken.write_text("{ nope")
    args = [str(broken) if a == "BROKEN" else a for a in args]
    res = run_cli("run", "--out", str(tmp_path / "o"), "--quiet", *args)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], res.stderr
    if "JSON" in message:
        assert str(broken) in lines[0]


# ------------------------------------------------------------------ broken systems
class NaNSystem:
    name, task, version = "nan-system", "speech-enhancement", "1"

    def prepare(self, device):
        pass

    def process(self, items, listener):
        outs = []
        for it in items:
            x = it.input("input").samples.copy()
            if it.id == "se02":
                raise RuntimeError("model exploded")
            if it.id == "se03":
                x[0, 10] = np.nan
            if it.id == "se04":
                outs.append({"enhanced": Audio(x, 8000)})
                continue
            outs.append({"enhanced": Audio(x, 16000)})
        return outs


def test_broken_system_outputs_fail_their_items_not_the_run(tmp_path):
    registry.register("harness.systems", "nan-system", "test_runner:NaNSystem")
    df = run_inprocess(tmp_path, suites=[SPEECH], systems=["nan-system"])
    by_item = df.groupby("item_id")
    assert (by_item.get_group("se01").status == "ok").all()
    assert (by_item.get_group("se02").status == "failed").all()
    assert by_item.get_group("se02").reason.str.contains("model exploded").all()
    assert (by_item.get_group("se03").status == "invalid").all()
    assert by_item.get_group("se03").reason.str.contains("NaN").all()
    assert by_item.get_group("se04").reason.str.contains("8000 Hz, expected 16000 Hz").all()


# ------------------------------------------------------------------ kill and resume
KILL_ARGS = ["--suite", "music-remix-quick", "--suite", SPEECH, "--metric", "sdr",
             "--metric", "pesq", "--metric", "stoi", "--listener", "NH", "--listener", "N1",
             "--listener", "N2", "--jobs", "2", "--batch-size", "1", "--quiet"]


def _alive(pid: int) -> bool:
    from harness.workers import _alive as alive

    return alive(pid)


@pytest.mark.slow  # about 50 s: three runs of the CLI; CI runs it with the slow tests
def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(tmp_path):
    full = tmp_path / "full"
    res = run_cli("run", *KILL_ARGS, "--out", str(full))
    assert res.returncode == 0, res.stderr
    total = jobs_stored(full / "harness.sqlite")
    assert total == 24  # (2 songs x 3 listeners + 6 utterances) x 2 systems

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", *KILL_ARGS, "--out",
                             str(killed)], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while jobs_stored(killed / "harness.sqlite") < 8 and time.time() < deadline:
        time.sleep(0.05)
    workers = descendants(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)  # the run only, as `kill -9 PID` would
    proc.wait()
    stored = jobs_stored(killed / "harness.sqlite")
    assert 8 <= stored < total, "the kill must land part-way"
    assert workers, "the run had scoring workers"
    deadline = time.time() + 10
    while any(Path(f"/proc/{w}").exists() for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    alive = [w for w in workers if _alive(w)]
    for w in alive:
        os.kill(w, signal.SIGKILL)
    assert not alive, "scoring workers outlived the killed run"

    res = run_cli("run", *KILL_ARGS, "--out", str(killed))
    assert res.returncode == 0, res.stderr
    assert f"resumed: {stored} of {total}" in res.stderr
    a, b = stored_scores(full), stored_scores(killed)
    assert len(b) == len(a)
    assert not b.duplicated(["job_key", "metric", "ear", "stem"]).any()
    pd.testing.assert_frame_equal(a, b, check_exact=True)


# ------------------------------------------------------------------ export
def test_export_formats_round_trip(tmp_path):
    run_inprocess(tmp_path / "o", suites=[SPEECH], systems=["oracle"])
    n = None
    for fmt in ("csv", "parquet", "json"):
        dest = tmp_path / f"s.{fmt}"
        res = run_cli("export", "latest", "--format", fmt, "--out", str(dest),
                      "--store", str(tmp_path / "o"))
        assert res.returncode == 0, res.stderr
        df = {"csv": pd.read_csv, "parquet": pd.read_parquet}.get(fmt)
        if df:
            rows = len(df(dest))
        else:
            import json

            payload = json.loads(dest.read_text())
            rows = len(payload["scores"])
            assert payload["manifest"]["suites"][SPEECH]["protocol"] == "speech-enhancement/1"
            assert payload["manifest"]["git"]["commit"] is None or len(payload["manifest"]["git"]["commit"]) == 40
        n = n or rows
        assert rows == n == 30  # 6 items x 5 metrics


def test_manifest_records_versions_device_and_hashes(tmp_path):
    run_inprocess(tmp_path, suites=[SPEECH], systems=["oracle"])
    store = Store(tmp_path)
    m = store.manifest(store.resolve("latest"))
    store.close()
    assert m["device"] == "cpu"
    assert m["suites"][SPEECH]["hash"] == resolve_suite(SPEECH).hash
    assert m["packages"]["pyclarity"].startswith("0.")
    assert m["seeds"]["bootstrap"] == 0 and m["harness_version"]
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True)
    if head.returncode == 0:  # running from a git checkout: the manifest names its commit
        assert m["git"]["commit"] == head.stdout.strip()


def test_memoised_value_is_computed_once_across_processes(tmp_path):
    """Two scoring workers asking for the same listener-independent value: one computes, the
    other waits and reads it (the crowd protocol's input SDR over 1000 recordings relies on it)."""
    code = (
        "import sys, time, pathlib\n"
        "from harness.metrics.backends import ScoringContext\n"
        "ctx = ScoringContext(memo_dir=pathlib.Path(sys.argv[1]))\n"
        "def compute():\n"
        "    with open(pathlib.Path(sys.argv[1]) / 'calls', 'a') as fh: fh.write('x')\n"
        "    time.sleep(1.0)\n"
        "    return {'v': 42}\n"
        "print(ctx.memoised(['k'], compute)['v'])\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert outs == ["42", "42", "42"]
    assert (tmp_path / "calls").read_text() == "x"


def test_a_changed_default_parameter_is_another_job_never_a_stale_resume():
    """Job keys follow the parameters in effect: a system whose default changed (a tuned
    threshold) must not resume from scores of the old default; an explicit value equal to the
    default is the same job."""
    from harness.api import get_system
    from harness.planning import job_key
    from harness.suites import resolve_suite

    item = resolve_suite("speech-enhancement-quick").items[0]
    cls = type(get_system("spectral-gating"))
    old = type("OldGating", (cls,), {"defaults": {**cls.defaults, "prop_decrease": 1.0}})
    assert job_key(cls(), item, "") != job_key(old(), item, "")
    assert job_key(cls(), item, "") == job_key(cls(prop_decrease=cls.defaults["prop_decrease"]), item, "")
