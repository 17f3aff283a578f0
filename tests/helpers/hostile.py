"""What the hostile-input tests (tests/test_hostile*.py) share: the CLI run in this process,
the one-line-error check, store and tree snapshots, a small speech run."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from harness.cli import main as cli_main
from harness.config import RunConfig
from harness.planning import plan
from harness.runner import execute
from harness.store import Store

ROOT = Path(__file__).resolve().parents[2]

SPEECH = "speech-enhancement-quick"
QUICK = ROOT / "harness" / "suites" / "quick" / SPEECH


def cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Run `harness ARGS` in this process; (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["harness", *map(str, args)])
    code = 0
    try:
        cli_main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(code: int, err: str, *fragments: str, exit_code: int = 2) -> str:
    """The command failed with `exit_code` and said why in one line, its last, with no traceback
    (lines before it are the command's own progress: the plan, a validation report)."""
    assert code == exit_code, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("error:", "interrupted"))]
    assert len(errors) == 1 and errors[0] == lines[-1], err
    for f in fragments:
        assert f in errors[0], (f, errors[0])
    return errors[0]


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


def stored(folder: Path):
    with Store(folder, create=False) as s:
        rid = s.resolve("latest")
        return s.scores(rid), s.jobs(rid)


def speech_run(tmp_path: Path, **kw):
    """An in-process run on the speech quick suite with the fast SNR metric only."""
    cfg = RunConfig(out=str(tmp_path / "out"), jobs=1, quiet=True, suites=[kw.pop("suite", SPEECH)],
                    metrics=["snr"], **kw)
    p = plan(cfg)
    execute(p, progress=False)
    return stored(tmp_path / "out")


def store_digest(folder: Path) -> tuple[int, int]:
    con = sqlite3.connect(folder / "harness.sqlite")
    try:
        n = con.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
        ok = con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
    return n, ok

