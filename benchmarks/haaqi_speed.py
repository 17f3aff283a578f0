"""HAAQI v1: pyclarity one call at a time against the fast batch (harness.metrics.fast.haaqi) on the
same signals.

Signals: B items of D seconds at 24 kHz: music-like references (harmonic notes with envelopes
and noise), processed versions at SNRs from 0 to 20 dB, some low-passed or clipped; audiograms
cycling through the built-in panel; each item seeded (seed 100 + b), equalisation 1 (HAAQI adds
NAL-R). Each backend runs in its own child process (so its peak resident memory is its own);
pyclarity scores the items one by one, the fast kernel takes them as one batch after a 1 s
warm-up item (compilation). Prints wall time, the ratio, audio-seconds scored per second (D x B /
time), the largest score difference and each backend's peak RSS.

    python benchmarks/haaqi_speed.py [--items 8] [--seconds 30] [--dtypes float64 float32]
        [--skip-reference] [--device cpu|cuda] [--engine compiled|torch]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.signal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
RATE = 24000


def signals(items: int, seconds: float, seed: int = 0):
    from harness.listener import audiogram, haaqi_audiogram, resolve_panel

    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    panel = resolve_panel("builtin").listeners
    out = []
    for b in range(items):
        f0 = 110 * 2 ** (b * 5 / 12)
        env = np.abs(np.sin(np.pi * t * (0.7 + 0.3 * b))) ** 2
        ref = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 10)) * env
        ref = 0.1 * ref + 0.005 * rng.standard_normal(n)
        noise = rng.standard_normal(n) * np.sqrt(np.mean(ref ** 2)) * 10 ** (-(b % 5) * 5 / 20)
        proc = ref + noise
        if b % 3 == 1:
            proc = scipy.signal.sosfilt(scipy.signal.butter(6, 3000, fs=RATE, output="sos"), proc)
        elif b % 3 == 2:
            proc = np.clip(proc, -0.1, 0.1)
        loss = haaqi_audiogram(audiogram(panel[b % len(panel)], "left")).levels.astype(float)
        out.append((ref, proc, loss, 65.0 - 20 * np.log10(np.sqrt(np.mean(ref ** 2)))))
    return out


def child(backend: str, items: int, seconds: float, device: str = "cpu",
          engine: str | None = None) -> dict:
    data = signals(items, seconds)
    if backend == "reference":
        from clarity.evaluator.haaqi import haaqi_v1
        from clarity.utils.audiogram import Audiogram

        from harness.metrics.fast.haaqi import AUDIOGRAM_FREQUENCIES

        scores = []
        t0 = time.perf_counter()
        for b, (ref, proc, loss, level1) in enumerate(data):
            np.random.seed(100 + b)
            with contextlib.redirect_stdout(io.StringIO()):
                ag = Audiogram(levels=loss, frequencies=AUDIOGRAM_FREQUENCIES)
                scores.append(haaqi_v1(ref, RATE, proc, RATE, ag, 1, level1)[0])
        dt = time.perf_counter() - t0
    else:
        import torch

        from harness.metrics.fast.haaqi import haaqi_v1_batch

        dtype = getattr(torch, backend)
        ref, proc, loss, level1 = data[0]
        opts = {"dtype": dtype, "device": device, "engine": engine}
        haaqi_v1_batch([ref[:RATE]], [proc[:RATE]], [loss], level1, seeds=[1], **opts)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        got = haaqi_v1_batch([d[0] for d in data], [d[1] for d in data], [d[2] for d in data],
                             [d[3] for d in data], seeds=[100 + b for b in range(items)], **opts)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        scores = [g.score for g in got]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"time": dt, "scores": [float(s) for s in scores], "peak_mb": peak}
    if backend != "reference" and device.startswith("cuda"):
        out["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--device", default="cpu", help="where the fast model runs (cpu, cuda)")
    ap.add_argument("--engine", choices=["compiled", "torch"],
                    help="the fast model's engine (default: compiled on the CPU, torch elsewhere)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.items, args.seconds, args.device, args.engine)))
        return
    import torch

    where = args.device + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda")
                           else "")
    print(f"{args.items} items x {args.seconds:g} s at 24 kHz; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; fast model on {where}, engine "
          f"{args.engine or ('compiled' if args.device == 'cpu' else 'torch')}")
    results = {}
    backends = ([] if args.skip_reference else ["reference"]) + args.dtypes
    for backend in backends:
        extra = ["--device", args.device] + (["--engine", args.engine] if args.engine else [])
        out = subprocess.run([sys.executable, __file__, "--child", backend, "--items",
                              str(args.items), "--seconds", str(args.seconds), *extra],
                             capture_output=True, text=True, check=True)
        results[backend] = json.loads(out.stdout.strip().splitlines()[-1])
        r = results[backend]
        rate = args.items * args.seconds / r["time"]
        line = (f"{'pyclarity' if backend == 'reference' else 'fast ' + backend:>14}: "
                f"{r['time']:8.2f} s  {rate:7.2f} audio-s/s  peak RSS {r['peak_mb']:7.0f} MB")
        if "gpu_peak_mb" in r:
            line += f"  GPU peak {r['gpu_peak_mb']:.0f} MB"
        if "reference" in results and backend != "reference":
            ref = results["reference"]
            diff = np.max(np.abs(np.subtract(r["scores"], ref["scores"])))
            line += f"  speed-up {ref['time'] / r['time']:6.1f}x  max |diff| {diff:.2e}"
        print(line, flush=True)
    if "reference" in results:
        print("pyclarity scores:", " ".join(f"{s:.4f}" for s in results["reference"]["scores"]))


if __name__ == "__main__":
    main()
