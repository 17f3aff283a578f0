"""The Ray executor against the local one: the same stored scores, the same statuses for
misbehaving systems, and every score present exactly once after a Ray worker or the driver is
killed mid-run. Ray runs locally (a private instance the run starts with `jobs` CPUs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, jobs_stored, run_cli
from helpers import stored_scores
from test_hostile_systems import FaultSystem  # noqa: F401  (registers the 'fault' system)

from harness import registry
from harness.config import RunConfig
from harness.planning import plan
from harness.runner import execute
from harness.store import Store

ray = pytest.importorskip("ray")

SPEECH = "speech-enhancement-quick"
MUSIC = "music-remix-quick"


class SlowOracle(FaultSystem):
    """The oracle, `delay` seconds per item: a run long enough to kill something in."""

    name = "slow-oracle"

    def __init__(self, delay: float = 0.5) -> None:
        super().__init__()
        self.params = {"delay": delay}
        self.delay = delay

    def process(self, items, listener):
        time.sleep(self.delay * len(items))
        return super().process(items, listener)


registry.register("harness.systems", "slow-oracle", "test_ray_executor:SlowOracle")




@pytest.fixture(scope="module")
def ray_instance():
    """One private Ray instance for this module's in-process runs (a run that finds Ray started
    uses it and leaves it running), so each case does not pay for starting one."""
    from harness import ray_executor

    ray_executor.init(RunConfig(jobs=2), actors=2)
    yield
    ray.shutdown()


def run(folder: Path, executor: str, **kw) -> pd.DataFrame:
    cfg = RunConfig(out=str(folder), quiet=True, executor=executor, **kw)
    execute(plan(cfg), progress=False)
    return stored_scores(folder)


def test_a_small_ray_run_stores_exactly_the_local_scores(tmp_path, ray_instance):
    kw = dict(suites=[SPEECH], systems=["unprocessed", "oracle"], metrics=["snr", "sdr"], jobs=2, batch_size=4)
    local = run(tmp_path / "local", "local", **kw)
    on_ray = run(tmp_path / "ray", "ray", **kw)
    assert len(local) == 6 * 2 * 2 and (local.status == "ok").all()
    pd.testing.assert_frame_equal(local, on_ray, check_exact=True)


@pytest.mark.slow  # about 1.5 min: HAAQI-free, but two executors over both quick suites
def test_ray_stores_exactly_the_scores_of_the_local_executor(tmp_path, ray_instance):
    kw = dict(suites=[MUSIC, SPEECH], systems=["unprocessed", "oracle", "wpe"], metrics=["sdr", "pesq", "snr"],
              listeners=["NH", "N1"], jobs=2, batch_size=2)
    local = run(tmp_path / "local", "local", **kw)
    on_ray = run(tmp_path / "ray", "ray", **kw)
    # songs x listeners x stems x systems that remix (wpe does not) + utterances x systems x metrics
    assert len(local) == 2 * 2 * 4 * 2 + 6 * 3 * 3
    assert (local.status == "ok").all()
    pd.testing.assert_frame_equal(local, on_ray, check_exact=True)


# the same statuses as the local executor (tests/test_hostile_systems.py), the reasons in Ray's words
RAY_FAULTS = [
    ("hang", "failed", "timed out after 3 s"),
    ("exit3", "failed", "worker died 3 times"),
    ("segv", "failed", "worker died 3 times"),
    ("kill", "failed", "worker died 3 times"),
    ("keyboard", "failed", "system fault raised KeyboardInterrupt"),
    ("bare", "invalid", "system returned ndarray, expected a dict of Audio"),
    ("unpicklable", "failed", "its outputs cannot be sent back"),
    ("count", "failed", "returned 0 outputs for 1 items"),
    ("prepare-raise", "failed", "prepare failed: RuntimeError: weights are corrupt"),
]


@pytest.mark.slow  # about 10 s a case
@pytest.mark.parametrize("mode,status,reason", RAY_FAULTS, ids=[f[0] for f in RAY_FAULTS])
def test_a_misbehaving_system_on_ray_fails_its_item_and_the_run_goes_on(tmp_path, ray_instance, mode, status,
                                                                       reason):
    scores = run(tmp_path / "o", "ray", suites=[SPEECH], systems=["fault"], metrics=["snr"], jobs=1,
                 batch_size=2, system_timeout=3, system_params={"fault": {"mode": mode}})
    assert len(scores) == 6 and not scores.duplicated(["job_key"]).any()
    bad = scores[scores.item_id == "se02"].iloc[0]
    assert bad.status == status and reason in bad.reason, (bad.status, bad.reason)
    good = scores[scores.item_id != "se02"]
    if mode == "prepare-raise":  # nothing can run: every item fails with the one reason
        assert (scores.status == "failed").all() and scores.reason.str.contains(reason).all()
        return
    assert (good.status == "ok").all(), good[["item_id", "status", "reason"]]
    assert (good.value == 100.0).all()


@pytest.mark.slow
def test_a_preparation_that_hangs_on_ray_times_out_once(tmp_path, ray_instance, monkeypatch):
    from harness import workers as workers_mod

    monkeypatch.setattr(workers_mod, "PREPARE_TIMEOUT_S", 2.0)
    t0 = time.time()
    scores = run(tmp_path / "o", "ray", suites=[SPEECH], systems=["fault"], metrics=["snr"], jobs=1,
                 batch_size=2, system_timeout=1, system_params={"fault": {"mode": "prepare-hang"}})
    assert time.time() - t0 < 60
    assert (scores.status == "failed").all() and len(scores) == 6
    assert scores.reason.str.contains("prepare failed: prepare timed out after 2 s").all()


def _ray_processes(title: str) -> list[int]:
    """Pids of this machine's Ray processes whose title starts with `title` ('ray::' for Ray's
    workers and agents; '' for those and Ray's own daemons, raylet and gcs_server)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if cmd.startswith("ray::" + title.removeprefix("ray::")) or (
                    not title and "/ray/core/src/ray/" in cmd.split("\0")[0]):
                pids.append(int(d.name))
    return pids


@pytest.mark.slow  # about 1 min
def test_a_ray_worker_killed_mid_run_loses_and_duplicates_nothing(tmp_path, ray_instance):
    kw = dict(suites=[MUSIC, SPEECH], systems=["slow-oracle", "unprocessed"], metrics=["sdr", "snr"],
              listeners=["NH", "N1"], jobs=2, batch_size=1, system_params={"slow-oracle": {"delay": 0.4}})
    reference = run(tmp_path / "local", "local", **kw)
    out = tmp_path / "ray"
    errors: list[BaseException] = []

    def target():
        try:
            run(out, "ray", **kw)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    killed = []
    deadline = time.time() + 240
    while thread.is_alive() and time.time() < deadline and not killed:
        if jobs_stored(out / "harness.sqlite") >= 3:
            for pid in _ray_processes("ray::SystemActor"):  # the actors of both systems
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        time.sleep(0.05)
    thread.join(300)
    assert not errors, errors
    assert killed, "no Ray actor was found to kill"
    got = stored_scores(out)
    assert not got.duplicated(["job_key", "metric", "ear", "stem"]).any()
    pd.testing.assert_frame_equal(reference, got, check_exact=True)  # retried on a fresh actor


KILL_ARGS = ["run", "--suite", MUSIC, "--suite", SPEECH, "--metric", "sdr", "--metric", "pesq",
             "--listener", "NH", "--listener", "N1", "--jobs", "2", "--batch-size", "1", "--quiet"]


@pytest.mark.slow  # about 1.5 min: three CLI runs
def test_a_killed_ray_driver_resumes_to_the_scores_of_an_uninterrupted_run(tmp_path):
    full = tmp_path / "full"
    res = run_cli(*KILL_ARGS, "--out", str(full))  # the local executor: the reference
    assert res.returncode == 0, res.stderr
    total = jobs_stored(full / "harness.sqlite")
    killed = tmp_path / "killed"
    before = set(_ray_processes(""))
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *KILL_ARGS, "--executor", "ray",
                             "--out", str(killed)], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while jobs_stored(killed / "harness.sqlite") < 6 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stored = jobs_stored(killed / "harness.sqlite")
    assert 6 <= stored < total, "the kill must land part-way"
    time.sleep(5)  # the private Ray instance notices that its driver is gone
    res = run_cli(*KILL_ARGS, "--executor", "ray", "--out", str(killed))
    assert res.returncode == 0, res.stderr
    assert f"resumed: {stored} of {total}" in res.stderr
    a, b = stored_scores(full), stored_scores(killed)
    assert not b.duplicated(["job_key", "metric", "ear", "stem"]).any()
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    with Store(killed, create=False) as store:
        assert store.manifest(store.resolve("latest"))["config"]["executor"] == "ray"
    deadline = time.time() + 180  # Ray's agents leave a minute or so after their raylet
    while [p for p in _ray_processes("") if p not in before] and time.time() < deadline:
        time.sleep(1)
    left = [p for p in _ray_processes("") if p not in before]
    assert not left, f"{len(left)} Ray processes outlived the runs"


def test_executor_flags_and_keys_are_checked(tmp_path):
    res = run_cli("run", "--suite", SPEECH, "--executor", "spark", "--out", str(tmp_path / "o"), "--quiet")
    assert res.returncode == 2 and "executor must be 'local' or 'ray'" in res.stderr
    assert "Traceback" not in res.stderr
    res = run_cli("run", "--suite", SPEECH, "--executor", "ray", "--address", "127.0.0.1:1",
                  "--metric", "snr", "--out", str(tmp_path / "o"), "--quiet")
    assert res.returncode == 2 and "cannot connect to the Ray cluster at '127.0.0.1:1'" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
