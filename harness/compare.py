"""Paired comparison of two stored runs (or two systems): the engine of `harness compare`.

Units are (suite, item, listener, metric) values as the protocol aggregates them (see
`harness.report.summary.units`). Two runs are compared system by system (same names; when each
run holds exactly one system, those two), over the units that are ok in both. Every comparison
of the family (suites x metrics x systems) gets a Holm-adjusted Wilcoxon p-value; the gate
adjusts over the gated comparisons only (the metrics of --fail-on, or all of them).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.errors import ConfigError, StoreError
from harness.metrics import get_metric
from harness.stats import holm, paired
from harness.store import DB_NAME, Store

DEFAULT_STORE = Path("harness-runs")


@dataclass
class RunData:
    """One stored run: where it is, its manifest, its scores and its units."""

    folder: Path
    run_id: str
    name: str
    manifest: dict[str, Any]
    scores: pd.DataFrame
    units: pd.DataFrame
    jobs: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def label(self) -> str:
        return f"{self.folder}@{self.name}"

    @property
    def db_path(self) -> Path:
        return self.folder / DB_NAME

    @property
    def systems(self) -> list[str]:
        return list(dict.fromkeys(self.units.system)) if not self.units.empty else []

    def output_path(self, stored: str) -> Path:
        """A job output's file: the stored path, or the same file under this store's folder when
        the store has moved since the run (outputs live in <store>/cache/)."""
        p = Path(stored)
        if not p.exists() and "cache" in p.parts:
            p = self.folder.joinpath(*p.parts[p.parts.index("cache"):])
        return p

    def suite_items(self, name: str) -> dict[str, Any]:
        """Item id -> Item of the suite `name` as the run's config named it (built-in or path)."""
        from harness.suites import resolve_suite

        specs = self.manifest.get("config", {}).get("suites", [])
        spec = next((s for s in specs if resolve_suite(s).name == name), name)
        return {it.id: it for it in resolve_suite(spec).items}


def parse_run_ref(spec: str, store: Path = DEFAULT_STORE) -> tuple[Path, str]:
    """FOLDER@RUN, a store FOLDER (its latest run), or RUN in `store`."""
    if "@" in spec:
        folder, run = spec.rsplit("@", 1)
        return Path(folder), run or "latest"
    p = Path(spec)
    if p.is_dir():
        if not (p / DB_NAME).exists():
            raise StoreError(f"{p}: not a results store (no {DB_NAME})")
        return p, "latest"
    return store, spec


def load_run(spec: str, store: Path = DEFAULT_STORE) -> RunData:
    from harness.report.summary import units

    folder, run = parse_run_ref(spec, store)
    if not (folder / DB_NAME).exists():
        raise StoreError(f"{folder}: not a results store (no {DB_NAME}); give FOLDER@RUN or --store")
    s = Store(folder, create=False)
    try:
        rid = s.resolve(run)
        manifest = s.manifest(rid)
        scores = s.scores(rid)
        jobs = s.jobs(rid)
        name = next(r["name"] for r in s.runs() if r["run_id"] == rid)
    finally:
        s.close()
    if scores.empty:
        raise StoreError(f"{folder}@{run}: the run holds no scores")
    return RunData(folder, rid, name, manifest, scores, units(scores), jobs)


def differences(a: RunData, b: RunData) -> list[str]:
    """Why two runs' numbers are not comparable: protocol versions, suite hashes, panels."""
    out = []
    sa, sb = a.manifest.get("suites", {}), b.manifest.get("suites", {})
    common = sorted(set(sa) & set(sb))
    if not common:
        out.append(f"no suite in common ({', '.join(sa) or 'none'} vs {', '.join(sb) or 'none'})")
    for name in common:
        if sa[name].get("protocol") != sb[name].get("protocol"):
            out.append(f"suite {name}: protocol {sa[name].get('protocol')} vs "
                       f"{sb[name].get('protocol')}")
        if sa[name].get("hash") != sb[name].get("hash"):
            out.append(f"suite {name}: suite hash {str(sa[name].get('hash'))[:12]} vs "
                       f"{str(sb[name].get('hash'))[:12]}")
    pa = a.manifest.get("panel", {}).get("listeners")
    pb = b.manifest.get("panel", {}).get("listeners")
    if pa != pb:
        ids_a, ids_b = set(pa or {}), set(pb or {})
        if ids_a != ids_b:
            what = f"listeners {', '.join(sorted(ids_a ^ ids_b))} in one only"
        else:
            what = "audiograms of " + ", ".join(sorted(i for i in ids_a if pa[i] != pb[i]))
        out.append(f"panels differ ({a.manifest.get('panel', {}).get('name')} vs "
                   f"{b.manifest.get('panel', {}).get('name')}: {what})")
    return out


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


UNIT_ID = ["suite", "item_id", "listener_id", "metric"]


def paired_units(ua: pd.DataFrame, ub: pd.DataFrame) -> pd.DataFrame:
    """Baseline and candidate units side by side (outer join, so missing units show)."""
    left = ua[[*UNIT_ID, "value", "status"]].rename(columns={"value": "baseline", "status": "status_b"})
    right = ub[[*UNIT_ID, "value", "status"]].rename(columns={"value": "candidate", "status": "status_c"})
    m = left.merge(right, on=UNIT_ID, how="outer")
    m["delta"] = m.candidate - m.baseline
    return m


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
