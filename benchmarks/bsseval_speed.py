"""BSSEval v4: museval against the torch kernel (harness.metrics.fast.bsseval), same signals, same
process.

Signals: T tracks of S stereo stems (harmonic notes with envelopes and noise, as the parity tests)
of D seconds at R Hz; estimates with leakage, filtering and clipping. Prints each backend's wall
time, the ratio, audio-seconds scored per second (track duration x tracks / time), the largest
per-frame difference between the two, and each backend's peak resident memory (measured in a
fresh child process per backend: the peak-RSS mark is reset after the signals are made).

    python benchmarks/bsseval_speed.py [--tracks 1] [--stems 4] [--seconds 30] [--rate 44100]
        [--device cpu|cuda] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.signal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def signals(tracks: int, stems: int, seconds: float, rate: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    refs = np.zeros((tracks, stems, n, 2))
    for b in range(tracks):
        for s in range(stems):
            f0 = 110 * 2 ** ((s * 5 + b) / 12)
            env = np.abs(np.sin(np.pi * t * (1.5 + s))) ** 2
            x = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 8)) * env
            x += 0.05 * rng.standard_normal(n)
            refs[b, s, :, 0], refs[b, s, :, 1] = x, 0.7 * x + 0.01 * rng.standard_normal(n)
    mix = refs.sum(1, keepdims=True)
    ests = 0.8 * refs + 0.15 * mix + 0.02 * rng.standard_normal(refs.shape)
    ests[:, 0] = scipy.signal.lfilter(scipy.signal.firwin(31, 0.4), 1, ests[:, 0], axis=1)
    ests[:, -1] = np.clip(ests[:, -1], -0.5, 0.5)
    return refs, ests


def run_one(backend: str, refs, ests, rate: int, device: str, repeats: int = 3):
    if backend == "reference":
        from harness.metrics.bsseval import bsseval_v4_frames

        t0 = time.perf_counter()
        out = [bsseval_v4_frames(r, e, rate) for r, e in zip(refs, ests, strict=True)]
        dt = time.perf_counter() - t0
        return dt, {k: np.stack([o[k] for o in out]) for k in out[0]}
    import torch

    from harness.metrics.fast.bsseval import bsseval_v4_frames as fast

    fast(refs[:, :, : rate * 2], ests[:, :, : rate * 2], rate, device=device)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    times = []
    for _ in range(repeats):  # the median of a few runs: the kernel's steady state
        t0 = time.perf_counter()
        out = fast(refs, ests, rate, device=device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tracks", type=int, default=1)
    ap.add_argument("--stems", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rate", type=int, default=44100)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", choices=["reference", "fast"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    refs, ests = signals(args.tracks, args.stems, args.seconds, args.rate)
    if args.only:  # child: one backend, report its peak memory
        import torch  # noqa: F401  (imported before the baseline, as the fast backend needs it)

        from harness.metrics import bsseval  # noqa: F401

        Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark (Linux)
        base = rss_kb("VmRSS")
        dt, _ = run_one(args.only, refs, ests, args.rate, args.device, repeats=1)
        peak = rss_kb("VmHWM")
        print(json.dumps({"seconds": dt, "peak_mb": peak / 1024, "growth_mb": (peak - base) / 1024}))
        return

    audio = args.tracks * args.seconds
    print(f"{args.tracks} track(s) x {args.stems} stereo stems x {args.seconds:g} s at {args.rate} Hz; "
          f"fast on {args.device}")
    t_ref, a = run_one("reference", refs, ests, args.rate, args.device)
    t_fast, b = run_one("fast", refs, ests, args.rate, args.device)
    worst = max(float(np.nanmax(np.abs(np.where(np.isinf(a[k]), 0, a[k] - b[k])))) for k in a)
    print(f"museval: {t_ref:7.2f} s  ({audio / t_ref:7.1f} audio-s/s)")
    print(f"fast:    {t_fast:7.2f} s  ({audio / t_fast:7.1f} audio-s/s; median of 3 runs after a warm-up)")
    print(f"ratio:   {t_ref / t_fast:7.1f}x; largest per-frame difference {worst:.2e} dB")
    for backend in ("reference", "fast"):
        cmd = [sys.executable, __file__, "--only", backend, "--tracks", str(args.tracks),
               "--stems", str(args.stems), "--seconds", str(args.seconds), "--rate", str(args.rate),
               "--device", args.device]
        res = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
        print(f"peak memory, {backend:9s}: {res['peak_mb']:.0f} MB resident "
              f"({res['growth_mb']:.0f} MB above the signals)")


if __name__ == "__main__":
    main()
