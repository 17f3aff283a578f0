"""HAAQI calls of many jobs computed together: the GPU's way of scoring.

A protocol scores a job by calling HAAQI once per (ear, stem), one call after the other (the
Cadenza recipes draw the internal noise of a song's eight signals from one generator, in order).
On a GPU one 30 s call leaves most of the device idle, so the device scorer
(`harness.scoring.BatchedScorer`) scores many jobs at once on threads, and each thread's HAAQI
call is handed to one `HaaqiBatcher`. The batcher waits until every job being scored is waiting
on it (or `wait_s` has passed since the first call came), then computes all the waiting calls in
one `haaqi_v1_batch` on its device, whose torch engine runs them through its filters together up
to a memory budget.

The scores are those of the calls made one by one. Each call brings its own generator (an int
seed becomes a fresh RandomState; a RandomState is drawn from and advanced), and a thread waits
for its call's result before it makes the next, so no two calls of one batch share a generator
and every generator is consumed in its job's order. A call without a seed draws from numpy's
global generator, whose order across threads would depend on timing: such calls are not
gathered but computed at once, one at a time. When a batch fails, every generator is put back
as it was and the calls are computed one by one, so that only the culprit fails.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class _Call:
    reference: np.ndarray
    processed: np.ndarray
    losses: np.ndarray
    level1: float
    equalisation: int
    rng: np.random.RandomState
    done: threading.Event = field(default_factory=threading.Event)
    value: float | None = None
    error: BaseException | None = None


class HaaqiBatcher:
    """Gathers HAAQI calls from scoring threads and computes them in batches on `device`.

    Threads that score a job enter `job()` for its duration; `score` is the call. `sizes` lists
    the number of calls in each batch computed (for the run's record and the tests)."""

    def __init__(self, device: str = "cpu", *, dtype=torch.float64, memory_bytes: int | None = None,
                 engine: str | None = None, wait_s: float = 0.05) -> None:
        self.device, self.dtype, self.memory_bytes, self.engine = device, dtype, memory_bytes, engine
        self.wait_s = wait_s
        self.sizes: list[int] = []
        self._cond = threading.Condition()
        self._pending: list[_Call] = []
        self._first_at = 0.0
        self._busy = 0
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="harness-haaqi-batcher", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def job(self):
        """A scoring thread works on a job: until it leaves, a batch may wait for its calls."""
        with self._cond:
            self._busy += 1
        try:
            yield
        finally:
            with self._cond:
                self._busy -= 1
                self._cond.notify_all()

    def score(self, reference, processed, losses, level1: float, *, equalisation: int = 1,
              seed: Any = None) -> float:
        """HAAQI v1 of one (reference, processed) pair at 24 kHz, as `haaqi_v1_batch` of it alone."""
        from harness.metrics.fast.haaqi import haaqi_v1_batch

        if seed is None:  # numpy's global generator: drawn at once, never in a batch
            from harness.metrics.base import PROCESS_STATE

            with PROCESS_STATE:
                return haaqi_v1_batch([reference], [processed], [losses], level1,
                                      equalisation=equalisation, seeds=[None], dtype=self.dtype,
                                      device=self.device, engine=self.engine,
                                      memory_bytes=self.memory_bytes)[0].score
        rng = seed if isinstance(seed, np.random.RandomState) else np.random.RandomState(seed)
        call = _Call(np.asarray(reference), np.asarray(processed), np.asarray(losses, np.float64),
                     float(level1), int(equalisation), rng)
        with self._cond:
            if self._closed:
                raise RuntimeError("the HAAQI batcher is closed")
            if not self._pending:
                self._first_at = time.monotonic()
            self._pending.append(call)
            self._cond.notify_all()
        call.done.wait()
        if call.error is not None:
            raise call.error
        return call.value

    def close(self, abort: bool = False) -> None:
        """Stop taking calls; the waiting ones are computed, or with `abort` (Ctrl-C) failed at
        once, so that the threads waiting on them return."""
        with self._cond:
            self._closed = True
            if abort:
                for call in self._pending:
                    call.error = RuntimeError("scoring was stopped")
                    call.done.set()
                self._pending = []
            self._cond.notify_all()
        self._thread.join(None if not abort else 5)

    # ---- the batching thread
    def _ready(self) -> bool:
        if not self._pending:
            return False
        if self._closed or len(self._pending) >= self._busy:  # nobody else can add a call
            return True
        return time.monotonic() - self._first_at >= self.wait_s

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._ready():
                    if self._closed and not self._pending:
                        return
                    self._cond.wait(self.wait_s if self._pending else None)
                batch, self._pending = self._pending, []
            self._compute(batch)

    def _compute(self, batch: list[_Call]) -> None:
        from harness.metrics.fast.haaqi import haaqi_v1_batch

        self.sizes.append(len(batch))
        for eq in sorted({c.equalisation for c in batch}):
            calls = [c for c in batch if c.equalisation == eq]
            states = [c.rng.get_state() for c in calls]
            try:
                results = haaqi_v1_batch([c.reference for c in calls], [c.processed for c in calls],
                                         [c.losses for c in calls], [c.level1 for c in calls],
                                         equalisation=eq, seeds=[c.rng for c in calls],
                                         dtype=self.dtype, device=self.device, engine=self.engine,
                                         memory_bytes=self.memory_bytes)
                for c, r in zip(calls, results, strict=True):
                    c.value = r.score
            except BaseException:  # noqa: BLE001 - isolate the culprit: each call alone
                for c, state in zip(calls, states, strict=True):
                    c.rng.set_state(state)
                    try:
                        c.value = haaqi_v1_batch([c.reference], [c.processed], [c.losses], c.level1,
                                                 equalisation=eq, seeds=[c.rng], dtype=self.dtype,
                                                 device=self.device, engine=self.engine,
                                                 memory_bytes=self.memory_bytes)[0].score
                    except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
                        c.error = exc
            for c in calls:
                c.done.set()
