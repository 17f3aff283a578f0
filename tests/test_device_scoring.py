"""Scoring on the run's device (the GPU's way, run here on the CPU): the torch HAAQI engine
computing a batch of items together, the batcher that gathers HAAQI calls across jobs, and the
device scorer storing the scores the worker processes store."""

from __future__ import annotations

import contextlib
import io
import threading
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import stored_scores
from test_fast_haaqi import corpus, level1, reference_haaqi

from harness.config import RunConfig
from harness.metrics.fast.haaqi import haaqi_v1_batch, torch_chunks
from harness.metrics.fast.haaqi.batcher import HaaqiBatcher
from harness.metrics.fast.haaqi.torch_engine import batch_bytes
from harness.planning import plan
from harness.runner import execute, scoring_mode


def short_items(count: int, seconds: list[float]):
    """Corpus items cut to the given lengths (so that a batch pads its shorter items)."""
    out = []
    for (name, ref, proc, loss, eq), s in zip(list(corpus())[:count], seconds, strict=True):
        n = int(s * 24000)
        out.append((name, ref[:n], proc[:n], loss, eq))
    return out


def test_the_torch_engine_scores_a_padded_batch_as_each_item_alone_and_as_pyclarity():
    items = [it for it in short_items(4, [0.7, 0.4, 0.9, 0.5]) if it[4] == 1]
    args = ([it[1] for it in items], [it[2] for it in items], [it[3] for it in items],
            [level1(it[1]) for it in items])
    seeds = [200 + i for i in range(len(items))]
    together = haaqi_v1_batch(*args, seeds=seeds, engine="torch", memory_bytes=1 << 40)
    alone = haaqi_v1_batch(*args, seeds=seeds, engine="torch", memory_bytes=0)
    assert len(items) >= 3
    for t, a in zip(together, alone, strict=True):
        assert abs(t.score - a.score) < 1e-9
    for it, t, seed in zip(items, together, seeds, strict=True):
        assert abs(t.score - reference_haaqi(it[1], it[2], it[3], 1, seed)) < 0.001, it[0]


def test_torch_chunks_keep_each_batch_within_the_budget():
    f64 = torch.float64
    assert batch_bytes(1000, 3, f64) == 3 * 1000 * 8 * 1024
    budget = batch_bytes(200, 2, f64)
    # [100, 200] padded to 200 x 2 fits; adding 50 makes 200 x 3; 300 alone exceeds it
    assert list(torch_chunks([100, 200, 50, 300, 10], f64, "cpu", budget)) == [(0, 2), (2, 3), (3, 4), (4, 5)]
    assert list(torch_chunks([5] * 4, f64, "cpu", 0)) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert list(torch_chunks([], f64, "cpu", budget)) == []


def test_the_batcher_gathers_calls_across_threads_and_scores_as_consecutive_calls():
    """Three 'jobs' on threads, each scoring two signals from one generator in order (as the CAD1
    protocol does): the values are pyclarity's for each job's calls made in a row, calls of several jobs
    were computed together, and a call that cannot be scored fails alone."""
    items = [it for it in short_items(8, [0.5] * 8) if it[4] == 1][:6]
    jobs = [items[0:2], items[2:4], items[4:6]]
    expected = []  # pyclarity's haaqi_v1, each job's two calls in a row after one seeding
    from clarity.evaluator.haaqi import haaqi_v1
    from clarity.utils.audiogram import Audiogram

    from harness.metrics.fast.haaqi import AUDIOGRAM_FREQUENCIES

    for j, job in enumerate(jobs):
        np.random.seed(300 + j)
        with contextlib.redirect_stdout(io.StringIO()):
            expected.append([haaqi_v1(it[1], 24000, it[2], 24000,
                                      Audiogram(levels=it[3], frequencies=AUDIOGRAM_FREQUENCIES),
                                      1, level1(it[1]))[0] for it in job])
    bad = np.zeros(12000)  # a silent reference: HAAQI has no span to score
    batcher = HaaqiBatcher("cpu", wait_s=5.0)  # gathered by the all-waiting rule, not the clock
    got: dict[int, list] = {}
    start = threading.Barrier(len(jobs) + 1)

    def job(j):
        with batcher.job():
            start.wait()
            rs = np.random.RandomState(300 + j)
            got[j] = [batcher.score(it[1], it[2], it[3], level1(it[1]), seed=rs) for it in jobs[j]]

    def failing():
        with batcher.job():
            start.wait()
            try:
                batcher.score(bad, bad, items[0][3], 65.0, seed=1)
            except Exception as exc:  # noqa: BLE001
                got[-1] = exc

    threads = [threading.Thread(target=job, args=(j,)) for j in range(len(jobs))]
    threads.append(threading.Thread(target=failing))
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    batcher.close()
    for j in range(len(jobs)):
        np.testing.assert_allclose(got[j], expected[j], atol=1e-9)
    assert isinstance(got[-1], Exception)
    assert batcher.sizes[0] == len(jobs) + 1  # every job's first call, and the bad one, together
    assert sum(batcher.sizes) == 2 * len(jobs) + 1


def test_auto_scores_on_the_device_only_on_a_gpu_and_only_with_the_fast_haaqi():
    def fake(device, scoring="auto", haaqi="fast"):
        return SimpleNamespace(device=device, config=SimpleNamespace(scoring=scoring),
                               backends={"haaqi": haaqi})

    assert scoring_mode(fake("cuda")) == "device"
    assert scoring_mode(fake("cuda:1")) == "device"
    assert scoring_mode(fake("cpu")) == "processes"
    assert scoring_mode(fake("cpu", "device")) == "device"
    assert scoring_mode(fake("cuda", "processes")) == "processes"
    assert scoring_mode(fake("cuda", "device", "reference")) == "processes"




@pytest.mark.slow
def test_the_device_scorer_stores_the_scores_of_the_worker_processes(tmp_path):
    kw = dict(suites=["music-remix-quick"], systems=["unprocessed"], listeners=["N1"],
              metrics=["haaqi", "sdr"], quiet=True, device="cpu")
    execute(plan(RunConfig(out=str(tmp_path / "p"), jobs=2, scoring="processes", **kw)), progress=False)
    p = plan(RunConfig(out=str(tmp_path / "d"), scoring="device", scoring_threads=8, **kw))
    execute(p, progress=False)
    processes, device = stored_scores(tmp_path / "p"), stored_scores(tmp_path / "d")
    assert (processes.status == "ok").all() and len(processes) == (8 + 4) * processes.job_key.nunique()
    pd.testing.assert_frame_equal(processes, device, check_exact=False, rtol=0, atol=1e-12)
    manifest = (tmp_path / "d" / "runs" / p.run_id / "manifest.json").read_text()
    assert '"scoring": "device"' in manifest


@pytest.mark.gpu
def test_the_device_scorer_on_cuda_stores_the_cpu_scores(tmp_path):
    """On a GPU, `auto` scores on the device with the torch kernels: HAAQI within 0.001 of the
    CPU's compiled engine, SDR within 0.01 dB."""
    kw = dict(suites=["music-remix-quick"], systems=["unprocessed"], listeners=["N1"],
              metrics=["haaqi", "sdr"], quiet=True)
    execute(plan(RunConfig(out=str(tmp_path / "cpu"), device="cpu", **kw)), progress=False)
    p = plan(RunConfig(out=str(tmp_path / "gpu"), device="cuda", **kw))
    assert scoring_mode(p) == "device"
    execute(p, progress=False)
    cpu, gpu = stored_scores(tmp_path / "cpu"), stored_scores(tmp_path / "gpu")
    assert (gpu.status == "ok").all()
    for metric, tol in (("haaqi", 0.001), ("sdr", 0.01)):
        a, b = cpu[cpu.metric == metric].value.to_numpy(), gpu[gpu.metric == metric].value.to_numpy()
        assert np.max(np.abs(a - b)) <= tol, metric


def test_process_state_keeps_each_threads_seeded_draws_and_stdout_its_own():
    """Sixteen threads, each seeding numpy's global generator through process_state, printing and
    drawing in two halves with a pause between: every thread's draws are its seed's, numpy's
    global state and sys.stdout are as before (without the lock the threads' seeds and stdout
    swaps interleave)."""
    import sys
    import time

    from harness.metrics.base import process_state

    before_state, before_out = np.random.get_state(), sys.stdout
    got: dict[int, np.ndarray] = {}

    def worker(seed):
        with process_state(seed):
            first = np.random.standard_normal(500)
            print("pyclarity-style chatter")
            time.sleep(0.002)
            got[seed] = np.concatenate([first, np.random.standard_normal(500)])

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(100, 116)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for seed, draws in got.items():
        np.testing.assert_array_equal(draws, np.random.RandomState(seed).standard_normal(1000))
    after = np.random.get_state()
    assert np.array_equal(after[1], before_state[1]) and after[2:] == before_state[2:]
    assert sys.stdout is before_out and len(got) == 16


def test_a_scoring_future_that_raised_gives_its_job_failed_rows_with_the_reason():
    """Both future-holding scorers drain through one function: a job whose future raised (a dead
    worker process, a crashed thread) is yielded with every expected row `failed`, the reason
    naming what happened; a finished one with its scores; nothing stays in flight."""
    from concurrent.futures import Future

    from harness.metrics import Score
    from harness.scoring import drain
    from harness.suites import resolve_suite
    from harness.tasks import get_protocol

    suite = resolve_suite("speech-enhancement-quick")
    protocol = get_protocol(suite.task)
    job = SimpleNamespace(protocol=protocol, item=suite.items[0], metrics=["pesq", "estoi"])
    bad, good = Future(), Future()
    bad.set_exception(MemoryError("killed"))
    good.set_result([Score("pesq", 2.5, "ok")])
    in_flight = {bad: (job, {}, 0.0), good: (job, {}, 1.0)}
    out = {t0: scores for _, _, t0, scores in drain(in_flight, 0, "scoring worker failed")}
    assert not in_flight and out[1.0][0].value == 2.5
    assert [(s.metric, s.status) for s in out[0.0]] == [(m, "failed") for m, _, _ in
                                                       protocol.expected(job.item, job.metrics)]
    assert all(s.reason == "scoring worker failed: MemoryError: killed" for s in out[0.0])
