"""Learned speech enhancers as systems: `hifigan` loads a local safetensors checkpoint (never a
download) and enhances at 16 kHz."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.api import Output
from harness.suites.types import Item
from systems.speech.dsp import SpeechDSP, fitted, input_16k

CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"


class HiFiGAN(SpeechDSP):
    name = "hifigan"
    version = "1"
    description = ("HiFi-GAN speech enhancement (Su et al. 2020): WaveNet + postnet, trained with "
                   "waveform and mel discriminators; the shipped small checkpoint by default")
    defaults = {
        "checkpoint": str(CHECKPOINTS / "hifigan-small.safetensors"),
        "chunk_s": 10.0,  # enhance in chunks of this length (memory bound for long inputs)
    }
    limits = {"chunk_s": "[0.1, inf)"}

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.generator = None

    @classmethod
    def training(cls):
        from systems.speech.hifigan_train import HifiganTraining

        return HifiganTraining()

    def checkpoint_files(self) -> list[str]:
        """The checkpoints it may load (the planner reads their records)."""
        return [{**self.defaults, **self.params}["checkpoint"]]

    def identity(self) -> str:
        """Name, version, parameters and the checkpoint's content hash (a retrained checkpoint at
        the same path is another system for resume and reports)."""
        import hashlib
        import json

        from harness import checkpoints

        p = {**self.defaults, **self.params}
        try:
            digest = checkpoints.read_record(p["checkpoint"]).get("sha256", "")
        except Exception:
            digest = "missing"
        blob = json.dumps({"name": self.name, "version": self.version, "params": p, "weights": digest},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def prepare(self, device: str) -> None:

        from harness import checkpoints
        from systems.speech.hifigan import Generator

        super().prepare(device)
        path = {**self.defaults, **self.params}["checkpoint"]
        tensors, record = checkpoints.load(path, "hifigan")
        gen = Generator(record["architecture"]["config"])
        checkpoints.load_into(gen, tensors, path)
        self.generator = gen.to(device).eval().requires_grad_(False)  # enhance() runs under no_grad

    def process(self, items: list[Item], listener: Any | None) -> list[Output]:
        from systems.speech.hifigan import enhance

        chunk = float({**self.defaults, **self.params}["chunk_s"])
        return [fitted(it, enhance(self.generator, input_16k(it), chunk)) for it in items]
