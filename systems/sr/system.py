"""`unet-sr`: the audio super-resolution U-Net as a bandwidth-extension system. It loads a local
safetensors checkpoint (never a download): the shipped speech checkpoint by default."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from harness.api import BaseSystem, Output
from harness.errors import InvalidInput
from harness.suites.types import Item
from systems.bwe import fit, restoration_input

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
RATE = 16000
WIDE_RATE = 32000


class UNetSRSystem(BaseSystem):
    name = "unet-sr"
    version = "1"
    task = "bandwidth-extension"
    also_tasks = ("speech-restoration",)
    description = ("Audio super-resolution U-Net (Kuleshov et al. 2017) on the spline-upsampled "
                   "input; shipped checkpoints for 16 kHz (ratios 2/4/6) and 32 kHz (ratios 2/4)")
    defaults = {
        "model": "speech",  # the shipped 16 kHz model: "speech" or "music" (unet-sr/music)
        # a checkpoint for 16 kHz outputs (bandwidth-extension); "": the shipped one of `model`
        "checkpoint": "",
        # a checkpoint for 32 kHz outputs (speech-restoration); "": the shipped one
        "checkpoint_wideband": "",
        "ratio": 0,  # bandwidth-extension's ratio; 0: the item's `ratio` metadata
    }
    variant_param = "model"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.models: dict[int, Any] = {}  # output rate -> model
        self.ratios: dict[int, list[int]] = {}  # output rate -> the ratios its model was trained on
        self.paths: dict[int, str] = {}

    @classmethod
    def training(cls):
        from systems.sr.train import UnetSRTraining

        return UnetSRTraining()

    def identity(self) -> str:
        """Name, version, parameters and the checkpoints' content hashes."""
        from harness import checkpoints

        p = {**self.defaults, **self.params}
        digests = {}
        for key, rate in (("checkpoint", RATE), ("checkpoint_wideband", WIDE_RATE)):
            try:
                digests[key] = checkpoints.read_record(self.checkpoint(rate)).get("sha256", "")
            except Exception:
                digests[key] = "missing"
        blob = json.dumps({"name": self.name, "version": self.version, "params": p, "weights": digests},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def checkpoint(self, rate: int) -> str:
        """The checkpoint for outputs at `rate`: the parameter, else the shipped one."""
        p = {**self.defaults, **self.params}
        if rate == RATE:
            return p["checkpoint"] or str(CHECKPOINTS / f"unet-sr-{p['model']}.safetensors")
        return p["checkpoint_wideband"] or str(CHECKPOINTS / "unet-sr-speech-32k.safetensors")

    def input_problem(self, item: Item, rate: int, channels: int) -> str | None:
        return None if channels == 1 else f"takes mono input, not {channels} channels"

    def model(self, rate: int) -> Any:
        """The model for outputs at `rate`, loaded once (a checkpoint of another rate is refused
        with a one-line error naming the file)."""
        if rate in self.models:
            return self.models[rate]

        from harness import checkpoints
        from systems.sr.unet import UNetSR

        path = self.checkpoint(rate)
        tensors, record = checkpoints.load(path, "unet-sr")
        trained = int(record.get("data", {}).get("rate", RATE))
        if trained != rate:
            raise InvalidInput(f"{path}: a unet-sr model for {trained} Hz outputs, and this task "
                               f"wants {rate} Hz")
        model = UNetSR(record["architecture"]["config"])
        checkpoints.load_into(model, tensors, path)
        self.models[rate] = model.to(self.device).eval().requires_grad_(False)  # used under no_grad
        self.ratios[rate] = [int(r) for r in record.get("data", {}).get("ratios", [])]
        self.paths[rate] = path
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
            model = self.model(spec.rate)
            if self.ratios[spec.rate] and ratio not in self.ratios[spec.rate]:
                raise InvalidInput(f"{self.paths[spec.rate]}: trained for ratios "
                                   f"{self.ratios[spec.rate]}, item {it.id} needs {ratio}")
            y = upsample(model, x, ratio)
            outs.append(fit(y, spec.frames, spec.rate))
        return outs
