"""Peak memory and time of the learned remix separators on a 30 s stereo song, in chunks.

Each backend runs in its own process (peak RSS is per process): a randomly initialised
full-size model (the published architectures' default sizes) is saved as safetensors, loaded
through the backend like a user's checkpoint, and separates 30 s of stereo noise at 44.1 kHz
through the remix system's chunking (10 s, 10% overlap). Weights do not change memory or time.

    python benchmarks/separator_memory.py [--seconds 30] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time


def one(name: str, seconds: float, device: str) -> dict:
    import numpy as np
    import torch

    from systems.remix.learned import DEMUCS_ORDER, save_checkpoint
    from systems.remix.separators import chunked, make_separator

    torch.manual_seed(0)
    if name == "hdemucs":
        from demucs.hdemucs import HDemucs

        model, args = HDemucs(sources=list(DEMUCS_ORDER)), {}
    elif name == "htdemucs":
        from demucs.htdemucs import HTDemucs

        model, args = HTDemucs(sources=list(DEMUCS_ORDER)), {}
    else:
        from systems.remix.umx import UmxSeparator

        model, args = UmxSeparator(), {}
    params = sum(p.numel() for p in model.parameters())
    with tempfile.TemporaryDirectory() as tmp:
        path = save_checkpoint(model, f"{tmp}/{name}.safetensors", args, name)
        del model
        sep = make_separator(name, checkpoint=str(path))
        sep.prepare(device)
        x = 0.1 * np.random.default_rng(0).standard_normal((2, int(seconds * 44100)))
        t = time.perf_counter()
        stems = chunked(lambda c: sep.separate(c, 44100), x, 44100, 10.0, 0.1)
        wall = time.perf_counter() - t
    assert all(v.shape == x.shape for v in stems.values())
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return {"separator": name, "params_M": round(params / 1e6, 1), "audio_s": seconds,
            "wall_s": round(wall, 1), "peak_rss_GB": round(peak_gb, 2), "device": device}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.seconds, a.device)))
        return
    for name in ("hdemucs", "htdemucs", "openunmix"):
        r = subprocess.run([sys.executable, __file__, "--one", name, "--seconds", str(a.seconds),
                            "--device", a.device], capture_output=True, text=True)
        print(r.stdout.strip() or f"{name}: failed: {r.stderr.strip().splitlines()[-1]}")


if __name__ == "__main__":
    main()
