"""Plan (system x item x listener) jobs, run systems on the device, score on workers, store.

A job's key hashes the system (name, version, parameters), the item (content hash) and the
listener id; jobs already stored for the run are skipped, so rerunning a run resumes it. Each
job's scores are committed in one transaction as soon as they are ready.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from harness import audio as audio_mod
from harness.audio import Audio
from harness.config import RunConfig
from harness.errors import AudioError, ConfigError, HarnessError
from harness.listener import Listener, Panel, resolve_panel
from harness.manifest import environment
from harness.metrics import FAILED, INVALID, Score
from harness.metrics.base import first_line
from harness.protocols import TaskProtocol, get_protocol
from harness.store import Store
from harness.suites import Item, Suite, resolve_suite

log = logging.getLogger("harness")

NO_LISTENER = "-"


@dataclass
class Job:
    key: str
    suite: Suite
    item: Item
    system: str
    listener: Listener | None
    protocol: TaskProtocol
    metrics: list[str]

    @property
    def listener_id(self) -> str:
        return self.listener.id if self.listener is not None else NO_LISTENER

    def row(self) -> dict[str, str]:
        return {
            "key": self.key, "suite": self.suite.name, "task": self.suite.task,
            "protocol": self.protocol.version, "system": self.system, "item_id": self.item.id,
            "listener_id": self.listener_id,
        }


@dataclass
class Plan:
    run_id: str
    name: str
    config: RunConfig
    device: str
    suites: list[Suite]
    panel: Panel
    systems: dict[str, Any]
    jobs: list[Job]
    manifest: dict[str, Any]
    skipped: list[str]
    backends: dict[str, str] | None = None  # metric family -> reference | fast


@dataclass
class RunResult:
    run_id: str
    name: str
    store_path: Path
    total_jobs: int
    resumed_jobs: int
    seconds: float


def resolve_device(spec: str) -> str:
    """'auto' -> cuda when torch sees a GPU, else cpu; an unavailable cuda is a ConfigError."""
    if spec not in ("auto", "cpu") and not spec.startswith("cuda"):
        raise ConfigError(f"unknown device {spec!r} (auto, cpu, cuda, cuda:N)")
    if spec == "cpu":
        return "cpu"
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if spec == "auto":
        return "cuda" if has_cuda else "cpu"
    if not has_cuda:
        raise ConfigError(f"device {spec!r} requested but torch sees no CUDA device")
    return spec


def _supports(system: Any, task: str) -> bool:
    if hasattr(system, "supports"):
        return system.supports(task)
    return system.task in ("*", task)


def _identity(system: Any) -> str:
    return system.identity() if hasattr(system, "identity") else f"{system.name}:{system.version}"


def job_key(system: Any, item: Item, listener_id: str) -> str:
    blob = f"{_identity(system)}|{item.hash}|{listener_id}"
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def plan(cfg: RunConfig, prebuilt: dict[str, Any] | None = None) -> Plan:
    """Resolve suites, systems, panel and metrics; expand into jobs; derive the run id.

    `prebuilt` maps system names of `cfg.systems` to system objects built by the caller (the
    submission replay of `harness score`) instead of the registry.
    """
    from systems.base import system_from_spec

    device = resolve_device(cfg.device)
    suites = [resolve_suite(s) for s in cfg.suites]
    names = [s.name for s in suites]
    if len(set(names)) != len(names):
        raise ConfigError(f"a suite is named twice: {', '.join(names)}")
    panel = resolve_panel(cfg.panel, cfg.listeners or None)
    prebuilt = prebuilt or {}
    systems = {
        n: prebuilt[n] if n in prebuilt else system_from_spec(n, cfg.system_params)
        for n in cfg.systems
    }
    jobs: list[Job] = []
    skipped: list[str] = []
    per_suite: dict[str, Any] = {}
    for suite in suites:
        protocol = get_protocol(suite.task)
        metrics = [m for m in cfg.metrics if m in protocol.supported_metrics] if cfg.metrics else list(
            protocol.default_metrics
        )
        if cfg.metrics and not metrics:
            raise ConfigError(
                f"none of the metrics {', '.join(cfg.metrics)} applies to suite {suite.name} "
                f"(task {suite.task}: {', '.join(protocol.supported_metrics)})"
            )
        listeners: list[Listener | None] = list(panel.listeners) if protocol.uses_listener else [None]
        per_suite[suite.name] = {
            "hash": suite.hash, "version": suite.version, "task": suite.task,
            "protocol": protocol.version, "metrics": metrics, "items": len(suite.items),
            "resampling": protocol.resampling_note,
        }
        if protocol.seeding:
            per_suite[suite.name]["seeding"] = protocol.seeding
        for name, system in systems.items():
            if not _supports(system, suite.task):
                skipped.append(f"{name} does not do {suite.task}: skipped on {suite.name}")
                continue
            for item in suite.items:
                for li in listeners:
                    lid = li.id if li is not None else NO_LISTENER
                    jobs.append(
                        Job(job_key(system, item, lid), suite, item, name, li, protocol, metrics)
                    )
    from harness.metrics import backends as metric_backends

    chosen = metric_backends.resolve(cfg.metrics_backend)
    identity = {
        "metrics_backend": chosen,
        "suites": per_suite,
        "systems": {n: _identity(s) for n, s in systems.items()},
        "panel": panel.digest(),
        "harness": environment()["harness_version"],
    }
    run_id = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    manifest = {
        **environment(),
        "run_id": run_id,
        "device": device,
        "config": {k: v for k, v in vars(cfg).items()},
        "suites": per_suite,
        "systems": {
            n: {"version": s.version, "task": s.task, "params": getattr(s, "params", {})}
            for n, s in systems.items()
        },
        "panel": {"name": panel.name, "source": panel.source, "listeners": panel.digest()},
        "seeds": {
            "metrics": {n: s["seeding"] for n, s in per_suite.items() if "seeding" in s},
            "bootstrap": 0,
        },
        "metrics_backend": chosen,
        "jobs": len(jobs),
    }
    return Plan(run_id, cfg.run_name or run_id, cfg, device, suites, panel, systems, jobs,
                manifest, skipped, chosen)


# ------------------------------------------------------------------ processing and scoring


def _cache_outputs(cache: Path, outputs: dict[str, Audio]) -> dict[str, str]:
    """Write outputs once, content-addressed, as float32 WAV (exact); return name -> path."""
    paths = {}
    for name, a in outputs.items():
        sha = a.sha256()
        path = cache / sha[:2] / f"{sha}.wav"
        if not path.exists():
            tmp = path.with_suffix(".tmp.wav")
            audio_mod.write(tmp, a, "FLOAT")
            tmp.replace(path)
        paths[name] = str(path)
    return paths


def score_job(
    task: str, item: Item, output_paths: dict[str, str], listener, metrics, memo_dir: str | None = None,
    metric_backends: dict[str, str] | None = None,
) -> list[Score]:
    """Worker entry point: load a job's outputs and score them under the task protocol; every
    score carries the backend that computed it."""
    from harness.metrics import backends
    from harness.protocols import base as protocol_base

    protocol_base.MEMO_DIR = Path(memo_dir) if memo_dir else None
    backends.configure(metric_backends)
    protocol = get_protocol(task)
    try:
        outputs = {k: audio_mod.read(p) for k, p in output_paths.items()}
        return [dataclasses.replace(s, backend=backends.label(s.metric))
                for s in protocol.score(item, outputs, listener, metrics)]
    except Exception as exc:  # never lose a job to a crash in scoring: record why
        reason = f"scoring crashed: {first_line(exc)}"
        log.debug(traceback.format_exc())
        return [
            Score(m, None, FAILED, reason, ear, stem) for m, ear, stem in protocol.expected(item, metrics)
        ]


def _worker_init() -> None:
    """Scoring workers die with the run: on Linux the kernel SIGKILLs a worker when its parent
    dies, so a killed run leaves no orphans computing."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
        except OSError:
            pass


def _process(system, jobs: list[Job]) -> list[tuple[dict[str, Audio] | None, str, str]]:
    """Run a system on a batch; on a batch failure retry item by item to isolate the culprit."""
    items = [j.item for j in jobs]
    try:
        outs = system.process(items, jobs[0].listener)
        if not isinstance(outs, list) or len(outs) != len(items):
            got = len(outs) if isinstance(outs, list) else type(outs).__name__
            raise RuntimeError(f"returned {got} outputs for {len(items)} items")
        return [(o, "ok", "") for o in outs]
    except Exception as exc:
        if len(jobs) > 1:
            return [r for j in jobs for r in _process(system, [j])]
        if isinstance(exc, AudioError):  # the item's own files are bad
            return [(None, INVALID, str(exc))]
        if isinstance(exc, HarnessError):
            return [(None, FAILED, f"system {jobs[0].system}: {exc}")]
        log.debug(traceback.format_exc())
        return [(None, FAILED, f"system {jobs[0].system} raised {first_line(exc)}")]


def _batches(jobs: list[Job], size: int) -> Iterator[list[Job]]:
    groups: dict[tuple, list[Job]] = {}
    for j in jobs:
        groups.setdefault((j.system, j.suite.name, j.listener_id), []).append(j)
    for group in groups.values():
        for i in range(0, len(group), size):
            yield group[i : i + size]


def execute(p: Plan, *, progress: bool = True) -> RunResult:
    """Run the plan's pending jobs; every finished job is committed before the next is awaited."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    cfg = p.config
    out = Path(cfg.out)
    store = Store(out)
    cache = out / "cache"
    memo = cache / "memo"
    run_dir = out / "runs" / p.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "manifest.json").write_text(json.dumps(p.manifest, indent=1, default=str) + "\n")
    store.start_run(p.run_id, p.name, p.manifest)
    done = store.done_jobs(p.run_id)
    pending = [j for j in p.jobs if j.key not in done]
    t_start = time.time()
    for system in p.systems.values():
        system.prepare(p.device)

    console = Console(stderr=True)
    bar = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=console, disable=not progress or not console.is_terminal, transient=False,
    )
    pool = None
    if cfg.jobs > 1 and pending:
        pool = ProcessPoolExecutor(max_workers=cfg.jobs, mp_context=get_context("spawn"),
                                   initializer=_worker_init)
    in_flight: dict[Future, tuple[Job, dict[str, str], float]] = {}

    # Without a terminal rich draws the bar only at the end: log a plain line every 15 s instead.
    plain = progress and not console.is_terminal
    last_line = [time.time()]
    counts = {"done": len(done)}

    def commit(job: Job, status: str, reason: str, outputs: dict[str, str], t0: float, scores):
        store.commit_job(p.run_id, job.row(), status, reason, outputs, time.time() - t0, scores)
        bar.advance(task_id)
        counts["done"] += 1
        now = time.time()
        if plain and (now - last_line[0] >= 15 or counts["done"] == len(p.jobs)):
            last_line[0] = now
            new = counts["done"] - len(done)
            elapsed = now - t_start
            eta = elapsed / new * (len(p.jobs) - counts["done"]) if new else float("nan")
            console.print(f"run {p.run_id}: {counts['done']}/{len(p.jobs)} jobs, "
                          f"{elapsed:.0f} s elapsed, eta {eta:.0f} s", highlight=False)

    def drain(limit: int) -> None:
        while len(in_flight) > limit:
            finished, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            for fut in finished:
                job, paths, t0 = in_flight.pop(fut)
                try:
                    scores = fut.result()
                except Exception as exc:  # a worker died (e.g. out of memory)
                    reason = f"scoring worker failed: {first_line(exc)}"
                    scores = [Score(m, None, FAILED, reason, e, s)
                              for m, e, s in job.protocol.expected(job.item, job.metrics)]
                commit(job, "ok", "", paths, t0, scores)

    try:
        with bar:
            task_id = bar.add_task(f"run {p.run_id}", total=len(p.jobs), completed=len(done))
            for batch in _batches(pending, cfg.batch_size):
                t0 = time.time()
                problems = {j.key: j.item.problems() for j in batch}
                ready = [j for j in batch if not problems[j.key]]
                for j in batch:
                    if problems[j.key]:
                        reason = "; ".join(problems[j.key])
                        commit(j, INVALID, reason, {}, t0,
                               j.protocol.all_invalid(j.item, j.metrics, reason))
                if not ready:
                    continue
                results = _process(p.systems[batch[0].system], ready)
                for job, (outputs, status, reason) in zip(ready, results, strict=True):
                    if outputs is None:
                        rows = [Score(m, None, status, reason, e, s)
                                for m, e, s in job.protocol.expected(job.item, job.metrics)]
                        commit(job, status, reason, {}, t0, rows)
                        continue
                    problems_out = job.protocol.validate_outputs(job.item, outputs)
                    if "" in problems_out:
                        commit(job, INVALID, problems_out[""], {}, t0,
                               job.protocol.all_invalid(job.item, job.metrics, problems_out[""]))
                        continue
                    paths = _cache_outputs(cache, {k: v for k, v in outputs.items()
                                                   if isinstance(v, Audio)})
                    if pool is None:
                        scores = score_job(job.suite.task, job.item, paths, job.listener,
                                           job.metrics, str(memo), p.backends)
                        commit(job, "ok", "", paths, t0, scores)
                    else:
                        fut = pool.submit(score_job, job.suite.task, job.item, paths,
                                          job.listener, job.metrics, str(memo), p.backends)
                        in_flight[fut] = (job, paths, t0)
                        drain(2 * cfg.jobs)
            drain(0)
        store.finish_run(p.run_id, "complete")
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        store.close()
    return RunResult(p.run_id, p.name, store.path, len(p.jobs), len(done), time.time() - t_start)
