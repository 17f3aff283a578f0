"""Real-time factor and peak memory of every separator on a 30 s song.

Each backend runs in its own process (peak RSS is per process): a randomly initialised model
(the published architectures' default sizes, and the harness's shipped small sizes of spleeter
and mrx) is saved as safetensors, loaded through the backend like a user's checkpoint, and
separates 30 s of noise at 44.1 kHz: the remix separators (stereo) through the remix system's
chunking (10 s, 10% overlap), mrx and cocktail-dsp (mono) as the cocktail-fork systems run them.
Weights do not change memory or time. The weight-free `dsp` and `cocktail-dsp` are measured too.

    python benchmarks/separator_memory.py [--seconds 30] [--device cpu] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

NAMES = ("dsp", "spleeter-small", "spleeter-paper", "hdemucs", "htdemucs", "openunmix",
         "cocktail-dsp", "mrx-small", "mrx-paper")


def one(name: str, seconds: float, device: str) -> dict:
    import numpy as np
    import torch

    from systems.remix.learned import DEMUCS_ORDER, save_checkpoint
    from systems.remix.separators import make_separator

    torch.manual_seed(0)
    x = 0.1 * np.random.default_rng(0).standard_normal((2, int(seconds * 44100)))
    if name.startswith("mrx") or name == "cocktail-dsp":
        return cocktail(name, x[0], seconds, device)
    if name.startswith("spleeter") or name == "dsp":
        return remix(name, x, seconds, device)
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
        wall = timed_chunks(sep, x)
    return row(name, params, seconds, wall, device)


def timed_chunks(sep, x) -> float:
    """Wall time of a remix separator on x in the remix system's chunks (10 s, 10% overlap)."""
    from systems.remix.separators import chunked

    t = time.perf_counter()
    stems = chunked(lambda c: sep.separate(c, 44100), x, 44100, 10.0, 0.1)
    wall = time.perf_counter() - t
    assert all(v.shape == x.shape for v in stems.values())
    return wall


def row(name: str, params: int, seconds: float, wall: float, device: str) -> dict:
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return {"separator": name, "params_M": round(params / 1e6, 2), "audio_s": seconds,
            "wall_s": round(wall, 2), "rtf": round(wall / seconds, 3), "peak_rss_GB": round(peak_gb, 2),
            "device": device}


def remix(name: str, x, seconds: float, device: str) -> dict:
    """spleeter-small / spleeter-paper (harness checkpoints of a random model) and dsp."""
    from harness import checkpoints
    from systems.remix import spleeter as sp
    from systems.remix.separators import DspSeparator

    params = 0
    with tempfile.TemporaryDirectory() as tmp:
        if name == "dsp":
            sep = DspSeparator()
        else:
            arch = sp.ARCH_SMALL if name == "spleeter-small" else sp.ARCH_PAPER
            model = sp.Spleeter(arch)
            params = sum(p.numel() for p in model.parameters())
            checkpoints.save(f"{tmp}/s.safetensors", model.state_dict(),
                             {"architecture": {"name": "spleeter", "config": arch}})
            del model
            sep = sp.SpleeterSeparator(f"{tmp}/s.safetensors")
            sep.prepare(device)
        wall = timed_chunks(sep, x)
    return row(name, params, seconds, wall, device)


def cocktail(name: str, x, seconds: float, device: str) -> dict:
    """mrx-small / mrx-paper (a random model, as the mrx system runs it) and cocktail-dsp."""
    params = 0
    if name == "cocktail-dsp":
        from systems.cocktail import CocktailDSP, separate

        t = time.perf_counter()
        out = separate(x, 44100, dict(CocktailDSP.defaults))
        wall = time.perf_counter() - t
        assert all(len(v) == len(x) for v in out.values())
        return row(name, params, seconds, wall, device)
    from systems.mrx import model as mrx
    from systems.mrx.train import separate

    arch = mrx.ARCH_SMALL if name == "mrx-small" else mrx.ARCH_PAPER
    model = mrx.MRX(arch).to(device).eval()
    params = sum(p.numel() for p in model.parameters())
    t = time.perf_counter()
    out = separate(model, x, device)
    wall = time.perf_counter() - t
    assert all(len(v) == len(x) for v in out.values())
    return row(name, params, seconds, wall, device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", nargs="*", default=list(NAMES), choices=NAMES)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one, a.seconds, a.device)))
        return
    for name in a.only:
        r = subprocess.run([sys.executable, __file__, "--one", name, "--seconds", str(a.seconds),
                            "--device", a.device], capture_output=True, text=True)
        print(r.stdout.strip() or f"{name}: failed: {r.stderr.strip().splitlines()[-1]}")


if __name__ == "__main__":
    main()
