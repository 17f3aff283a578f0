"""Execute a plan (harness.planning): run systems on the device, score, store.

A job's key hashes the system (name, version, parameters), the item (content hash) and the
listener id; jobs already stored for the run are skipped, so rerunning a run resumes it. Each
job's scores are committed in one transaction as soon as they are ready.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.audio import Audio
from harness.errors import HarnessError, StoreError
from harness.metrics import FAILED, INVALID
from harness.metrics.backends import DEFAULTS, ScoringContext
from harness.outputs import cache_outputs as _cache_outputs
from harness.outputs import check_outputs as _check_outputs
from harness.outputs import io_reason as _io_reason
from harness.outputs import rows as _rows
from harness.planning import Job, Plan
from harness.progress import RunProgress
from harness.scoring import BatchedScorer, InProcessScorer, PoolScorer
from harness.store import Store
from harness.workers import SystemFault, SystemProcess, SystemRaised

log = logging.getLogger("harness")


@dataclass
class RunResult:
    run_id: str
    name: str
    store_path: Path
    total_jobs: int
    resumed_jobs: int
    seconds: float




class Interrupted(HarnessError):
    """Ctrl-C or SIGTERM during a run: what is stored is kept, the same command resumes."""

    exit_code = 130


def _process(worker: SystemProcess, jobs: list[Job]) -> list[tuple[Any, str, str]]:
    """Run a system on a batch in its process; when the batch fails, retry item by item so that
    only the culprit fails. Returns (outputs or None, status, reason) per job."""
    items = [j.item for j in jobs]
    name = jobs[0].system
    try:
        outs = worker.process(items, jobs[0].listener)
        if not isinstance(outs, list) or len(outs) != len(items):
            got = len(outs) if isinstance(outs, list) else type(outs).__name__
            raise SystemRaised("error", f"returned {got} outputs for {len(items)} items "
                                        "(process must return a list, one dict per item)")
        return [(o, "ok", "") for o in outs]
    except (SystemFault, SystemRaised) as exc:
        if len(jobs) > 1 and worker.broken is None:
            return [r for j in jobs for r in _process(worker, [j])]
        if isinstance(exc, SystemFault):
            return [(None, FAILED, f"system {name}: {exc}")] * len(jobs)
        if exc.details:
            log.debug("system %s:\n%s", name, exc.details)
        if exc.kind == "audio":  # the item's own files are bad
            return [(None, INVALID, exc.message)] * len(jobs)
        if exc.kind == "harness":
            return [(None, FAILED, f"system {name}: {exc.message}")] * len(jobs)
        return [(None, FAILED, f"system {name} raised {exc.message}")] * len(jobs)


def _batches(jobs: list[Job], size: int) -> Iterator[list[Job]]:
    groups: dict[tuple, list[Job]] = {}
    for j in jobs:
        groups.setdefault((j.system, j.suite.name, j.listener_id), []).append(j)
    for group in groups.values():
        for i in range(0, len(group), size):
            yield group[i : i + size]


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def execute(p: Plan, *, progress: bool = True) -> RunResult:
    """Run the plan's pending jobs; every finished job is committed before the next is awaited.

    Systems run in child processes with a deadline per call (`SystemProcess`); scoring runs
    in-process (jobs = 1) or on a pool of worker processes. Ctrl-C or SIGTERM stop the run with
    `Interrupted` (exit 130): every job already stored is kept and the same command resumes."""
    cfg = p.config
    out = Path(cfg.out)
    store = Store(out)
    cache = out / "cache"
    t_start = time.time()
    scorer = None
    workers: dict[str, SystemProcess] = {}
    main_thread = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _raise_interrupt) if main_thread else None
    try:
        run_dir = out / "runs" / p.run_id
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            p.manifest["scoring"] = "ray" if cfg.executor == "ray" else scoring_mode(p)
            (run_dir / "manifest.json").write_text(json.dumps(p.manifest, indent=1, default=str) + "\n")
        except OSError as exc:
            raise StoreError(f"{run_dir}: cannot write the run manifest ({_io_reason(exc, out)})") from None
        store.start_run(p.run_id, p.name, p.manifest)
        done = store.done_jobs(p.run_id)
        pending = [j for j in p.jobs if j.key not in done]
        bar = RunProgress(p.run_id, len(p.jobs), len(done), progress)
        ctx = ScoringContext({**DEFAULTS, **(p.backends or {})}, cache / "memo")

        def commit(job: Job, status: str, reason: str, outputs: dict[str, str], t0: float, scores):
            store.commit_job(p.run_id, job.row(), status, reason, outputs, time.time() - t0, scores)
            bar.advance()

        def ready_jobs(batch: list[Job]) -> list[Job]:
            """The batch's jobs whose item can be processed; the others are stored invalid."""
            ready = []
            for j in batch:
                problems = j.problems + j.item.problems()
                if problems:
                    reason = "; ".join(problems)
                    commit(j, INVALID, reason, {}, time.time(), _rows(j, INVALID, reason))
                else:
                    ready.append(j)
            return ready

        if cfg.executor == "ray":
            _execute_ray(p, pending, commit, ready_jobs, cache, ctx, bar)
            store.finish_run(p.run_id, "complete")
            return RunResult(p.run_id, p.name, store.path, len(p.jobs), len(done), time.time() - t_start)
        workers = {n: SystemProcess(n, s, p.device, cfg.system_timeout) for n, s in p.systems.items()
                   if any(j.system == n for j in pending)}
        scorer = make_scorer(p, ctx, bool(pending))
        in_flight = scorer.threads if isinstance(scorer, BatchedScorer) else 2 * cfg.jobs

        def commit_scored(limit: int) -> None:
            for job, paths, t0, scores in scorer.finished(limit):
                commit(job, "ok", "", paths, t0, scores)

        with bar.bar:
            for batch in _batches(pending, cfg.batch_size):
                t0 = time.time()
                ready = ready_jobs(batch)
                if not ready:
                    continue
                results = _process(workers[batch[0].system], ready)
                for job, (outputs, status, reason) in zip(ready, results, strict=True):
                    if outputs is None:
                        commit(job, status, reason, {}, t0, _rows(job, status, reason))
                        continue
                    found = _check_outputs(job, outputs)  # validated once, here
                    if "" in found:
                        commit(job, INVALID, found[""], {}, t0, _rows(job, INVALID, found[""]))
                        continue
                    usable = {k: v for k, v in outputs.items()
                              if isinstance(v, Audio) and k not in found}
                    paths = _cache_outputs(cache, usable)
                    scorer.submit(job, usable, paths, t0, found)
                    commit_scored(in_flight)
            commit_scored(0)
        store.finish_run(p.run_id, "complete")
    except KeyboardInterrupt:
        _stop(scorer, workers)
        scorer = None
        stored = _stored_jobs(store, p.run_id)
        try:
            store.finish_run(p.run_id, "interrupted")
        except Exception:
            pass
        raise Interrupted(f"interrupted: {stored} of {len(p.jobs)} jobs of run {p.run_id} are stored "
                          f"in {store.path}; run the same command again to resume") from None
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, old_term)
        if scorer is not None:
            scorer.close()
        for w in workers.values():
            w.close()
        store.close()
    return RunResult(p.run_id, p.name, store.path, len(p.jobs), len(done), time.time() - t_start)


def scoring_mode(p: Plan) -> str:
    """'device' or 'processes': the config's choice, auto being device on a GPU. The device scorer
    gathers HAAQI calls only for the fast backend (the reference draws from numpy's global
    generator, which threads would share): with the reference HAAQI it is processes."""
    mode = p.config.scoring
    if mode == "auto":
        mode = "device" if p.device.startswith("cuda") else "processes"
    if mode == "device" and (p.backends or DEFAULTS).get("haaqi") != "fast":
        return "processes"
    return mode


def make_scorer(p: Plan, ctx: ScoringContext, pending: bool):
    cfg = p.config
    if scoring_mode(p) == "device":
        budget = int(cfg.haaqi_memory_gb * 2**30) if cfg.haaqi_memory_gb > 0 else None
        return BatchedScorer(dataclasses.replace(ctx, device=p.device), cfg.scoring_threads, budget)
    return PoolScorer(cfg.jobs, ctx) if cfg.jobs > 1 and pending else InProcessScorer(ctx)


def _execute_ray(p: Plan, pending: list[Job], commit, ready_jobs, cache: Path, ctx, bar) -> None:
    """The pending jobs on Ray (harness.ray_executor), committed by this process as they finish."""
    from harness import ray_executor

    cfg = p.config
    systems = {j.system for j in pending}
    started = ray_executor.init(cfg, len(systems) * cfg.ray_actors) if pending else False
    try:
        with bar.bar:
            batches = [r for r in (ready_jobs(b) for b in _batches(pending, cfg.batch_size)) if r]
            if batches:
                ray_executor.RayEngine(p, commit, cache, ctx, cfg.ray_retries).run(batches)
    finally:
        if started:
            import ray

            ray.shutdown()


def _stored_jobs(store: Store, run_id: str) -> int:
    try:
        return len(store.done_jobs(run_id))
    except Exception:
        return 0


def _stop(scorer, workers: dict[str, SystemProcess]) -> None:
    """Stop every child at once (after Ctrl-C): the system processes and the scoring workers."""
    for w in workers.values():
        w.stop()
    if scorer is not None:
        scorer.kill()
