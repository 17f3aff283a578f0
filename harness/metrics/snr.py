"""SNR and scale-invariant SDR (closed-form, numpy).

SNR = 10 log10(||r||^2 / ||r - e||^2); SI-SDR (Le Roux et al., 2019) projects the estimate on
the reference first: t = (<e, r> / ||r||^2) r, SI-SDR = 10 log10(||t||^2 / ||e - t||^2).
Both are computed over all samples of all channels, in float64, and capped at DB_CEILING.
"""

from __future__ import annotations

import numpy as np

from harness.audio import Audio
from harness.errors import InvalidInput
from harness.metrics.base import DB_CEILING, IMPROVEMENT, FunctionMetric, clip_db
from harness.metrics.bsseval import BSS_METRICS

_TINY = 10.0 ** (-DB_CEILING / 10)


def snr_db(estimate: np.ndarray, reference: np.ndarray) -> float:
    r = np.asarray(reference, dtype=np.float64).ravel()
    e = np.asarray(estimate, dtype=np.float64).ravel()
    signal = float(np.dot(r, r))
    noise = float(np.dot(r - e, r - e))
    if noise <= signal * _TINY:
        return DB_CEILING
    return clip_db(10 * np.log10(signal / noise))


def si_sdr_db(estimate: np.ndarray, reference: np.ndarray) -> float:
    r = np.asarray(reference, dtype=np.float64).ravel()
    e = np.asarray(estimate, dtype=np.float64).ravel()
    alpha = float(np.dot(e, r) / np.dot(r, r))
    target = alpha * r
    residual = e - target
    t_energy = float(np.dot(target, target))
    r_energy = float(np.dot(residual, residual))
    if t_energy == 0.0:
        raise InvalidInput("estimate is orthogonal to the reference: SI-SDR is -inf")
    if r_energy <= t_energy * _TINY:
        return DB_CEILING
    return clip_db(10 * np.log10(t_energy / r_energy))


USDR_DELTA = 1e-7  # the MDX 2021 / SDX 2023 scoring code's delta, added to both energies


def usdr_db(estimate: np.ndarray, reference: np.ndarray) -> float:
    """uSDR, the "SDR" of the MDX 2021 and SDX 2023 challenges (Mitsufuji et al. 2022):
    10 log10((sum r^2 + d) / (sum (r - e)^2 + d)) over the whole track (all samples and
    channels of one stem), d = 1e-7; unlike museval's SDR no distortion filter and no frames."""
    r = np.asarray(reference, dtype=np.float64).ravel()
    e = np.asarray(estimate, dtype=np.float64).ravel()
    signal, error = float(np.dot(r, r)) + USDR_DELTA, float(np.dot(r - e, r - e)) + USDR_DELTA
    return clip_db(10 * np.log10(signal / error))


def _usdr(estimate: Audio, reference: Audio, **_) -> float:
    return usdr_db(estimate.samples, reference.samples)


def _snr(estimate: Audio, reference: Audio, **_) -> float:
    return snr_db(estimate.samples, reference.samples)


def _si_sdr(estimate: Audio, reference: Audio, **_) -> float:
    return si_sdr_db(estimate.samples, reference.samples)


SNR = FunctionMetric(
    "snr", _snr, unit="dB", estimate_may_be_silent=True,
    description="Signal-to-noise ratio of the estimate against the reference (capped at 100 dB)",
)
USDR = FunctionMetric(
    "usdr", _usdr, unit="dB", estimate_may_be_silent=True,
    description="uSDR: whole-track SDR of the MDX 2021 / SDX 2023 challenges (no frames, no "
                "distortion filter; delta 1e-7)",
)
SI_SDR = FunctionMetric(
    "si_sdr", _si_sdr, unit="dB",
    description="Scale-invariant SDR (Le Roux et al. 2019), capped at 100 dB",
)


# Improvement metrics: `evaluate` computes `of` on the estimate minus the baseline's value, which
# the task gives (it knows the mixture / the recordings).
SI_SDRI = FunctionMetric(
    "si_sdri", None, unit="dB", kind=IMPROVEMENT, of=SI_SDR,
    description="SI-SDR improvement: SI-SDR(estimate) - SI-SDR(mixture) (cocktail-fork)",
)
SDR_IMPROVEMENT = FunctionMetric(
    "sdr_improvement", None, unit="dB", kind=IMPROVEMENT, of=BSS_METRICS["sdr"],
    description="BSSEval v4 SDR of the estimate minus the mean SDR of the aligned inputs "
    "(crowd-enhancement)",
)
