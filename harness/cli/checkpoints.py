"""`harness checkpoints show`: what a checkpoint is, from its sidecar (and its weights' hash);
`harness checkpoints convert`: the weights users already have, as harness checkpoints;
`harness checkpoints average`: the uniform average of snapshots of one model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from harness.cli.app import app, out

checkpoints_app = typer.Typer(help="Inspect model checkpoints (safetensors + JSON sidecar), convert "
                                   "local weights to them and average snapshots of one model.",
                              no_args_is_help=True)
app.add_typer(checkpoints_app, name="checkpoints")


@checkpoints_app.command("show")
def show(
    path: Annotated[Path, typer.Argument(help="A checkpoint: NAME.safetensors (its NAME.json beside it).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole sidecar as JSON.")] = False,
) -> None:
    """Architecture, parameter count, training (steps, time, stages, last losses, validation),
    data, version and commit of a checkpoint; its weights are checked against the sidecar."""
    from harness import checkpoints

    tensors, record = checkpoints.load(path)
    if as_json:
        out.print_json(json.dumps(record, default=str))
        return
    t = Table(title=f"{path}", title_justify="left", show_header=False)
    t.add_column("key", style="bold")
    t.add_column("value")
    arch = record["architecture"]
    t.add_row("architecture", escape(f"{arch['name']} {json.dumps(arch.get('config', {}))}"))
    t.add_row("parameters", f"{record.get('parameters', 0):,} in {len(tensors)} tensors "
                            f"({path.stat().st_size / 2**20:.2f} MiB)")
    train = record.get("training")
    if train:
        t.add_row("training", f"{train['steps']} of {train['total_steps']} steps on "
                              f"{train['device']}, {train['seconds'] / 60:.1f} min")
        t.add_row("stages", ", ".join(f"{s['name']} {s['steps']}" for s in train.get("stages", [])))
        if train.get("loss_history"):
            last = {k: v for k, v in train["loss_history"][-1].items() if k not in ("stage",)}
            t.add_row("last losses", escape(json.dumps(last)))
        if train.get("validation"):
            t.add_row("validation", escape(json.dumps(train["validation"][-1])))
    for key, value in (record.get("data") or {}).items():
        t.add_row(f"data: {key}", escape(str(value)))
    git = record.get("git") or {}
    t.add_row("harness", f"{record.get('harness_version', '?')} at {git.get('commit', '?')[:12]}"
                         f"{' (dirty)' if git.get('dirty') else ''}, saved {record.get('saved_utc', '?')}")
    t.add_row("sha256", record.get("sha256", ""))
    out.print(t)


@checkpoints_app.command("convert")
def convert(
    kind: Annotated[str, typer.Argument(help="What SRC is: demucs (a .th file as the demucs package saves HDemucs / HTDemucs), openunmix (a folder of Open-Unmix target models, `<target>.pth` or `<target>-<hash>.pth`, as umxhq/umxl ship) or mrx (a cocktail-fork-separation MRX state dict .pth, or its Lightning .ckpt).")],
    src: Annotated[Path, typer.Argument(help="The local file (demucs: a .th model file; mrx: a .pth or .ckpt) or folder (openunmix: `<target>.pth` per target) to convert; nothing is downloaded.")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="The checkpoint to write: NAME.safetensors (and NAME.json beside it).")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing checkpoint.")] = False,
) -> None:
    """Convert local weights to a harness checkpoint, never running code from the file (it is
    read with torch.load(weights_only=True) and an allow-list of the model classes). The
    result loads in the matching system, e.g. remix/htdemucs (or remix/openunmix) with
    --param remix/htdemucs.separator_options='{checkpoint = "OUT"}'."""
    from harness import registry
    from harness.errors import CheckpointError, ConfigError

    if out_path.suffix != ".safetensors":
        raise ConfigError(f"{out_path}: a checkpoint file ends in .safetensors")
    if out_path.exists() and not force:
        raise ConfigError(f"{out_path}: exists; pass --force to overwrite it")
    if src.resolve() == out_path.resolve():
        raise ConfigError(f"{out_path}: is the file to convert")
    fn = registry.load("harness.converters", kind)
    try:
        path = fn(src, out_path)
    except CheckpointError:
        raise
    except Exception as exc:  # a converter's surprise is still one line naming the file
        raise CheckpointError(f"{src}: cannot convert ({type(exc).__name__}: {exc})") from None
    wrote(path)


def wrote(path: Path, more: str = "") -> None:
    """Report a checkpoint just written, read back through the loader (so its hash is checked)."""
    from harness import checkpoints

    tensors, record = checkpoints.load(path)
    out.print(f"wrote {path} ({record['architecture']['name']}, {record['parameters']:,} parameters "
              f"in {len(tensors)} tensors{more}) and {checkpoints.sidecar_of(path).name}")


@checkpoints_app.command("average")
def average(
    paths: Annotated[list[Path], typer.Argument(help="Two or more checkpoints of one model (same architecture and config), e.g. snapshots a harness train run kept with --keep-every.")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="The checkpoint to write: NAME.safetensors (and NAME.json beside it).")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing checkpoint.")] = False,
) -> None:
    """Uniform average of the weights of checkpoints of one model (checkpoint averaging, as
    fairseq and ESPnet do with the last snapshots of a run). Floating-point tensors are averaged
    in float64; the sidecar is the last input's plus `averaged_from` (paths, hashes, steps)."""
    from harness import checkpoints
    from harness.errors import ConfigError

    if out_path.suffix != ".safetensors":
        raise ConfigError(f"{out_path}: a checkpoint file ends in .safetensors")
    if any(p.resolve() == out_path.resolve() for p in paths):
        raise ConfigError(f"{out_path}: is one of the checkpoints to average")
    if out_path.exists() and not force:
        raise ConfigError(f"{out_path}: exists; pass --force to overwrite it")
    wrote(checkpoints.average(paths, out_path), f", the average of {len(paths)} checkpoints")
