"""HAAQI v1 (Kates & Arehart 2015/2016), fast: the same algorithm and numbers as pyclarity's
`haaqi_v1`, vectorised over auditory bands and segments and scored for a batch of
(reference, processed, audiogram) items in one call.

The model, item by item (24 kHz signals; pyclarity is the reference in the tests):

1. Input alignment: the processed signal is shifted by the lag of the maximum |cross-covariance|
   with the reference, less 2 ms, and both are cut to the span where |reference| exceeds 0.001
   of its peak. With equalisation=1 the reference gets the listener's NAL-R (pyclarity's `NALR`,
   140 taps).
2. Middle ear (1-pole low-pass at 5 kHz, 2-pole high-pass at 350 Hz), then 32 gammatone bands
   (ERB-spaced, 80 Hz to 8 kHz). A control pass at the widest (100 dB loss) bandwidths sets each
   band's bandwidth from its level (50 to 100 dB SPL between the listener's minimum and the
   maximum); the main pass gives each band's envelope and basilar-membrane (BM) motion.
3. Outer hair cells: dynamic-range compression driven by the control envelope (gain low-passed
   at 800 Hz), the processed envelope and BM aligned to the reference's (lags up to 100 ms),
   conversion to dB above the inner-hair-cell threshold, and the IHC rapid/short-term
   adaptation circuit. Gaussian noise 10 dB below threshold is added to the BM motion, and the
   bands' group delays are compensated.
4. Features: the envelopes smoothed in 8 ms half-overlapping Hann segments give a mel-cepstrum
   (6 coefficients) whose modulation-filtered (8 bands to 125 Hz) correlations give the
   high-modulation cepstral correlation; the BM motion in 16 ms segments gives the maximum
   normalised cross-covariance within 1 ms per (band, segment), averaged with IHC
   synchronisation weights (BM sync 5); the long-term band levels give the loudness and
   normalised-spectrum differences.
5. HAAQI = 0.336 N + 0.001 L + 0.501 N^2 + 0.161 L^2, N = 0.754 cep^3 + 0.246 bmsync5,
   L = 0.329 dloud + 0.671 dnorm.

Internal noise follows the reference's seeding exactly: each item draws from its own numpy
RandomState (or numpy's global generator) in pyclarity's order and amounts: the reference's BM
noise (32 x n), the processed signal's, then the two mel-cepstrum draws (32 x segments above
threshold, scaled by add_noise = 0 but drawn all the same). Items sharing a RandomState consume
it in batch order, as consecutive pyclarity calls would. Drawing (numpy's legacy Gaussian,
compiled: about 0.4 s of one core per 30 s item) runs in a worker thread alongside the model;
for the torch engine, items with generators of their own are drawn by several threads.

On the CPU the sample-by-sample recursions (filters, IHC circuit, segment covariances) run in
compiled kernels (`_numba`), written to the same direct-form-II-transposed arithmetic as scipy's
`lfilter` (the gammatone's 32 bands side by side, vectorised across bands); the rest is
torch: the lag searches by overlap-save FFT correlation, the compression gain and dB
conversions as a few whole-array passes. The bands x samples arrays live in a
workspace reused from item to item (`compiled.Workspace`). float64 (default) matches pyclarity to
rounding; float32 is accepted within 0.01.

`haaqi_v1_batch(..., device=, engine=)` picks the engine: "compiled" (the above; CPU only, the
default there) or "torch" (`torch_engine`: the same model in torch operations alone, every
recursion a block-and-prefix-scan state-space filter; the default on any other device, such as
CUDA). Both pass the same parity tests against pyclarity; on this CPU the torch engine is
slower than pyclarity (about 39 s per 30 s item) and is there for GPUs.

The package: `model` holds what both engines share (constants, the ear's parameters, alignment,
the OHC gain and dB conversions, the envelope and cepstral features, BM sync, the internal-noise
worker, the final combination); `compiled` the CPU engine (its workspace and the compiled
recursions); `torch_engine` the torch-only engine; this module the batch entry point.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from harness.metrics.fast.haaqi.compiled import Workspace, score_one
from harness.metrics.fast.haaqi.model import (  # noqa: F401  (the model's public names)
    ALIGN_RANGE_MS,
    AUDIOGRAM_FREQUENCIES,
    NCHAN,
    RATE,
    Ear,
    HaaqiResult,
    NoiseWorker,
    align_inputs,
    centre_frequencies,
    gammatone_coefficients,
    make_rng,
    nalr_reference,
    small_pages,
)


def haaqi_v1_batch(references, processeds, losses, level1, *, equalisation: int = 1,
                   seeds=None, dtype=torch.float64, device="cpu",
                   engine: str | None = None, memory_bytes: int | None = None) -> list[HaaqiResult]:
    """HAAQI v1 of each (reference, processed, loss, level1) item, all at 24 kHz.

    references, processeds: sequences of 1-D arrays (a pair trimmed to its shorter length);
    losses: per item the hearing loss in dB HL at 250, 500, 1000, 2000, 4000 and 6000 Hz;
    level1: per item the dB SPL of a signal of RMS 1 (a scalar for all);
    equalisation: 1 = apply NAL-R to the reference, 2 = the reference already has it;
    seeds: per item an int (a fresh RandomState), a RandomState (drawn from and advanced; items
    sharing one consume it in order) or None (numpy's global generator); one value for all;
    device: where the model runs; engine: "compiled" (the CPU kernels; the default on the CPU)
    or "torch" (`torch_engine`, torch operations only; the default on any other device);
    memory_bytes: the torch engine's budget: consecutive items go through its filters together
    as long as their estimated peak (`torch_engine.batch_bytes`) stays within it (one item at a
    time when even one exceeds it). Default: half the device's free memory on CUDA, 2 GiB on
    the CPU. The scores do not depend on how items are grouped."""
    device = torch.device(device)
    engine = engine or ("compiled" if device.type == "cpu" else "torch")
    if engine not in ("compiled", "torch") or (engine == "compiled" and device.type != "cpu"):
        raise ValueError(f"engine {engine!r} cannot run on {device}: the compiled kernels are CPU-only")
    B = len(references)
    if equalisation not in (1, 2):
        raise ValueError("equalisation must be 1 (add NAL-R) or 2 (reference has NAL-R)")
    level1 = np.broadcast_to(np.asarray(level1, dtype=np.float64), (B,))
    if seeds is None or isinstance(seeds, (int, np.integer, np.random.RandomState)):
        shared = make_rng(seeds)
        rngs = [shared] * B
    else:
        rngs = [make_rng(s) for s in seeds]
    npdt = np.float64 if dtype == torch.float64 else np.float32
    cf = centre_frequencies()
    bw_max = Ear.from_loss(np.full(6, 100.0), cf).bw_min
    control_coef = gammatone_coefficients(bw_max, cf)

    items = []
    for b in range(B):
        x = np.asarray(references[b], dtype=np.float64).ravel()
        y = np.asarray(processeds[b], dtype=np.float64).ravel()
        n = min(len(x), len(y))
        x, y = align_inputs(x[:n], y[:n])
        if equalisation == 1:
            x = nalr_reference(x, losses[b])
        items.append((x, y))
    with small_pages():
        # the compiled engine keeps both cores busy: one noise thread; on a GPU the CPU's
        # cores (up to 32) draw the noise of several items at once
        threads = 1 if engine == "compiled" else min(32, os.cpu_count() or 1)
        worker = NoiseWorker(rngs, [len(x) for x, _ in items], NCHAN, npdt, threads)
        if engine == "torch":
            from harness.metrics.fast.haaqi import torch_engine

            out: list[HaaqiResult] = []
            for first, stop in torch_chunks([len(x) for x, _ in items], dtype, device, memory_bytes):
                out += torch_engine.many(items[first:stop], [losses[b] for b in range(first, stop)],
                                         [float(v) for v in level1[first:stop]], cf, bw_max,
                                         control_coef, dtype, device, worker, first)
            return out
        work = Workspace(max((len(x) for x, _ in items), default=0), npdt)
        return [score_one(x, y, np.asarray(losses[b], dtype=np.float64), float(level1[b]), cf, bw_max,
                     control_coef, npdt, worker, b, work) for b, (x, y) in enumerate(items)]


def default_memory_bytes(device) -> int:
    """The torch engine's default budget: half the free memory of a CUDA device, else 2 GiB."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free // 2)
    return 2 << 30


def torch_chunks(lengths: list[int], dtype, device, memory_bytes: int | None = None):
    """(first, stop) ranges of consecutive items whose batch (padded to its longest item) fits
    the budget; an item that alone exceeds it goes alone."""
    from harness.metrics.fast.haaqi.torch_engine import batch_bytes

    budget = default_memory_bytes(device) if memory_bytes is None else int(memory_bytes)
    first, longest = 0, 0
    for b, n in enumerate(lengths):
        longest_with = max(longest, n)
        if b > first and batch_bytes(longest_with, b + 1 - first, dtype) > budget:
            yield first, b
            first, longest_with = b, n
        longest = longest_with
    if first < len(lengths):
        yield first, len(lengths)
