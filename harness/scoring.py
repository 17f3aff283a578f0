"""Scoring a job's outputs, in the driver's process or on a pool of worker processes.

The scorers have one interface, the seam where another executor (a Ray cluster) plugs in:
`submit(job, outputs, paths, t0)` hands over a job whose system outputs passed validation (the
in-memory signals, and where they are cached), and `finished(limit)` yields `(job, paths, t0,
scores)` for scored jobs until at most `limit` are still in flight. The driver commits what
`finished` yields, so it remains the only writer of the store. A scorer never loses a job: a
crash in scoring or a dead worker becomes `failed` scores with the reason.

Three scorers: `InProcessScorer` (one job after the other, in the driver), `PoolScorer` (worker
processes, the CPU's way) and `BatchedScorer` (threads of the driver scoring many jobs at once,
their HAAQI calls gathered into batches on the scoring device: the GPU's way).
"""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from harness import audio as audio_mod
from harness import workers as workers_mod
from harness.audio import Audio
from harness.metrics import FAILED, Score
from harness.metrics.backends import DEFAULTS, ScoringContext
from harness.metrics.base import first_line
from harness.suites import Item
from harness.tasks import get_protocol

log = logging.getLogger("harness")


def score_outputs(task: str, item: Item, outputs: dict[str, Audio], listener: Any,
                  metrics: list[str], ctx: ScoringContext,
                  problems: dict[str, str] | None = None) -> list[Score]:
    """A job's scores under the task protocol (with the problems the driver found in its
    outputs, so their reasons are stored); a crash in scoring becomes `failed` rows."""
    from harness.metrics.backends import active

    protocol = get_protocol(task)
    try:
        with active(ctx):
            return protocol.score(item, outputs, listener, metrics, problems, ctx)
    except Exception as exc:  # never lose a job to a crash in scoring: record why
        log.debug(traceback.format_exc())
        return failed_rows(protocol, item, metrics, f"scoring crashed: {first_line(exc)}")


def failed_rows(protocol, item: Item, metrics: list[str], reason: str) -> list[Score]:
    return [Score(m, None, FAILED, reason, ear, stem)
            for m, ear, stem in protocol.expected(item, metrics)]


def score_job(
    task: str, item: Item, output_paths: dict[str, str], listener, metrics, memo_dir: str | None = None,
    metric_backends: dict[str, str] | None = None, problems: dict[str, str] | None = None,
) -> list[Score]:
    """Worker entry point: read a job's cached outputs and score them (every score carries the
    backend that computed it)."""
    ctx = ScoringContext({**DEFAULTS, **(metric_backends or {})},
                         Path(memo_dir) if memo_dir else None)
    try:
        outputs = {k: audio_mod.read(p) for k, p in output_paths.items()}
    except Exception as exc:
        log.debug(traceback.format_exc())
        return failed_rows(get_protocol(task), item, metrics, f"scoring crashed: {first_line(exc)}")
    return score_outputs(task, item, outputs, listener, metrics, ctx, problems)


def drain(in_flight: dict[Future, tuple[Any, dict[str, str], float]], limit: int, why: str
          ) -> Iterator[tuple[Any, dict[str, str], float, list[Score]]]:
    """`finished` of the scorers that hold futures: (job, paths, t0, scores) as they complete until
    at most `limit` are in flight; a future that raised gives the job `failed` rows ("why: ...")."""
    while len(in_flight) > limit:
        done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
        for fut in done:
            job, paths, t0 = in_flight.pop(fut)
            try:
                scores = fut.result()
            except Exception as exc:
                scores = failed_rows(job.protocol, job.item, job.metrics, f"{why}: {first_line(exc)}")
            yield job, paths, t0, scores


class InProcessScorer:
    """Scores each job as it is submitted, from the signals in memory (the cache is exact
    float32, so these are the numbers a worker would read back)."""

    def __init__(self, ctx: ScoringContext) -> None:
        self.ctx = ctx
        self.done: list[tuple[Any, dict[str, str], float, list[Score]]] = []

    def submit(self, job, outputs: dict[str, Audio], paths: dict[str, str], t0: float,
               problems: dict[str, str]) -> None:
        scores = score_outputs(job.suite.task, job.item, outputs, job.listener, job.metrics,
                               self.ctx, problems)
        self.done.append((job, paths, t0, scores))

    def finished(self, limit: int = 0) -> Iterator[tuple[Any, dict[str, str], float, list[Score]]]:
        while self.done:
            yield self.done.pop(0)

    def kill(self) -> None:
        self.done.clear()

    def close(self) -> None:
        self.done.clear()


class PoolScorer:
    """Scores jobs on worker processes (forkserver children that die with the driver), each
    reading the job's outputs from the cache.

    A worker that dies (the kernel's out-of-memory killer, a segfault in a metric's C code) breaks
    the whole pool: every job in flight then fails, the culprit's and its neighbours'. So the pool
    is replaced, and those jobs are scored again one at a time on it: a job that kills its worker
    alone is the culprit and is stored `failed` with the reason, the others are scored."""

    work = staticmethod(score_job)  # what a worker runs for a job (tests put a dying one here)

    def __init__(self, workers: int, ctx: ScoringContext) -> None:
        self.ctx = ctx
        self.workers = workers
        self.pool = self._new_pool()
        self.in_flight: dict[Future, tuple[Any, dict[str, str], float, dict[str, str]]] = {}

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=workers_mod.context(),
                                   initializer=workers_mod.scoring_worker_init, initargs=(os.getpid(),))

    def _restart(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = self._new_pool()

    def _submit(self, job, paths: dict[str, str], problems: dict[str, str]) -> Future:
        memo = str(self.ctx.memo_dir) if self.ctx.memo_dir else None
        args = (self.work, job.suite.task, job.item, paths, job.listener, job.metrics, memo,
                self.ctx.backends, problems)
        try:
            return self.pool.submit(*args)
        except BrokenProcessPool:  # a worker died since the last submit: what was in flight is
            self._restart()        # collected by finished(); new work goes to a fresh pool
            return self.pool.submit(*args)

    def submit(self, job, outputs: dict[str, Audio], paths: dict[str, str], t0: float,
               problems: dict[str, str]) -> None:
        self.in_flight[self._submit(job, paths, problems)] = (job, paths, t0, problems)

    @staticmethod
    def _scores(fut: Future, job) -> list[Score] | None:
        """A finished future's scores; None when its pool broke under it (a worker died)."""
        try:
            return fut.result()
        except BrokenProcessPool:
            return None
        except Exception as exc:  # e.g. a MemoryError raised in the worker
            return failed_rows(job.protocol, job.item, job.metrics,
                               f"scoring worker failed: {first_line(exc)}")

    def finished(self, limit: int = 0) -> Iterator[tuple[Any, dict[str, str], float, list[Score]]]:
        while len(self.in_flight) > limit:
            done, _ = wait(list(self.in_flight), return_when=FIRST_COMPLETED)
            suspects = []
            for fut in done:
                job, paths, t0, _ = entry = self.in_flight.pop(fut)
                scores = self._scores(fut, job)
                if scores is None:
                    suspects.append(entry)
                else:
                    yield job, paths, t0, scores
            if not suspects:
                continue
            rest, self.in_flight = self.in_flight, {}  # a broken pool fails them all at once
            for fut, entry in rest.items():
                scores = self._scores(fut, entry[0])
                if scores is None:
                    suspects.append(entry)
                else:
                    yield entry[0], entry[1], entry[2], scores
            self._restart()
            for job, paths, t0, problems in suspects:  # alone, so that only a culprit fails
                scores = self._scores(self._submit(job, paths, problems), job)
                if scores is None:
                    self._restart()
                    scores = failed_rows(job.protocol, job.item, job.metrics,
                                         "scoring worker died while scoring this job alone (killed by the "
                                         "system: out of memory? or a crash in a metric's native code)")
                yield job, paths, t0, scores

    def kill(self) -> None:
        """Stop at once (after Ctrl-C): kill the workers, drop what is in flight."""
        for proc in list(getattr(self.pool, "_processes", {}).values()):
            try:
                proc.kill()
            except Exception:
                pass
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.in_flight.clear()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class BatchedScorer:
    """Scores up to `threads` jobs at once on threads of the driver, with the fast kernels on
    `ctx.device` and every HAAQI call handed to one `HaaqiBatcher`, which computes the calls of
    all the jobs in flight together (harness.metrics.fast.haaqi.batcher). Chosen for a run whose
    device is a GPU (`scoring = "auto"`), or asked for with `scoring = "device"`."""

    def __init__(self, ctx: ScoringContext, threads: int, memory_bytes: int | None = None) -> None:
        import dataclasses
        from concurrent.futures import ThreadPoolExecutor

        from harness.metrics.fast.haaqi.batcher import HaaqiBatcher

        self.batcher = HaaqiBatcher(ctx.device, memory_bytes=memory_bytes)
        self.ctx = dataclasses.replace(ctx, haaqi_batcher=self.batcher)
        self.threads = threads
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="harness-score")
        self.in_flight: dict[Future, tuple[Any, dict[str, str], float]] = {}

    def _score(self, job, outputs: dict[str, Audio], problems: dict[str, str]) -> list[Score]:
        with self.batcher.job():
            return score_outputs(job.suite.task, job.item, outputs, job.listener, job.metrics,
                                 self.ctx, problems)

    def submit(self, job, outputs: dict[str, Audio], paths: dict[str, str], t0: float,
               problems: dict[str, str]) -> None:
        fut = self.pool.submit(self._score, job, outputs, problems)
        self.in_flight[fut] = (job, paths, t0)

    def finished(self, limit: int = 0) -> Iterator[tuple[Any, dict[str, str], float, list[Score]]]:
        return drain(self.in_flight, limit, "scoring crashed")  # a last guard: see score_outputs

    def kill(self) -> None:
        """Stop at once (after Ctrl-C): the jobs not started are dropped, the calls waiting for a
        batch fail, the batch being computed ends by itself."""
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.in_flight.clear()
        self.batcher.close(abort=True)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.batcher.close()
