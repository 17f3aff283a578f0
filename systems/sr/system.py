"""`unet-sr`: the audio super-resolution U-Net as a bandwidth-extension system. It loads a local
safetensors checkpoint (never a download): the shipped speech checkpoint by default."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from harness.api import BaseSystem, Output
from harness.audio import Audio
from harness.errors import InvalidInput
from harness.suites.types import Item
from systems.bwe import restoration_input

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
RATE = 16000


class UNetSRSystem(BaseSystem):
    name = "unet-sr"
    version = "1"
    task = "bandwidth-extension"
    also_tasks = ("speech-restoration",)
    description = ("Audio super-resolution U-Net (Kuleshov et al. 2017) on the spline-upsampled "
                   "input; shipped checkpoints for 16 kHz (ratios 2/4/6) and 32 kHz (ratios 2/4)")
    defaults = {
        # the model for 16 kHz outputs (bandwidth-extension) and for 32 kHz ones (speech-restoration)
        "checkpoint": str(CHECKPOINTS / "unet-sr-speech.safetensors"),
        "checkpoint_wideband": str(CHECKPOINTS / "unet-sr-speech-32k.safetensors"),
        "ratio": 0,  # bandwidth-extension's ratio; 0: the item's `ratio` metadata
    }

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.models: dict[int, Any] = {}  # output rate -> model

    @classmethod
    def training(cls):
        from systems.sr.train import UnetSRTraining

        return UnetSRTraining()

    def identity(self) -> str:
        """Name, version, parameters and the checkpoints' content hashes."""
        from harness import checkpoints

        p = {**self.defaults, **self.params}
        digests = {}
        for key in ("checkpoint", "checkpoint_wideband"):
            try:
                digests[key] = checkpoints.read_record(p[key]).get("sha256", "")
            except Exception:
                digests[key] = "missing"
        blob = json.dumps({"name": self.name, "version": self.version, "params": p, "weights": digests},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def input_problem(self, item: Item, rate: int, channels: int) -> str | None:
        return None if channels == 1 else f"takes mono input, not {channels} channels"

    def model(self, rate: int) -> Any:
        """The model for outputs at `rate`, loaded once (a checkpoint of another rate is refused
        with a one-line error naming the file)."""
        if rate in self.models:
            return self.models[rate]
        import torch

        from harness import checkpoints
        from systems.sr.unet import UNetSR

        p = {**self.defaults, **self.params}
        path = p["checkpoint"] if rate == RATE else p["checkpoint_wideband"]
        tensors, record = checkpoints.load(path, "unet-sr")
        trained = int(record.get("data", {}).get("rate", RATE))
        if trained != rate:
            raise InvalidInput(f"{path}: a unet-sr model for {trained} Hz outputs, and this task "
                               f"wants {rate} Hz")
        model = UNetSR(record["architecture"]["config"])
        checkpoints.load_into(model, tensors, path)
        torch.set_grad_enabled(False)
        self.models[rate] = model.to(self.device).eval()
        return self.models[rate]

    def prepare(self, device: str) -> None:
        super().prepare(device)
        self.models = {}

    def ratio(self, item: Item) -> int:
        given = int({**self.defaults, **self.params}["ratio"])
        ratio = given or int(item.metadata.get("ratio") or 0)
        if ratio < 2:
            raise InvalidInput(f"item {item.id}: no upsampling ratio (set unet-sr.ratio or the item's "
                               f"'ratio' metadata)")
        return ratio

    def process(self, items: list[Item], listener: Any | None) -> list[Output]:
        from harness.audio import resample
        from harness.tasks import get_protocol
        from systems.sr.unet import upsample

        outs = []
        for it in items:
            spec = get_protocol(it.task).output_spec(it)["enhanced"]
            if it.task == "bandwidth-extension":
                x, ratio = resample(it.input("input"), RATE).mono().astype(np.float64), self.ratio(it)
            else:
                x, ratio = restoration_input(it, spec.rate)
            y = upsample(self.model(spec.rate), x, ratio)
            y = np.pad(y[: spec.frames], (0, max(0, spec.frames - len(y))))
            outs.append({"enhanced": Audio(y[None].astype(np.float32), spec.rate)})
        return outs
