"""SQLite results store: runs, jobs and scores; resume; export.

One file per output folder (`<out>/harness.sqlite`, WAL mode). A job's scores and its job row
are committed in one transaction, so a crash or kill loses only the jobs in flight, and a job
is either wholly stored or not at all. Primary keys make duplicate rows impossible.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import StoreError
from harness.metrics import Score

DB_NAME = "harness.sqlite"

# Stored values are rounded to this many significant digits. The reference packages' float64
# reductions (pystoi's ESTOI among them) vary in the last bit (~1e-16) with memory alignment; at
# 9 digits such jitter changes a stored digit with probability ~1e-7 per score, so a rerun gives
# the same stored numbers to the last digit. 9 digits is far below any metric's resolution.
STORED_DIGITS = 9


def stored_value(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.{STORED_DIGITS}g}")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    status TEXT NOT NULL,
    manifest TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    run_id TEXT NOT NULL,
    job_key TEXT NOT NULL,
    suite TEXT NOT NULL,
    task TEXT NOT NULL,
    system TEXT NOT NULL,
    item_id TEXT NOT NULL,
    listener_id TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    outputs TEXT NOT NULL,
    seconds REAL NOT NULL,
    finished REAL NOT NULL,
    PRIMARY KEY (run_id, job_key)
);
CREATE TABLE IF NOT EXISTS scores (
    run_id TEXT NOT NULL,
    job_key TEXT NOT NULL,
    suite TEXT NOT NULL,
    task TEXT NOT NULL,
    protocol TEXT NOT NULL,
    system TEXT NOT NULL,
    item_id TEXT NOT NULL,
    listener_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    ear TEXT NOT NULL,
    stem TEXT NOT NULL,
    value REAL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed', 'invalid')),
    reason TEXT NOT NULL,
    backend TEXT NOT NULL,
    PRIMARY KEY (run_id, job_key, metric, ear, stem)
);
"""

SCORE_COLUMNS = [
    "run_id", "suite", "task", "protocol", "system", "item_id", "listener_id", "metric",
    "ear", "stem", "value", "status", "reason", "backend", "job_key",
]


def _columns() -> dict[str, list[str]]:
    """Table -> column names of the schema above, read from a scratch in-memory database."""
    db = sqlite3.connect(":memory:")
    db.executescript(SCHEMA)
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    out = {t: [r[1] for r in db.execute(f"PRAGMA table_info({t})")] for t in tables}
    db.close()
    return out


COLUMNS = _columns()


def _rollback(db: sqlite3.Connection) -> None:
    try:
        db.execute("ROLLBACK")
    except sqlite3.Error:  # SQLite already rolled back (e.g. a full disk)
        pass


class Store:
    """The results database of one output folder.

    `create=False` (every read-only command) opens an existing store and creates nothing; a
    missing store, or a file that is not a harness results store (another SQLite schema, not
    SQLite at all), is a one-line StoreError naming the file."""

    def __init__(self, folder: str | Path, create: bool = True) -> None:
        self.folder = Path(folder)
        self.path = self.folder / DB_NAME
        if not create and not self.path.is_file():
            where = "no such folder" if not self.folder.exists() else f"no {DB_NAME} there"
            raise StoreError(f"{self.folder}: not a results store ({where}; `harness run --out "
                             f"{self.folder}` makes one)")
        if self.folder.exists() and not self.folder.is_dir():
            raise StoreError(f"{self.folder}: is a file, not a folder (a results store is a folder "
                             f"holding {DB_NAME})")
        try:
            if create:
                self.folder.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            self._check_schema(create)
            if create:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
        except (OSError, sqlite3.DatabaseError) as exc:
            raise StoreError(f"{self.path}: cannot open the results store ({exc})") from None

    def _check_schema(self, create: bool) -> None:
        found = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for table, cols in COLUMNS.items():
            if table not in found:
                continue
            have = [r[1] for r in self.db.execute(f"PRAGMA table_info({table})")]
            if have != cols:
                self.db.close()
                raise StoreError(f"{self.path}: not a harness results store (its table {table!r} has "
                                 f"columns {', '.join(have)}; expected {', '.join(cols)})")
        missing = [t for t in COLUMNS if t not in found]
        if missing and (found - set(COLUMNS)) and not (set(COLUMNS) & found):
            self.db.close()
            raise StoreError(f"{self.path}: an SQLite database of another kind (tables "
                             f"{', '.join(sorted(found))}), not a harness results store")
        if missing:
            if not create:
                self.db.close()
                raise StoreError(f"{self.path}: not a harness results store (no table "
                                 f"{', '.join(missing)})")
            self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- runs
    def start_run(self, run_id: str, name: str, manifest: dict[str, Any]) -> bool:
        """Record a run; returns False when it already exists (a resume)."""
        now = time.time()
        cur = self.db.execute(
            "INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, 'running', ?)",
            (run_id, name, now, now, json.dumps(manifest, sort_keys=True, default=str)),
        )
        if cur.rowcount == 0:
            self.db.execute(
                "UPDATE runs SET status='running', updated=? WHERE run_id=?", (now, run_id)
            )
            return False
        return True

    def finish_run(self, run_id: str, status: str = "complete") -> None:
        self.db.execute(
            "UPDATE runs SET status=?, updated=? WHERE run_id=?", (status, time.time(), run_id)
        )

    def runs(self) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT r.run_id, r.name, r.created, r.updated, r.status, "
            "(SELECT COUNT(*) FROM scores s WHERE s.run_id = r.run_id) "
            "FROM runs r ORDER BY r.created"
        ).fetchall()
        keys = ("run_id", "name", "created", "updated", "status", "scores")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def manifest(self, run_id: str) -> dict[str, Any]:
        row = self.db.execute("SELECT manifest FROM runs WHERE run_id=?", (run_id,)).fetchone()
        if row is None:
            raise StoreError(f"{self.path}: no run {run_id!r}")
        return json.loads(row[0])

    def resolve(self, spec: str) -> str:
        """A run id, a unique id prefix, a run name, or 'latest'."""
        runs = self.runs()
        if not runs:
            raise StoreError(f"{self.path}: the store holds no runs")
        if spec == "latest":
            return max(runs, key=lambda r: r["updated"])["run_id"]
        exact = [r["run_id"] for r in runs if spec in (r["run_id"], r["name"])]
        if len(exact) == 1:
            return exact[0]
        pref = [r["run_id"] for r in runs if r["run_id"].startswith(spec)]
        if len(pref) == 1:
            return pref[0]
        if not pref and not exact:
            raise StoreError(f"{self.path}: no run {spec!r} (see `harness runs`)")
        raise StoreError(f"{self.path}: {spec!r} matches several runs; give more of the id")

    # ---------------------------------------------------------------- jobs and scores
    def done_jobs(self, run_id: str) -> set[str]:
        rows = self.db.execute("SELECT job_key FROM jobs WHERE run_id=?", (run_id,)).fetchall()
        return {r[0] for r in rows}

    def commit_job(
        self,
        run_id: str,
        job: dict[str, str],
        status: str,
        reason: str,
        outputs: dict[str, str],
        seconds: float,
        scores: list[Score],
    ) -> None:
        """Store one job and all its scores atomically (or nothing, if it is already stored)."""
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            cur = db.execute(
                "INSERT OR IGNORE INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (run_id, job["key"], job["suite"], job["task"], job["system"], job["item_id"],
                 job["listener_id"], status, reason, json.dumps(outputs), seconds, time.time()),
            )
            if cur.rowcount:
                db.executemany(
                    "INSERT INTO scores VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [
                        (run_id, job["key"], job["suite"], job["task"], job["protocol"],
                         job["system"], job["item_id"], job["listener_id"], s.metric, s.ear,
                         s.stem, stored_value(s.value), s.status, s.reason, s.backend)
                        for s in scores
                    ],
                )
            db.execute("COMMIT")
        except sqlite3.OperationalError as exc:  # a full disk, a locked or read-only store
            _rollback(db)
            raise StoreError(f"{self.path}: cannot store job {job['key']} ({exc}); the jobs stored "
                             "so far are kept, and the same command resumes") from None
        except BaseException:
            _rollback(db)
            raise

    def scores(self, run_id: str) -> pd.DataFrame:
        cols = ", ".join(SCORE_COLUMNS)
        rows = self.db.execute(
            f"SELECT {cols} FROM scores WHERE run_id=? "
            "ORDER BY suite, system, item_id, listener_id, metric, ear, stem",
            (run_id,),
        ).fetchall()
        return pd.DataFrame(rows, columns=SCORE_COLUMNS)

    def jobs(self, run_id: str) -> pd.DataFrame:
        rows = self.db.execute(
            "SELECT job_key, suite, task, system, item_id, listener_id, status, reason, outputs, "
            "seconds FROM jobs WHERE run_id=? ORDER BY suite, system, item_id, listener_id",
            (run_id,),
        ).fetchall()
        cols = ["job_key", "suite", "task", "system", "item_id", "listener_id", "status",
                "reason", "outputs", "seconds"]
        return pd.DataFrame(rows, columns=cols)


def export(store: Store, run_id: str, fmt: str, out: Path) -> Path:
    """Write a run's scores as CSV, Parquet, or JSON (scores plus the run manifest)."""
    df = store.scores(run_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        df.to_csv(out, index=False)
    elif fmt == "parquet":
        df.to_parquet(out, index=False)
    elif fmt == "json":
        records = json.loads(df.to_json(orient="records"))
        payload = {"run_id": run_id, "manifest": store.manifest(run_id), "scores": records}
        out.write_text(json.dumps(payload, indent=1) + "\n")
    else:
        raise StoreError(f"unknown export format {fmt!r} (csv, parquet, json)")
    return out
