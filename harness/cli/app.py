"""The `harness` command line: the typer app, its consoles and the helpers its commands share."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(
    help="Evaluate audio enhancement, hearing-aid music processing and separation systems.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # help paragraphs reflow; [extras] and <names> print as written
)
# Wide tables when output goes to a file or pipe (rich would otherwise wrap at 80 columns).
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

STORE_HELP = "Output folder holding the results store (harness.sqlite)."


def at_least(**flags: tuple[float | None, float]) -> None:
    """One line naming the first flag below its least value: at_least(steps=(steps, 0)) for
    --steps (None: not given, not checked)."""
    from harness.errors import ConfigError

    for name, (value, least) in flags.items():
        if value is not None and value < least:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= {least:g}, not {value:g}")


def _fmt(x: float, digits: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _deadline(timeout) -> str:
    from harness.workers import TIMEOUT_BASE_S, TIMEOUT_PER_AUDIO_S

    if timeout == "auto":
        return f"auto ({TIMEOUT_BASE_S:g} s + {TIMEOUT_PER_AUDIO_S:g} s per audio second)"
    return f"{timeout:g} s per call"


def _print_summary(folder: Path, run_id: str, panel=None) -> None:
    from harness.report.summary import by_listener, summarise, units
    from harness.store import Store

    with Store(folder, create=False) as store:
        scores = store.scores(run_id)
    if scores.empty:
        out.print("no scores stored")
        return
    u = units(scores)
    summary = summarise(u)
    for suite_name, grp in summary.groupby("suite", sort=False):
        metrics = list(dict.fromkeys(grp.metric))
        table = Table(title=f"{suite_name} — mean [95% CI] (units not ok)", title_justify="left")
        table.add_column("system")
        for m in metrics:
            arrow = "↑" if grp[grp.metric == m].higher_is_better.iloc[0] else "↓"
            table.add_column(f"{m} {arrow}", justify="right")
        for sys_name, srows in grp.groupby("system", sort=False):
            cells = []
            for m in metrics:
                r = srows[srows.metric == m]
                if r.empty:
                    cells.append("")
                    continue
                r = r.iloc[0]
                cell = f"{_fmt(r['mean'])} [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]"
                if r.n_not_ok:
                    cell += f" [red]({r.n_not_ok} not ok)[/]"
                cells.append(cell)
            table.add_row(sys_name, *cells)
        out.print(table)
        listener_metric = "haaqi" if "haaqi" in metrics else None
        if listener_metric:
            t = by_listener(u[u.suite == suite_name], listener_metric, panel)
            if not t.empty:
                lt = Table(title=f"{suite_name} — {listener_metric} by listener", title_justify="left")
                lt.add_column("listener")
                for c in t.columns:
                    lt.add_column(str(c), justify="right")
                for lid, row in t.iterrows():
                    lt.add_row(lid, *[v if isinstance(v, str) else _fmt(v) for v in row])
                out.print(lt)
    bad = u[u.status != "ok"]
    if not bad.empty:
        out.print(f"[red]{len(bad)} unit(s) not ok[/]; first reasons:")
        for reason in list(dict.fromkeys(bad.reason))[:5]:
            out.print(f"  - {escape(reason)}", highlight=False)


RUN_HELP = "A run: FOLDER@RUN, a results-store FOLDER (its latest run), or RUN (id, prefix, name, 'latest') in --store."
LB_HELP = "Leaderboard file (SQLite)."
