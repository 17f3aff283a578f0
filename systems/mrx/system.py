"""`mrx`: the cocktail-fork MRX separator (systems/mrx/model.py) from a local safetensors checkpoint
(the shipped small one by default; never a download)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from harness.api import BaseSystem, Output
from harness.audio import Audio, resample_samples
from harness.suites.types import Item

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"


class MRXSystem(BaseSystem):
    name = "mrx"
    version = "1"
    task = "cocktail-fork"
    description = ("MRX multi-resolution cross-net (Petermann et al. 2022): speech, music and "
                   "effects from a mono mixture; shipped small checkpoint trained by harness train")
    defaults = {"checkpoint": ""}  # "": the shipped systems/mrx/checkpoints/mrx-small.safetensors

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.model = None

    @classmethod
    def training(cls):
        from systems.mrx.train import MrxTraining

        return MrxTraining()

    def path(self) -> str:
        return {**self.defaults, **self.params}["checkpoint"] or str(CHECKPOINTS / "mrx-small.safetensors")

    def identity(self) -> str:
        from harness import checkpoints

        try:
            digest = checkpoints.read_record(self.path()).get("sha256", "")
        except Exception:
            digest = "missing"
        blob = json.dumps({"name": self.name, "version": self.version,
                           "params": {**self.defaults, **self.params}, "weights": digest},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def input_problem(self, item: Item, rate: int, channels: int) -> str | None:
        return None if channels == 1 else f"takes a mono mixture, not {channels} channels"

    def prepare(self, device: str) -> None:
        super().prepare(device)
        from harness import checkpoints
        from systems.mrx.model import MRX

        tensors, record = checkpoints.load(self.path(), "mrx")
        model = MRX(record["architecture"]["config"])
        checkpoints.load_into(model, tensors, self.path())
        self.model = model.to(device).eval().requires_grad_(False)

    def process(self, items: list[Item], listener: Any | None) -> list[Output]:
        from systems.mrx.train import RATE, separate

        outs = []
        for it in items:
            mix = it.input("mixture")
            x = mix.mono().astype(np.float64)
            if mix.rate != RATE:
                x = resample_samples(x, mix.rate, RATE)
            est = separate(self.model, x, self.device)
            out = {}
            for s, y in est.items():
                if mix.rate != RATE:
                    y = resample_samples(y, RATE, mix.rate)
                y = np.pad(y[: mix.frames], (0, max(0, mix.frames - len(y))))
                out[s] = Audio(y[None].astype(np.float32), mix.rate)
            outs.append(out)
        return outs
