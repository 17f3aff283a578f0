"""Learned separator backends: Hybrid Demucs / HT Demucs (model classes of the `demucs` package)
and Open-Unmix (the model written here, with the published checkpoints' parameter names).

Checkpoints are local safetensors files given by path (`separator_options.checkpoint`);
nothing is downloaded. A checkpoint may carry its model's constructor arguments as JSON in the
safetensors metadata (key `model_args`); `separator_options.model_args` overrides them.
Separation runs in chunks with overlap and linear cross-fades (see `separators.chunked`), on the
device the run chose.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import ConfigError
from harness.tasks.music_remix import STEMS

DEMUCS_ORDER = ("drums", "bass", "other", "vocals")  # the published Demucs models' source order


def read_checkpoint(name: str, checkpoint: str | None) -> tuple[dict, dict]:
    """(state dict, metadata) of a local safetensors checkpoint, or a one-line ConfigError."""
    if not checkpoint:
        raise ConfigError(f"separator {name} needs separator_options.checkpoint: the path of a local "
                          ".safetensors file (nothing is downloaded)")
    path = Path(checkpoint)
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint for separator {name} not found "
                          "(separator_options.checkpoint)")
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        state = load_file(str(path))
    except Exception as exc:
        raise ConfigError(f"{path}: not a readable safetensors checkpoint ({exc})") from None
    return state, meta


def save_checkpoint(model, path: str | Path, model_args: dict, kind: str) -> Path:
    """Save a model's state dict as safetensors with its constructor arguments in the metadata."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"model_args": json.dumps(model_args), "kind": kind})
    return Path(path)


def _load_state(model, state: dict, path_hint: str) -> None:
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys]
    unexpected = [k for k in result.unexpected_keys if not k.startswith("stft.")]
    if missing or unexpected:
        raise ConfigError(f"{path_hint}: checkpoint does not fit the model (missing "
                          f"{missing[:3]}, unexpected {unexpected[:3]})")


class TorchSeparator:
    """Shared plumbing: device placement, mixture standardisation, chunked inference."""

    needs_item = False
    rate = 44100

    def __init__(self, name: str, checkpoint: str | None = None, model_args: dict | None = None):
        self.name = name
        self.state, meta = read_checkpoint(name, checkpoint)
        self.checkpoint = checkpoint
        self.model_args = {**json.loads(meta.get("model_args", "{}")), **(model_args or {})}
        self.device = "cpu"
        try:
            self.model = self.build()
        except TypeError as exc:
            raise ConfigError(f"{checkpoint}: checkpoint does not fit the model of separator {name} "
                              f"({exc})") from None
        _load_state(self.model, self.state, str(checkpoint))
        self.model.eval()

    def build(self):
        raise NotImplementedError

    def prepare(self, device: str) -> None:
        self.device = device
        self.model.to(device)

    def forward(self, x):  # (1, channels, frames) tensor -> dict of (channels, frames) tensors
        raise NotImplementedError

    def separate(self, x: np.ndarray, rate: int) -> dict[str, np.ndarray]:
        import torch

        from harness.audio import resample_samples as resample

        if rate != self.rate:
            x = resample(x, rate, self.rate)
        ref = x.mean(axis=0)
        mean, std = float(ref.mean()), float(ref.std()) or 1.0
        with torch.inference_mode():
            t = torch.as_tensor((x - mean) / std, dtype=torch.float32, device=self.device)[None]
            out = {k: v.double().cpu().numpy() * std + mean / len(STEMS)
                   for k, v in self.forward(t).items()}
        if rate != self.rate:
            out = {k: resample(v, self.rate, rate)[..., : x.shape[-1]] for k, v in out.items()}
        return out


class DemucsSeparator(TorchSeparator):
    """Hybrid Demucs (`hdemucs`) or Hybrid Transformer Demucs (`htdemucs`)."""

    def build(self):
        if self.name == "hdemucs":
            from demucs.hdemucs import HDemucs as Model
        else:
            from demucs.htdemucs import HTDemucs as Model
        from systems.remix.convert import demucs_args

        args = {"sources": list(DEMUCS_ORDER), **demucs_args(self.model_args)}
        self.sources = tuple(args["sources"])
        if sorted(self.sources) != sorted(STEMS):
            raise ConfigError(f"{self.checkpoint}: model sources {self.sources} are not {STEMS}")
        self.rate = int(args.get("samplerate", 44100))
        return Model(**args)

    def forward(self, x):
        y = self.model(x)[0]  # (sources, channels, frames)
        return {s: y[i] for i, s in enumerate(self.sources)}


# ------------------------------------------------------------------ Open-Unmix
class OpenUnmixSeparator(TorchSeparator):
    def build(self):
        from systems.remix.umx import UmxSeparator

        return UmxSeparator(**self.model_args)

    def forward(self, x):
        return self.model(x)


def make(name: str, **options: Any):
    """A learned backend; the remix system chunks its input (`chunk_s`, `overlap`)."""
    cls = OpenUnmixSeparator if name == "openunmix" else DemucsSeparator
    unknown = sorted(set(options) - {"checkpoint", "model_args"})
    if unknown:
        raise ConfigError(f"separator {name}: unknown option(s) {', '.join(unknown)} "
                          "(checkpoint, model_args)")
    return cls(name, **options)
