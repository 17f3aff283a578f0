"""`harness leaderboard ...`: entries, rankings and the static page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from harness.cli.app import (
    LB_HELP,
    RUN_HELP,
    STORE_HELP,
    _fmt,
    app,
    err,
    out,
)

leaderboard_app = typer.Typer(
    help="Leaderboards: add runs as entries, show the ranking, build a static HTML page.",
    no_args_is_help=True,
)
app.add_typer(leaderboard_app, name="leaderboard")


@leaderboard_app.command("add")
def leaderboard_add(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help=RUN_HELP)],
    name: Annotated[str, typer.Option("--name", help="Entry name (unique on the board).")],
    system: Annotated[str, typer.Option("--system", "-y", help="Which system of the run (default: its only non-anchor system).")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Overwrite an entry of the same name.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Add even if suites, protocols or panels differ from the board's entries.")] = False,
    db: Annotated[Path, typer.Option("--db", help=LB_HELP)] = Path("leaderboard.sqlite"),
    store: Annotated[Path, typer.Option("--store", help=STORE_HELP)] = Path("harness-runs"),
) -> None:
    """Add one system of a stored run to the leaderboard (its per-unit scores are copied)."""
    from harness import runs as runs_mod
    from harness.leaderboard import Leaderboard, check_entry_name

    check_entry_name(name)  # before the board is opened (or created)
    run = runs_mod.load_run(run_ref, store)
    with Leaderboard(db) as lb:
        sys_name, n = lb.add(run, name, system, replace, force)
    err.print(f"added {name} ({sys_name} of run {run.run_id}, {n} units) to {db}")


@leaderboard_app.command("remove")
def leaderboard_remove(
    name: Annotated[str, typer.Argument(help="Entry name.")],
    db: Annotated[Path, typer.Option("--db", help=LB_HELP)] = Path("leaderboard.sqlite"),
) -> None:
    """Remove an entry."""

    with _open_board(db) as lb:
        lb.remove(name)
    err.print(f"removed {name}")


def _open_board(db: Path):
    from harness.errors import StoreError
    from harness.leaderboard import Leaderboard

    if not db.exists():
        raise StoreError(f"{db}: no leaderboard here (harness leaderboard add RUN --name N creates it)")
    return Leaderboard(db)


@leaderboard_app.command("show")
def leaderboard_show(
    suite: Annotated[str, typer.Option("--suite", "-s", help="Only this suite.")] = None,
    metric: Annotated[str, typer.Option("--metric", "-m", help="Rank by this metric (default: the task's primary metric).")] = None,
    alpha: Annotated[float, typer.Option(help="Significance level for rank groups.")] = 0.05,
    db: Annotated[Path, typer.Option("--db", help=LB_HELP)] = Path("leaderboard.sqlite"),
) -> None:
    """Print the ranking per suite: mean, 95% CI, counts, and rank groups (entries not
    significantly different from their group's leader share its rank)."""
    from harness.leaderboard import standings

    with _open_board(db) as lb:
        tables = standings(lb, suite, metric, alpha)
    for s, (m, t) in tables.items():
        table = Table(title=f"{s} — ranked by {m}", title_justify="left")
        for c in ("rank", "entry", "mean [95% CI]", "units ok", "not ok", "p vs group leader"):
            table.add_column(c, justify="left" if c == "entry" else "right")
        for r in t.itertuples():
            table.add_row(str(r.rank), r.name, f"{_fmt(r.mean)} [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]",
                          str(r.n_ok), str(r.n_not_ok), _fmt(r.p_vs_group_leader, 4))
        out.print(table)


@leaderboard_app.command("build")
def leaderboard_build(
    dest: Annotated[Path, typer.Option("--out", "-o", help="Folder for index.html and leaderboard.json.")],
    alpha: Annotated[float, typer.Option(help="Significance level for rank groups.")] = 0.05,
    db: Annotated[Path, typer.Option("--db", help=LB_HELP)] = Path("leaderboard.sqlite"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing index.html / leaderboard.json.")] = False,
) -> None:
    """Write the leaderboard as a static page (index.html) and as JSON."""
    from harness.leaderboard import build_site
    from harness.safety import writing

    with _open_board(db) as lb, writing(dest, "leaderboard page"):
        files = build_site(lb, dest, alpha, force)
    err.print("wrote " + ", ".join(str(f) for f in files))
