"""`unet-sr`: the audio super-resolution U-Net as a bandwidth-extension system. It loads local
safetensors checkpoints (never a download): by default the shipped speech checkpoint trained for
the item's ratio alone (`unet-sr-speech-4x`) where there is one, else the one trained for ratios
2, 4 and 6 (`unet-sr-speech`)."""

from __future__ import annotations

import hashlib
import json
import re
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
    version = "2"  # 2: a checkpoint for the item's ratio alone, where one ships
    task = "bandwidth-extension"
    also_tasks = ("speech-restoration",)
    description = ("Audio super-resolution U-Net (Kuleshov et al. 2017) on the spline-upsampled "
                   "input; shipped checkpoints for 16 kHz speech (one each for 2x, 4x and 6x, one for "
                   "2/4/6x together), 16 kHz music (4x) and 32 kHz speech (2/4x)")
    defaults = {
        "model": "speech",  # the shipped 16 kHz model: "speech" or "music" (unet-sr/music)
        # a checkpoint for 16 kHz outputs (bandwidth-extension), run on every ratio; "": the
        # shipped one of `model` for the item's ratio (unet-sr-speech-4x), else for several
        "checkpoint": "",
        # a checkpoint for 32 kHz outputs (speech-restoration); "": the shipped one
        "checkpoint_wideband": "",
        "ratio": 0,  # bandwidth-extension's ratio; 0: the item's `ratio` metadata
    }
    limits = {"ratio": "[0, inf)"}
    variant_param = "model"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.models: dict[str, Any] = {}  # checkpoint path -> model
        self.ratios: dict[str, list[int]] = {}  # checkpoint path -> the ratios it was trained on

    @classmethod
    def training(cls):
        from systems.sr.train import UnetSRTraining

        return UnetSRTraining()

    def identity(self) -> str:
        """Name, version, parameters and the content hashes of every checkpoint it may load."""
        from harness import checkpoints

        p = {**self.defaults, **self.params}
        digests = []  # (file name, content hash): names, not paths, so that clones share identities
        for path in self.candidates():
            try:
                digests.append((Path(path).name, checkpoints.read_record(path).get("sha256", "")))
            except Exception:
                digests.append((Path(path).name, "missing"))
        blob = json.dumps({"name": self.name, "version": self.version, "params": p, "weights": digests},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def per_ratio(self) -> dict[int, Path]:
        """The shipped 16 kHz checkpoints of `model` for one ratio each (`unet-sr-speech-4x`):
        ratio -> path."""
        model = {**self.defaults, **self.params}["model"]
        found = {}
        for path in CHECKPOINTS.glob(f"unet-sr-{model}-*x.safetensors"):
            match = re.fullmatch(rf"unet-sr-{re.escape(str(model))}-(\d+)x\.safetensors", path.name)
            if match:
                found[int(match.group(1))] = path
        return found

    def candidates(self) -> list[str]:
        """Every checkpoint this system's parameters may load (for its identity)."""
        p = {**self.defaults, **self.params}
        narrow = [p["checkpoint"]] if p["checkpoint"] else [
            str(CHECKPOINTS / f"unet-sr-{p['model']}.safetensors"),
            *(str(path) for _, path in sorted(self.per_ratio().items()))]
        return [*narrow, self.checkpoint(WIDE_RATE, 0)]

    def checkpoint_files(self) -> list[str]:
        """The checkpoints it may load (the planner reads their records)."""
        return self.candidates()

    def checkpoint(self, rate: int, ratio: int) -> str:
        """The checkpoint for outputs at `rate` upsampled by `ratio`: the parameter, else the
        shipped model for that ratio alone, else the shipped one for several ratios."""
        p = {**self.defaults, **self.params}
        if rate == RATE:
            if p["checkpoint"]:
                return p["checkpoint"]
            single = self.per_ratio().get(ratio)
            return str(single or CHECKPOINTS / f"unet-sr-{p['model']}.safetensors")
        return p["checkpoint_wideband"] or str(CHECKPOINTS / "unet-sr-speech-32k.safetensors")

    def input_problem(self, item: Item, rate: int, channels: int) -> str | None:
        return None if channels == 1 else f"takes mono input, not {channels} channels"

    def model(self, rate: int, ratio: int, item_id: str) -> Any:
        """The model for outputs at `rate` upsampled by `ratio`, each checkpoint loaded once (one
        of another rate, or trained for other ratios, is refused with a one-line error naming the
        file)."""
        from harness import checkpoints
        from systems.sr.unet import UNetSR

        path = self.checkpoint(rate, ratio)
        if path not in self.models:
            tensors, record = checkpoints.load(path, "unet-sr")
            trained = int(record.get("data", {}).get("rate", RATE))
            if trained != rate:
                raise InvalidInput(f"{path}: a unet-sr model for {trained} Hz outputs, and this task "
                                   f"wants {rate} Hz")
            model = UNetSR(record["architecture"]["config"])
            checkpoints.load_into(model, tensors, path)
            self.models[path] = model.to(self.device).eval().requires_grad_(False)  # used under no_grad
            self.ratios[path] = [int(r) for r in record.get("data", {}).get("ratios", [])]
        if self.ratios[path] and ratio not in self.ratios[path]:
            raise InvalidInput(f"{path}: trained for ratios {self.ratios[path]}, item {item_id} "
                               f"needs {ratio}")
        return self.models[path]

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
            y = upsample(self.model(spec.rate, ratio, it.id), x, ratio)
            outs.append(fit(y, spec.frames, spec.rate))
        return outs
