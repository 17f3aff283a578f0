"""BSSEval v4 (museval): framewise SDR/ISR/SIR/SAR with time-invariant 512-tap distortion filters.

`import museval` imports musdb -> stempeg, which raises at import time when ffmpeg is absent.
The metric code itself (museval/metrics.py) needs only numpy and scipy, so it is loaded here as a
standalone module from museval's installed files: the numbers are museval's, and ffmpeg is not
needed. Per-source values are the median over 1 s frames, ignoring frames where museval gives
NaN (silent reference frames), as museval's own aggregation does.
"""

from __future__ import annotations

import importlib.util
import warnings
from functools import cache
from pathlib import Path

import numpy as np

from harness.audio import Audio
from harness.errors import InvalidInput, MetricFailed
from harness.metrics.backends import DEFAULT_CONTEXT, ScoringContext
from harness.metrics.base import DB_CEILING, FAILED, MULTI_SOURCE, OK, FunctionMetric, Score, status_of

BSS_NAMES = ("sdr", "isr", "sir", "sar")


@cache
def museval_metrics():
    """museval.metrics, loaded without running museval/__init__ (which needs ffmpeg)."""
    spec = importlib.util.find_spec("museval")
    if spec is None or not spec.submodule_search_locations:
        raise MetricFailed("museval is not installed (pip install museval)")
    path = Path(next(iter(spec.submodule_search_locations))) / "metrics.py"
    mspec = importlib.util.spec_from_file_location("_harness_museval_metrics", path)
    module = importlib.util.module_from_spec(mspec)
    mspec.loader.exec_module(module)
    return module


def bsseval_v4_frames(
    references: np.ndarray, estimates: np.ndarray, rate: int, window_s: float = 1.0
) -> dict[str, np.ndarray]:
    """museval v4 on arrays shaped (sources, frames, channels); returns (sources, windows) each."""
    m = museval_metrics()
    win = int(round(window_s * rate))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sdr, isr, sir, sar, _ = m.bss_eval(
            references,
            estimates,
            compute_permutation=False,
            window=win,
            hop=win,
            framewise_filters=False,
            bsseval_sources_version=False,
        )
    return dict(zip(BSS_NAMES, (sdr, isr, sir, sar), strict=True))


def bsseval_v4(
    references: list[Audio], estimates: list[Audio], window_s: float = 1.0,
    backend: str | None = None,
) -> dict[str, np.ndarray]:
    """Per-source median over frames of SDR/ISR/SIR/SAR, capped at DB_CEILING; NaN if no frame.

    backend: "reference" (museval) or "fast" (harness.metrics.fast.bsseval, torch, float64);
    None: the default (harness.metrics.backends.DEFAULTS)."""
    rate = references[0].rate
    for i, (r, e) in enumerate(zip(references, estimates, strict=True)):
        if r.rate != rate or e.rate != rate:
            raise InvalidInput(f"source {i}: all signals must share one rate")
        if r.samples.shape != e.samples.shape:
            raise InvalidInput(f"source {i}: estimate shape {e.samples.shape} != {r.samples.shape}")
        if not np.any(r.samples):
            raise InvalidInput(f"source {i}: reference is silent: BSSEval is undefined")
        if not np.any(e.samples):
            raise InvalidInput(f"source {i}: estimate is silent: BSSEval is undefined")
    ref = np.stack([r.samples.T for r in references]).astype(np.float64)
    est = np.stack([e.samples.T for e in estimates]).astype(np.float64)
    from harness.metrics import backends

    if (backend or backends.DEFAULTS["bsseval"]) == backends.FAST:
        from harness.metrics.fast.bsseval import bsseval_v4_frames as fast_frames

        frames = fast_frames(ref, est, rate, window_s, device=backends.current().device)
    else:
        frames = bsseval_v4_frames(ref, est, rate, window_s)
    out = {}
    for name, values in frames.items():
        values = np.minimum(np.asarray(values, dtype=np.float64), DB_CEILING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            out[name] = np.nanmedian(values, axis=1)
    return out


def _single(name: str, backend: str):
    def fn(estimate: Audio, reference: Audio, **_) -> float:
        value = float(bsseval_v4([reference], [estimate], backend=backend)[name][0])
        if np.isnan(value):
            raise MetricFailed("no frame of the reference is active")
        return value

    return fn


_DESC = {
    "sdr": "BSSEval v4 signal-to-distortion ratio (museval, 1 s frames, median)",
    "isr": "BSSEval v4 image-to-spatial distortion ratio (museval, 1 s frames, median)",
    "sir": "BSSEval v4 signal-to-interference ratio (museval, 1 s frames, median)",
    "sar": "BSSEval v4 signal-to-artefacts ratio (museval, 1 s frames, median)",
}
BSS_METRICS = {n: FunctionMetric(n, _single(n, "reference"), fast=_single(n, "fast"), unit="dB",
                                 description=_DESC[n], kind=MULTI_SOURCE)
               for n in BSS_NAMES}


def evaluate_sources(
    names: list[str], references: list[Audio], estimates: list[Audio], stems: list[str],
    ctx: ScoringContext | None = None, memo_key: list[str] | None = None,
) -> list[Score]:
    """BSSEval v4 of several sources jointly (the multi-source call): one Score per (metric in
    `names`, stem), each with its status (`status_of` for what raised; `failed` for a source
    with no active reference frame) and its backend; memoised under `memo_key` when given."""
    ctx = ctx or DEFAULT_CONTEXT
    backend = ctx.backend("bsseval")

    def compute() -> dict[str, list[float | None]]:
        return {k: [None if np.isnan(x) else float(x) for x in v]
                for k, v in bsseval_v4(references, estimates, backend=backend).items()}

    try:
        values = ctx.memoised(memo_key, compute) if memo_key else compute()
    except Exception as exc:
        status, reason = status_of(exc)
        return [Score(n, None, status, reason, "", s, backend) for n in names for s in stems]
    rows = []
    for n in names:
        for i, s in enumerate(stems):
            v = values[n][i]
            if v is None:
                rows.append(Score(n, None, FAILED, "no active reference frame", "", s, backend))
            else:
                rows.append(Score(n, v, OK, "", "", s, backend))
    return rows
