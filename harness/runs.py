"""Stored runs as the read-side commands see them (`compare`, `report`, `leaderboard`, `pack`):
a run reference parsed and loaded with its manifest, scores, units and jobs; whether two runs
are comparable; their units side by side."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import StoreError
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
    with Store(folder, create=False) as s:
        rid = s.resolve(run)
        manifest = s.manifest(rid)
        scores = s.scores(rid)
        jobs = s.jobs(rid)
        name = next(r["name"] for r in s.runs() if r["run_id"] == rid)
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


UNIT_ID = ["suite", "item_id", "listener_id", "metric"]


def paired_units(ua: pd.DataFrame, ub: pd.DataFrame) -> pd.DataFrame:
    """Baseline and candidate units side by side (outer join, so missing units show)."""
    left = ua[[*UNIT_ID, "value", "status"]].rename(columns={"value": "baseline", "status": "status_b"})
    right = ub[[*UNIT_ID, "value", "status"]].rename(columns={"value": "candidate", "status": "status_c"})
    m = left.merge(right, on=UNIT_ID, how="outer")
    m["delta"] = m.candidate - m.baseline
    return m
