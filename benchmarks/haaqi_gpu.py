"""HAAQI throughput of the torch engine by batch size (the GPU's scoring path), with parity
against pyclarity and the CAD1-scale time it implies.

For each batch size B (default 8 to 512) and dtype: B ear-signals of D seconds at 24 kHz (the
music-like items of haaqi_speed.py, seeded per item) scored by one `haaqi_v1_batch` call on the
device, which runs them through its filters in groups that fit its memory budget
(`--memory-gb`, default half the GPU's free memory). Prints wall time, HAAQI audio-seconds per
second (B x D / time), the peak device memory beside the engine's own estimate
(`torch_engine.batch_bytes`), and the time numpy takes to draw the items' internal noise on the
CPU's threads (pyclarity's exact draws; a bound on the rate whatever the device). pyclarity
scores the first `--check` items (one process per core) and the largest difference is printed.
Last, the CAD1-scale estimate: 50 songs x 50 listeners x 8 ear-stems x 30 s = 600,000
ear-seconds, on one device at the best rate measured and on N such workers (N x the rate: the
scoring of different songs shares nothing).

    python benchmarks/haaqi_gpu.py [--device cuda] [--batches 8 32 128 512] [--seconds 30]
        [--dtypes float32 float64] [--check 4] [--memory-gb 0] [--workers 1 4 8]

On a CPU (no GPU) it runs the same path small, e.g. `--device cpu --batches 2 4 --seconds 2`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from haaqi_speed import RATE, signals  # noqa: E402

CAD1_EAR_SECONDS = 50 * 50 * 8 * 30


def reference(args) -> float:
    ref, proc, loss, level1, seed = args
    from clarity.evaluator.haaqi import haaqi_v1
    from clarity.utils.audiogram import Audiogram

    from harness.metrics.fast.haaqi import AUDIOGRAM_FREQUENCIES

    np.random.seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):
        ag = Audiogram(levels=loss, frequencies=AUDIOGRAM_FREQUENCIES)
        return float(haaqi_v1(ref, RATE, proc, RATE, ag, 1, level1)[0])


def noise_seconds(items: int, n: int, threads: int) -> float:
    """Wall time of drawing `items` items' BM noise (2 x 32 x n legacy Gaussians each) on threads."""
    from harness.metrics.fast.haaqi.model import NoiseWorker

    t0 = time.perf_counter()
    worker = NoiseWorker([np.random.RandomState(100 + b) for b in range(items)], [n] * items, 32,
                         np.float64, threads)
    for b in range(items):
        worker.noise(b)
        worker.counts[b].put(0)
    for t in worker.threads:
        t.join()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 32, 128, 512])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    ap.add_argument("--check", type=int, default=4, help="items also scored by pyclarity")
    ap.add_argument("--memory-gb", type=float, default=0.0, help="the engine's budget (0: its default)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 4, 8])
    args = ap.parse_args()
    import torch

    from harness.metrics.fast.haaqi import default_memory_bytes, haaqi_v1_batch, torch_chunks
    from harness.metrics.fast.haaqi.torch_engine import batch_bytes

    cuda = args.device.startswith("cuda")
    name = torch.cuda.get_device_name() if cuda else f"CPU, {os.cpu_count()} cores"
    budget = int(args.memory_gb * 2**30) if args.memory_gb > 0 else default_memory_bytes(args.device)
    print(f"torch engine on {args.device} ({name}); torch {torch.__version__}; {args.seconds:g} s "
          f"ear-signals at 24 kHz; memory budget {budget / 2**30:.1f} GiB", flush=True)
    data = signals(max(args.batches), args.seconds)
    n = len(data[0][0])
    check = min(args.check, max(args.batches))
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        expected = list(pool.map(reference, [(*data[b], 100 + b) for b in range(check)]))
    threads = min(32, os.cpu_count() or 1)  # as the engine's noise worker
    print(f"internal noise on {threads} CPU threads: {noise_seconds(8, n, threads) / 8:.3f} s per item "
          f"(bounds the rate at {8 * args.seconds / noise_seconds(8, n, threads):.0f} audio-s/s)",
          flush=True)
    warm = data[0]
    haaqi_v1_batch([warm[0][:RATE]], [warm[1][:RATE]], [warm[2]], warm[3], seeds=[1],
                   device=args.device, engine="torch")
    best = 0.0
    print("| batch | dtype | groups | wall (s) | audio-s/s | peak device memory (GB) | estimate (GB) "
          "| max abs diff vs pyclarity |")
    print("|---|---|---|---|---|---|---|---|")
    for dt in args.dtypes:
        dtype = getattr(torch, dt)
        for B in args.batches:
            items = data[:B]
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            got = haaqi_v1_batch([d[0] for d in items], [d[1] for d in items], [d[2] for d in items],
                                 [d[3] for d in items], seeds=[100 + b for b in range(B)],
                                 dtype=dtype, device=args.device, engine="torch", memory_bytes=budget)
            if cuda:
                torch.cuda.synchronize()
            wall = time.perf_counter() - t0
            groups = list(torch_chunks([n] * B, dtype, args.device, budget))
            largest = max(stop - first for first, stop in groups)
            peak = torch.cuda.max_memory_allocated() / 1e9 if cuda else float("nan")
            k = min(check, B)
            diff = max(abs(got[b].score - expected[b]) for b in range(k))
            rate = B * args.seconds / wall
            best = max(best, rate)
            print(f"| {B} | {dt} | {len(groups)} of <= {largest} | {wall:.1f} | {rate:.1f} | {peak:.1f} | "
                  f"{batch_bytes(n, largest, dtype) / 1e9:.1f} | {diff:.1e} |", flush=True)
    print(f"\nCAD1 scale ({CAD1_EAR_SECONDS:,} ear-seconds) at {best:.1f} audio-s/s per worker:")
    for w in args.workers:
        print(f"  {w} worker(s): {CAD1_EAR_SECONDS / (best * w) / 3600:.2f} h")


if __name__ == "__main__":
    main()
