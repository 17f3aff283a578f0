"""System chains: `--system "wpe>hifigan"` runs systems in sequence, each stage's output fed to
the next as its input.

A chain is a system like any other: its name is its spec, its identity hashes its stages'
identities (for resume), its stages are prepared once, and it does the tasks every stage does.
Between stages the item is re-presented with the previous stage's output as its input role
(`StagedItem`): a stage reads it with `item.input("input")` exactly as it reads a file. At plan
time `Chain.problems` checks each hand-over on every item: one output to one input role, and
the output's rate and channels acceptable to the next stage (a stage declares what it accepts
with `input_problem(item, rate, channels)`; by default it takes any rate and channel count).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from harness.audio import Audio
from harness.suites.types import FileRef, Item

SEPARATOR = ">"


@dataclass(frozen=True)
class StagedItem(Item):
    """An item whose input roles in `staged` are held in memory (a previous stage's output)."""

    staged: dict[str, Audio] = field(default_factory=dict)

    def input(self, role: str) -> Audio:
        if role in self.staged:
            return self.staged[role]
        return super().input(role)

    def problems(self) -> list[str]:  # the staged roles have no file to look for
        return [p for p in super().problems()
                if not any(p.startswith(str(self.root / self.inputs[r].path)) for r in self.staged)]


def staged(item: Item, role: str, audio: Audio, label: str) -> StagedItem:
    """`item` with input `role` replaced by `audio` (described by a file-less FileRef)."""
    ref = FileRef(f"<{label}>", int(audio.rate), int(audio.channels), int(audio.frames), "")
    base = {f.name: getattr(item, f.name) for f in item.__dataclass_fields__.values()
            if f.name != "staged"}
    base["inputs"] = {**item.inputs, role: ref}
    old = dict(item.staged) if isinstance(item, StagedItem) else {}
    return StagedItem(**base, staged={**old, role: audio})


def split_spec(spec: str) -> list[str]:
    return [s.strip() for s in spec.split(SEPARATOR)]


class Chain:
    """Stages run in order on the same items; the last stage's outputs are the chain's."""

    version = "1"
    description = "A chain of systems, each stage's output the next stage's input"

    def __init__(self, spec: str, stages: list[Any]) -> None:
        self.name = spec
        self.stages = stages
        self.params: dict[str, Any] = {}
        self.device = "cpu"
        first = stages[0]
        self.task = first.task

    def supports(self, task: str) -> bool:
        return all(supports(s, task) for s in self.stages)

    def identity(self) -> str:
        blob = json.dumps({"chain": [identity_of(s) for s in self.stages]})
        return hashlib.sha256(blob.encode()).hexdigest()

    def checkpoint_files(self) -> list[str]:
        """Its stages' checkpoints."""
        return [f for s in self.stages for f in getattr(s, "checkpoint_files", list)()]

    def prepare(self, device: str) -> None:
        self.device = device
        for s in self.stages:
            s.prepare(device)

    def problems(self, item: Item, protocol: Any) -> list[str]:
        """What stops the chain on `item`, found before anything runs: a stage that does not do
        the task, or a hand-over the next stage cannot take."""
        out = [f"chain {self.name}: stage {s.name} does not do {item.task}"
               for s in self.stages if not supports(s, item.task)]
        if out:
            return out
        spec = protocol.output_spec(item)
        roles = list(item.inputs)
        for k, (a, b) in enumerate(zip(self.stages, self.stages[1:], strict=False), start=1):
            if len(spec) != 1 or len(roles) != 1:
                return [f"chain {self.name}: stage {k} ({a.name}) gives outputs "
                        f"{', '.join(spec) or 'none'} and stage {k + 1} ({b.name}) reads inputs "
                        f"{', '.join(roles)}: a chain needs one output and one input role"]
            (o,) = spec.values()
            why = b.input_problem(item, o.rate, o.channels) if hasattr(b, "input_problem") else None
            if why:
                return [f"chain {self.name}: stage {k} ({a.name}) gives {o.rate} Hz, {o.channels} "
                        f"channel(s) to stage {k + 1} ({b.name}), which {why}"]
        return []

    def process(self, items: list[Item], listener: Any | None) -> list[dict[str, Audio]]:
        current: list[Item] = list(items)
        outs: list[dict[str, Audio]] = []
        for k, stage in enumerate(self.stages):
            outs = stage.process(current, listener)
            if not isinstance(outs, list) or len(outs) != len(current):
                raise RuntimeError(f"chain {self.name}: stage {k + 1} ({stage.name}) returned "
                                   f"{len(outs) if isinstance(outs, list) else type(outs).__name__}"
                                   f" outputs for {len(current)} items")
            if k + 1 < len(self.stages):
                nxt = []
                for it, out in zip(current, outs, strict=True):
                    (role,) = list(it.inputs)
                    (audio,) = out.values()
                    nxt.append(staged(it, role, audio, f"{stage.name} output"))
                current = nxt
        return outs


def supports(system: Any, task: str) -> bool:
    """Whether a system (or chain) runs items of `task`: its `supports` hook, else its `task`."""
    if hasattr(system, "supports"):
        return system.supports(task)
    return system.task in ("*", task)


def identity_of(system: Any) -> str:
    """A system's identity for job keys: its `identity()` hook, else NAME:VERSION."""
    return system.identity() if hasattr(system, "identity") else f"{system.name}:{system.version}"


__all__ = ["Chain", "SEPARATOR", "StagedItem", "identity_of", "split_spec", "staged", "supports"]
