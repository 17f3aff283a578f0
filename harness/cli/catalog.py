"""`harness systems`, `tasks`, `metrics`, `listeners`: what is installed."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from harness.cli.app import (
    app,
    out,
)
from harness.errors import HarnessError


@app.command()
def systems(
    name: Annotated[str, typer.Argument(help="A system: list its parameters (for --param NAME.KEY=VALUE) with their defaults and the values each may take.")] = None,
) -> None:
    """List the registered systems (built-in and from installed plugins), or one system's
    parameters."""
    from harness import registry
    from harness.api import get_system, system_names

    if name is not None:
        _system_parameters(name)
        return
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


def _system_parameters(name: str) -> None:
    """One system's parameters: default, type and the values it may take (its `limits`)."""
    from harness import registry

    cls = registry.load("harness.systems", name.partition("/")[0])  # remix/dsp: remix's parameters
    defaults = getattr(cls, "defaults", None) or {}
    limits = getattr(cls, "limits", None) or {}
    tasks = ", ".join([cls.task, *getattr(cls, "also_tasks", ())])
    if not defaults:
        out.print(f"{name} ({tasks}) declares no parameters")
        return
    t = Table(title=f"{name} ({tasks}): parameters for --param {name}.KEY=VALUE", title_justify="left")
    for c in ("parameter", "default", "may take"):
        t.add_column(c)
    for key, default in defaults.items():
        rule = limits.get(key)
        whole = isinstance(default, int) and not isinstance(default, bool)  # its type is checked too
        if isinstance(rule, str):
            whole = whole or rule.startswith("integer ")
            allowed = f"{'integers' if whole else 'numbers'} in {rule.removeprefix('integer ')}"
            allowed += " (each)" if isinstance(default, list) else ""
        elif rule is not None:
            allowed = "one of " + ", ".join(repr(r) for r in rule)
        elif default is None:
            allowed = "anything (none: off)"
        else:
            allowed = "a table" if isinstance(default, dict) else f"any {type(default).__name__}"
        t.add_row(escape(key), escape(repr(default)), escape(allowed))
    out.print(t)


@app.command()
def tasks() -> None:
    """List the tasks (the `harness.tasks` registry): protocol version, inputs and references,
    default and supported metrics, whether listeners are used."""
    from harness.tasks import get_protocol, task_names

    t = Table(title="Tasks", title_justify="left")
    for c in ("task", "version", "inputs", "references", "listeners", "default metrics", "also"):
        t.add_column(c)
    for name in task_names():
        try:
            p = get_protocol(name)
        except HarnessError as exc:
            t.add_row(name, "?", "", "", "", f"[red]{escape(str(exc))}[/]", "")
            continue
        also = [m for m in p.supported_metrics if m not in p.default_metrics]
        t.add_row(name, p.version, ", ".join(p.input_roles) or p.inputs_note,
                  ", ".join(p.reference_roles) or p.references_note, "yes" if p.uses_listener else "no",
                  ", ".join(p.default_metrics), ", ".join(also))
    out.print(t)


@app.command()
def metrics() -> None:
    """List the metrics with their kind, direction, rate and what each needs: a reference, a
    listener, a download (none of the built-ins downloads anything)."""
    from harness.metrics import all_metrics

    t = Table(title="Metrics", title_justify="left")
    for c in ("name", "kind", "better", "unit", "rate", "reference", "listener", "download", "description"):
        t.add_column(c)
    for n, m in all_metrics().items():
        kind = getattr(m, "kind", "intrusive")
        if getattr(m, "of", None) is not None:
            kind += f" of {m.of.name}"
        t.add_row(n, kind, "higher" if m.higher_is_better else "lower", m.unit or "",
                  f"{m.sample_rate}" if m.sample_rate else "any",
                  "yes" if getattr(m, "needs_reference", True) else "no",
                  "yes" if m.needs_listener else "no",
                  "yes" if getattr(m, "needs_download", False) else "no", m.description)
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
