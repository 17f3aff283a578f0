"""The `harness` command line (typer). Thin: parses flags, calls the engine, prints. One module
per group of commands; `app.py` holds the typer app, the consoles and the shared helpers."""

from __future__ import annotations

import logging
import os
import sqlite3
import sys

from rich.markup import escape

# isort: off
# The command modules register their commands on import, in this order (the order of --help).
from harness.cli import runs, suites, catalog, results, leaderboard, train, checkpoints  # noqa: F401
# isort: on
from harness.cli.app import app, err
from harness.errors import HarnessError


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("clarity").setLevel(logging.ERROR)
    try:
        app()
    except HarnessError as exc:
        err.print(f"[red]error:[/] {escape(str(exc))}", soft_wrap=True, highlight=False)
        sys.exit(getattr(exc, "exit_code", 2))
    except (OSError, sqlite3.Error) as exc:
        # The machine's doing, not a bug of the harness: a full disk, a file that cannot be
        # written, a locked database. One line; HARNESS_DEBUG=1 shows the traceback.
        if os.environ.get("HARNESS_DEBUG"):
            raise
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        what = getattr(exc, "strerror", None) or str(exc)
        err.print(f"[red]error:[/] {escape(where + what)}", soft_wrap=True, highlight=False)
        sys.exit(2)
    except SystemExit as exc:
        # typer turns Ctrl-C outside a run into a silent exit 130: say what happened
        if exc.code == 130:
            err.print("interrupted; a results store keeps every job it committed: run the same command again",
                      soft_wrap=True, highlight=False)
        raise
    except KeyboardInterrupt:
        err.print("interrupted: scores committed so far are kept; rerun the same command to resume")
        sys.exit(130)

