"""The task-protocol contract: what a system must return for an item, and how it is scored."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.audio import Audio, problem_channels, problem_finite, problem_rate
from harness.errors import AudioError, RegistryError
from harness.listener import NALR_NFIR
from harness.metrics import INVALID, Score
from harness.metrics.backends import DEFAULT_CONTEXT, ScoringContext
from harness.suites.types import Item


@dataclass(frozen=True)
class OutputSpec:
    """What one named output of a system must be."""

    rate: int
    channels: int
    frames: int
    required: bool = True
    # Also accepted: exactly `frames + tail` frames, the length an official recipe writes (its
    # full-convolution NAL-R adds the filter's tail); scored as its evaluator reads it.
    tail: int = 0

    def length_problem(self, frames: int) -> str | None:
        if frames == self.frames or (self.tail and frames == self.frames + self.tail):
            return None
        also = f" or {self.frames + self.tail} (the recipe's, with its filter tail)" if self.tail else ""
        return f"{frames} frames, expected {self.frames}{also} ({frames - self.frames:+d})"


@dataclass(frozen=True)
class Unusable:
    """In a system's outputs, in place of a signal it cannot give: the reason is stored with the
    output's scores (`harness score --partial` puts one for each refused file)."""

    reason: str


def resampled_frames(frames: int, rate_in: int, rate_out: int) -> int:
    """Frame count of a signal resampled by soxr from rate_in to rate_out (nearest integer)."""
    if rate_in == rate_out:
        return frames
    return int(np.floor(frames * rate_out / rate_in + 0.5))


# pyclarity's NALR `apply` is a full convolution (np.convolve), so a recipe's processed signal is
# NALR_NFIR = 220 samples longer at 44.1 kHz than its input.


def recipe_tail(frames: int, rate_in: int, rate_out: int, nfir: int = NALR_NFIR) -> int:
    """Extra frames at rate_out of a signal of `frames` at rate_in that went through pyclarity's
    NAL-R (nfir + 1 taps, full convolution) before being resampled, as the Cadenza recipes do."""
    return (resampled_frames(frames + nfir, rate_in, rate_out)
            - resampled_frames(frames, rate_in, rate_out))


class TaskProtocol:
    """Base for task protocols. Subclasses set the class attributes and implement the hooks."""

    task: str = ""
    version: str = ""
    uses_listener: bool = False
    default_metrics: tuple[str, ...] = ()
    supported_metrics: tuple[str, ...] = ()
    resampling_note: str = ""
    seeding: str = ""  # how random metric noise is seeded, recorded in the run manifest
    input_roles: tuple[str, ...] = ()  # inputs every item of the task must have
    inputs_note: str = ""  # the inputs in words, when they are not a fixed list of roles
    reference_roles: tuple[str, ...] = ()  # references every item of the task must have
    references_note: str = ""  # the references in words, when they are not a fixed list of roles

    # ---- hooks
    def output_spec(self, item: Item) -> dict[str, OutputSpec]:
        raise NotImplementedError

    def anchor(self, kind: str, item: Item, listener: Any) -> dict[str, Audio]:
        """Outputs of the `unprocessed` (input passed through) or `oracle` (reference) anchor."""
        raise NotImplementedError

    def expected(self, item: Item, metrics: list[str]) -> list[tuple[str, str, str]]:
        """(metric, ear, stem) of every score a job of this item produces."""
        raise NotImplementedError

    def score_valid(
        self, item: Item, outputs: dict[str, Audio], listener: Any, metrics: list[str],
        problems: dict[str, str], ctx: ScoringContext,
    ) -> list[Score]:
        """Score outputs (those named in `problems` failed validation: their rows are invalid
        with that reason), computing each metric with the backend `ctx` gives it."""
        raise NotImplementedError

    # ---- shared logic
    def item_problems(self, item: Item) -> list[str]:
        """What keeps an item from being run under this task: its manifest defects and the input
        and reference roles it lacks (a misspelt name), each naming the manifest and the item."""
        out = list(item.defects)
        where = f"{item.manifest}: " if item.manifest else ""
        for kind, need, have in (("input", self.input_roles, item.inputs),
                                 ("reference", self.reference_roles, item.references)):
            missing = [r for r in need if r not in have]
            if missing:
                out.append(f"{where}item {item.id!r} lacks {kind} {', '.join(map(repr, missing))} "
                           f"(it has {', '.join(map(repr, have)) or 'none'}; task {self.task} needs "
                           f"{', '.join(need)})")
        return out

    def recipe_path(self, item: Item, listener_id: str | None, output: str) -> str | None:
        """Where the task's official recipe writes this output (relative, no extension), when
        that differs from the harness's naming; `harness score` accepts either."""
        return None

    def listeners_for(self, item: Item, listeners: list[Any]) -> list[Any]:
        """The panel listeners an item is scored for: all of them, or, when the item names its
        own (`metadata.listeners`, as the ICASSP 2024 scene_listeners.json), those it names."""
        if not self.uses_listener:
            return [None]
        named = item.metadata.get("listeners")
        if not isinstance(named, list):
            return list(listeners)
        keep = set(named)
        return [li for li in listeners if li.id in keep]

    def check_metrics(self, metrics: list[str]) -> list[str]:
        bad = [m for m in metrics if m not in self.supported_metrics]
        if bad:
            raise RegistryError(
                f"metric(s) {', '.join(bad)} not defined for task {self.task} "
                f"(supported: {', '.join(self.supported_metrics)})"
            )
        return metrics

    def validate_outputs(self, item: Item, outputs: Any) -> dict[str, str]:
        """Problems per output name ('' key for the whole output); empty when all is well."""
        if not isinstance(outputs, dict):
            return {"": f"system returned {type(outputs).__name__}, expected a dict of Audio"}
        spec = self.output_spec(item)
        problems: dict[str, str] = {}
        for name, s in spec.items():
            if name not in outputs:
                if s.required:
                    problems[name] = f"output {name!r} is missing"
                continue
            a = outputs[name]
            if isinstance(a, Unusable):
                problems[name] = f"output {name!r}: {a.reason}"
                continue
            if not isinstance(a, Audio):
                problems[name] = f"output {name!r} is {type(a).__name__}, not Audio"
                continue
            found = [
                problem_rate(a, s.rate),
                problem_channels(a, s.channels),
                s.length_problem(a.frames),
                problem_finite(a),
            ]
            found = [p for p in found if p]
            if found:
                problems[name] = f"output {name!r}: " + "; ".join(found)
        extra = sorted(set(outputs) - set(spec))
        if extra:
            problems[""] = f"unexpected output(s) {', '.join(extra)} (expected {', '.join(spec)})"
        return problems

    def all_invalid(self, item: Item, metrics: list[str], reason: str) -> list[Score]:
        return [
            Score(metric, None, INVALID, reason, ear, stem)
            for metric, ear, stem in self.expected(item, metrics)
        ]

    def score(
        self, item: Item, outputs: dict[str, Audio], listener: Any, metrics: list[str],
        problems: dict[str, str] | None = None, ctx: ScoringContext | None = None,
    ) -> list[Score]:
        """Validate outputs (unless the caller did and passes its `problems`), then score under
        `ctx` (backends, memo; default: the default backends, no memo). Every expected row comes
        back, ok or with a reason, labelled with the backend of its metric."""
        ctx = ctx or DEFAULT_CONTEXT
        if problems is None:
            problems = self.validate_outputs(item, outputs)
        if "" in problems:
            scores = self.all_invalid(item, metrics, problems[""])
        else:
            try:
                scores = self.score_valid(item, outputs, listener, metrics, problems, ctx)
            except AudioError as exc:  # a bad reference file: every score of the job says which
                scores = self.all_invalid(item, metrics, str(exc))
        return [dataclasses.replace(s, backend=ctx.backend_of(s.metric)) for s in scores]

    def unit(self, rows: list[Score]) -> tuple[float | None, str]:
        """The (item, listener) value of one metric from its rows: the mean when all are ok."""
        bad = [r for r in rows if r.status != "ok"]
        if not rows:
            return None, "no score"
        if bad:
            return None, bad[0].status
        return float(np.mean([r.value for r in rows])), "ok"
