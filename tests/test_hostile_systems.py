"""Hostile-input corpus, systems: systems that raise, hang, exit, crash, cannot be pickled or
leave processes behind; and kills of the driver itself (subprocess cases, marked slow). Each
case checks the stored statuses and reasons and that the other items were scored."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, descendants, jobs_stored
from helpers.hostile import SPEECH, cli, one_line_error, speech_run

from harness import registry
from harness import workers as workers_mod
from harness.tasks import get_protocol

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


registry.register("harness.systems", "fault", "test_hostile_systems:FaultSystem")
registry.register("harness.systems", "unpicklable", "test_hostile_systems:Unpicklable")

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


def test_a_scoring_worker_killed_fails_only_its_job_and_the_run_goes_on(tmp_path, monkeypatch):
    """A scoring worker killed (SIGKILL, the out-of-memory killer's signal) while scoring se03
    breaks the whole process pool. Before, the run stopped there with a BrokenProcessPool
    traceback; now the pool is replaced, the jobs that were in flight are scored again one at a
    time, and only se03's are `failed`."""
    from helpers import dying
    from helpers.hostile import stored

    from harness.config import RunConfig
    from harness.planning import plan
    from harness.runner import execute
    from harness.scoring import PoolScorer

    monkeypatch.setattr(PoolScorer, "work", staticmethod(dying.score_or_die))
    cfg = RunConfig(out=str(tmp_path / "out"), jobs=2, quiet=True, suites=[SPEECH],
                    systems=["unprocessed", "oracle"], metrics=["snr", "stoi"])
    execute(plan(cfg), progress=False)
    scores, _ = stored(tmp_path / "out")
    culprit = scores.item_id == dying.CULPRIT
    assert len(scores) == 24 and culprit.sum() == 4
    assert (scores[culprit].status == "failed").all()
    assert scores[culprit].reason.str.startswith("scoring worker died while scoring this job alone").all()
    assert (scores[~culprit].status == "ok").all() and scores[~culprit].value.notna().all()


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
        # SIGINT restored to its default in the child: a test runner started in the background
        # of a non-interactive shell inherits it ignored, and a run that ignores Ctrl-C (as Unix
        # has background jobs do) is what the harness should be, but not what this test tests
        proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *KILL_ARGS, "--out", str(out)],
                                cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=fh,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
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
    # On a loaded machine scores can reach the store in one burst at the end, so the signal may
    # land on a run that has already finished ("done in"): that attempt interrupted nothing and
    # is tried again in a fresh folder (at most three times); one attempt must be interrupted.
    for attempt in range(3):
        out = tmp_path / f"o{attempt}"
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
        if not (proc.returncode == 0 and "done in" in err and jobs_stored(out / "harness.sqlite") == 24):
            break
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

