"""Neighbourhood PLCS (Kim & Smaragdis 2016) against full PLCS on a massive scene.

Generates (or reads) a `crowd-enhancement --preset massive` scene: L sensors in a 50 x 50 m
room, 30 sources, 10 s at 16 kHz; STFT 1024 (Hann) hop 256 (75% overlap) as the paper; 50 shared
and 10 individual components. In one process, on the same spectrograms and the same
initialisation, it times and scores:

- full PLCS (every recording in every EM iteration) and neighbourhood PLCS with K = a fraction
  of L (exhaustive or two-stage hashing search, refreshed every iteration): seconds per
  iteration (median, search included) and the BSSEval v4 SDR of the reconstruction against the
  target talker after chosen iterations;
- the neighbour searches alone, on the source estimates met during the runs (neighbourhood PLCS
  after iterations 1, 3 and 10, and full PLCS after 3): exhaustive cross-entropy over all L
  against WTA hash codes (popcount of AND) then exact cross-entropy on the top 3K; the recall
  of the exhaustive neighbours (the worst over estimates) and the time ratio;
- the median-spectrogram baseline and the mean input SDR, as the paper's anchors.

    python benchmarks/plcs_neighbourhood.py [--sensors 1000] [--fraction 0.1] [--iterations 30] [--repeats 9]
        [--scene DIR] [--device cpu|cuda] [--dtype float32]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def make_scene(sensors: int, seconds: float, folder: Path) -> Path:
    out = folder / f"massive-{sensors}"
    if not (out / "manifest.json").exists():
        subprocess.run([sys.executable, "-m", "harness.cli", "suites", "make", "crowd-enhancement",
                        "--preset", "massive", "--items", "1", "--seconds", str(seconds), "-O",
                        f"sensors={sensors}", "-O", "priors=true", "--out", str(out), "-q"],
                       check=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sensors", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--fraction", type=float, nargs="+", default=[0.1, 0.05])
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--checkpoints", type=int, nargs="+", default=[1, 3, 5, 10, 20, 30])
    ap.add_argument("--scene", type=Path, default=None, help="an existing massive scene folder")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--hash-draws", type=int, default=1024)
    ap.add_argument("--hash-m", type=int, default=4)
    ap.add_argument("--no-prior", action="store_true", help="PLCS without the source prior")
    ap.add_argument("--repeats", type=int, default=9, help="timings of each search per estimate")
    args = ap.parse_args()

    from harness.api import get_system
    from harness.audio import Audio
    from harness.metrics.bsseval import bsseval_v4
    from harness.suites import load_suite
    from systems.plcs.model import select_exhaustive, select_two_stage

    estimates: dict[str, torch.Tensor] = {}  # source estimates the searches are timed on

    torch.set_num_threads(torch.get_num_threads())
    folder = args.scene or make_scene(args.sensors, args.seconds, Path(tempfile.gettempdir()))
    item = load_suite(folder).items[0]
    src = item.reference("source").mono().astype(np.float64)
    print(f"scene {folder}: {len(item.inputs)} recordings x {args.seconds:g} s at "
          f"{item.references['source'].rate} Hz; device {args.device}, {args.dtype}, "
          f"{torch.get_num_threads()} threads")

    # 2016 settings: 50 shared components (a source prior's 50 bases, learned by PLCA on 30 s of
    # other speech) and 10 individual ones; the prior's weight decays.
    prior_mode = "source" if "prior_source" in item.inputs and not args.no_prior else "none"
    base = dict(n_fft=1024, hop=256, n_common=50, n_individual=10, priors=prior_mode,
                n_prior_source=50, align=False, dtype=args.dtype, iterations=args.iterations)
    probe = get_system("plcs", **base)
    probe.prepare(args.device)
    t0 = time.perf_counter()
    x, rate, n = probe.aligned(item)
    X = probe.stft(x)
    del x
    sp, _ = probe.priors(item, rate)
    print(f"spectrograms {tuple(X.shape)} and priors ({prior_mode}) in {time.perf_counter() - t0:.1f} s")

    def system_source(m, idx):
        return m.source_magnitude(idx).reshape(-1).clone()

    def run(label: str, **params) -> dict:
        system = get_system("plcs", **base, **params)
        system.prepare(args.device)
        times: list[float] = []
        sdrs: dict[int, float] = {}
        last = [time.perf_counter()]

        def on_iteration(i, m, idx):
            sync(args.device)
            now = time.perf_counter()
            times.append(now - last[0])
            if i + 1 in (1, 3, 10) and idx is not None and params.get("search") == "exhaustive":
                estimates[f"{label}, it{i + 1}"] = system_source(m, idx)
            if i + 1 == 3 and idx is None:
                estimates["full PLCS, it3"] = system_source(m, idx)
            if i + 1 in args.checkpoints:
                y = system.reconstruct(m, X, idx, n)
                sdrs[i + 1] = float(bsseval_v4([Audio(src[None], rate)], [Audio(y[None], rate)])["sdr"][0])
            sync(args.device)
            last[0] = time.perf_counter()

        system.fit(X, sp, None, on_iteration=on_iteration)
        per_iter = statistics.median(times)
        print(f"{label:34s} {per_iter:7.3f} s/iteration  SDR " +
              "  ".join(f"it{k}: {v:5.2f}" for k, v in sorted(sdrs.items())), flush=True)
        return {"per_iter": per_iter, "sdr": sdrs}

    results = {"full": run("full PLCS")}
    L = X.shape[0]
    for frac in args.fraction:
        k = max(1, int(round(frac * L)))
        for search in ("exhaustive", "hash"):
            results[(frac, search)] = run(f"neighbours K={k} ({frac:.0%}), {search}",
                                          neighbours=k, search=search,
                                          hash_draws=args.hash_draws, hash_m=args.hash_m)
    full = results["full"]
    print()
    for key, r in results.items():
        if key == "full":
            continue
        best_n, best_f = max(r["sdr"].values()), max(full["sdr"].values())
        last_it = max(r["sdr"])
        print(f"K={key[0]:.0%} {key[1]:10s}: {full['per_iter'] / r['per_iter']:5.1f}x faster per "
              f"iteration; SDR at it{last_it} {r['sdr'][last_it]:.2f} vs full {full['sdr'][last_it]:.2f} dB; "
              f"best {best_n:.2f} vs {best_f:.2f} dB")

    # ---- anchors: the mean input SDR (scale-invariant, every recording) and the median baseline
    x = probe.aligned(item)[0]
    s2 = src @ src
    si = [10 * np.log10((a := (r @ src) / s2) ** 2 * s2 / np.sum((r - a * src) ** 2)) for r in x]
    del x
    median = get_system("crowd-median", n_fft=1024, hop=256, align=False)
    median.prepare(args.device)
    y = median.process_item(item)["enhanced"].mono()
    print(f"\nanchors: mean input SI-SDR {np.mean(si):.2f} dB (median {np.median(si):.2f}, best "
          f"{np.max(si):.2f}); median-spectrogram baseline SDR "
          f"{float(bsseval_v4([Audio(src[None], rate)], [Audio(y[None], rate)])['sdr'][0]):.2f} dB")

    # ---- the neighbour searches alone, on the source estimates met in the runs
    V = X.abs()
    Vhat = (V / V.sum((1, 2), keepdim=True).clamp_min(1e-30)).reshape(L, -1)
    del V
    probe_hash = get_system("plcs", **base, search="hash", hash_draws=args.hash_draws, hash_m=args.hash_m)
    c = probe_hash.cfg
    hasher = probe_hash.hasher(tuple(X.shape[1:]), Vhat.device)
    t0 = time.perf_counter()
    codes = hasher.codes(Vhat)
    sync(args.device)
    t_codes = time.perf_counter() - t0
    print(f"\nWTA codes of {L} recordings (Q={c['hash_draws']} draws, M={c['hash_m']}, pooled "
          f"{c['hash_pool'][0]}x{c['hash_pool'][1]}, whitened {c['hash_whiten']}): {t_codes:.3f} s (once)")
    for frac in args.fraction:
        k = max(1, int(round(frac * L)))
        te, th, recalls = [], [], []
        for source in estimates.values():
            ex = select_exhaustive(Vhat, source, k)
            hs = select_two_stage(Vhat, codes, hasher, source, k)
            recalls.append(len(set(ex.tolist()) & set(hs.tolist())) / k)
        # the two searches alternate, call by call, so a drift of the machine's speed (20-30%
        # here between minutes) falls on both alike
        for _ in range(args.repeats):
            for source in estimates.values():
                sync(args.device)
                t0 = time.perf_counter()
                select_exhaustive(Vhat, source, k)
                sync(args.device)
                te.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                select_two_stage(Vhat, codes, hasher, source, k)
                sync(args.device)
                th.append(time.perf_counter() - t0)
        ratio = statistics.median(te) / statistics.median(th)
        print(f"K={k} ({frac:.0%}), {len(estimates)} estimates: exhaustive "
              f"{statistics.median(te) * 1e3:.1f} ms, two-stage {statistics.median(th) * 1e3:.1f} ms "
              f"({ratio:.1f}x faster); recall of the exhaustive neighbours: worst "
              f"{min(recalls):.0%}, mean {statistics.mean(recalls):.0%}")

if __name__ == "__main__":
    main()
