"""`harness run`, `summary`, `runs`, `export`: running the suites and reading a store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from harness.cli.app import (
    STORE_HELP,
    _deadline,
    _print_summary,
    app,
    err,
    out,
)


def _scorer_words(p) -> str:
    from harness.runner import scoring_mode

    if p.config.executor == "ray":
        return f"{p.config.jobs} worker(s)"
    if scoring_mode(p) == "device":
        return f"scoring on {p.device} ({p.config.scoring_threads} jobs at once, HAAQI batched)"
    return f"{p.config.jobs} worker(s)"


@app.command()
def run(
    suite: Annotated[list[str], typer.Option("--suite", "-s", help="Suite name or folder (repeatable). Default: both quick suites.")] = None,
    system: Annotated[list[str], typer.Option("--system", "-y", help="System name (repeatable), NAME/VARIANT, or a chain 'a>b' (each stage's output is the next one's input). Default: unprocessed, oracle.")] = None,
    panel: Annotated[str, typer.Option(help="Panel name (builtin) or a listeners*.json file.")] = None,
    listener: Annotated[list[str], typer.Option("--listener", "-l", help="Only these listener ids of the panel (repeatable).")] = None,
    metric: Annotated[list[str], typer.Option("--metric", "-m", help="Metrics to compute (repeatable). Default: each task's own.")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Scoring worker processes (1 = score in-process).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N (auto: cuda when present).")] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help=STORE_HELP)] = None,
    batch_size: Annotated[int, typer.Option(help="Items per system call.")] = None,
    run_name: Annotated[str, typer.Option(help="A name for the run (default: its id).")] = None,
    config: Annotated[Path, typer.Option("--config", "-c", help="TOML file; any flag above is a key.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    metrics_backend: Annotated[str, typer.Option(help="reference (the field's packages) or fast (torch kernels); default: fast where its parity tests pass (BSSEval), reference elsewhere.")] = None,
    param: Annotated[list[str], typer.Option("--param", "-p", help="SYSTEM.KEY=VALUE: set a system parameter (repeatable; over the config's [system_params]), e.g. --param wpe.taps=10 or --param hifigan.checkpoint=PATH.")] = None,
    system_timeout: Annotated[str, typer.Option(help="Seconds a system may take per call (one batch of items). Past it the system's process is killed and the batch retried item by item; an item that still overruns is stored failed ('timed out after N s'). 'auto' (default): 120 s + 10 s per second of input audio in the call.")] = None,
    executor: Annotated[str, typer.Option(help="local (default: system processes and a scoring pool on this machine) or ray (systems as Ray actors, scoring as Ray tasks; needs pip install 'audio-harness[ray]'). Same jobs, scores and resume either way.")] = None,
    address: Annotated[str, typer.Option("--address", help="With --executor ray: the Ray cluster to join (host:6379, ray://host:10001, auto). Default: a private local Ray instance with --jobs CPUs for scoring.")] = None,
    scoring: Annotated[str, typer.Option(help="auto (default: device when the run's device is a GPU, else processes), processes (--jobs worker processes) or device (up to scoring_threads jobs at once on the run's device, their HAAQI calls computed together in batches). The scores are the same.")] = None,
) -> None:
    """Run systems on suites for a listener panel, score them, store and summarise.

    With no arguments: both built-in quick suites, `unprocessed` and `oracle`, the built-in
    panel. Rerunning the same configuration resumes: jobs already stored are skipped.
    """
    from harness.config import load_config
    from harness.planning import plan
    from harness.runner import execute

    cfg = load_config(
        config,
        {
            "suites": suite, "systems": system, "panel": panel, "listeners": listener,
            "metrics": metric, "jobs": jobs, "device": device,
            "out": str(out_dir) if out_dir else None, "batch_size": batch_size,
            "run_name": run_name, "quiet": quiet or None, "metrics_backend": metrics_backend,
            "system_timeout": system_timeout, "params": param,
            "executor": executor, "ray_address": address, "scoring": scoring,
        },
    )
    p = plan(cfg)
    from harness.store import Store

    Store(cfg.out).close()  # a store that cannot be opened is said before anything else
    for line in p.skipped:
        err.print(f"[yellow]note:[/] {escape(line)}", soft_wrap=True)
    err.print(
        f"run [bold]{p.name}[/] ({p.run_id}): {len(p.jobs)} jobs, {len(p.suites)} suite(s), "
        f"{len(p.systems)} system(s), panel {p.panel.name} ({len(p.panel.listeners)} listeners), "
        f"device {p.device}, {_scorer_words(p)}, system deadline {_deadline(cfg.system_timeout)}"
        + (f", executor ray ({cfg.ray_address or 'local instance'})" if cfg.executor == "ray" else "")
    )
    result = execute(p, progress=not cfg.quiet)
    if result.resumed_jobs:
        err.print(f"resumed: {result.resumed_jobs} of {result.total_jobs} jobs were already stored")
    err.print(f"done in {result.seconds:.1f} s; store {result.store_path}")
    _print_summary(Path(cfg.out), result.run_id, p.panel)

@app.command()
def summary(
    run_id: Annotated[str, typer.Argument(help="Run id, id prefix, name, or 'latest'.")] = "latest",
    store: Annotated[Path, typer.Option("--store", help=STORE_HELP)] = Path("harness-runs"),
) -> None:
    """Print the summary tables of a stored run."""
    from harness.listener import panel_from_digest
    from harness.store import Store

    with Store(store, create=False) as s:
        rid = s.resolve(run_id)
        info = s.manifest(rid).get("panel", {})
    panel = panel_from_digest(info.get("name", ""), info["listeners"]) if info.get("listeners") else None
    _print_summary(store, rid, panel)

@app.command()
def runs(store: Annotated[Path, typer.Option("--store", help=STORE_HELP)] = Path("harness-runs")) -> None:
    """List the runs in a results store."""
    import time

    from harness.store import Store

    with Store(store, create=False) as s:
        rows = s.runs()
    t = Table(title=f"Runs in {store}", title_justify="left")
    for c in ("run id", "name", "status", "scores", "updated"):
        t.add_column(c)
    for r in rows:
        t.add_row(r["run_id"], r["name"], r["status"], str(r["scores"]),
                  time.strftime("%Y-%m-%d %H:%M", time.localtime(r["updated"])))
    out.print(t)


@app.command()
def export(
    run_id: Annotated[str, typer.Argument(help="Run id, id prefix, name, or 'latest'.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="csv, parquet or json.")] = "csv",
    dest: Annotated[Path, typer.Option("--out", "-o", help="Output file (default: `<run id>.<format>`); never a results store, and an existing file only with --force.")] = None,
    store: Annotated[Path, typer.Option("--store", help=STORE_HELP)] = Path("harness-runs"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")] = False,
) -> None:
    """Export every score of a run (one row per item, listener, ear, stem and metric)."""
    from harness.errors import StoreError
    from harness.safety import check_output, writing
    from harness.store import Store
    from harness.store import export as do_export

    if fmt not in ("csv", "parquet", "json"):
        raise StoreError(f"unknown export format {fmt!r} (csv, parquet, json)")
    with Store(store, create=False) as s:
        rid = s.resolve(run_id)
        dest = check_output(dest or Path(f"{rid}.{fmt}"), force=force, inputs=(s.path,), what="export")
        with writing(dest, "export"):
            path = do_export(s, rid, fmt, dest)
    err.print(f"wrote {path}")
