"""Leaderboards: entries (one system of one run each) kept in a SQLite file, ranked per suite by a
primary metric, with rank groups from paired tests.

Rank groups: entries are sorted by mean; the best is the first group's leader, and every entry
not significantly different from it (Wilcoxon signed-rank over the units both scored ok,
Holm-adjusted over the comparisons with that leader) shares its group. The best entry left leads
the next group, and so on. Entries in one group are tied as far as the data can tell.
"""

from __future__ import annotations

import html
import json
import sqlite3
import time
from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import ConfigError, StoreError
from harness.metrics import get_metric
from harness.runs import RunData, differences
from harness.stats import bootstrap_ci, holm, paired
from harness.tasks import get_protocol

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    name TEXT PRIMARY KEY,
    system TEXT NOT NULL,
    run_id TEXT NOT NULL,
    store TEXT NOT NULL,
    added REAL NOT NULL,
    manifest TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS units (
    name TEXT NOT NULL,
    suite TEXT NOT NULL,
    task TEXT NOT NULL,
    item_id TEXT NOT NULL,
    listener_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL,
    status TEXT NOT NULL,
    PRIMARY KEY (name, suite, item_id, listener_id, metric)
);
"""


def check_entry_name(name: str) -> str:
    """An entry name: not blank, no control characters (it is printed on terminals and pages)."""
    from harness.suites.types import control_free

    if not name.strip() or not control_free(name):
        raise ConfigError(f"entry name {name!r}: must be non-empty and hold no control characters")
    return name


class Leaderboard:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise StoreError(f"{self.path}: is a folder; --db names the leaderboard's SQLite file")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, isolation_level=None)
            found = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if found and not {"entries", "units"} <= found:
                self.db.close()
                raise StoreError(f"{self.path}: an SQLite database that is not a leaderboard (tables "
                                 f"{', '.join(sorted(found))}); --db names a leaderboard file")
            self.db.executescript(SCHEMA)
        except (OSError, sqlite3.DatabaseError) as exc:
            raise StoreError(f"{self.path}: cannot open the leaderboard ({exc})") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Leaderboard:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def entries(self) -> pd.DataFrame:
        rows = self.db.execute("SELECT name, system, run_id, store, added, manifest FROM entries "
                               "ORDER BY added").fetchall()
        return pd.DataFrame(rows, columns=["name", "system", "run_id", "store", "added", "manifest"])

    def units(self) -> pd.DataFrame:
        rows = self.db.execute("SELECT name, suite, task, item_id, listener_id, metric, value, status "
                               "FROM units").fetchall()
        return pd.DataFrame(rows, columns=["name", "suite", "task", "item_id", "listener_id", "metric",
                                           "value", "status"])

    def add(self, run: RunData, name: str, system: str | None = None, replace: bool = False,
            force: bool = False) -> tuple[str, int]:
        """Add one system of a run as entry `name`; returns (system, units stored)."""
        check_entry_name(name)
        systems = run.systems
        if system is None:
            cands = [s for s in systems if s not in ("unprocessed", "oracle")] or systems
            if len(cands) != 1:
                raise ConfigError(f"{run.label}: holds systems {', '.join(systems)}; pick one with --system")
            system = cands[0]
        elif system not in systems:
            raise ConfigError(f"{run.label}: no system {system!r} (has {', '.join(systems)})")
        existing = self.entries()
        if name in set(existing.name) and not replace:
            raise ConfigError(f"{self.path}: an entry {name!r} exists (--replace overwrites it)")
        if not force:
            for e in existing[existing.name != name].itertuples():
                other = RunData(Path(e.store), e.run_id, e.name, json.loads(e.manifest),
                                pd.DataFrame(), pd.DataFrame())
                diffs = [d for d in differences(other, run) if not d.startswith("no suite in common")]
                if diffs:
                    raise ConfigError(f"{run.label} is not comparable with entry {e.name!r}: "
                                      + "; ".join(diffs) + " (--force adds it anyway)")
        u = run.units[run.units.system == system]
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM entries WHERE name=?", (name,))
            db.execute("DELETE FROM units WHERE name=?", (name,))
            db.execute("INSERT INTO entries VALUES (?,?,?,?,?,?)",
                       (name, system, run.run_id, str(run.folder), time.time(),
                        json.dumps(run.manifest, sort_keys=True, default=str)))
            db.executemany(
                "INSERT INTO units VALUES (?,?,?,?,?,?,?,?)",
                [(name, r.suite, r.task, r.item_id, r.listener_id, r.metric,
                  None if pd.isna(r.value) else float(r.value), r.status) for r in u.itertuples()],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return system, len(u)

    def remove(self, name: str) -> None:
        if name not in set(self.entries().name):
            raise ConfigError(f"{self.path}: no entry {name!r}")
        self.db.execute("DELETE FROM entries WHERE name=?", (name,))
        self.db.execute("DELETE FROM units WHERE name=?", (name,))


def primary_metric(task: str, metrics: list[str]) -> str:
    """The task's first default metric that was scored, else the first scored metric."""
    for m in get_protocol(task).default_metrics:
        if m in metrics:
            return m
    return metrics[0]


def rank(units: pd.DataFrame, metric: str, alpha: float = 0.05) -> pd.DataFrame:
    """Ranking of the entries in `units` (one suite) by `metric`: mean, CI, counts, rank group."""
    sub = units[units.metric == metric]
    hib = get_metric(metric).higher_is_better
    rows = []
    for name, g in sub.groupby("name", sort=False):
        ok = g[g.status == "ok"].value.to_numpy(float)
        lo, hi = bootstrap_ci(ok)
        rows.append({"name": name, "mean": float(ok.mean()) if ok.size else np.nan, "ci_low": lo,
                     "ci_high": hi, "n_ok": int(ok.size), "n_not_ok": int((g.status != "ok").sum())})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table = table.sort_values("mean", ascending=not hib, na_position="last", kind="stable")
    table = table.reset_index(drop=True)
    wide = sub[sub.status == "ok"].pivot_table(index=["item_id", "listener_id"], columns="name",
                                               values="value")
    group = np.zeros(len(table), dtype=int)
    p_vs_leader = np.full(len(table), np.nan)
    left = [i for i in range(len(table)) if np.isfinite(table.loc[i, "mean"])]
    g = 0
    while left:
        g += 1
        lead = left[0]
        group[lead] = g
        others = left[1:]
        ps = []
        for i in others:
            a = wide.get(table.loc[lead, "name"])
            b = wide.get(table.loc[i, "name"])
            if a is None or b is None:
                ps.append(0.0)
                continue
            both = a.notna() & b.notna()
            ps.append(paired(a[both].to_numpy(float), b[both].to_numpy(float)).p_wilcoxon)
        adj = holm(ps) if ps else np.array([])
        nxt = []
        for i, p in zip(others, adj, strict=True):
            if np.isfinite(p) and p >= alpha:
                group[i] = g
                p_vs_leader[i] = p
            else:
                nxt.append(i)
        left = nxt
    table["group"] = group
    table["p_vs_group_leader"] = p_vs_leader
    # Rank: the group's position among groups (1 = the leader's group); ties share it.
    table["rank"] = table.group
    return table


def standings(lb: Leaderboard, suite: str | None = None, metric: str | None = None,
              alpha: float = 0.05) -> dict[str, tuple[str, pd.DataFrame]]:
    """suite -> (metric, ranking) for every suite on the board (or the one asked)."""
    u = lb.units()
    if u.empty:
        raise ConfigError(f"{lb.path}: the leaderboard has no entries (harness leaderboard add RUN --name N)")
    suites = list(dict.fromkeys(u.suite))
    if suite is not None:
        if suite not in suites:
            raise ConfigError(f"{lb.path}: no suite {suite!r} on the board (has {', '.join(suites)})")
        suites = [suite]
    out = {}
    for s in suites:
        su = u[u.suite == s]
        metrics = list(dict.fromkeys(su.metric))
        m = metric or primary_metric(su.task.iloc[0], metrics)
        if m not in metrics:
            raise ConfigError(f"{lb.path}: suite {s} has no metric {m!r} (has {', '.join(metrics)})")
        out[s] = (m, rank(su, m, alpha))
    return out


def _f(x, d=3) -> str:
    return "—" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{d}f}"


def build_site(lb: Leaderboard, out: Path, alpha: float = 0.05, force: bool = False) -> list[Path]:
    """A static site: index.html (every suite's ranking) and leaderboard.json (existing ones are
    overwritten only with `force`)."""
    from harness.safety import check_output

    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: is a file; --out names a folder for the site")
    for name in ("index.html", "leaderboard.json"):
        check_output(out / name, force=force, inputs=(lb.path,), what="leaderboard page")
    out.mkdir(parents=True, exist_ok=True)
    tables = standings(lb, alpha=alpha)
    entries = lb.entries()
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>Leaderboard</title>",
             "<style>body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right}th:nth-child(2),td:nth-child(2){text-align:left}th{background:#eef}"
             "tr.g1{background:#f3fbf3}</style></head><body><h1>Leaderboard</h1>",
             f"<p>{len(entries)} entries. Ranked by the mean of the primary metric over (item, listener) "
             "units; 95% bootstrap CIs. Entries that share a rank are not significantly different from "
             f"their group's leader (paired Wilcoxon signed-rank, Holm-adjusted, alpha {alpha}). "
             "Units that failed or were invalid are counted, never averaged.</p>"]
    payload = {"alpha": alpha, "generated_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "suites": {}}
    for s, (m, t) in tables.items():
        arrow = "↑" if get_metric(m).higher_is_better else "↓"
        parts.append(f"<h2>{html.escape(s)} — {html.escape(m)} {arrow}</h2><table><thead><tr>"
                     "<th>rank</th><th>entry</th><th>mean</th><th>95% CI</th><th>units ok</th>"
                     "<th>not ok</th><th>p vs group leader</th></tr></thead><tbody>")
        for r in t.itertuples():
            parts.append(f"<tr class='g{r.rank}'><td>{r.rank}</td><td>{html.escape(r.name)}</td>"
                         f"<td>{_f(r.mean)}</td><td>[{_f(r.ci_low)}, {_f(r.ci_high)}]</td>"
                         f"<td>{r.n_ok}</td><td>{r.n_not_ok}</td><td>{_f(r.p_vs_group_leader, 4)}</td></tr>")
        parts.append("</tbody></table>")
        payload["suites"][s] = {"metric": m, "ranking": json.loads(t.to_json(orient="records"))}
    parts.append("<h2>Entries</h2><ul>")
    for e in entries.itertuples():
        parts.append(f"<li>{html.escape(e.name)}: system {html.escape(e.system)}, run "
                     f"{html.escape(e.run_id)}, added {time.strftime('%Y-%m-%d', time.gmtime(e.added))}</li>")
    parts.append("</ul></body></html>")
    index = out / "index.html"
    index.write_text("".join(parts))
    data = out / "leaderboard.json"
    data.write_text(json.dumps(payload, indent=1) + "\n")
    return [index, data]
