"""Paired comparison of two stored runs (or two systems): the engine of `harness compare`.

Units are (suite, item, listener, metric) values as the protocol aggregates them (see
`harness.report.summary.units`). Two runs are compared system by system (same names; when each
run holds exactly one system, those two), over the units that are ok in both. Every comparison
of the family (suites x metrics x systems) gets a Holm-adjusted Wilcoxon p-value; the gate
adjusts over the gated comparisons only (the metrics of --fail-on, or all of them).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.errors import ConfigError
from harness.metrics import get_metric
from harness.runs import (  # noqa: F401  (re-exported: compare's callers load runs here)
    DEFAULT_STORE,
    UNIT_ID,
    RunData,
    differences,
    load_run,
    paired_units,
    parse_run_ref,
)
from harness.stats import holm, paired


def system_pairs(a: RunData, b: RunData, systems: list[str] | None = None) -> list[tuple[str, str]]:
    """(baseline system, candidate system) pairs: same names, or the only system of each."""
    if systems:
        for s in systems:
            for run in (a, b):
                if s not in run.systems:
                    raise ConfigError(f"{run.label}: no system {s!r} (has {', '.join(run.systems)})")
        return [(s, s) for s in systems]
    common = [s for s in a.systems if s in b.systems]
    if common:
        return [(s, s) for s in common]
    if len(a.systems) == 1 and len(b.systems) == 1:
        return [(a.systems[0], b.systems[0])]
    raise ConfigError(
        f"the runs share no system ({', '.join(a.systems)} vs {', '.join(b.systems)}); "
        "name them with --system"
    )


def compare_units(
    pairs: list[tuple[str, str, pd.DataFrame, pd.DataFrame]], seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per (pair, suite, metric): the paired statistics, Holm-adjusted over the whole family.

    `pairs` holds (baseline label, candidate label, baseline units, candidate units). Returns the
    result table and the joined per-unit table (with `baseline_system`/`candidate_system`).
    """
    rows, joined = [], []
    for base_sys, cand_sys, ua, ub in pairs:
        m = paired_units(ua, ub)
        m.insert(0, "candidate_system", cand_sys)
        m.insert(0, "baseline_system", base_sys)
        joined.append(m)
        for (suite, metric), g in m.groupby(["suite", "metric"], sort=False):
            both = g[(g.status_b == "ok") & (g.status_c == "ok")]
            r = paired(both.baseline.to_numpy(float), both.candidate.to_numpy(float), seed=seed)
            rows.append({
                "suite": suite, "metric": metric, "baseline_system": base_sys,
                "candidate_system": cand_sys, **asdict(r),
                "n_not_ok_baseline": int((g.status_b.fillna("missing") != "ok").sum()),
                "n_not_ok_candidate": int((g.status_c.fillna("missing") != "ok").sum()),
                "higher_is_better": bool(get_metric(metric).higher_is_better),
            })
    res = pd.DataFrame(rows)
    if not res.empty:
        res["p_holm"] = holm(res.p_wilcoxon.astype(float).to_numpy())
    units = pd.concat(joined, ignore_index=True) if joined else pd.DataFrame()
    return res, units


def parse_fail_on(specs: list[str] | None) -> dict[str, float]:
    """'metric:tolerance' -> {metric: allowed worsening (a magnitude, in the metric's unit)}."""
    out: dict[str, float] = {}
    for spec in specs or []:
        metric, sep, tol = spec.partition(":")
        if not sep or not metric:
            raise ConfigError(f"--fail-on {spec!r}: expected METRIC:TOLERANCE, e.g. haaqi:-0.01")
        try:
            get_metric(metric)
        except Exception:
            raise ConfigError(f"--fail-on {spec!r}: unknown metric {metric!r}") from None
        try:
            value = float(tol)
        except ValueError:
            raise ConfigError(f"--fail-on {spec!r}: tolerance {tol!r} is not a number") from None
        if not np.isfinite(value):
            raise ConfigError(f"--fail-on {spec!r}: tolerance must be finite")
        out[metric] = abs(value)
    return out


def worse_by(row: dict | pd.Series) -> float:
    """How much worse the candidate is (positive = worse), in the metric's own direction."""
    return -row["delta"] if row["higher_is_better"] else row["delta"]


def regressions(res: pd.DataFrame, fail_on: dict[str, float], alpha: float) -> pd.DataFrame:
    """Rows that are significantly worse (Holm p < alpha) by more than the tolerance.

    With no --fail-on every metric is gated with tolerance 0; with it, only the named metrics.
    """
    if res.empty:
        return res
    gated = (res[res.metric.isin(fail_on)] if fail_on else res).copy()
    if gated.empty:
        return gated
    # The gate's family is the gated comparisons: Holm over them alone.
    gated["p_gate"] = holm(gated.p_wilcoxon.astype(float).to_numpy())
    tol = gated.metric.map(lambda m: fail_on.get(m, 0.0))
    worse = gated.apply(worse_by, axis=1)
    hit = (worse > tol) & (gated.p_gate < alpha)
    out = gated[hit].copy()
    out["tolerance"] = tol[hit]
    return out


def gated_count(res: pd.DataFrame, fail_on: dict[str, float]) -> int:
    return int(res.metric.isin(fail_on).sum()) if fail_on else len(res)


def worst_units(units: pd.DataFrame, res: pd.DataFrame, k: int = 5) -> dict[str, list[dict]]:
    """The k units that got worse most, per (suite, metric, system pair)."""
    out: dict[str, list[dict]] = {}
    if units.empty:
        return out
    hib = dict(zip(res.metric, res.higher_is_better, strict=False))
    ok = units[(units.status_b == "ok") & (units.status_c == "ok")].copy()
    ok["worse_by"] = np.where(ok.metric.map(hib).astype(bool), -ok.delta, ok.delta)
    for (suite, metric, bs, cs), g in ok.groupby(
        ["suite", "metric", "baseline_system", "candidate_system"], sort=False
    ):
        top = g[g.worse_by > 0].nlargest(k, "worse_by")
        if top.empty:
            continue
        key = f"{suite}/{metric}/{cs}" if bs == cs else f"{suite}/{metric}/{bs}->{cs}"
        out[key] = [
            {"item_id": r.item_id, "listener_id": r.listener_id, "baseline": r.baseline,
             "candidate": r.candidate, "delta": r.delta}
            for r in top.itertuples()
        ]
    return out


def min_wilcoxon_p(n: int) -> float:
    """The smallest two-sided p the signed-rank test can give with n non-zero differences."""
    return 1.0 if n <= 0 else min(1.0, 2.0 / 2.0**n)


def to_json(obj: Any) -> Any:
    """JSON-safe copy (NaN/inf -> None, numpy scalars -> Python)."""
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_json(payload), indent=1) + "\n")
