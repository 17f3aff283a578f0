"""The harness's contracts on one page, and the system registry.

- `Audio` (harness.audio): float32 samples (channels, frames) at a rate.
- `Item`, `Suite` (harness.suites.types): named input and reference files plus metadata.
- `System` / `BaseSystem` (here): items (and a listener, for listener tasks) in, one dict of
  named `Audio` outputs per item out, as the task's protocol specifies. Systems are entry points
  of the `harness.systems` group; `pip install my-system` that declares one makes it appear in
  `harness systems`. The adapters in `systems/` import this module; nothing in `harness/`
  imports `systems/`.
- `TaskProtocol`, `OutputSpec`, `Unusable` (harness.tasks.base): what a task expects from a
  system and how it scores it.
- `Metric` / `FunctionMetric`, `Score`, `evaluate` (harness.metrics.base) and `ScoringContext`
  (harness.metrics.backends): one number per (metric, ear, stem) with its status and backend.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol, runtime_checkable

from harness import registry
from harness.audio import Audio
from harness.config import check_params
from harness.errors import RegistryError
from harness.metrics.backends import ScoringContext
from harness.metrics.base import FunctionMetric, Metric, Score, evaluate
from harness.suites.types import Item, Suite
from harness.tasks.base import OutputSpec, TaskProtocol, Unusable

Output = dict[str, Audio]

__all__ = [
    "ANY_TASK", "Audio", "BaseSystem", "FunctionMetric", "Item", "Metric", "Output", "OutputSpec",
    "Score", "ScoringContext", "Suite", "System", "TaskProtocol", "Unusable", "evaluate",
    "get_system", "system_from_spec", "system_names",
]

ANY_TASK = "*"


@runtime_checkable
class System(Protocol):
    name: str
    task: str  # one task, or "*" for task-generic anchors
    version: str

    def prepare(self, device: str) -> None: ...

    def process(self, items: list[Item], listener: Any | None) -> list[Output]: ...


class BaseSystem:
    """Convenience base: parameters, identity, and a no-op prepare."""

    name = ""
    task = ANY_TASK
    also_tasks: tuple[str, ...] = ()  # further tasks the system does (listed after `task`)
    version = "1"
    description = ""
    defaults: dict[str, Any] | None = None  # parameter -> default; given values must match its type
    # parameter -> the values it may take, checked at plan time: an interval for numbers
    # ("[0, 1)", "(0, inf)"; each element of a list) or a tuple of choices (harness.config.check_limits)
    limits: dict[str, Any] | None = None

    def __init__(self, **params: Any) -> None:
        self.params = params
        self.device = "cpu"

    def prepare(self, device: str) -> None:
        self.device = device

    def supports(self, task: str) -> bool:
        return self.task in (ANY_TASK, task) or task in self.also_tasks

    def identity(self) -> str:
        """What a job key depends on: name, version and the parameters in effect (the defaults
        included: a changed default is another system, never a stale resume)."""
        blob = json.dumps(
            {"name": self.name, "version": self.version,
             "params": {**(self.defaults or {}), **self.params}},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()


def system_names() -> list[str]:
    return sorted(registry.names("harness.systems"))


def get_system(name: str, **params: Any) -> BaseSystem:
    cls = registry.load("harness.systems", name)
    defaults = getattr(cls, "defaults", None)
    if isinstance(defaults, dict):
        check_params(name, params, defaults, getattr(cls, "limits", None))
    try:
        system = cls(**params)
    except TypeError as exc:
        raise RegistryError(f"system {name!r} rejects its parameters: {exc}") from None
    for attr in ("name", "task", "version", "process", "prepare"):
        if not hasattr(system, attr):
            raise RegistryError(f"system {name!r} does not implement {attr!r} of the System contract")
    return system


def system_from_spec(spec: str, system_params: dict[str, dict[str, Any]] | None = None) -> BaseSystem:
    """A system from a run's system spec: NAME, NAME/LABEL for a variant, or a chain of specs
    joined by '>' (harness.chain: each stage's output is the next stage's input). A variant's
    parameters are those of [system_params.NAME] updated by [system_params."NAME/LABEL"]; a
    system that declares `variant_param` takes LABEL as that parameter when it is not set
    (`remix/dsp` is the remix system with separator "dsp")."""
    system_params = system_params or {}
    from harness.chain import SEPARATOR, Chain, split_spec

    if SEPARATOR in spec:
        names = split_spec(spec)
        if len(names) < 2 or not all(names):
            raise RegistryError(f"chain {spec!r} has an empty stage (write STAGE>STAGE, e.g. "
                                f"'wpe>hifigan')")
        return Chain(SEPARATOR.join(names), [system_from_spec(n, system_params) for n in names])
    base, _, label = spec.partition("/")
    params = dict(system_params.get(base, {}))
    if label:
        params.update(system_params.get(spec, {}))
        cls = registry.load("harness.systems", base)
        key = getattr(cls, "variant_param", None)
        if key and key not in system_params.get(spec, {}):
            params[key] = label
        elif not key and spec not in system_params:
            raise RegistryError(f"system {base!r} has no variants: give [system_params.\"{spec}\"] "
                                f"in the run config, or use {base!r}")
    return get_system(base, **params)

