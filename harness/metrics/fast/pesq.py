"""PESQ for many items at once: the ITU-T P.862 C code of the `pesq` package (the reference, so
the numbers are identical) run in parallel worker processes, items of any lengths.

`harness run` and `harness score` already score their jobs in parallel processes (`--jobs`);
this is for scoring a batch of signals from Python (and for the benchmark). A failed item (no
utterances, too short, NaN) comes back as a `MetricFailed` with the reason in its place; the
other items are scored.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_all_start_methods, get_context

import numpy as np

from harness.errors import MetricFailed


def _one(args) -> float | MetricFailed:
    from harness.metrics.pesq_metric import pesq_score

    reference, estimate, rate, mode = args
    try:
        return pesq_score(estimate, reference, rate, mode)
    except MetricFailed as exc:
        return exc


def pesq_batch(references, estimates, rate: int, mode: str = "wb", *, workers: int | None = None,
               chunksize: int = 1) -> list[float | MetricFailed]:
    """PESQ of each (reference, estimate) pair of 1-D arrays at `rate` Hz (16000 for "wb", 8000
    or 16000 for "nb"), in `workers` processes (default: the CPUs this process may use)."""
    if mode not in ("wb", "nb"):
        raise ValueError(f"PESQ mode must be 'wb' or 'nb', got {mode!r}")
    jobs = [(np.asarray(r, dtype=np.float64), np.asarray(e, dtype=np.float64), rate, mode)
            for r, e in zip(references, estimates, strict=True)]
    workers = workers or len(os.sched_getaffinity(0))
    if workers <= 1 or len(jobs) <= 1:
        return [_one(j) for j in jobs]
    # fork: workers start at once with everything imported; they run only the C code, none of
    # the parent's thread pools (spawn costs about a second per worker in imports)
    method = "fork" if "fork" in get_all_start_methods() else "spawn"
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)),
                             mp_context=get_context(method)) as pool:
        return list(pool.map(_one, jobs, chunksize=chunksize))
