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

The result is a harness checkpoint (safetensors + JSON sidecar naming the source file and its
sha256) that `remix/hdemucs` / `remix/htdemucs` load with `separator_options.checkpoint`.
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
    import pickle

    import torch
    from demucs.hdemucs import HDemucs
    from demucs.htdemucs import HTDemucs

    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        with torch.serialization.safe_globals([HDemucs, HTDemucs, Fraction]):
            pkg = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a Demucs model file the harness can read safely "
                              f"({first[:200]})") from None
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


CONVERTERS = {"demucs": convert_demucs}
