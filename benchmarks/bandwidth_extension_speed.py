"""Real-time factor of `unet-sr`, `sbr` and the speech-restoration chain, and unet-sr training
steps per second.

python benchmarks/bandwidth_extension_speed.py [--seconds 10] [--device cpu|cuda] [--train-steps 5]

RTF = processing time / audio duration (below 1: faster than real time), for one item of
`--seconds` of speech (the quick suite's, looped), each system prepared once and timed on its
second to fourth call (median): `unet-sr` at 16 kHz (ratio 4, bandwidth-extension) and at
32 kHz (ratio 2, speech-restoration), `sbr`, and the chains `hifigan>unet-sr` and
`hifigan>spline` on a speech-restoration item (16 kHz noisy input, 32 kHz output). Training:
steps per second of `harness train unet-sr`'s loop at the small and the paper size (batch and
segment as their configs; the paper size only on a GPU), after one warm-up step, on synthetic
batches.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def speech(seconds: float, rate: int) -> np.ndarray:
    import soundfile as sf
    import soxr

    x, r = sf.read(ROOT / "harness/suites/quick/speech-enhancement-quick/clean/se01.flac")
    return np.resize(soxr.resample(x, r, rate), int(seconds * rate))


def items(seconds: float, folder: Path) -> dict[str, object]:
    """A bandwidth-extension item (ratio 4) and a speech-restoration item (5 dB white noise)."""
    from scipy import signal

    from harness.audio import Audio, write
    from harness.suites.synth.gen_speech import spline_upsample
    from harness.suites.types import Item, file_ref

    clean16 = speech(seconds, 16000)
    clean16 = clean16[: len(clean16) // 12 * 12]
    low = signal.decimate(clean16, 4, n=8, ftype="iir", zero_phase=True)
    write(folder / "bwe_in.wav", Audio(spline_upsample(low, 4, len(clean16)), 16000))
    write(folder / "bwe_ref.wav", Audio(clean16, 16000))
    clean32 = speech(seconds, 32000)
    noise = np.random.default_rng(0).standard_normal(len(clean16))
    noisy = clean16 + noise * np.sqrt(np.mean(clean16 ** 2) / np.mean(noise ** 2)) * 10 ** (-5 / 20)
    write(folder / "sr_in.wav", Audio(noisy * 0.5, 16000))
    write(folder / "sr_ref.wav", Audio(clean32 * 0.5, 32000))
    ref = lambda name: file_ref(folder, folder / name)  # noqa: E731
    return {
        "bwe": Item("b0", "bandwidth-extension", folder, {"input": ref("bwe_in.wav")},
                    {"clean": ref("bwe_ref.wav")}, {"ratio": 4}),
        "sr": Item("s0", "speech-restoration", folder, {"input": ref("sr_in.wav")},
                   {"clean": ref("sr_ref.wav")}, {}),
    }


def rtf(seconds: float, device: str) -> None:
    from harness.api import system_from_spec

    with tempfile.TemporaryDirectory() as tmp:
        its = items(seconds, Path(tmp))
        print(f"| system | task | RTF ({seconds:g} s, {device}) |\n|---|---|---|")
        for spec, key in (("spline", "bwe"), ("sbr", "bwe"), ("unet-sr", "bwe"), ("unet-sr", "sr"),
                          ("hifigan", "sr"), ("hifigan>spline", "sr"), ("hifigan>unet-sr", "sr")):
            item = its[key]
            try:
                s = system_from_spec(spec)
                s.prepare(device)
                times = []
                for _ in range(4):
                    t0 = time.perf_counter()
                    s.process([item], None)
                    times.append(time.perf_counter() - t0)
            except Exception as exc:  # a missing checkpoint: say so and go on
                print(f"| {spec} | {item.task} | not run: {str(exc).splitlines()[0]} |")
                continue
            print(f"| {spec} | {item.task} | {statistics.median(times[1:]) / seconds:.3f} |")


def train_speed(device: str, steps: int) -> None:
    from harness.training.trainer import PRECISIONS, Trainer, load_train_config
    from systems.sr.train import UnetSRTraining

    print("\n| config | precision | parameters | batch x segment | steps/s |\n|---|---|---|---|---|")
    files = ["train-small.toml", "train-wideband.toml"]
    if device.startswith("cuda"):  # the paper's size: minutes per step on 2 CPU cores
        files.append("train-paper.toml")
    for cfg_file, precision in ((f, p) for f in files for p in PRECISIONS):
        spec = UnetSRTraining()
        cfg = load_train_config(spec, ROOT / "systems/sr/configs" / cfg_file, {"precision": precision})
        b, n = int(cfg["batch_size"]), int(cfg["segment"])
        g = torch.Generator().manual_seed(0)
        batch = (torch.randn(b, 1, n, generator=g).to(device) * 0.1,
                 torch.randn(b, 1, n, generator=g).to(device) * 0.1,
                 torch.full((b,), float(cfg["data"]["ratios"][0])).to(device))
        spec.batch = lambda cfg, step, dev, batch=batch: batch  # time the model, not the data
        t = Trainer(spec, cfg, Path(tempfile.gettempdir()) / "bench-unet-sr.safetensors", device)
        t.train_step()  # warm-up
        t0 = time.perf_counter()
        for _ in range(steps):
            t.step = 0
            t.train_step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        rate = steps / (time.perf_counter() - t0)
        count = sum(p.numel() for m in t.modules.values() for p in m.parameters())
        print(f"| {cfg_file} | {precision} | {count:,} | {b} x {n} | {rate:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--train-steps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    rtf(args.seconds, args.device)
    if args.train_steps:
        train_speed(args.device, args.train_steps)


if __name__ == "__main__":
    main()
