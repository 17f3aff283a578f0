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
    # checkpoint "": the shipped systems/mrx/checkpoints/mrx-small.safetensors. input_lufs: bring
    # the mixture to this loudness before separating and scale the sources back (None: as the
    # checkpoint's sidecar says: -27 for weights converted from the cocktail-fork repository,
    # whose separate_soundtrack does so; off for the harness's own)
    defaults = {"checkpoint": "", "input_lufs": None}
    limits = {"input_lufs": "(-inf, 0)"}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.model = None

    @classmethod
    def training(cls):
        from systems.mrx.train import MrxTraining

        return MrxTraining()

    def path(self) -> str:
        return {**self.defaults, **self.params}["checkpoint"] or str(CHECKPOINTS / "mrx-small.safetensors")

    def checkpoint_files(self) -> list[str]:
        """The checkpoints it may load (the planner reads their records)."""
        return [self.path()]

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
        given = {**self.defaults, **self.params}["input_lufs"]
        self.input_lufs = given if given is not None else record.get("inference", {}).get("input_lufs")

    def process(self, items: list[Item], listener: Any | None) -> list[Output]:
        from systems.mrx.train import RATE, separate

        outs = []
        for it in items:
            mix = it.input("mixture")
            x = mix.mono().astype(np.float64)
            if mix.rate != RATE:
                x = resample_samples(x, mix.rate, RATE)
            gain = 1.0
            if self.input_lufs is not None:
                import pyloudnorm as pyln

                lufs = pyln.Meter(RATE).integrated_loudness(x)
                gain = 10 ** ((float(self.input_lufs) - lufs) / 20) if np.isfinite(lufs) else 1.0
            est = {s: y / gain for s, y in separate(self.model, x * gain, self.device).items()}
            out = {}
            for s, y in est.items():
                if mix.rate != RATE:
                    y = resample_samples(y, RATE, mix.rate)
                y = np.pad(y[: mix.frames], (0, max(0, mix.frames - len(y))))
                out[s] = Audio(y[None].astype(np.float32), mix.rate)
            outs.append(out)
        return outs
