"""Converters from the weights users already have to the harness's safetensors checkpoints
(`harness checkpoints convert KIND SRC --out DST.safetensors`).

`demucs`: a `.th` file as the `demucs` package saves a model (`demucs.states.serialize_model`
then `torch.save`: a dict of the model class, its constructor arguments, its state dict and the
training arguments), for Hybrid Demucs (`HDemucs`) and Hybrid Transformer Demucs (`HTDemucs`).
The file is read with `torch.load(weights_only=True)`, which unpickles tensors and plain
containers only; the two model classes and `fractions.Fraction` (HTDemucs's segment length) are
the only other names it may mention, and they are looked up, never called. Anything else in the
file (a pickled function, an object of another class) is refused in one line. Quantised (diffq)
states are refused too. Half-precision states are widened to float32.

`openunmix`: a folder of Open-Unmix target models as the `openunmix` package saves them (its
training script: `torch.save(model.state_dict(), "<target>.pth")` beside `<target>.json`; the
published umxhq/umxl files are named `<target>-<hash>.pth`): one state dict per target for
vocals, drums, bass and other. Read with `torch.load(weights_only=True)`; the architecture
(hidden size, LSTM layers and direction, channels, bins, max_bin) is read off the tensors'
shapes, the STFT (n_fft, hop) from `<target>.json` when it is there (else 4096 / 1024, the
published models'), and must agree across the four targets.

The result is a harness checkpoint (safetensors + JSON sidecar naming the source files and their
sha256) that `remix/hdemucs` / `remix/htdemucs` / `remix/openunmix` load with
`separator_options.checkpoint`.
"""

from __future__ import annotations

import inspect
import json
from fractions import Fraction
from pathlib import Path
from typing import Any

from harness.errors import CheckpointError

DEMUCS_CLASSES = {"HDemucs": "hdemucs", "HTDemucs": "htdemucs"}


def _jsonable(value: Any, where: str) -> Any:
    """Constructor arguments as JSON: a Fraction becomes 'a/b' (parsed back when the model is
    built, so the segment length in samples is the same integer)."""
    if isinstance(value, Fraction):
        return f"{value.numerator}/{value.denominator}"
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v, where) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise CheckpointError(f"{where}: a constructor argument of type {type(value).__name__} cannot be "
                          "carried over")


def read_demucs_package(path: Path) -> dict[str, Any]:
    """The dict a demucs `.th` file holds, read without running any code from it."""
    from demucs.hdemucs import HDemucs
    from demucs.htdemucs import HTDemucs

    from harness.checkpoints import torch_load_safely

    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    pkg = torch_load_safely(path, "a Demucs model file", [HDemucs, HTDemucs, Fraction])
    if not isinstance(pkg, dict) or not {"klass", "args", "kwargs", "state"} <= set(pkg):
        raise CheckpointError(f"{path}: not a Demucs model package (expected the keys klass, args, "
                              "kwargs, state that demucs.states.serialize_model writes)")
    return pkg


def convert_demucs(src: Path, dst: Path) -> Path:
    """A demucs `.th` model file as a harness checkpoint at `dst`."""
    import torch

    from harness import checkpoints

    pkg = read_demucs_package(src)
    klass = pkg["klass"]
    name = DEMUCS_CLASSES.get(getattr(klass, "__name__", ""))
    if name is None:
        raise CheckpointError(f"{src}: a {getattr(klass, '__name__', klass)!r} model; the harness "
                              f"converts {', '.join(DEMUCS_CLASSES)}")
    state = pkg["state"]
    if not isinstance(state, dict) or state.get("__quantized"):
        raise CheckpointError(f"{src}: a quantised (diffq) state; convert an unquantised model")
    params = list(inspect.signature(klass.__init__).parameters)[1:]
    args = dict(zip(params, pkg["args"], strict=False))
    model_args = _jsonable({**args, **pkg["kwargs"]}, str(src))
    tensors = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{src}: state entry {key!r} is not a tensor")
        tensors[key] = value.float() if value.is_floating_point() else value
    record = {
        "architecture": {"name": name, "config": model_args},
        "converted_from": {"path": str(src), "sha256": checkpoints.sha256_file(src),
                           "format": "demucs .th (demucs.states.serialize_model + torch.save)",
                           "class": f"{klass.__module__}.{klass.__name__}",
                           "dtype": str(next(iter(state.values())).dtype) if state else ""},
    }
    return checkpoints.save(dst, tensors, record,
                            metadata={"model_args": json.dumps(model_args), "kind": name})


def demucs_args(model_args: dict[str, Any]) -> dict[str, Any]:
    """Constructor arguments from a checkpoint's JSON: 'a/b' segment lengths back to Fractions."""
    out = dict(model_args)
    seg = out.get("segment")
    if isinstance(seg, str) and "/" in seg:
        out["segment"] = Fraction(seg)
    return out


# ------------------------------------------------------------------ Open-Unmix
UMX_TARGETS = ("vocals", "drums", "bass", "other")


def _umx_state(path: Path) -> dict[str, Any]:
    from harness.checkpoints import require_tensors, torch_load_safely

    state = torch_load_safely(path, "an Open-Unmix state dict")
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # a training checkpoint (<target>.chkpnt)
    if not isinstance(state, dict) or not {"fc1.weight", "input_mean", "output_mean"} <= set(state):
        raise CheckpointError(f"{path}: not an Open-Unmix target model (no fc1.weight, input_mean, "
                              "output_mean)")
    return require_tensors(state, path)


def umx_args(state: dict[str, Any], path: Path) -> dict[str, Any]:
    """The model's constructor arguments, read off its tensors."""
    hidden, inputs = state["fc1.weight"].shape
    max_bin = int(state["input_mean"].shape[0])
    nb_bins = int(state["output_mean"].shape[0])
    if inputs % max_bin:
        raise CheckpointError(f"{path}: fc1 takes {inputs} inputs, not a multiple of its {max_bin} bins")
    layers = [int(k.split("_l")[-1].split("_")[0]) for k in state if k.startswith("lstm.weight_ih_l")]
    if not layers:
        raise CheckpointError(f"{path}: no LSTM weights (lstm.weight_ih_l0)")
    return {"nb_channels": inputs // max_bin, "hidden_size": int(hidden), "nb_layers": max(layers) + 1,
            "max_bin": max_bin, "n_fft": 2 * (nb_bins - 1),
            "unidirectional": not any("reverse" in k for k in state)}


def convert_openunmix(src: Path, dst: Path) -> Path:
    """A folder of Open-Unmix target models (`<target>.pth` or `<target>-<hash>.pth`, optional
    `<target>.json`) as one harness checkpoint of the four-target separator."""
    from harness import checkpoints

    if not src.is_dir():
        raise CheckpointError(f"{src}: not a folder (Open-Unmix models are one <target>.pth per "
                              f"target: {', '.join(UMX_TARGETS)})")
    tensors, files, args = {}, {}, {}
    for target in UMX_TARGETS:
        found = sorted(p for p in src.glob(f"{target}*.pth")
                       if p.stem == target or p.stem.startswith(f"{target}-"))
        if len(found) != 1:
            raise CheckpointError(f"{src}: expected one {target}.pth (or {target}-<hash>.pth), found "
                                  f"{len(found) or 'none'}")
        state = _umx_state(found[0])
        these = umx_args(state, found[0])
        side = src / f"{target}.json"
        hop = 1024
        if side.is_file():
            try:
                given = json.loads(side.read_text()).get("args", {})
                these["n_fft"] = int(given.get("nfft", these["n_fft"]))
                hop = int(given.get("nhop", hop))
            except (ValueError, AttributeError, TypeError) as exc:
                raise CheckpointError(f"{side}: not Open-Unmix's training record ({exc})") from None
        these["n_hop"] = hop
        if args and these != args:
            raise CheckpointError(f"{found[0]}: its architecture {these} differs from the other "
                                  f"targets' {args}")
        args = these
        for key, value in state.items():
            tensors[f"target_models.{target}.{key}"] = value.float() if value.is_floating_point() else value
        files[target] = {"path": str(found[0]), "sha256": checkpoints.sha256_file(found[0])}
    record = {
        "architecture": {"name": "openunmix", "config": args},
        "converted_from": {"files": files, "format": "Open-Unmix state dicts (torch.save of "
                                                       "model.state_dict(), one per target)"},
    }
    return checkpoints.save(dst, tensors, record,
                            metadata={"model_args": json.dumps(args), "kind": "openunmix"})


CONVERTERS = {"demucs": convert_demucs, "openunmix": convert_openunmix}
