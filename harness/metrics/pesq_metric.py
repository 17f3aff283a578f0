"""PESQ (ITU-T P.862) through the `pesq` package: wide band at 16 kHz, narrow band at 8 kHz.

pesq prints its docstring to stdout on a ValueError and raises a bare ValueError on silent or
NaN input; this wrapper keeps stdout clean and maps its errors to score statuses.
"""

from __future__ import annotations

import numpy as np

from harness.audio import Audio, resample
from harness.errors import InvalidInput, MetricFailed
from harness.metrics.base import FunctionMetric, process_state


def pesq_score(estimate: np.ndarray, reference: np.ndarray, rate: int, mode: str) -> float:
    from pesq import pesq
    from pesq.cypesq import BufferTooShortError, NoUtterancesError

    with process_state():  # stdout swallowed, one thread at a time
        try:
            return float(pesq(rate, reference.astype(np.float64), estimate.astype(np.float64), mode))
        except NoUtterancesError:
            raise MetricFailed("PESQ found no utterances in the signal") from None
        except BufferTooShortError:
            raise MetricFailed("signal too short for PESQ (under 0.25 s)") from None
        except ValueError as exc:
            raise MetricFailed(f"PESQ could not score the signal ({exc})") from None


def _mono_pair(estimate: Audio, reference: Audio, name: str) -> tuple[np.ndarray, np.ndarray]:
    if estimate.channels != 1:
        raise InvalidInput(f"{name} scores mono signals; got {estimate.channels} channels")
    return estimate.mono(), reference.mono()


def _pesq_wb(estimate: Audio, reference: Audio, **_) -> float:
    if estimate.rate != 16000:
        raise InvalidInput(f"wide-band PESQ needs 16 kHz audio, got {estimate.rate} Hz")
    e, r = _mono_pair(estimate, reference, "PESQ")
    return pesq_score(e, r, 16000, "wb")


def _pesq_nb(estimate: Audio, reference: Audio, **_) -> float:
    # Stated resampling: narrow-band PESQ is computed at 8 kHz; 16 kHz inputs are resampled (soxr).
    if estimate.rate not in (8000, 16000):
        raise InvalidInput(f"narrow-band PESQ needs 8 or 16 kHz audio, got {estimate.rate} Hz")
    e, r = _mono_pair(resample(estimate, 8000), resample(reference, 8000), "PESQ")
    return pesq_score(e, r, 8000, "nb")


PESQ_WB = FunctionMetric(
    "pesq", _pesq_wb, sample_rate=16000, unit="MOS-LQO",
    description="Wide-band PESQ (ITU-T P.862.2) at 16 kHz",
)
PESQ_NB = FunctionMetric(
    "pesq_nb", _pesq_nb, sample_rate=8000, unit="MOS-LQO",
    description="Narrow-band PESQ (ITU-T P.862) at 8 kHz (16 kHz input resampled with soxr)",
)
