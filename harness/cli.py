"""The `harness` command line (typer). Thin: parses flags, calls the engine, prints."""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.errors import HarnessError

app = typer.Typer(
    help="Evaluate audio enhancement, hearing-aid music processing and separation systems.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Wide tables when output goes to a file or pipe (rich would otherwise wrap at 80 columns).
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

STORE_HELP = "Output folder holding the results store (harness.sqlite)."


def _fmt(x: float, digits: int = 3) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


@app.command()
def run(
    suite: Annotated[list[str], typer.Option("--suite", "-s", help="Suite name or folder (repeatable). Default: both quick suites.")] = None,
    system: Annotated[list[str], typer.Option("--system", "-y", help="System name (repeatable). Default: unprocessed, oracle.")] = None,
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
    system_timeout: Annotated[str, typer.Option(help="Seconds a system may take per call (one batch of items). Past it the system's process is killed and the batch retried item by item; an item that still overruns is stored failed ('timed out after N s'). 'auto' (default): 120 s + 10 s per second of input audio in the call.")] = None,
) -> None:
    """Run systems on suites for a listener panel, score them, store and summarise.

    With no arguments: both built-in quick suites, `unprocessed` and `oracle`, the built-in
    panel. Rerunning the same configuration resumes: jobs already stored are skipped.
    """
    from harness.config import load_config
    from harness.runner import execute, plan

    cfg = load_config(
        config,
        {
            "suites": suite, "systems": system, "panel": panel, "listeners": listener,
            "metrics": metric, "jobs": jobs, "device": device,
            "out": str(out_dir) if out_dir else None, "batch_size": batch_size,
            "run_name": run_name, "quiet": quiet or None, "metrics_backend": metrics_backend,
            "system_timeout": system_timeout,
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
        f"device {p.device}, {cfg.jobs} worker(s), system deadline {_deadline(cfg.system_timeout)}"
    )
    result = execute(p, progress=not cfg.quiet)
    if result.resumed_jobs:
        err.print(f"resumed: {result.resumed_jobs} of {result.total_jobs} jobs were already stored")
    err.print(f"done in {result.seconds:.1f} s; store {result.store_path}")
    _print_summary(Path(cfg.out), result.run_id, p.panel)


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


suites_app = typer.Typer(
    help="Test suites: list the built-in ones, show one, generate one, import a dataset from disk.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(suites_app, name="suites")


@suites_app.callback()
def suites_main(ctx: typer.Context) -> None:
    """List the built-in suites (with no subcommand)."""
    if ctx.invoked_subcommand is None:
        suites_list()


@suites_app.command("list")
def suites_list() -> None:
    """List the built-in suites."""
    from harness.suites import builtin_suites, resolve_suite

    t = Table(title="Built-in suites", title_justify="left")
    for c in ("name", "task", "version", "items", "seconds", "hash", "description"):
        t.add_column(c)
    for n in builtin_suites():
        s = resolve_suite(n)
        t.add_row(s.name, s.task, s.version, str(len(s.items)), f"{s.duration:.1f}",
                  s.hash[:12], s.description)
    out.print(t)
    out.print("Any folder with a manifest.json is a suite too: harness run --suite PATH")


@suites_app.command("show")
def suites_show(
    name: Annotated[str, typer.Argument(help="Suite name or folder.")],
) -> None:
    """Show the items of one suite: files, rates, lengths and metadata."""
    from harness.suites import resolve_suite

    s = resolve_suite(name)
    t = Table(title=f"{s.name} v{s.version} ({s.task}) — {s.description}", title_justify="left")
    for c in ("item", "inputs", "references", "metadata"):
        t.add_column(c)

    def fmt(refs) -> str:
        return ", ".join(
            f"{k} {v.rate / 1000:g} kHz {v.channels}ch {v.frames / v.rate:.2f}s" for k, v in refs.items()
        )

    for it in s.items:
        meta = ", ".join(f"{k}={v}" for k, v in it.metadata.items() if k != "text")
        t.add_row(it.id, fmt(it.inputs), fmt(it.references), meta)
    out.print(t)
    out.print(f"root {s.root}\nhash {s.hash}")


@suites_app.command("import")
def suites_import(
    layout: Annotated[str, typer.Argument(help="Dataset layout (see `harness suites layouts`).")],
    path: Annotated[Path, typer.Argument(help="Root folder of the dataset on disk.")],
    dest: Annotated[Path, typer.Option("--out", "-o", help="Folder for the suite manifest (the audio stays in place).")],
    split: Annotated[str, typer.Option(help="Split or subset (layout-specific: test, valid, train, all, a DAPS device folder). Default: the layout's own.")] = None,
    no_hash: Annotated[bool, typer.Option("--no-hash", help="Skip content hashes (faster on large datasets; changed files go unnoticed).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing manifest.json in --out.")] = False,
) -> None:
    """Validate a dataset tree, then write a suite manifest that points at it.

    Every missing or malformed file is reported by path before anything is written.
    """
    from harness.errors import ConfigError
    from harness.safety import check_output, writing
    from harness.suites.layouts import import_layout
    from harness.suites.types import write_manifest

    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"{dest}: is a file; --out names a folder for the manifest")
    check_output(dest / "manifest.json", force=force, what="suite manifest")
    options = {"hash_content": not no_hash, **({"split": split} if split else {})}
    suite = import_layout(layout, path, **options)
    with writing(dest / "manifest.json", "suite manifest"):
        manifest = write_manifest(suite, dest)
    err.print(f"{suite.name}: {len(suite.items)} items, {suite.duration:.1f} s of reference audio; "
              f"wrote {manifest}")
    err.print(f"run it: harness run --suite {dest}")


def _option_value(text: str):
    """-O values: JSON when it parses (numbers, lists, true/false), a comma list, else a string."""
    import json

    try:
        return json.loads(text)
    except ValueError:
        pass
    if "," in text:
        return [_option_value(t.strip()) for t in text.split(",") if t.strip()]
    return text


@suites_app.command("make")
def suites_make(
    name: Annotated[str, typer.Argument(help="Generator: speech-enhancement, bandwidth-extension, music-remix, music-rebalance, crowd-enhancement, cocktail-fork (see `harness suites generators`).")],
    dest: Annotated[Path, typer.Option("--out", "-o", help="New (or empty) folder for the suite.")],
    items: Annotated[int, typer.Option(help="Number of items (default: the generator's own).")] = None,
    seconds: Annotated[float, typer.Option(help="Seconds per item (default: the generator's own).")] = None,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same bytes.")] = 0,
    preset: Annotated[str, typer.Option(help="crowd-enhancement preset: default, 2013 (the ICASSP 2013 three inputs) or massive (2016: up to 1000 sensors).")] = None,
    option: Annotated[list[str], typer.Option("--option", "-O", help="Generator option KEY=VALUE (repeatable), e.g. -O snrs=0,10 -O sensors=1000; `harness suites generators` lists each generator's keys.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Generate a synthetic suite (deterministic from --seed) and write its manifest.

    Needs the offline synthesisers flite, festival (HTS voice) and fluidsynth with a General MIDI
    soundfont; a missing one is named with the Debian packages to install.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from harness.errors import ConfigError
    from harness.suites.synth.generators import make_suite

    options = {}
    for o in option or []:
        if "=" not in o:
            raise ConfigError(f"--option {o!r}: expected KEY=VALUE")
        k, v = o.split("=", 1)
        options[k.strip()] = _option_value(v.strip())
    if preset:
        options["preset"] = preset
    bar = Progress(TextColumn(f"[bold]{name}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=err, disable=quiet or not err.is_terminal)

    def progress(total: int):
        task = bar.add_task(name, total=total)
        return lambda: bar.advance(task)

    with bar:
        suite = make_suite(name, dest, items, seconds, seed, options, progress)
    err.print(f"{suite.name}: {len(suite.items)} items, {suite.duration:.1f} s of reference audio, "
              f"hash {suite.hash[:12]}; wrote {dest / 'manifest.json'}")
    err.print(f"run it: harness run --suite {dest} --system unprocessed --system oracle")


@suites_app.command("generators")
def suites_generators() -> None:
    """List the suite generators `harness suites make` runs, with their -O options."""
    from harness.suites.synth.generators import GENERATORS

    t = Table(title="Suite generators", title_justify="left")
    for c in ("name", "task", "default", "makes", "-O options"):
        t.add_column(c)
    for g in GENERATORS.values():
        t.add_row(g.name, g.task, f"{g.items} x {g.seconds:g} s", g.description, ", ".join(g.options))
    out.print(t)


@suites_app.command("layouts")
def suites_layouts() -> None:
    """List the dataset layouts `harness suites import` reads."""
    from harness.suites.layouts import layout_names

    t = Table(title="Dataset layouts", title_justify="left")
    t.add_column("layout")
    t.add_column("expects")
    for name, desc in layout_names().items():
        t.add_row(name, desc)
    out.print(t)


@app.command()
def systems() -> None:
    """List the registered systems (built-in and from installed plugins)."""
    from harness import registry
    from harness.api import get_system, system_names

    t = Table(title="Systems", title_justify="left")
    for c in ("name", "task", "version", "entry point", "description"):
        t.add_column(c)
    for n in system_names():
        try:
            s = get_system(n)
            tasks = ", ".join([s.task, *getattr(s, "also_tasks", ())])
            t.add_row(n, tasks, s.version, registry.names("harness.systems")[n],
                      getattr(s, "description", ""))
        except HarnessError as exc:
            t.add_row(n, "?", "?", registry.names("harness.systems")[n], f"[red]{exc}[/]")
    out.print(t)


@app.command()
def metrics() -> None:
    """List the metrics with their direction, rate and requirements."""
    from harness.metrics import all_metrics

    t = Table(title="Metrics", title_justify="left")
    for c in ("name", "better", "unit", "rate", "listener", "description"):
        t.add_column(c)
    for n, m in all_metrics().items():
        t.add_row(n, "higher" if m.higher_is_better else "lower", m.unit or "",
                  f"{m.sample_rate}" if m.sample_rate else "any",
                  "yes" if m.needs_listener else "no", m.description)
    out.print(t)


@app.command()
def listeners(
    panel: Annotated[str, typer.Argument(help="Panel name or a listeners*.json file.")] = "builtin",
) -> None:
    """List a panel's listeners: id, severity and thresholds (dB HL) per ear."""
    import numpy as np

    from harness.listener import resolve_panel, severity

    p = resolve_panel(panel)
    cfs = p.listeners[0].audiogram_left.frequencies
    t = Table(title=f"Panel {p.name} ({len(p.listeners)} listeners) — {p.source}", title_justify="left")
    t.add_column("id")
    t.add_column("severity")
    t.add_column("ear")
    same = all(np.array_equal(li.audiogram_left.frequencies, cfs) for li in p.listeners)
    if same:
        for f in cfs:
            t.add_column(f"{f / 1000:g}k" if f >= 1000 else f"{f:g}", justify="right")
    else:
        t.add_column("thresholds (Hz: dB HL)")
    for li in p.listeners:
        for ear, ag in (("L", li.audiogram_left), ("R", li.audiogram_right)):
            lv = [f"{v:g}" for v in ag.levels]
            if not same:
                lv = [", ".join(f"{f:g}:{v:g}" for f, v in zip(ag.frequencies, ag.levels, strict=True))]
            t.add_row(li.id if ear == "L" else "", severity(li) if ear == "L" else "", ear, *lv)
    out.print(t)


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
    dest: Annotated[Path, typer.Option("--out", "-o", help="Output file (default: <run id>.<format>); never a results store, and an existing file only with --force.")] = None,
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


RUN_HELP = "A run: FOLDER@RUN, a results-store FOLDER (its latest run), or RUN (id, prefix, name, 'latest') in --store."


@app.command()
def compare(
    baseline: Annotated[str, typer.Argument(help=RUN_HELP)],
    candidate: Annotated[str, typer.Argument(help=RUN_HELP)],
    fail_on: Annotated[list[str], typer.Option("--fail-on", help="METRIC:TOLERANCE (repeatable), e.g. haaqi:-0.01 or lsd:0.1: fail when the candidate is significantly worse by more than the tolerance (a magnitude, in the metric's unit). Default: every metric, tolerance 0.")] = None,
    system: Annotated[list[str], typer.Option("--system", "-y", help="Only these systems (repeatable). Default: the systems both runs hold, or the only one of each.")] = None,
    alpha: Annotated[float, typer.Option(help="Significance level of the Holm-adjusted Wilcoxon signed-rank test.")] = 0.05,
    json_out: Annotated[Path, typer.Option("--json", help="Write the machine-readable result here.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Compare even when protocol versions, suite hashes or panels differ.")] = False,
    worst: Annotated[int, typer.Option(help="How many of the most-worsened units to list per metric.")] = 5,
    store: Annotated[Path, typer.Option("--store", help=STORE_HELP)] = Path("harness-runs"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Let --json overwrite an existing file.")] = False,
) -> None:
    """Regression gate: paired per-unit deltas of CANDIDATE against BASELINE.

    Per suite, metric and system: the mean delta with its paired-bootstrap 95% CI, the
    Wilcoxon signed-rank p-value Holm-adjusted over all comparisons, and the units that got
    worse most. Exits 1 when a gated metric is significantly worse beyond its tolerance, 0
    otherwise; refuses (exit 2) runs with different protocol versions, suite hashes or panels
    unless --force.
    """
    from harness import compare as cmp
    from harness import runs as runs_mod
    from harness.errors import ConfigError
    from harness.safety import check_output, writing

    if not 0 < alpha < 1:
        raise ConfigError(f"--alpha {alpha}: must be between 0 and 1")
    gates = cmp.parse_fail_on(fail_on)
    a = runs_mod.load_run(baseline, store)
    b = runs_mod.load_run(candidate, store)
    if json_out:
        check_output(json_out, force=overwrite, inputs=(a.db_path, b.db_path), what="JSON result")
    diffs = cmp.differences(a, b)
    if diffs and not force:
        raise ConfigError(
            f"refusing to compare {a.label} with {b.label}: " + "; ".join(diffs)
            + " (--force compares anyway)"
        )
    for d in diffs:
        err.print(f"[yellow]warning:[/] {escape(d)} (compared anyway: --force)")
    pairs = cmp.system_pairs(a, b, system)
    res, joined = cmp.compare_units(
        [(bs, cs, a.units[a.units.system == bs], b.units[b.units.system == cs]) for bs, cs in pairs]
    )
    regress = cmp.regressions(res, gates, alpha)
    worst_units = cmp.worst_units(joined, res, worst)
    t = Table(title=f"{b.label} vs {a.label} — candidate minus baseline", title_justify="left")
    for c in ("suite", "system", "metric", "n", "baseline", "candidate", "delta [95% CI]",
              "p (Holm)", "d_z", "not ok b/c", "gate"):
        t.add_column(c, justify="right" if c not in ("suite", "system", "metric", "gate") else "left")
    reg_keys = {(r.suite, r.metric, r.candidate_system) for r in regress.itertuples()}
    for r in res.itertuples():
        sysname = r.candidate_system if r.baseline_system == r.candidate_system else f"{r.baseline_system}->{r.candidate_system}"
        gated = not gates or r.metric in gates
        if (r.suite, r.metric, r.candidate_system) in reg_keys:
            gate = "[red]REGRESSION[/]"
        elif not gated:
            gate = "—"
        elif cmp.min_wilcoxon_p(r.n) * cmp.gated_count(res, gates) >= alpha:
            gate = "[yellow]pass (too few units to detect)[/]"
        else:
            gate = "pass"
        t.add_row(r.suite, sysname, r.metric, str(r.n), _fmt(r.mean_baseline), _fmt(r.mean_candidate),
                  f"{_fmt(r.delta)} [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]", _fmt(r.p_holm, 4),
                  _fmt(r.d_z, 2), f"{r.n_not_ok_baseline}/{r.n_not_ok_candidate}", gate)
    out.print(t)
    for key, rows in worst_units.items():
        metric = key.split("/")[1]
        if gates and metric not in gates:
            continue
        out.print(f"worst units {key}: " + ", ".join(
            f"{u['item_id']}" + (f"/{u['listener_id']}" if u["listener_id"] != "-" else "")
            + f" {_fmt(u['delta'])}" for u in rows))
    code = 1 if not regress.empty else 0
    if json_out:
        payload = {
            "baseline": {"store": str(a.folder), "run_id": a.run_id, "name": a.name},
            "candidate": {"store": str(b.folder), "run_id": b.run_id, "name": b.name},
            "alpha": alpha, "fail_on": gates, "forced_differences": diffs,
            "results": res.to_dict(orient="records"),
            "regressions": regress.to_dict(orient="records"),
            "worst_units": worst_units, "exit_code": code,
        }
        with writing(json_out, "JSON result"):
            cmp.write_json(json_out, payload)
        err.print(f"wrote {json_out}")
    if code:
        names = sorted({f"{r.metric} ({r.suite}, {r.candidate_system})" for r in regress.itertuples()})
        err.print(f"[red]regression:[/] {', '.join(names)}")
        raise typer.Exit(1)
    err.print("no significant regression")


@app.command()
def score(
    submission: Annotated[Path, typer.Argument(help="A folder, or a zip / tar(.gz|.bz2|.xz) archive, of processed audio named after the suite's convention.")],
    suite: Annotated[str, typer.Option("--suite", "-s", help="Suite name or folder the submission answers.")],
    panel: Annotated[str, typer.Option(help="Panel name (builtin) or a listeners*.json file (listener tasks).")] = "builtin",
    listener: Annotated[list[str], typer.Option("--listener", "-l", help="Only these listener ids of the panel (repeatable).")] = None,
    name: Annotated[str, typer.Option("--name", help="Name of the entry (stored as system 'submission/NAME').")] = "entry",
    partial: Annotated[bool, typer.Option("--partial", help="Score the valid files of an invalid submission; the rest are scored invalid with their reason.")] = False,
    max_ratio: Annotated[float, typer.Option(help="Largest compression ratio an archive (or one entry) may have.")] = 200.0,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Scoring worker processes.")] = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help=STORE_HELP + " Archives are unpacked under <out>/submissions/.")] = Path("harness-runs"),
    metrics_backend: Annotated[str, typer.Option(help="reference or fast (default: fast where parity holds).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Validate a submission, then score it as a run.

    Naming: listener tasks follow Cadenza CAD1
    (<listener>/<song>/<listener>_<song>_{left,right}_{vocals,drums,bass,other}.flac, optional
    ..._remix.flac); other tasks <item>.flac (one output) or <item>/<item>_<output>.flac. Files
    may be FLAC or WAV, 16/24/32-bit PCM or float. Every expected file must be present, nothing
    else may be, and each must have the output's rate, channels and length and finite samples.
    What the Cadenza recipes write is accepted and read as their evaluators read it: a 16-bit
    FLAC's scale file (<name>.txt), the length their full-convolution NAL-R gives, and the
    ICASSP 2024 recipe's names (<scene>_<listener>_remix.flac, one folder).
    Archives are unpacked safely (no traversal, no links, bounded count, size and ratio).
    """
    import json as _json

    from harness import submission as sub
    from harness.config import load_config
    from harness.errors import ConfigError
    from harness.listener import resolve_panel
    from harness.protocols import get_protocol
    from harness.runner import execute, plan
    from harness.safety import plain_name
    from harness.suites import resolve_suite

    plain_name(name, "--name")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: is a file; --out names the results folder")
    suite_obj = resolve_suite(suite)
    protocol = get_protocol(suite_obj.task)
    panel_obj = resolve_panel(panel, list(dict.fromkeys(listener or [])) or None) if protocol.uses_listener else None
    expected = sub.expected_files(suite_obj, panel_obj)
    root = sub.submission_root(submission, out_dir, expected, max_ratio,
                               say=lambda m: err.print(m))
    v = sub.validate(root, expected)
    report = out_dir / "submissions" / f"{name}-validation.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(_json.dumps({
        "submission": str(submission), "suite": suite_obj.name, "expected": v.expected,
        "found": len(v.found), "valid": len(v.found) - len(v.bad), "problems": v.problems,
        "notes": v.notes,
    }, indent=1) + "\n")
    status = "[green]valid[/]" if v.ok else f"[red]{len(v.problems)} problem(s)[/]"
    err.print(f"validation of {submission} against {suite_obj.name}: {v.expected} files expected, "
              f"{len(v.found)} found, {status} (report {report})")
    for note in v.notes:
        err.print(f"  note: {escape(note)}", highlight=False)
    for p in v.problems[:30]:
        err.print(f"  - {escape(p)}", highlight=False)
    if len(v.problems) > 30:
        err.print(f"  ... and {len(v.problems) - 30} more (see the report)")
    if not v.ok and not partial:
        raise sub.SubmissionError(
            f"{submission}: invalid submission, {len(v.problems)} problem(s), first: "
            f"{v.problems[0]} (--partial scores the valid files)"
        )
    label = f"submission/{name}"
    system = sub.SubmissionSystem(root=str(root.resolve()), digest=sub.digest(root),
                                  skip=v.bad, label=name)
    cfg = load_config(None, {
        "suites": [suite], "systems": [label], "panel": panel, "listeners": listener, "jobs": jobs,
        "out": str(out_dir), "run_name": name, "quiet": quiet or None,
        "metrics_backend": metrics_backend,
    })
    p = plan(cfg, prebuilt={label: system})
    err.print(f"scoring {label}: {len(p.jobs)} jobs")
    result = execute(p, progress=not cfg.quiet)
    err.print(f"done in {result.seconds:.1f} s; run {result.run_id} in {result.store_path}")
    _print_summary(out_dir, result.run_id, p.panel)


@app.command()
def pack(
    run_ref: Annotated[str, typer.Argument(metavar="RUN", help=RUN_HELP)],
    dest: Annotated[Path, typer.Option("--out", "-o", help="Folder to write the submission into (must not exist).")],
    system: Annotated[str, typer.Option("--system", "-y", help="Which system's outputs (default: the run's only non-anchor system).")] = None,
    suite: Annotated[str, typer.Option("--suite", "-s", help="Which suite (default: the run's only suite).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="flac (24-bit PCM, as challenges ask) or wav (32-bit float, the exact samples).")] = "flac",
    store: Annotated[Path, typer.Option("--store", help=STORE_HELP)] = Path("harness-runs"),
) -> None:
    """Write a run's system outputs as a submission folder in the suite's naming convention."""
    import json as _json

    from harness import audio as audio_mod
    from harness import runs as runs_mod
    from harness import submission as sub
    from harness.errors import ConfigError

    run = runs_mod.load_run(run_ref, store)
    jobs_df = run.jobs
    suites = list(dict.fromkeys(jobs_df.suite))
    if suite is None:
        if len(suites) != 1:
            raise ConfigError(f"{run.label}: holds suites {', '.join(suites)}; pick one with --suite")
        suite = suites[0]
    systems = [s for s in dict.fromkeys(jobs_df[jobs_df.suite == suite].system)]
    if system is None:
        cands = [s for s in systems if s not in ("unprocessed", "oracle")] or systems
        if len(cands) != 1:
            raise ConfigError(f"{run.label}: holds systems {', '.join(systems)}; pick one with --system")
        system = cands[0]
    if dest.exists():
        raise ConfigError(f"{dest}: already exists (pack writes a fresh folder)")
    items = run.suite_items(suite)
    entries = []
    for r in jobs_df[(jobs_df.suite == suite) & (jobs_df.system == system)].itertuples():
        paths = _json.loads(r.outputs)
        outs = {k: audio_mod.read(run.output_path(v)) for k, v in paths.items()}
        lid = None if r.listener_id == "-" else r.listener_id
        entries.append((items[r.item_id], lid, outs))
    from harness.safety import writing

    with writing(dest, "submission"):
        n = sub.write_submission(entries, dest, fmt)
    err.print(f"wrote {n} files of {system} on {suite} to {dest}")


@app.command()
def report(
    runs_: Annotated[list[str], typer.Argument(metavar="RUN...", help=RUN_HELP + " Several runs are merged (a system in more than one is labelled system@run).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="md (with a folder of PNG figures), html (one self-contained file with audio) or latex.")] = "html",
    dest: Annotated[Path, typer.Option("--out", "-o", help="Output file (default: report.<ext>).")] = None,
    baseline: Annotated[str, typer.Option(help="System the others are compared with (default: unprocessed if present).")] = None,
    audio_items: Annotated[int, typer.Option(help="Items per suite with audio players and spectrograms (HTML).")] = 2,
    title: Annotated[str, typer.Option(help="Report title.")] = None,
    store: Annotated[Path, typer.Option("--store", help=STORE_HELP)] = Path("harness-runs"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing report file.")] = False,
) -> None:
    """Comparative report of stored runs.

    Per suite and metric: systems with mean and 95% CI (units not ok beside it); each system's
    paired difference to the baseline with its CI, Holm-adjusted Wilcoxon p and d_z; breakdowns
    by listener severity band and degradation metadata (SNR, RT60, device, bandwidth ratio,
    noise); figures (distribution per system, metric against SNR, listener x system HAAQI
    heatmap); audio and spectrograms of a few items (HTML); the run manifests.
    """
    from harness import runs as runs_mod
    from harness.errors import ConfigError
    from harness.report.build import build
    from harness.report.render import RENDERERS
    from harness.safety import check_output, writing

    if fmt not in RENDERERS:
        raise ConfigError(f"unknown report format {fmt!r} (md, html, latex)")
    ext = {"md": "md", "html": "html", "latex": "tex"}[fmt]
    dest = dest or Path(f"report.{ext}")
    loaded = [runs_mod.load_run(r, store) for r in runs_]
    if len({r.run_id for r in loaded}) != len(loaded):
        raise ConfigError("a run is given twice")
    check_output(dest, force=force, inputs=tuple(r.db_path for r in loaded), what="report")
    rep = build(loaded, baseline=baseline, audio_items=audio_items if fmt == "html" else 0,
                title=title)
    for w in rep.warnings:
        err.print(f"[yellow]warning:[/] {escape(w)}")
    with writing(dest, "report"):
        files = RENDERERS[fmt](rep, dest)
    size = sum(f.stat().st_size for f in files)
    err.print(f"wrote {dest} ({len(files)} file(s), {size / 1e6:.1f} MB)")


leaderboard_app = typer.Typer(
    help="Leaderboards: add runs as entries, show the ranking, build a static HTML page.",
    no_args_is_help=True,
)
app.add_typer(leaderboard_app, name="leaderboard")
LB_HELP = "Leaderboard file (SQLite)."


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
    from harness.leaderboard import Leaderboard

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


if __name__ == "__main__":
    main()
