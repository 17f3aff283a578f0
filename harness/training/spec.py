"""The contract between a trainable system and the trainer."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")


@dataclass(frozen=True)
class OptimiserSpec:
    """An Adam(W) optimiser over some modules' parameters, its schedule and its clipping."""

    name: str
    modules: tuple[str, ...]
    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    decay: float = 1.0  # exponential schedule: lr x decay every `decay_every` steps of this stage
    decay_every: int = 1000
    clip_norm: float | None = None  # gradient-norm clipping (None: none)


@dataclass(frozen=True)
class Stage:
    """A span of steps in which some optimisers step, in the given order, on each batch (a GAN
    stage: discriminators first, then the generator against the updated discriminators)."""

    name: str
    steps: int
    optimisers: tuple[str, ...]
    lr: dict[str, float] | None = None  # per optimiser: the learning rate this stage starts at


@runtime_checkable
class Trainable(Protocol):
    architecture: str  # the name checkpoints record and loaders check

    def defaults(self) -> dict[str, Any]:
        """The training configuration's keys with their defaults (a TRAIN.toml may set any of
        them, nothing else): at least `seed`, `batch_size`, and tables `arch` and `data`."""

    def build(self, cfg: dict[str, Any]) -> dict[str, Any]:
        """name -> torch module, freshly initialised from cfg (cfg["arch"]) and the torch seed."""

    def optimisers(self, cfg: dict[str, Any]) -> list[OptimiserSpec]: ...

    def stages(self, cfg: dict[str, Any]) -> list[Stage]: ...

    def batch(self, cfg: dict[str, Any], step: int, device: str) -> Any:
        """The batch of step `step`: a function of (cfg["seed"], step) alone, so a resumed run
        sees the batches an uninterrupted one would."""

    def loss(self, cfg: dict[str, Any], stage: str, optimiser: str, modules: dict[str, Any],
             batch: Any, cache: dict[str, Any]) -> tuple[Any, dict[str, float]]:
        """The loss `optimiser` minimises in `stage` on `batch` (a scalar tensor) and the parts
        to log; `cache` carries values between the optimisers of one step (a generator's output
        the discriminators saw)."""

    def validate(self, cfg: dict[str, Any], modules: dict[str, Any], device: str) -> dict[str, float]:
        """Scores on held-out generated data (never a training step's), for the log and report."""

    def export(self, modules: dict[str, Any]) -> dict[str, Any]:
        """The tensors of the inference model (what the system loads)."""

    def data_record(self, cfg: dict[str, Any]) -> dict[str, Any]:
        """What the model was trained on (voices, rooms, noises, seeds), for the sidecar."""


def cached_data(owner: Any, cfg: dict[str, Any], make: Callable[[dict[str, Any], int], T]) -> T:
    """The data object `make(cfg["data"], cfg["seed"])`, made once per distinct (data, seed) and
    kept on `owner` (a Trainable's data() is called every step, and making one renders pools)."""
    key = json.dumps([cfg["data"], cfg["seed"]], sort_keys=True)
    kept = getattr(owner, "_cached_data", None)
    if kept is None or kept[0] != key:
        kept = (key, make(cfg["data"], int(cfg["seed"])))
        owner._cached_data = kept
    return kept[1]
