"""STOI/ESTOI and PESQ: the reference packages one item at a time against the harness's batch
kernels, on the same signals in the same process.

    python benchmarks/speech_metrics_speed.py [--items 32] [--seconds 10] [--workers N]
                                              [--device cpu|cuda]

Items: the built-in quick suite's clean speech, tiled to D seconds at 16 kHz, with white or
competing-talker noise at -5 to 30 dB. Prints each backend's time, the ratio, audio-seconds
scored per second and the largest difference.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.signal
import soundfile as sf

QUICK = Path(__file__).resolve().parents[1] / "harness" / "suites" / "quick" / "speech-enhancement-quick"
RATE = 16000


def make_items(n: int, seconds: float):
    rng = np.random.default_rng(0)
    clean = []
    for path in sorted((QUICK / "clean").glob("*.flac")):
        x, r = sf.read(path, always_2d=True)
        clean.append(scipy.signal.resample_poly(x[:, 0], RATE, r) if r != RATE else x[:, 0])
    length = int(seconds * RATE)
    items = []
    for i in range(n):
        ref = np.resize(clean[i % len(clean)], length)
        noise = (rng.standard_normal(length) if i % 2 else
                 np.resize(clean[(i + 3) % len(clean)], length))
        snr = -5 + 35 * (i % 8) / 7
        est = ref + noise * np.sqrt(np.mean(ref ** 2) / np.mean(noise ** 2)) * 10 ** (-snr / 20)
        items.append((ref, est))
    return items


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    from pesq import pesq
    from pystoi import stoi

    from harness.metrics.fast.pesq import pesq_batch
    from harness.metrics.fast.stoi import stoi_scores

    items = make_items(args.items, args.seconds)
    refs, ests = [r for r, _ in items], [e for _, e in items]
    audio_s = args.items * args.seconds
    print(f"{args.items} items x {args.seconds:g} s at 16 kHz; device {args.device}; "
          f"PESQ workers {args.workers}")
    stoi_scores(refs[:1], ests[:1], RATE, device=args.device)  # warm-up
    for name, extended in (("STOI", False), ("ESTOI", True)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref_v, t_ref = timed(lambda e=extended: [stoi(r, x, RATE, extended=e) for r, x in items])
        fast_v, t_fast = timed(lambda e=extended: stoi_scores(refs, ests, RATE, extended=e,
                                                              device=args.device))
        diff = max(abs(a - b) for a, b in zip(ref_v, fast_v, strict=True))
        print(f"{name:6s} pystoi {t_ref:7.2f} s  torch {t_fast:7.2f} s  {t_ref / t_fast:5.1f}x  "
              f"{audio_s / t_fast:8.0f} audio-s/s  max diff {diff:.1e}")
    ref_v, t_ref = timed(lambda: [pesq(RATE, r, x, "wb") for r, x in items])
    fast_v, t_fast = timed(lambda: pesq_batch(refs, ests, RATE, "wb", workers=args.workers))
    diff = max(abs(a - b) for a, b in zip(ref_v, fast_v, strict=True))
    print(f"PESQ   serial {t_ref:7.2f} s  {args.workers} processes {t_fast:7.2f} s  "
          f"{t_ref / t_fast:5.1f}x  {audio_s / t_fast:8.0f} audio-s/s  max diff {diff:.1e} "
          f"(pool start-up included)")


if __name__ == "__main__":
    main()
