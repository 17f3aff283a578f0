"""Metric registry: built-in metrics plus those registered under the `harness.metrics` group."""

from __future__ import annotations

from harness import registry
from harness.errors import RegistryError
from harness.metrics.base import (
    DB_CEILING,
    FAILED,
    INVALID,
    OK,
    FunctionMetric,
    Metric,
    Score,
    evaluate,
    seed_for,
)
from harness.metrics.bsseval import BSS_METRICS
from harness.metrics.haaqi import HAAQI
from harness.metrics.hearing_speech import HEARING_SPEECH
from harness.metrics.nonintrusive import NONINTRUSIVE
from harness.metrics.pesq_metric import PESQ_NB, PESQ_WB
from harness.metrics.snr import SDR_IMPROVEMENT, SI_SDR, SI_SDRI, SNR, USDR
from harness.metrics.spectral import LSD
from harness.metrics.srmr import SRMR
from harness.metrics.stoi import ESTOI, STOI
from harness.metrics.task_scores import TASK_SCORES

BUILTIN: dict[str, FunctionMetric] = {
    m.name: m for m in (HAAQI, *BSS_METRICS.values(), SI_SDR, SNR, PESQ_WB, PESQ_NB, STOI, ESTOI, LSD,
                     SI_SDRI, SDR_IMPROVEMENT, USDR, *HEARING_SPEECH, *NONINTRUSIVE, SRMR,
                     *TASK_SCORES)
}

__all__ = [
    "DB_CEILING", "FAILED", "INVALID", "OK", "FunctionMetric", "Metric", "Score",
    "all_metrics", "evaluate", "get_metric", "seed_for",
]


def all_metrics() -> dict[str, Metric]:
    out: dict[str, Metric] = dict(BUILTIN)
    for name in registry.names("harness.metrics"):
        if name not in out:
            out[name] = registry.load("harness.metrics", name)
    return out


def get_metric(name: str) -> Metric:
    table = all_metrics()
    if name not in table:
        raise RegistryError(f"unknown metric {name!r} (known: {', '.join(sorted(table))})")
    return table[name]
