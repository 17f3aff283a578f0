"""Aggregate a run's scores into (item, listener) units and per-system summaries.

A unit is one (suite, system, item, listener, metric): the protocol's aggregate of that job's
rows (e.g. CAD1 HAAQI: the mean of 8 ear x stem values). A unit is ok only if all its rows are;
summaries give the mean over ok units with a 95% bootstrap CI, and how many units were not ok.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.listener import Panel, severity
from harness.metrics import Score, get_metric
from harness.stats import bootstrap_ci
from harness.tasks import get_protocol

UNIT_KEYS = ["suite", "task", "system", "item_id", "listener_id", "metric"]


def units(scores: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for key, grp in scores.groupby(UNIT_KEYS, sort=True):
        protocol = get_protocol(key[1])
        recs = [
            Score(r.metric, None if pd.isna(r.value) else float(r.value), r.status, r.reason)
            for r in grp.itertuples()
        ]
        value, status = protocol.unit(recs)
        reasons = sorted({r.reason for r in recs if r.status != "ok"})
        rows.append((*key, value, status, "; ".join(reasons)))
    return pd.DataFrame(rows, columns=[*UNIT_KEYS, "value", "status", "reason"])


def base_metric(name: str) -> str:
    """The registered metric of a unit's metric label ('si_sdri[speech]' -> 'si_sdri')."""
    return name.split("[", 1)[0]


def stem_units(scores: pd.DataFrame) -> pd.DataFrame:
    """Units per stem, labelled `metric[stem]` (the mean of the stem's rows, e.g. its two ears;
    ok only if all are): for tasks whose scores come per stem, a comparison stem by stem."""
    stemmed = scores[scores.stem.fillna("") != ""]
    rows = []
    for key, grp in stemmed.groupby([*UNIT_KEYS, "stem"], sort=True):
        *head, metric, stem = key
        bad = grp[grp.status != "ok"]
        value = None if len(bad) else float(grp.value.astype(float).mean())
        status = bad.status.iloc[0] if len(bad) else "ok"
        rows.append((*head, f"{metric}[{stem}]", value, status,
                     "; ".join(sorted(set(bad.reason.astype(str))))))
    return pd.DataFrame(rows, columns=[*UNIT_KEYS, "value", "status", "reason"])


def summarise(unit_df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (suite, system, metric), grp in unit_df.groupby(["suite", "system", "metric"], sort=False):
        ok = grp.loc[grp.status == "ok", "value"].to_numpy(dtype=float)
        lo, hi = bootstrap_ci(ok)
        rows.append({
            "suite": suite, "system": system, "metric": metric,
            "mean": float(np.mean(ok)) if ok.size else float("nan"),
            "ci_low": lo, "ci_high": hi, "n_ok": int(ok.size),
            "n_not_ok": int((grp.status != "ok").sum()),
            "higher_is_better": get_metric(base_metric(metric)).higher_is_better,
        })
    return pd.DataFrame(rows)


def by_listener(unit_df: pd.DataFrame, metric: str, panel: Panel | None = None) -> pd.DataFrame:
    """Mean over items of one metric per listener (rows, panel order) and system (columns)."""
    sub = unit_df[(unit_df.metric == metric) & (unit_df.status == "ok")]
    if sub.empty:
        return pd.DataFrame()
    table = sub.pivot_table(index="listener_id", columns="system", values="value", aggfunc="mean")
    if panel is not None:
        order = [i for i in panel.ids if i in table.index]
        table = table.loc[order]
        table.insert(0, "severity", [severity(panel.get(i)) for i in order])
    return table
