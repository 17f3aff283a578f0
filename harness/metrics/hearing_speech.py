"""Hearing-aid speech metrics through pyclarity 0.9: HASPI v2 (intelligibility) and HASQI v2
(quality) per ear for a listener, and MBSTOI (binaural intelligibility, no listener).

- `haspi`: `clarity.evaluator.haspi.haspi_v2(reference, rate, processed, rate, audiogram,
  level1)`, level1 65 dB SPL by default (the Clarity CEC recipes call it at 100 through
  `haspi_v2_be`; a protocol binds its level with `with_options(level1=...)`).
- `hasqi`: `clarity.evaluator.hasqi.hasqi_v2(..., equalisation=1, level1=65)`; the first of
  its returns (the combined quality).
- `mbstoi`: `clarity.evaluator.mbstoi.mbstoi(left_ref, right_ref, left_est, right_est, rate)`
  on stereo (left, right) signals.

The audiogram is the listener's for the ear, on HASPI/HASQI's six frequencies (resampled as
for HAAQI). HASPI's and HASQI's ear model and MBSTOI's equalisation-cancellation stage draw
internal noise from numpy's global generator: a call with a seed seeds it for that call and
restores the global state afterwards (None draws from it as it stands, as pyclarity does).
"""

from __future__ import annotations

import numpy as np

from harness.audio import Audio
from harness.errors import InvalidInput
from harness.metrics.base import FunctionMetric, process_state


def _seeded(seed):
    """numpy's global generator seeded for the call, pyclarity's below-threshold notes
    swallowed (process_state)."""
    return process_state(None if seed is None else int(seed) % 2**32)


def _one_ear(name: str, estimate: Audio, listener, ear):
    from harness.listener import audiogram, haaqi_audiogram

    if listener is None or ear is None:
        raise InvalidInput(f"{name} needs a listener and an ear")
    if estimate.channels != 1:
        raise InvalidInput(f"{name} scores one ear (mono); got {estimate.channels} channels")
    return haaqi_audiogram(audiogram(listener, ear))


def _haspi(estimate: Audio, reference: Audio, *, listener=None, ear=None, seed=None, level1: float = 65.0,
           **_) -> float:
    from clarity.evaluator.haspi import haspi_v2

    ag = _one_ear("HASPI", estimate, listener, ear)
    with _seeded(seed):
        value, _ = haspi_v2(reference.mono().astype(np.float64), reference.rate,
                            estimate.mono().astype(np.float64), estimate.rate, ag, level1=level1)
    return float(value)


def _hasqi(estimate: Audio, reference: Audio, *, listener=None, ear=None, seed=None, level1: float = 65.0,
           equalisation: int = 1, **_) -> float:
    from clarity.evaluator.hasqi import hasqi_v2

    ag = _one_ear("HASQI", estimate, listener, ear)
    with _seeded(seed):
        value = hasqi_v2(reference.mono().astype(np.float64), reference.rate,
                         estimate.mono().astype(np.float64), estimate.rate, ag,
                         equalisation=equalisation, level1=level1)[0]
    return float(value)


def _mbstoi(estimate: Audio, reference: Audio, *, seed=None, **_) -> float:
    from clarity.evaluator.mbstoi import mbstoi

    if estimate.channels != 2:
        raise InvalidInput(f"MBSTOI scores binaural (left, right) signals; got {estimate.channels} "
                           "channel(s)")
    r, e = reference.samples.astype(np.float64), estimate.samples.astype(np.float64)
    with _seeded(seed):
        return float(mbstoi(r[0], r[1], e[0], e[1], estimate.rate))


HASPI = FunctionMetric(
    "haspi", _haspi, needs_listener=True, unit="", estimate_may_be_silent=True,
    description="HASPI v2 (pyclarity) for one ear of a listener, reference at 65 dB SPL, seeded",
)
HASQI = FunctionMetric(
    "hasqi", _hasqi, needs_listener=True, unit="", estimate_may_be_silent=True,
    description="HASQI v2 (pyclarity) for one ear of a listener, equalisation=1, 65 dB SPL, seeded",
)
MBSTOI = FunctionMetric(
    "mbstoi", _mbstoi, unit="",
    description="Modified binaural STOI (pyclarity), stereo (left, right), seeded",
)
HEARING_SPEECH = (HASPI, HASQI, MBSTOI)
