"""The Ray executor (`harness run --executor ray [--address ADDRESS]`): the same plan, jobs, keys
and scores as the local executor (harness.runner), spread over a Ray cluster.

- Each system runs in Ray actors (`ray_actors` per system, `ray_num_gpus` GPUs each) that
  unpickle and prepare it once, then process item batches. A call has the local executor's
  deadline (`system_timeout`); past it the actor is killed and the batch goes on item by item.
  An actor that dies (a worker killed, a node lost, a segfault) is replaced, and its batch is
  retried on the new actor up to `ray_retries` times; a batch that still fails goes on item by
  item, and an item that still fails is stored `failed` with the reason.
- Scoring runs as Ray tasks on the signals the actors returned (sent through the object store,
  so workers need no access to the driver's cache); a scoring worker that dies is retried by Ray
  up to `ray_retries` times, then the job's scores are stored `failed` with the reason.
- The driver stays the only writer of the SQLite store: it validates outputs, writes the output
  cache, and commits each job's scores as they stream back. Resume works as with the local
  executor: jobs already stored are never sent.

What travels to workers: the pickled system (its class by reference: the harness and the
system's package must be installed on every node), the items (their audio files by path: the
suites must be on a filesystem every node sees, as they are on one machine or with a shared
filesystem), the listener, and the signals to score (object store). Without `--address` the
harness starts a private local Ray instance (`ray.init(address="local")`) with `jobs` CPUs for
scoring plus one per actor, and stops it at the end.
"""

from __future__ import annotations

import logging
import os
import pickle
import sys
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from harness.errors import ConfigError
from harness.metrics import FAILED, INVALID, Score
from harness.metrics.base import first_line

log = logging.getLogger("harness")


def require_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs the ray package: pip install 'audio-harness[ray]'") from None
    return ray


# ------------------------------------------------------------------ on the workers


class SystemActor:
    """A system in a Ray actor: unpickled and prepared once (a failure to prepare is kept and
    reported by every call, never retried, as with the local executor)."""

    def __init__(self, blob: bytes, device: str) -> None:
        from harness.workers import _classify

        self.broken: tuple | None = None
        try:
            if device == "auto":
                from harness.planning import resolve_device

                device = resolve_device("auto")
            self.system = pickle.loads(blob)
            self.system.prepare(device)
        except (Exception, KeyboardInterrupt) as exc:
            kind, message = _classify(exc)
            self.broken = ("raised", kind, f"prepare failed: {message}", traceback.format_exc())

    def pid(self) -> int:
        return os.getpid()

    def process(self, items: list, listener: Any) -> tuple:
        from harness.workers import _classify

        if self.broken is not None:
            return self.broken
        try:
            outs = self.system.process(items, listener)
            pickle.dumps(outs)  # what cannot be sent back is the system's fault, said as locally
            return ("ok", outs)
        except (Exception, KeyboardInterrupt) as exc:
            kind, message = _classify(exc)
            if isinstance(exc, (pickle.PicklingError, TypeError, AttributeError)) and "pickle" in str(exc):
                kind, message = "error", f"its outputs cannot be sent back ({message})"
            return ("raised", kind, message, traceback.format_exc())


def score_remote(task: str, item, outputs: dict, listener, metrics: list[str],
                 backends: dict[str, str], memo: str | None, problems: dict[str, str]) -> list[Score]:
    """A scoring task: the local executor's `score_outputs` on the signals in memory (the memo
    folder is used when this node sees it, and skipped when it does not)."""
    from pathlib import Path

    from harness.metrics.backends import ScoringContext
    from harness.scoring import score_outputs

    memo_dir = Path(memo) if memo and Path(memo).parent.is_dir() else None
    return score_outputs(task, item, outputs, listener, metrics, ScoringContext(backends, memo_dir), problems)


# ------------------------------------------------------------------ on the driver


@dataclass
class Call:
    """One batch of jobs on its way through a system actor."""

    jobs: list
    attempt: int = 0  # actor deaths survived so far


@dataclass
class Slot:
    """One actor of a system; `actor` is None until (re)started."""

    system: str
    actor: Any = None
    starts: int = 0
    busy: Any = None  # the ObjectRef of the call in flight
    call: Call | None = None
    deadline: float = 0.0
    limit: float = 0.0  # the deadline of the call in flight, in seconds
    preparing: bool = False  # the call in flight is the readiness probe of a fresh actor


@dataclass
class RayEngine:
    """The driver's side: dispatch batches to actors and scoring to tasks, commit as results
    arrive. `commit(job, status, reason, paths, t0, scores)` writes to the store."""

    plan: Any
    commit: Any
    cache: Any
    ctx: Any
    retries: int
    queues: dict[str, deque] = field(default_factory=dict)
    slots: list[Slot] = field(default_factory=list)
    scoring: dict[Any, tuple] = field(default_factory=dict)
    t0s: dict[str, float] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)  # system -> why its preparation failed

    def __post_init__(self) -> None:
        ray = self.ray = require_ray()
        cfg = self.plan.config
        self.blobs = {}
        for name, system in self.plan.systems.items():
            try:
                self.blobs[name] = pickle.dumps(system)
            except Exception as exc:
                raise ConfigError(f"system {name!r} cannot be sent to its own process: it does not "
                                  f"pickle ({type(exc).__name__}: {exc})") from None
        gpus = float(cfg.ray_num_gpus)
        self.device = "auto" if gpus > 0 and cfg.device == "auto" else self.plan.device
        self.actor_cls = ray.remote(num_cpus=1, num_gpus=gpus, max_restarts=0)(SystemActor)
        self.score_fn = ray.remote(num_cpus=1, max_retries=self.retries)(score_remote)
        self.max_scoring = max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))

    # ---- system calls
    def _start(self, slot: Slot) -> None:
        slot.actor = self.actor_cls.remote(self.blobs[slot.system], self.device)
        slot.starts += 1
        slot.preparing = True

    def _kill(self, slot: Slot) -> None:
        if slot.actor is not None:
            try:
                self.ray.kill(slot.actor, no_restart=True)
            except Exception:
                pass
        slot.actor, slot.busy, slot.call, slot.preparing = None, None, None, False

    def _send(self, slot: Slot) -> None:
        """Send the slot's call: to a fresh actor first a readiness probe (it answers once its
        system is prepared, under the prepare deadline), then the batch under its own deadline."""
        from harness.workers import PREPARE_TIMEOUT_S, deadline_for

        call, timeout = slot.call, self.plan.config.system_timeout
        if slot.preparing:
            slot.busy = slot.actor.pid.remote()
            slot.limit = PREPARE_TIMEOUT_S if timeout == "auto" else max(PREPARE_TIMEOUT_S, float(timeout))
        else:
            items = [j.item for j in call.jobs]
            slot.busy = slot.actor.process.remote(items, call.jobs[0].listener)
            slot.limit = deadline_for(timeout, items)
        slot.deadline = time.monotonic() + slot.limit

    def _dispatch(self) -> None:
        if len(self.scoring) >= self.max_scoring:
            return  # back-pressure: scoring is behind, do not pile up signals
        for slot in self.slots:
            queue = self.queues[slot.system]
            if slot.busy is not None or not queue:
                continue
            slot.call = call = queue.popleft()
            if slot.system in self.broken:  # its preparation failed once: never again
                self._fail_call(call, FAILED, self.broken[slot.system])
                slot.call = None
                continue
            for j in call.jobs:
                self.t0s.setdefault(j.key, time.time())
            if slot.actor is None:
                self._start(slot)
            self._send(slot)

    def _fail_call(self, call: Call, status: str, reason: str) -> None:
        from harness.outputs import rows as _rows

        for job in call.jobs:
            t0 = self.t0s.pop(job.key, time.time())
            self.commit(job, status, reason, {}, t0, _rows(job, status, reason))

    def _split_or_fail(self, slot: Slot, call: Call, status: str, reason: str, attempt: int) -> None:
        """A batch that failed: retried item by item (front of the queue) when it had more than
        one item, else stored with `status` and `reason`."""
        if len(call.jobs) > 1:
            for job in reversed(call.jobs):
                self.queues[slot.system].appendleft(Call([job], attempt))
        else:
            self._fail_call(call, status, reason)

    def _system_done(self, slot: Slot) -> None:
        from harness.outputs import check_outputs as _check_outputs
        from harness.outputs import rows as _rows

        ref, call = slot.busy, slot.call
        slot.busy, slot.call = None, None
        name = slot.system
        try:
            reply = self.ray.get(ref)
            if slot.preparing:  # the fresh actor is ready: now the batch
                slot.preparing, slot.call = False, call
                self._send(slot)
                return
        except self.ray.exceptions.RayActorError as exc:  # the actor's process died
            cause = _death(exc)
            self._kill(slot)
            if call.attempt < self.retries:
                log.debug("system %s: actor died (%s); retrying its batch", name, cause)
                self.queues[name].appendleft(Call(call.jobs, call.attempt + 1))
            else:
                self._split_or_fail(slot, call, FAILED,
                                    f"system {name}: worker died {call.attempt + 1} times ({cause})",
                                    self.retries)
            return
        if reply[0] == "raised":
            _, kind, message, details = reply
            if details:
                log.debug("system %s:\n%s", name, details)
            if len(call.jobs) > 1 and not message.startswith("prepare failed"):
                self._split_or_fail(slot, call, FAILED, message, call.attempt)
                return
            status = INVALID if kind == "audio" else FAILED
            reason = (message if kind == "audio" else
                      f"system {name}: {message}" if kind == "harness" or message.startswith("prepare failed")
                      else f"system {name} raised {message}")
            self._fail_call(call, status, reason)
            return
        outs = reply[1]
        if not isinstance(outs, list) or len(outs) != len(call.jobs):
            got = len(outs) if isinstance(outs, list) else type(outs).__name__
            message = (f"returned {got} outputs for {len(call.jobs)} items (process must return a "
                       "list, one dict per item)")
            if len(call.jobs) > 1:
                self._split_or_fail(slot, call, FAILED, message, call.attempt)
            else:
                self._fail_call(call, FAILED, f"system {name} raised {message}")
            return
        from harness.audio import Audio
        from harness.outputs import cache_outputs as _cache_outputs

        for job, outputs in zip(call.jobs, outs, strict=True):
            t0 = self.t0s.pop(job.key, time.time())
            found = _check_outputs(job, outputs)
            if "" in found:
                self.commit(job, INVALID, found[""], {}, t0, _rows(job, INVALID, found[""]))
                continue
            usable = {k: v for k, v in outputs.items() if isinstance(v, Audio) and k not in found}
            paths = _cache_outputs(self.cache, usable)
            memo = str(self.ctx.memo_dir) if self.ctx.memo_dir else None
            ref = self.score_fn.remote(job.suite.task, job.item, usable, job.listener, job.metrics,
                                       dict(self.ctx.backends), memo, found)
            self.scoring[ref] = (job, paths, t0)

    def _timeouts(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.busy is not None and now > slot.deadline:
                call, limit, preparing = slot.call, slot.limit, slot.preparing
                self._kill(slot)
                if preparing:  # as the local executor: a preparation that hangs is not retried
                    self.broken[slot.system] = (f"system {slot.system}: prepare failed: prepare timed out "
                                                f"after {limit:g} s")
                    self._fail_call(call, FAILED, self.broken[slot.system])
                    continue
                self._split_or_fail(slot, call, FAILED, f"system {slot.system}: timed out after {limit:g} s",
                                    call.attempt)

    # ---- scoring
    def _scored(self, ref) -> None:
        job, paths, t0 = self.scoring.pop(ref)
        try:
            scores = self.ray.get(ref)
        except Exception as exc:  # the scoring worker died more than ray_retries times
            reason = f"scoring worker failed: {_death(exc)}"
            scores = [Score(m, None, FAILED, reason, e, s)
                      for m, e, s in job.protocol.expected(job.item, job.metrics)]
        self.commit(job, "ok", "", paths, t0, scores)

    # ---- the loop
    def run(self, batches: list[list]) -> None:
        cfg = self.plan.config
        for batch in batches:
            self.queues.setdefault(batch[0].system, deque()).append(Call(batch))
        for name in self.queues:
            self.slots += [Slot(name) for _ in range(int(cfg.ray_actors))]
        try:
            while True:
                self._dispatch()
                busy = {s.busy: s for s in self.slots if s.busy is not None}
                refs = list(busy) + list(self.scoring)
                if not refs:
                    if any(self.queues.values()):
                        continue
                    break
                ready, _ = self.ray.wait(refs, num_returns=1, timeout=0.5)
                for ref in ready:
                    if ref in busy:
                        self._system_done(busy[ref])
                    else:
                        self._scored(ref)
                self._timeouts()
        finally:
            for slot in self.slots:
                self._kill(slot)


def _death(exc: BaseException) -> str:
    """Why a worker died, in one line (Ray's messages run to many)."""
    return first_line(exc)[:200]


def _probe(address: str, seconds: float = 5.0) -> None:
    """A one-line error, at once, when nothing listens at a HOST:PORT address (ray.init would
    retry for minutes); 'auto' and other forms are left to Ray."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except OSError as exc:
        raise ConfigError(f"cannot connect to the Ray cluster at {address!r}: "
                          f"{exc.strerror or type(exc).__name__}") from None


def init(cfg, actors: int) -> bool:
    """Connect to `cfg.ray_address`, or start a private local instance; True when started here
    (and so to be stopped at the end)."""
    ray = require_ray()
    quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR,
             "configure_logging": True}
    if ray.is_initialized():
        return False
    if cfg.ray_address:
        _probe(cfg.ray_address)
        try:
            ray.init(address=cfg.ray_address, **quiet)
        except Exception as exc:
            raise ConfigError(f"cannot connect to the Ray cluster at {cfg.ray_address!r}: "
                              f"{first_line(exc)}") from None
        return True
    env = {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # this machine: the driver's imports
    ray.init(address="local", num_cpus=int(cfg.jobs) + actors, runtime_env={"env_vars": env}, **quiet)
    return True
