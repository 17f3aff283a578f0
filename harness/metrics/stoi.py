"""STOI and extended STOI: pystoi (`reference` backend) or harness.metrics.fast.stoi (`fast`, the
default: the same algorithm in torch, equal to pystoi within 1e-12 in tests/test_fast_speech_metrics.py).
Both resample to 10 kHz internally.

pystoi returns 0.0 for silent input and 1e-5 (with a warning) when fewer than 30 frames survive
its silence removal; both are reported as invalid/failed here instead of as numbers.
"""

from __future__ import annotations

import warnings

from harness.audio import Audio
from harness.errors import InvalidInput, MetricFailed
from harness.metrics.base import FunctionMetric


def stoi_score(estimate, reference, rate: int, extended: bool, backend: str | None = None) -> float:
    """STOI (or ESTOI) of a mono estimate against a mono reference at `rate` Hz; `backend`
    None: the default (harness.metrics.backends.DEFAULTS)."""
    from pystoi import stoi

    from harness.metrics import backends

    if (backend or backends.DEFAULTS["stoi"]) == backends.FAST:
        from harness.metrics.fast.stoi import TooShort, stoi_scores

        (value,) = stoi_scores([reference], [estimate], rate, extended=extended,
                               device=backends.current().device)
        if isinstance(value, TooShort):
            raise MetricFailed("too little speech for STOI (under 30 frames after silence removal)")
        return value

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(stoi(reference, estimate, rate, extended=extended))
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        raise MetricFailed("too little speech for STOI (under 30 frames after silence removal)")
    return value


def _make(extended: bool, backend: str):
    def fn(estimate: Audio, reference: Audio, **_) -> float:
        if estimate.channels != 1:
            raise InvalidInput(f"STOI scores mono signals; got {estimate.channels} channels")
        return stoi_score(estimate.mono(), reference.mono(), estimate.rate, extended, backend)

    return fn


STOI = FunctionMetric(
    "stoi", _make(False, "reference"), fast=_make(False, "fast"), unit="",
    description="Short-time objective intelligibility (pystoi)",
)
ESTOI = FunctionMetric(
    "estoi", _make(True, "reference"), fast=_make(True, "fast"), unit="",
    description="Extended STOI (Jensen & Taal 2016, pystoi)",
)
