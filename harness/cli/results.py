"""`harness compare`, `score`, `pack`, `report`: gates, submissions and reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from harness.cli.app import (
    RUN_HELP,
    STORE_HELP,
    _fmt,
    _print_summary,
    app,
    at_least,
    err,
    out,
)


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
    at_least(worst=(worst, 0))
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
    out_dir: Annotated[Path, typer.Option("--out", "-o", help=STORE_HELP + " Archives are unpacked under `<out>/submissions/`.")] = Path("harness-runs"),
    metrics_backend: Annotated[str, typer.Option(help="reference or fast (default: fast where parity holds).")] = None,
    metric: Annotated[list[str], typer.Option("--metric", "-m", help="Metrics to compute (repeatable; default: the task's own, see `harness tasks`).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Validate a submission, then score it as a run.

    Naming: listener tasks follow Cadenza CAD1
    (`<listener>/<song>/<listener>_<song>_{left,right}_{vocals,drums,bass,other}.flac`,
    optional `..._remix.flac`); other tasks `<item>.flac` (one output) or
    `<item>/<item>_<output>.flac`. Files may be FLAC or WAV, 16/24/32-bit PCM or float. Every
    expected file must be present, nothing else may be, and each must have the output's rate,
    channels and length and finite samples.
    What the Cadenza recipes write is accepted and read as their evaluators read it: a 16-bit
    FLAC's scale file (`<name>.txt`), the length their full-convolution NAL-R gives, and the
    recipes' names (ICASSP 2024: `<scene>_<listener>_remix.flac` in one folder; CAD2 Task 2 the
    same under train/, valid/ or test/; CAD2 Task 1: `<scene>_<listener>_A<alpha>_remix.flac`).
    Archives are unpacked safely (no traversal, no links, bounded count, size and ratio).
    """
    at_least(max_ratio=(max_ratio, 1))
    import json as _json

    from harness import submission as sub
    from harness.config import load_config
    from harness.errors import ConfigError
    from harness.listener import resolve_panel
    from harness.planning import plan
    from harness.runner import execute
    from harness.safety import plain_name
    from harness.suites import resolve_suite
    from harness.tasks import get_protocol

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
        "metrics_backend": metrics_backend, "metrics": list(dict.fromkeys(metric or [])) or None,
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
    dest: Annotated[Path, typer.Option("--out", "-o", help="Output file (default: `report.<ext>`).")] = None,
    baseline: Annotated[str, typer.Option(help="System the others are compared with (default: unprocessed if present).")] = None,
    audio_items: Annotated[int, typer.Option(help="Items per suite with audio players and spectrograms (HTML).")] = 2,
    title: Annotated[str, typer.Option(help="Report title.")] = None,
    store: Annotated[Path, typer.Option("--store", help=STORE_HELP)] = Path("harness-runs"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing report file.")] = False,
    by_stem: Annotated[bool, typer.Option("--by-stem", help="Also summarise and compare each stem of per-stem metrics (metric[stem], e.g. si_sdri[speech]), in the same Holm family.")] = False,
) -> None:
    """Comparative report of stored runs.

    Per suite and metric: systems with mean and 95% CI (units not ok beside it); each system's
    paired difference to the baseline with its CI, Holm-adjusted Wilcoxon p and d_z; breakdowns
    by listener severity band and degradation metadata (SNR, RT60, device, bandwidth ratio,
    noise); figures (distribution per system, metric against SNR, listener x system HAAQI
    heatmap); audio and spectrograms of a few items (HTML); the run manifests.
    """
    at_least(audio_items=(audio_items, 0))
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
                title=title, by_stem=by_stem)
    for w in rep.warnings:
        err.print(f"[yellow]warning:[/] {escape(w)}")
    with writing(dest, "report"):
        files = RENDERERS[fmt](rep, dest)
    size = sum(f.stat().st_size for f in files)
    err.print(f"wrote {dest} ({len(files)} file(s), {size / 1e6:.1f} MB)")
