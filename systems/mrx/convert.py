"""`harness checkpoints convert mrx SRC --out DST.safetensors`: MRX weights of the cocktail-fork
repository (Petermann et al.; github.com/merlresearch/cocktail-fork-separation) as a harness
checkpoint that the `mrx` system runs.

SRC is what that repository writes: a state dict of its `MRX` module saved with `torch.save`
(`checkpoints/default_mrx_pre_trained_weights.pth`, or the `best_model.pth` its training script
writes), or a PyTorch Lightning checkpoint of its training module (`state_dict` with the keys
under `model.`). It is read with `torch.load(weights_only=True)`: tensors and plain containers
only, nothing in it runs. The architecture is read off the tensors (windows from the encoders'
bins, hidden size, BLSTM branches and layers); the hop (256) is not in the file and is the
repository's default. The repository's sources are ordered music, speech, sfx
(`dnr_dataset.SOURCE_NAMES`). Its STFT is `normalized=True` and its decoders' linear layers
have no bias (zeros here, before their batch norm). Its `separate_soundtrack` brings the input
to -27 LUFS and scales the outputs back; the sidecar records that (`inference.input_lufs`) and
`mrx` does the same.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from harness.errors import CheckpointError

UPSTREAM_SOURCES = ("music", "speech", "sfx")  # the repository's decoder order
UPSTREAM_HOP = 256
UPSTREAM_INPUT_LUFS = -27.0
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def read_state(path: Path) -> dict[str, Any]:
    from harness.checkpoints import require_tensors, torch_load_safely

    if not path.is_file():
        raise CheckpointError(f"{path}: no such file (an MRX .pth state dict or Lightning .ckpt)")
    state = torch_load_safely(path, "an MRX state dict")
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):  # Lightning
        state = {k[len("model."):]: v for k, v in state["state_dict"].items() if k.startswith("model.")}
    if not isinstance(state, dict) or "_encoders.0.layer.1.weight" not in state:
        raise CheckpointError(f"{path}: not an MRX of the cocktail-fork repository (no "
                              "_encoders.0.layer.1.weight)")
    return require_tensors(state, path)


def _count(state: dict[str, Any], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in state if (m := rx.match(k))})


def mrx_arch(state: dict[str, Any], path: Path) -> dict[str, Any]:
    n_res = _count(state, r"_encoders\.(\d+)\.layer\.1\.weight$")
    hidden = int(state["_encoders.0.layer.1.weight"].shape[0])
    windows = [2 * (int(state[f"_encoders.{i}.layer.1.weight"].shape[1]) - 1) for i in range(n_res)]
    branches = _count(state, r"_cross_net\.lstm\.(\d+)\.weight_ih_l0$")
    layers = _count(state, r"_cross_net\.lstm\.0\.weight_ih_l(\d+)$")
    sources = _count(state, r"_decoders\.(\d+)\.0\.block\.0\.weight$")
    if sources != len(UPSTREAM_SOURCES):
        raise CheckpointError(f"{path}: {sources} decoders; MRX of the cocktail fork has 3 "
                              "(music, speech, sfx)")
    if not branches or not layers:
        raise CheckpointError(f"{path}: no cross-net BLSTM weights (_cross_net.lstm.0.weight_ih_l0)")
    return {"windows": windows, "hop": UPSTREAM_HOP, "hidden": hidden, "blstms": branches,
            "layers": layers, "dropout": 0.4, "normalized": True}


def to_harness(state: dict[str, Any], arch: dict[str, Any]) -> dict[str, Any]:
    """The repository's parameter names and layout -> systems/mrx/model.py's."""
    import torch

    out: dict[str, Any] = {}

    def bn(dst: str, src: str) -> None:
        for k in BN:
            if f"{src}.{k}" in state:
                out[f"{dst}.{k}"] = state[f"{src}.{k}"]

    for i in range(len(arch["windows"])):
        bn(f"in_norm.{i}", f"_encoders.{i}.layer.0")
        out[f"enc.{i}.weight"] = state[f"_encoders.{i}.layer.1.weight"]
        bn(f"enc_norm.{i}", f"_encoders.{i}.layer.2")
    for key, value in state.items():
        if key.startswith("_cross_net.lstm."):
            out["blstm." + key[len("_cross_net.lstm."):]] = value
    for s, name in enumerate(UPSTREAM_SOURCES):
        for i in range(len(arch["windows"])):
            k, src = f"{name}_{i}", f"_decoders.{s}.{i}.block"
            for lin, norm, a, b in (("dec1", "dec1_norm", 0, 1), ("dec2", "dec2_norm", 3, 4)):
                w = state[f"{src}.{a}.weight"]
                out[f"{lin}.{k}.weight"] = w
                out[f"{lin}.{k}.bias"] = torch.zeros(w.shape[0], dtype=w.dtype)
                bn(f"{norm}.{k}", f"{src}.{b}")
    return {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in out.items()}


def convert_mrx(src: Path, dst: Path) -> Path:
    from harness import checkpoints
    from systems.mrx.model import MRX

    state = read_state(src)
    arch = mrx_arch(state, src)
    tensors = to_harness(state, arch)
    model = MRX(arch)
    checkpoints.load_into(model, tensors, src)  # every tensor fits, or one line naming the file
    extra = sorted(k for k in state if not (k.startswith(("_encoders.", "_cross_net.", "_decoders."))))
    if extra:
        raise CheckpointError(f"{src}: entries an MRX does not have ({', '.join(extra[:3])})")
    record = {
        "architecture": {"name": "mrx", "config": arch},
        "inference": {"input_lufs": UPSTREAM_INPUT_LUFS},
        "converted_from": {"files": {"mrx": {"path": str(src), "sha256": checkpoints.sha256_file(src)}},
                           "format": "cocktail-fork-separation MRX state dict (torch.save) or "
                                     "Lightning checkpoint; sources music, speech, sfx"},
    }
    return checkpoints.save(dst, tensors, record)
