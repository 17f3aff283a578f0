"""HAAQI through pyclarity's `compute_haaqi`, in the Cadenza CAD1 convention.

The reference is presented at 65 dB SPL: level1 = 65 - 20 log10(rms(reference)). With
equalisation=1 HAAQI applies NAL-R for the listener's audiogram to the reference itself.
HAAQI adds internal noise from numpy's global generator. A call is given either a seed (the
generator is seeded for that call alone) or a running `np.random.RandomState` (the call draws
from it and advances it, as the Cadenza recipes do when they seed once per song and score eight
signals in a row). numpy's global state is restored afterwards either way. The `fast` backend
(harness.metrics.fast.haaqi, the default) computes the same numbers from the same draws.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from harness.audio import Audio, rms
from harness.errors import InvalidInput
from harness.metrics.base import FunctionMetric, process_state

HAAQI_RATE = 24000


def cad1_song_seed(song: str) -> int:
    """The Cadenza recipes' per-song HAAQI seed: int(md5(song name), 16) mod 10**8."""
    import hashlib

    return int(hashlib.md5(song.encode("utf-8")).hexdigest(), 16) % 10**8


def haaqi_score(
    estimate: np.ndarray,
    reference: np.ndarray,
    rate: int,
    audiogram,
    *,
    equalisation: int = 1,
    level1: float | None = None,
    seed: int | np.random.RandomState | None = None,
    backend: str | None = None,
) -> float:
    """pyclarity HAAQI of a mono estimate against a mono reference (same rate).

    `seed`: an int seeds numpy's generator for this call; a RandomState is drawn from (and
    advanced); None draws from numpy's global generator as it stands."""
    from clarity.evaluator.haaqi import compute_haaqi

    from harness.metrics import backends

    if level1 is None:
        level1 = 65.0 - 20.0 * np.log10(rms(reference))
    if (backend or backends.DEFAULTS["haaqi"]) == backends.FAST:
        from harness.metrics.fast.haaqi import AUDIOGRAM_FREQUENCIES, haaqi_v1_batch

        losses = audiogram.resample(AUDIOGRAM_FREQUENCIES).levels
        ctx = backends.current()
        if ctx.haaqi_batcher is not None:  # the device scorer: gathered with other jobs' calls
            return ctx.haaqi_batcher.score(reference, estimate, losses, level1,
                                           equalisation=equalisation, seed=seed)
        if isinstance(seed, np.random.RandomState):
            rng = seed
        else:  # a fresh generator for an int; numpy's global one for None, as below
            rng = np.random.RandomState(seed) if seed is not None else None
        return haaqi_v1_batch([reference], [estimate], [losses], level1,
                              equalisation=equalisation, seeds=[rng], device=ctx.device)[0].score
    # pyclarity takes the processed signal first, the reference second. It prints "Signal below
    # threshold, outputs set to 0" for inaudible bands (a defined case, not an error): kept out
    # of the user's terminal.
    with process_state(seed):
        return float(compute_haaqi(
            np.asarray(estimate, dtype=np.float64),
            np.asarray(reference, dtype=np.float64),
            rate,
            rate,
            audiogram,
            equalisation=equalisation,
            level1=level1,
        ))


def _haaqi(
    estimate: Audio, reference: Audio, *, listener=None, ear=None, seed=None, equalisation: int = 1,
    level1: float | None = None, backend: str | None = None,
) -> float:
    from harness.listener import audiogram, haaqi_audiogram

    if listener is None or ear is None:
        raise InvalidInput("HAAQI needs a listener and an ear")
    if estimate.channels != 1:
        raise InvalidInput(f"HAAQI scores one ear (mono); got {estimate.channels} channels")
    ag = haaqi_audiogram(audiogram(listener, ear))
    return haaqi_score(estimate.mono(), reference.mono(), estimate.rate, ag,
                       equalisation=equalisation, level1=level1, seed=seed, backend=backend)


def with_level1(metric, level1: float):
    """The HAAQI metric with the reference's presentation level given (a protocol that takes it
    from another signal than the reference it scores against, as the CAD1 recipe does)."""
    return metric.with_options(level1=level1)


HAAQI = FunctionMetric(
    "haaqi",
    functools.partial(_haaqi, backend="reference"),
    fast=functools.partial(_haaqi, backend="fast"),
    sample_rate=HAAQI_RATE,
    needs_listener=True,
    unit="",
    description="HAAQI v1 (pyclarity), CAD1: reference at 65 dB SPL, equalisation=1, seeded",
    estimate_may_be_silent=True,
    lengths_may_differ=True,
)

# The ICASSP 2024 rebalancing convention: the reference already carries NAL-R (equalisation=2).
HAAQI_PRE_EQUALISED = dataclasses.replace(
    HAAQI,
    fn=functools.partial(_haaqi, equalisation=2, backend="reference"),
    fast=functools.partial(_haaqi, equalisation=2, backend="fast"),
    description="HAAQI v1 (pyclarity), reference already NAL-R equalised (equalisation=2)",
)
