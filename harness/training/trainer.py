"""The training loop: stages, optimisers, schedules, clipping, logging, checkpoints, resume.

Determinism: every step seeds torch from (seed, step) before it draws its batch and runs its
losses, and the batch itself is a function of (seed, step). So a run stopped at any checkpoint
and resumed with `--resume` sees the same batches and the same random draws (dropout) as an
uninterrupted one, and with the optimiser states restored ends with the same weights (on the
same device and thread count).

Files, for `--out DIR/NAME.safetensors`:
- `NAME.safetensors` + `NAME.json`: the inference weights and their record (what `harness run`
  loads); rewritten at every checkpoint, so a stopped run leaves a usable model;
- `NAME.train.safetensors` + `NAME.train.json`: every module and optimiser state, the step and
  the loss history (what `--resume` reads); no pickle anywhere;
- `NAME.loss.png`, `NAME.report.md`: the loss curve and the training report.

Fine-tuning: `init_from` starts a run from the module weights of an earlier run's training state
(fresh optimisers, step 0, this run's data and seed), or, where there is no training state (an
averaged checkpoint: `harness checkpoints average`), from an inference checkpoint's weights for
the module the system exports (the others, e.g. discriminators, start fresh); the sidecar records
which file and its sha256, so a fine-tuned checkpoint is reproduced by the commands in order.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness import checkpoints
from harness.config import check_type, limit_problem
from harness.errors import CheckpointError, ConfigError, read_structured
from harness.training.spec import OptimiserSpec, Stage, Trainable

STATE_SUFFIX = ".train.safetensors"


def state_path(out: Path) -> Path:
    return out.with_name(out.stem + STATE_SUFFIX)


def snapshot_path(out: Path, step: int) -> Path:
    """Where `harness train --keep-every` keeps the weights of `step`: NAME.step003000.safetensors
    (with its sidecar NAME.step003000.json) beside NAME.safetensors."""
    return out.with_name(f"{out.stem}.step{step:06d}.safetensors")


def init_state(path: str | Path) -> Path:
    """The training state `--init PATH` names: PATH itself when it is one, else the state
    beside the checkpoint PATH."""
    p = Path(path)
    return p if p.name.endswith(STATE_SUFFIX) else state_path(p)


def init_source(path: str | Path) -> Path:
    """The file `--init PATH` starts from: the training state it names when there is one, else
    PATH itself (an inference checkpoint, whose weights are the exported module's)."""
    state = init_state(path)
    return state if state.is_file() else Path(path)


# ------------------------------------------------------------------ configuration
def merge_config(defaults: dict[str, Any], given: dict[str, Any], where: str, prefix: str = "") -> dict:
    """`given` over `defaults`, recursively: an unknown key or a value of another type than its
    default is a ConfigError naming `where` and the dotted key."""
    out = dict(defaults)
    for key, value in given.items():
        dotted = f"{prefix}{key}"
        if key not in defaults:
            known = ", ".join(sorted(defaults))
            scope = f" in {prefix[:-1]}" if prefix else ""
            raise ConfigError(f"{where}unknown key {dotted!r} (known{scope}: {known})")
        d = defaults[key]
        if isinstance(d, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}key {dotted!r} must be a table")
            out[key] = merge_config(d, value, where, dotted + ".")
            continue
        try:
            if d is not None:
                kind = float if isinstance(d, float) else (list if isinstance(d, list) else type(d))
                check_type(dotted, value, (int, float) if kind is float else kind)
        except ConfigError as exc:
            raise ConfigError(f"{where}{exc}") from None
        out[key] = float(value) if isinstance(d, float) else value
    return out


# Arithmetic of the training steps: "float32", or "bfloat16" mixed precision (torch.autocast
# around the forward passes and losses; weights, optimiser states and the exported checkpoint
# stay float32, and inference is float32). On a CPU with AVX512-BF16 or AMX (this project's
# 2-core machines) bfloat16 halves a hifigan step's time; on one without, it is emulated and slower.
PRECISIONS = ("float32", "bfloat16")
COMMON_DEFAULTS: dict[str, Any] = {"precision": "float32"}


def base_defaults(trainable: Trainable) -> dict[str, Any]:
    """The trainable's training defaults with the keys every trainer understands."""
    return {**COMMON_DEFAULTS, **trainable.defaults()}


# Values every trainer's config must respect (harness.config.limit_problem rules; "*" stands for
# every key of a table). A trainable adds its own with a `limits` attribute (data sizes, arch).
COMMON_LIMITS: dict[str, Any] = {
    "seed": "integer [0, inf)", "batch_size": "integer [1, inf)", "clip_norm": "[0, inf)",
    "lr": "[0, inf)", "lr.*": "[0, inf)", "decay": "(0, 1]", "decay_every": "integer [1, inf)",
    "steps.*": "integer [0, inf)", "loss.*": "[0, inf)", "data.validation_items": "integer [1, inf)",
    "precision": PRECISIONS,
}


def matching(cfg: dict[str, Any], pattern: str, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) of every leaf of cfg that `pattern` names ("steps.*": each stage)."""
    head, _, rest = pattern.partition(".")
    keys = list(cfg) if head == "*" else [head] if head in cfg else []
    out = []
    for k in keys:
        v = cfg[k]
        if rest:
            if isinstance(v, dict):
                out += matching(v, rest, f"{prefix}{k}.")
        elif not isinstance(v, dict):
            out.append((f"{prefix}{k}", v))
    return out


def limits_problem(cfg: dict[str, Any], limits: dict[str, Any]) -> str | None:
    """The first value of cfg outside its limit, said as 'KEY must be ..., got VALUE'; or None."""
    for pattern, rule in limits.items():
        for dotted, value in matching(cfg, pattern):
            problem = limit_problem(rule, value)
            if problem:
                return f"{dotted} {problem}"
    return None


def load_train_config(trainable: Trainable, path: str | Path | None,
                      overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The training configuration: the trainable's defaults, then TRAIN.toml, then overrides."""
    cfg = base_defaults(trainable)
    if path:
        p = Path(path)
        if p.suffix.lower() != ".toml":
            raise ConfigError(f"{p}: a training config must be a .toml file")
        raw = read_structured(p, ConfigError, "training config", "training config not found")
        need_init = raw.pop("init_required", False)  # a fine-tuning config: `harness train` asks for --init
        if not isinstance(need_init, bool):
            raise ConfigError(f"{p}: init_required must be true or false, not {need_init!r}")
        cfg = merge_config(cfg, raw, f"{p}: ")
        if need_init:  # recorded only where set, so older configs and states stay comparable on resume
            cfg["init_required"] = True
    if overrides:
        cfg = merge_config(cfg, overrides, "")
    for key in ("seed", "batch_size"):
        if key not in cfg:
            raise ConfigError(f"{trainable.architecture}: its training defaults lack {key!r}")
    problem = limits_problem(cfg, {**COMMON_LIMITS, **getattr(trainable, "limits", {})})
    problem = problem or (trainable.check(cfg) if hasattr(trainable, "check") else None)
    if problem:
        raise ConfigError(f"{path or 'training config'}: {problem}")
    return cfg


def with_defaults(cfg: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """`cfg` with every key of `defaults` it lacks (recursively, in tables both have)."""
    out = dict(cfg)
    for key, value in defaults.items():
        if key not in out:
            out[key] = value
        elif isinstance(value, dict) and isinstance(out[key], dict):
            out[key] = with_defaults(out[key], value)
    return out


# ------------------------------------------------------------------ the loop
def step_seed(seed: int, step: int) -> int:
    return zlib.crc32(f"{seed}:{step}".encode())


def spans(stages: list[Stage]) -> list[tuple[str, int, int]]:
    """(name, first step, end step) of each stage."""
    out, start = [], 0
    for st in stages:
        out.append((st.name, start, start + st.steps))
        start += st.steps
    return out


def stage_at(stages: list[Stage], step: int) -> tuple[Stage, int]:
    """The stage a (0-based) step falls in and the step's index within it."""
    start = 0
    for s in stages:
        if step < start + s.steps:
            return s, step - start
        start += s.steps
    return stages[-1], step - (start - stages[-1].steps)


class Trainer:
    """Train `trainable` with configuration `cfg` into `out` (a .safetensors path)."""

    def __init__(self, trainable: Trainable, cfg: dict[str, Any], out: str | Path,
                 device: str = "cpu", *, log: Callable[[str], None] | None = None) -> None:
        import torch

        self.t, self.cfg, self.device = trainable, cfg, device
        self.out = Path(out)
        if self.out.suffix != ".safetensors":
            raise ConfigError(f"{self.out}: --out names a .safetensors file")
        self.log = log or (lambda _m: None)
        torch.manual_seed(int(cfg["seed"]))
        self.modules = {k: m.to(device) for k, m in trainable.build(cfg).items()}
        self.specs = {o.name: o for o in trainable.optimisers(cfg)}
        self.stages = [s for s in trainable.stages(cfg) if s.steps > 0]
        if not self.stages:
            raise ConfigError(f"{trainable.architecture}: no training step in any stage")
        for s in self.stages:
            unknown = [o for o in s.optimisers if o not in self.specs]
            if unknown:
                raise ConfigError(f"stage {s.name}: unknown optimiser(s) {', '.join(unknown)}")
        self.optims = {}
        for name, spec in self.specs.items():
            params = [p for m in spec.modules for p in self.modules[m].parameters()]
            self.optims[name] = torch.optim.AdamW(params, lr=spec.lr, betas=spec.betas,
                                                  weight_decay=spec.weight_decay)
        self.step = 0
        self.history: list[dict[str, Any]] = []  # {"step", "stage", losses..., "seconds"}
        self.validation: list[dict[str, Any]] = []
        self.elapsed = 0.0
        self.init: dict[str, Any] | None = None  # the training state a fine-tuning run started from

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    def autocast(self) -> Any:
        """The precision context of a step's forward passes and losses (backward runs outside it,
        in the dtypes autograd recorded)."""
        import torch

        half = self.cfg.get("precision", "float32") == "bfloat16"
        return torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16, enabled=half)

    # ---- learning rate of an optimiser at a step (a pure function: nothing to save for it)
    def lr_at(self, name: str, step: int) -> float:
        stage, within = stage_at(self.stages, step)
        spec: OptimiserSpec = self.specs[name]
        base = (stage.lr or {}).get(name, spec.lr)
        return base * spec.decay ** (within // max(spec.decay_every, 1))

    def train_step(self) -> dict[str, float]:
        import torch

        stage, _ = stage_at(self.stages, self.step)
        torch.manual_seed(step_seed(int(self.cfg["seed"]), self.step))
        for m in self.modules.values():
            m.train()
        batch = self.t.batch(self.cfg, self.step, self.device)
        cache: dict[str, Any] = {}
        logs: dict[str, float] = {}
        for name in stage.optimisers:
            opt, spec = self.optims[name], self.specs[name]
            for group in opt.param_groups:
                group["lr"] = self.lr_at(name, self.step)
            opt.zero_grad(set_to_none=True)
            with self.autocast():
                loss, parts = self.t.loss(self.cfg, stage.name, name, self.modules, batch, cache)
            loss = loss.float()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"step {self.step}: {name} loss is {float(loss)}")
            loss.backward()
            if spec.clip_norm:
                params = [p for m in spec.modules for p in self.modules[m].parameters()]
                parts[f"{name}_grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, spec.clip_norm))
            opt.step()
            logs.update(parts)
        self.step += 1
        return logs

    # ---- checkpoints
    def record(self) -> dict[str, Any]:
        return {
            "architecture": {"name": self.t.architecture, "config": self.cfg.get("arch", {})},
            "training": {
                "config": self.cfg, "steps": self.step, "total_steps": self.total_steps,
                "stages": [asdict(s) for s in self.stages],
                "optimisers": [asdict(o) for o in self.specs.values()],
                "device": self.device, "seconds": round(self.elapsed, 1),
                "loss_history": self.history, "validation": self.validation,
                "init": self.init,
            },
            "data": self.t.data_record(self.cfg),
        }

    def save(self) -> None:
        """The full training state, then the inference weights, each written atomically. The
        state file carries its own record, so a kill anywhere leaves a state that resumes to a
        step whose tensors it holds."""
        import torch

        tensors = {f"module/{m}/{k}": v for m, mod in self.modules.items()
                   for k, v in mod.state_dict().items()}
        groups = {}
        for name, opt in self.optims.items():
            sd = opt.state_dict()
            for idx, st in sd["state"].items():
                for key, val in st.items():
                    t = val if torch.is_tensor(val) else torch.tensor(val)
                    tensors[f"optim/{name}/{idx}/{key}"] = t
            groups[name] = sd["param_groups"]
        tensors["rng/torch"] = torch.get_rng_state()
        rec = self.record()
        rec["state"] = {"optimiser_groups": groups, "step": self.step}
        # The record rides inside the state file's header: tensors and step can never disagree.
        checkpoints.save(state_path(self.out), tensors, rec,
                         metadata={checkpoints.EMBEDDED: json.dumps(rec, default=str)})
        checkpoints.save(self.out, self.t.export(self.modules), self.record())

    def check_arch(self, path: Path, rec: dict[str, Any], hint: str) -> None:
        """One line naming `path` when its record's architecture config is not this run's."""
        theirs = rec.get("architecture", {}).get("config")
        if theirs != self.cfg.get("arch", {}):
            raise CheckpointError(f"{path}: trained with another architecture config ({theirs}); {hint}")

    def resume(self) -> None:
        import torch

        path = state_path(self.out)
        if not path.is_file():
            raise CheckpointError(f"{path}: nothing to resume (no training state beside {self.out.name})")
        tensors, rec = checkpoints.load_embedded(path, self.t.architecture)
        self.check_arch(path, rec, "resume with the same one")
        # a key added to the defaults after the state was saved compares as its default
        before = with_defaults(rec["training"].get("config", {}), base_defaults(self.t))
        changed = sorted(k for k in set(before) | set(self.cfg)
                         if k != "steps" and before.get(k) != self.cfg.get(k))
        if changed:  # only the stages' lengths may change (a stage not reached yet)
            raise CheckpointError(f"{path}: trained with another {', '.join(changed)}; resume with "
                                  "the same training config (only [steps] may change)")
        done = int(rec["state"]["step"])
        if self.total_steps < done:
            raise CheckpointError(f"{path}: at step {done}, past the {self.total_steps} steps of this "
                                  "config's [steps]; shorten them to the step reached at most")
        old = spans([Stage(**st) for st in rec["training"].get("stages", [])])
        new = spans(self.stages)
        for name, start, end in old:
            if start >= done:
                break
            same = [(n, a, b) for n, a, b in new if n == name and a == start]
            if not same or (end <= done and same[0][2] != end):
                raise CheckpointError(f"{path}: [steps] moves stage {name!r}, which step {done} "
                                      "has begun; change only the stages not reached yet")
        for m, mod in self.modules.items():
            checkpoints.load_into(mod, tensors, path, prefix=f"module/{m}/")
        groups = rec["state"]["optimiser_groups"]
        for name, opt in self.optims.items():
            state: dict[int, dict[str, Any]] = {}
            for key, val in tensors.items():
                parts = key.split("/")
                if parts[0] == "optim" and parts[1] == name:
                    keep = val if parts[3] == "step" else val.to(self.device)
                    state.setdefault(int(parts[2]), {})[parts[3]] = keep
            opt.load_state_dict({"state": state, "param_groups": groups[name]})
        torch.set_rng_state(tensors["rng/torch"])
        train = rec["training"]
        self.step = int(rec["state"]["step"])
        self.history = list(train.get("loss_history", []))
        self.validation = list(train.get("validation", []))
        self.elapsed = float(train.get("seconds", 0.0))
        self.init = train.get("init")

    def init_from(self, path: str | Path) -> None:
        """Start from the module weights of an earlier run: its training state
        (NAME.train.safetensors, or NAME.safetensors with its state beside it) of the same
        architecture config, every module; or, where no state is there, an inference checkpoint
        (`harness checkpoints average` writes one): the exported module's weights, the other
        modules as this run's seed makes them. Optimisers stay fresh and the step at 0 (a
        fine-tuning run)."""
        state = init_state(path)
        if not state.is_file():
            if Path(path).name.endswith(STATE_SUFFIX) or not Path(path).is_file():
                raise CheckpointError(f"{path}: no checkpoint to start from (neither it nor {state.name} "
                                      "is there; --init takes a checkpoint written by harness train or "
                                      "harness checkpoints average)")
            self.init_from_weights(Path(path))
            return
        tensors, rec = checkpoints.load_embedded(state, self.t.architecture)
        self.check_arch(state, rec, "--init needs the same [arch]")
        for m, mod in self.modules.items():
            checkpoints.load_into(mod, tensors, state, prefix=f"module/{m}/")
        train = rec["training"]
        self.init = {"from": str(state.resolve()), "sha256": checkpoints.sha256_file(state),
                     "steps": int(rec["state"]["step"]), "seed": train.get("config", {}).get("seed")}

    def init_from_weights(self, path: Path) -> None:
        """`init_from` an inference checkpoint: its tensors go into the module the system exports
        (the one whose state_dict `export` returns), strictly; the other modules stay fresh."""
        tensors, rec = checkpoints.load(path, self.t.architecture)
        self.check_arch(path, rec, "--init needs the same [arch]")
        exported = self.t.export(self.modules)
        ptrs = {k: v.data_ptr() for k, v in exported.items()}
        name = next((m for m, mod in self.modules.items()
                     if {k: v.data_ptr() for k, v in mod.state_dict().items()} == ptrs), None)
        if name is None:  # a system whose export is not one module's state_dict
            raise CheckpointError(f"{path}: {self.t.architecture} exports no single module's weights; "
                                  "--init needs the training state beside the checkpoint")
        checkpoints.load_into(self.modules[name], tensors, path)
        train = rec.get("training", {})
        self.init = {"from": str(path.resolve()), "sha256": checkpoints.sha256_file(path),
                     "steps": int(train.get("steps", 0)), "seed": train.get("config", {}).get("seed"),
                     "modules": [name]}

    # ---- the run
    def run(self, steps: int | None = None, *, checkpoint_every: int = 100, log_every: int = 10,
            validate_every: int = 0, keep_every: int = 0,
            progress: Callable[[int, dict[str, float]], None] | None = None) -> None:
        """Train until step `steps` (default: the stages' total), checkpointing every
        `checkpoint_every` steps and at the end; with `keep_every`, also keep the inference
        weights of every `keep_every`-th step as a snapshot beside the checkpoint
        (`snapshot_path`), for choosing or averaging snapshots."""
        end = min(steps if steps is not None else self.total_steps, self.total_steps)
        if self.step == end:  # resumed where a shortened [steps] now ends: record the new plan
            self.save()
        window: dict[str, list[float]] = {}
        t0 = time.time() - self.elapsed
        last = time.time()
        while self.step < end:
            logs = self.train_step()
            for k, v in logs.items():
                window.setdefault(k, []).append(v)
            if self.step % log_every == 0 or self.step == end:
                now = time.time()
                entry = {"step": self.step, "stage": stage_at(self.stages, self.step - 1)[0].name,
                         **{k: round(sum(v) / len(v), 6) for k, v in window.items()},
                         "steps_per_s": round(len(next(iter(window.values()), [0]))
                                              / max(now - last, 1e-9), 4)}
                self.history.append(entry)
                window, last = {}, now
            self.elapsed = time.time() - t0
            if validate_every and self.step % validate_every == 0:
                self.run_validation()
            keep = keep_every and self.step % keep_every == 0
            if self.step % checkpoint_every == 0 or self.step == end or keep:
                self.save()
            if keep:
                checkpoints.save(snapshot_path(self.out, self.step), self.t.export(self.modules),
                                 self.record())
            if progress:
                progress(self.step, logs)
        self.elapsed = time.time() - t0

    def run_validation(self) -> dict[str, float]:
        import torch

        for m in self.modules.values():
            m.eval()
        with torch.no_grad():
            scores = self.t.validate(self.cfg, self.modules, self.device)
        entry = {"step": self.step, **{k: round(float(v), 5) for k, v in scores.items()}}
        self.validation.append(entry)
        self.log(f"validation at step {self.step}: " + json.dumps(entry))
        return scores
