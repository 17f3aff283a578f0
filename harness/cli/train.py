"""`harness train`: train a learned system into a safetensors checkpoint."""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from harness.cli.app import app, at_least, err

PLAIN_EVERY_S = 60.0  # without a terminal: seconds between progress lines


@app.command()
def train(
    system: Annotated[str, typer.Argument(help="A trainable system (harness systems lists them; e.g. hifigan).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint to write: NAME.safetensors (+ NAME.json, NAME.train.*, NAME.loss.png, NAME.report.md beside it).")],
    config: Annotated[Path, typer.Option("--config", "-c", help="TRAIN.toml: any key of the system's training defaults (unknown keys are refused).")] = None,
    steps: Annotated[int, typer.Option(help="Stop after this many steps in all (default: the stages' total); --resume continues to it.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N (auto: cuda when present).")] = "auto",
    init: Annotated[Path, typer.Option("--init", help="Fine-tune: start from the weights of an earlier checkpoint of the same architecture config, with fresh optimisers at step 0; recorded in the sidecar. With its training state beside it (CKPT.train.safetensors, as harness train leaves it) every module starts from it; without (an inference checkpoint, e.g. from harness checkpoints average) the exported model does and the rest (discriminators) start fresh.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the training state beside --out (same config and seed: the same weights as an uninterrupted run).")] = False,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 100,
    validate_every: Annotated[int, typer.Option(help="Steps between validations on held-out generated data (0: only at the end).")] = 0,
    keep_every: Annotated[int, typer.Option(help="Also keep the weights of every N-th step as NAME.stepNNNNNN.safetensors (+ sidecar) beside --out, for choosing or averaging snapshots (harness checkpoints average); 0: keep none.")] = 0,
    threads: Annotated[int, typer.Option(help="CPU threads for torch (0: torch's default, one per core unless OMP_NUM_THREADS says otherwise). Give 1 when another job shares the cores: oversubscribed threads slow both several-fold.")] = 0,
    precision: Annotated[str, typer.Option(help="float32, or bfloat16 mixed precision (autocast; the weights and the checkpoint stay float32): about twice as fast on a CPU with AVX512-BF16/AMX or a recent GPU. Overrides the config's `precision`; recorded in the sidecar, and --resume needs the same.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train SYSTEM on data drawn on the fly from the harness's generators (training voices,
    rooms, noises and seeds disjoint from every evaluation suite) and write its checkpoint.

    A kill loses at most `--checkpoint-every` steps: rerun the same command with --resume."""

    import torch

    from harness import registry
    from harness.errors import CheckpointError, ConfigError, RegistryError
    from harness.planning import resolve_device
    from harness.training.report import loss_curve, write_report
    from harness.training.trainer import Trainer, init_source, load_train_config, state_path

    base, _, variant = system.partition("/")
    cls = registry.load("harness.systems", base)
    if not callable(getattr(cls, "training", None)):
        trainable = [n for n in registry.names("harness.systems")
                     if callable(getattr(_safe_load(n), "training", None))]
        raise RegistryError(f"system {system!r} is not trainable (trainable: {', '.join(trainable) or 'none'})")
    at_least(checkpoint_every=(checkpoint_every, 1), validate_every=(validate_every, 0), threads=(threads, 0),
             keep_every=(keep_every, 0),
             steps=(steps, 0))
    try:
        spec = cls.training(variant) if variant else cls.training()
    except TypeError:
        raise RegistryError(f"system {base!r} has no variants: train {base!r}") from None
    from harness.training.trainer import PRECISIONS

    if precision is not None and precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    cfg = load_train_config(spec, config, {"precision": precision} if precision is not None else None)
    if cfg.get("init_required") and init is None and not resume:  # refused before any model is built
        raise ConfigError(f"{config}: this config fine-tunes an earlier run (init_required = true): give "
                          "--init EARLIER.safetensors (the config's header names the run)")
    dev = resolve_device(device)
    if threads:
        torch.set_num_threads(threads)
    if cfg.get("precision") == "bfloat16" and dev.startswith("cuda") and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"{dev}: this GPU does not support bfloat16 ({torch.cuda.get_device_name(dev)}); "
                          "train in float32 (--precision float32)")
    if cfg.get("precision") == "bfloat16" and dev == "cpu" and not _cpu_has_bfloat16():
        err.print("note: this CPU has no native bfloat16 (AVX512-BF16 or AMX): bfloat16 steps are "
                  "emulated and slower than float32 here", soft_wrap=True)
    trainer = Trainer(spec, cfg, out, dev, log=lambda m: err.print(m, soft_wrap=True))
    if resume:
        trainer.resume()
        if init is not None and (trainer.init or {}).get("from") != str(init_source(init).resolve()):
            raise CheckpointError(f"{trainer.out}: its run did not start from --init {init}; resume it "
                                  "with the --init it started with, or without one")
        err.print(f"resumed {out} at step {trainer.step} of {trainer.total_steps}")
    elif state_path(trainer.out).exists() or trainer.out.exists():
        raise CheckpointError(f"{trainer.out}: a checkpoint is already there (--resume continues it; "
                              "choose another --out to start afresh)")
    elif init is not None:
        trainer.init_from(init)
        err.print(f"starting from the weights of {init} (step {trainer.init['steps']} of its run)")
    n_params = sum(p.numel() for p in trainer.modules[next(iter(trainer.modules))].parameters())
    end = trainer.total_steps if steps is None else min(steps, trainer.total_steps)
    until = "" if end == trainer.total_steps else f" (stopping at step {end}: --steps)"
    err.print(f"training {system} ({spec.architecture}, {n_params:,} parameters in "
              f"{next(iter(trainer.modules))}) on {dev}: {trainer.total_steps} steps, stages "
              + ", ".join(f"{s.name} {s.steps}" for s in trainer.stages) + until, soft_wrap=True)

    def shown(logs: dict) -> str:
        return " ".join(f"{k} {v:.4g}" for k, v in logs.items() if not k.endswith("grad_norm"))

    def rate() -> float:
        return trainer.history[-1].get("steps_per_s", 0) if trainer.history else 0

    every = {"checkpoint_every": checkpoint_every, "validate_every": validate_every, "keep_every": keep_every}
    if quiet:
        trainer.run(end, **every)
    elif not err.is_terminal:  # a log file, a batch job, CI: a plain line now and then instead of a bar
        first, t0 = trainer.step, time.time()
        last = [t0]

        def line(step: int, logs: dict) -> None:
            now = time.time()
            if now - last[0] < PLAIN_EVERY_S and step != end:
                return
            last[0] = now
            eta = (now - t0) / (step - first) * (end - step) if step > first else float("nan")
            err.print(f"train: step {step}/{end}, {shown(logs)}, {rate():.2f} steps/s, "
                      f"{now - t0:.0f} s elapsed, eta {eta:.0f} s", highlight=False, soft_wrap=True)

        trainer.run(end, **every, progress=line)
    else:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[loss]}"), TextColumn("{task.fields[rate]}"),
                      TimeRemainingColumn(), console=err) as bar:
            task = bar.add_task("train", total=end, completed=trainer.step, loss="", rate="")

            def tick(step: int, logs: dict) -> None:
                bar.update(task, completed=step, loss=shown(logs), rate=f"{rate():.2f} steps/s")

            trainer.run(end, **every, progress=tick)
    if trainer.step >= trainer.total_steps and (not trainer.validation
                                                or trainer.validation[-1]["step"] != trainer.step):
        trainer.run_validation()
        trainer.save()
    from harness import checkpoints

    record = checkpoints.read_record(trainer.out)
    png = loss_curve(trainer.history, trainer.out.with_suffix(".loss.png"),
                     f"{system}: loss per logged step")
    command = "harness " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report = write_report(record, trainer.out.with_suffix(".report.md"), command)
    err.print(f"wrote {trainer.out} ({record['parameters']:,} parameters, step {trainer.step}), "
              f"{png or 'no loss curve (no step logged)'}, {report}")


def _cpu_has_bfloat16() -> bool:
    """Whether mkldnn runs bfloat16 natively here (its own check; True when it cannot be asked)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        return True


def _safe_load(name: str):
    from harness import registry

    try:
        return registry.load("harness.systems", name)
    except Exception:
        return None
