"""`harness suites ...`: built-in, generated and imported suites."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from harness.cli.app import (
    app,
    at_least,
    err,
    out,
)

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
    name: Annotated[str, typer.Argument(help="Generator name: one of `harness suites generators` (speech-enhancement, music-remix, classical-rebalance, ...).")],
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
    at_least(seed=(seed, 0), items=(items, 1), seconds=(seconds, 1))
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from harness.errors import ConfigError
    from harness.suites.synth.generators import make_suite

    options = {}
    for o in option or []:
        if "=" not in o:
            raise ConfigError(f"--option {o!r}: expected KEY=VALUE")
        k, v = o.split("=", 1)
        if k.strip() in options:
            raise ConfigError(f"--option {k.strip()} is given twice (a grid is one option: -O {k.strip()}=0,5,10)")
        options[k.strip()] = _option_value(v.strip())
    if preset:
        if options.setdefault("preset", preset) != preset:
            raise ConfigError(f"--preset {preset} and -O preset={options['preset']} disagree")
    bar = Progress(TextColumn(f"[bold]{name}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=err, disable=quiet or not err.is_terminal)

    def progress(total: int):
        task = bar.add_task(name, total=total)
        return lambda: bar.advance(task)

    with bar:
        suite = make_suite(name, dest, items, seconds, seed, options, progress)
    err.print(f"{suite.name}: {len(suite.items)} items, {suite.duration:.1f} s of reference audio, "
              f"hash {suite.hash[:12]}; wrote {dest / 'manifest.json'}")
    from harness.suites.synth.speech import training_voice_note

    note = training_voice_note([it.metadata.get("voice") for it in suite.items])
    if note:
        err.print(f"note: {note}")
    err.print(f"run it: harness run --suite {dest} --system unprocessed --system oracle")


@suites_app.command("generators")
def suites_generators() -> None:
    """List the suite generators `harness suites make` runs, with their -O options and the values
    each may take."""
    from rich.markup import escape

    from harness.suites.synth.generators import generators

    def shown(key: str, rule) -> str:
        if rule is None:
            return key
        return f"{key} {rule}" if isinstance(rule, str) else f"{key} ({'|'.join(map(str, rule))})"

    t = Table(title="Suite generators", title_justify="left")
    for c in ("name", "task", "default", "makes", "-O options (limits)"):
        t.add_column(c)
    for g in generators().values():
        t.add_row(g.name, g.task, f"{g.items} x {g.seconds:g} s", g.description,
                  escape(", ".join(shown(k, g.limits.get(k)) for k in g.options)))
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
