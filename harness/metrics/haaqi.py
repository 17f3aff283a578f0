"""HAAQI through pyclarity's `compute_haaqi`, in the Cadenza CAD1 convention.

The reference is presented at 65 dB SPL: level1 = 65 - 20 log10(rms(reference)). With
equalisation=1 HAAQI applies NAL-R for the listener's audiogram to the reference itself.
HAAQI adds internal noise from numpy's global generator; every call is seeded (from item id,
listener id and ear) and the global state restored, so reruns give the same number.
"""

from __future__ import annotations

import numpy as np

from harness.audio import Audio, rms
from harness.errors import InvalidInput
from harness.metrics.base import FunctionMetric

HAAQI_RATE = 24000


def haaqi_score(
    estimate: np.ndarray,
    reference: np.ndarray,
    rate: int,
    audiogram,
    *,
    equalisation: int = 1,
    level1: float | None = None,
    seed: int | None = None,
) -> float:
    """pyclarity HAAQI of a mono estimate against a mono reference (same rate)."""
    from clarity.evaluator.haaqi import compute_haaqi

    if level1 is None:
        level1 = 65.0 - 20.0 * np.log10(rms(reference))
    state = np.random.get_state()
    try:
        if seed is not None:
            np.random.seed(seed)
        # pyclarity takes the processed signal first, the reference second.
        return float(
            compute_haaqi(
                np.asarray(estimate, dtype=np.float64),
                np.asarray(reference, dtype=np.float64),
                rate,
                rate,
                audiogram,
                equalisation=equalisation,
                level1=level1,
            )
        )
    finally:
        np.random.set_state(state)


def _haaqi(estimate: Audio, reference: Audio, *, listener=None, ear=None, seed=None) -> float:
    from harness.listener import audiogram, haaqi_audiogram

    if listener is None or ear is None:
        raise InvalidInput("HAAQI needs a listener and an ear")
    if estimate.channels != 1:
        raise InvalidInput(f"HAAQI scores one ear (mono); got {estimate.channels} channels")
    ag = haaqi_audiogram(audiogram(listener, ear))
    return haaqi_score(estimate.mono(), reference.mono(), estimate.rate, ag, seed=seed)


HAAQI = FunctionMetric(
    "haaqi",
    _haaqi,
    sample_rate=HAAQI_RATE,
    needs_listener=True,
    unit="",
    description="HAAQI v1 (pyclarity), CAD1: reference at 65 dB SPL, equalisation=1, seeded",
    estimate_may_be_silent=True,
)
