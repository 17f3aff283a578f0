"""The Ray executor against the local one on this machine: Ray's overhead per job and the
scaling from 1 to 2 workers, measured in one process on the same runs.

    python benchmarks/ray_scaling.py [--workers 1 2] [--listeners 4]

Two workloads, each run with `--executor local` and `--executor ray` at every worker count
(a fresh output folder each time, so nothing is resumed):

- overhead: the speech quick suite x (unprocessed, oracle, spectral-gating) scored with SNR only,
  cheap jobs whose time is mostly the executor's own;
- scaling: the music-remix quick suite x (unprocessed, oracle) x `--listeners` listeners scored
  with HAAQI (reference backend), jobs whose time is scoring.

Ray's start (a private local instance) is timed apart from the run. Every Ray run is checked to
store exactly the local run's scores.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.config import RunConfig  # noqa: E402
from harness.planning import plan  # noqa: E402
from harness.runner import execute  # noqa: E402
from harness.store import Store  # noqa: E402

WORKLOADS = {
    "overhead": dict(suites=["speech-enhancement-quick"],
                     systems=["unprocessed", "oracle", "spectral-gating"], metrics=["snr"]),
    "scaling": dict(suites=["music-remix-quick"], systems=["unprocessed", "oracle"], metrics=["haaqi"],
                    metrics_backend="reference"),
}


def scores(folder: Path):
    with Store(folder, create=False) as s:
        df = s.scores(s.resolve("latest"))
    keys = ["job_key", "metric", "ear", "stem"]
    return df.drop(columns=["run_id"]).sort_values(keys).reset_index(drop=True)


def one(workload: dict, executor: str, workers: int, folder: Path) -> tuple[float, float, int]:
    """(Ray start seconds, run seconds, jobs) of one fresh run."""
    import ray

    from harness import ray_executor

    cfg = RunConfig(out=str(folder), quiet=True, executor=executor, jobs=workers, batch_size=1,
                    **workload)
    p = plan(cfg)
    start = 0.0
    if executor == "ray":
        t = time.perf_counter()
        ray_executor.init(cfg, actors=len(p.systems) * cfg.ray_actors)
        start = time.perf_counter() - t
    try:
        t = time.perf_counter()
        execute(p, progress=False)
        seconds = time.perf_counter() - t
    finally:
        if executor == "ray":
            ray.shutdown()
    return start, seconds, len(p.jobs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--listeners", type=int, default=4)
    args = ap.parse_args()
    from harness.listener import resolve_panel

    listeners = [li.id for li in resolve_panel("builtin").listeners[: args.listeners]]
    WORKLOADS["scaling"]["listeners"] = listeners
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, workload in WORKLOADS.items():
            for workers in args.workers:
                local_dir = Path(tmp) / f"{name}-{workers}-local"
                ray_dir = Path(tmp) / f"{name}-{workers}-ray"
                _, t_local, jobs = one(workload, "local", workers, local_dir)
                start, t_ray, _ = one(workload, "ray", workers, ray_dir)
                a, b = scores(local_dir), scores(ray_dir)
                same = a.equals(b)
                row = {"workload": name, "workers": workers, "jobs": jobs,
                       "local_s": round(t_local, 2), "ray_s": round(t_ray, 2), "ray_start_s": round(start, 2),
                       "overhead_ms_per_job": round(1000 * (t_ray - t_local) / jobs, 1), "same_scores": same}
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("\n| workload | workers | jobs | local | ray (run) | ray start | Ray overhead / job | "
          "scores equal |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workload']} | {r['workers']} | {r['jobs']} | {r['local_s']} s | {r['ray_s']} s | "
              f"{r['ray_start_s']} s | {r['overhead_ms_per_job']} ms | {r['same_scores']} |")


if __name__ == "__main__":
    main()
