"""Real-time factor of every speech-enhancement system, and HiFi-GAN training steps per second.

python benchmarks/speech_enhancement_speed.py [--seconds 10] [--device cpu|cuda]
    [--checkpoint PATH] [--train-steps 5]

RTF = processing time / audio duration (below 1: faster than real time), for one item of
`--seconds` of generated noisy, reverberant speech at 16 kHz, each system prepared once and
timed on its second call (median of 3). Training: steps per second of `harness train hifigan`'s
loop at the small, the medium and (on a GPU) the paper size (batch and segment as their
configs), each in float32 and in bfloat16 mixed precision, after one warm-up step, on synthetic
batches (the data pipeline is timed separately).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def item_signal(seconds: float) -> np.ndarray:
    import soundfile as sf

    x, _ = sf.read(ROOT / "harness/suites/quick/speech-enhancement-quick/clean/se01.flac")
    x = np.resize(x, int(seconds * 16000))
    noise = np.random.default_rng(0).standard_normal(len(x))
    return x + noise * np.sqrt(np.mean(x ** 2) / np.mean(noise ** 2)) * 10 ** (-5 / 20)  # 5 dB SNR


def rtf(systems: list[str], seconds: float, device: str, checkpoint: str | None) -> None:
    from harness.api import get_system

    x = item_signal(seconds)
    print(f"| system | RTF ({seconds:g} s at 16 kHz, {device}) |\n|---|---|")
    for name in systems:
        params = {"checkpoint": checkpoint} if name == "hifigan" and checkpoint else {}
        try:
            s = get_system(name, **params)
            s.prepare(device)
        except Exception as exc:  # a missing checkpoint: say so and go on
            print(f"| {name} | not run: {exc} |")
            continue
        times = []
        for _ in range(4):
            t0 = time.perf_counter()
            if name == "hifigan":
                from systems.speech.hifigan import enhance

                enhance(s.generator, x)
            else:
                s.enhance(x)
            times.append(time.perf_counter() - t0)
        print(f"| {name} | {statistics.median(times[1:]) / seconds:.3f} |")


def train_speed(device: str, steps: int) -> None:
    from harness.training.trainer import PRECISIONS, Trainer, load_train_config
    from systems.speech.learned import HiFiGAN

    print("\n| size | precision | batch x segment | stage | steps/s | data s/step |")
    print("|---|---|---|---|---|---|")
    sizes = [("small", "train-sisdr-voices.toml"),  # stage 1 of the shipped recipe: its time
             ("medium", "train-medium-base.toml")]
    if device.startswith("cuda"):  # the paper's size needs more than 24 GiB on the CPU (OOM-killed here)
        sizes.append(("paper", "train-paper.toml"))
    for (label, cfg_file), precision in ((s, p) for s in sizes for p in PRECISIONS):
        spec = HiFiGAN.training()
        cfg = load_train_config(spec, ROOT / "systems/speech/configs" / cfg_file, {"precision": precision})
        b, n = int(cfg["batch_size"]), int(cfg["segment_s"] * 16000)
        g = torch.Generator().manual_seed(0)
        batch = (torch.randn(b, 1, n, generator=g, device="cpu").to(device) * 0.1,
                 torch.randn(b, 1, n, generator=g).to(device) * 0.1)
        spec.batch = lambda cfg, step, dev, batch=batch: batch  # time the model, not the data
        t = Trainer(spec, cfg, Path("/tmp/bench-hifigan.safetensors"), device)
        for stage, at in (("wavenet", 0), ("adversarial", sum(s.steps for s in t.stages[:2]))):
            t.step = at
            t.train_step()  # warm-up
            t0 = time.perf_counter()
            for _ in range(steps):
                t.step = at
                t.train_step()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            rate = steps / (time.perf_counter() - t0)
            print(f"| {label} | {precision} | {b} x {cfg['segment_s']:g} s | {stage} | {rate:.3f} | |")
    from systems.speech.hifigan_train import HifiganTraining

    spec = HifiganTraining()
    cfg = load_train_config(spec, ROOT / "systems/speech/configs/train-sisdr-voices.toml")
    data = spec.data(cfg)
    data.batch(0, 1, 1.0)  # renders the pool's first texts, simulates the room bank (cached)
    t0 = time.perf_counter()
    for step in range(1, 4):
        data.batch(step, int(cfg["batch_size"]), float(cfg["segment_s"]))
    print(f"| small | | data pipeline | | | {(time.perf_counter() - t0) / 3:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--train-steps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    rtf(["spectral-gating", "mmse-lsa", "wpe", "hifigan"], args.seconds, args.device, args.checkpoint)
    if args.train_steps:
        train_speed(args.device, args.train_steps)


if __name__ == "__main__":
    main()
