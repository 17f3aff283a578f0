"""The Metric contract, score statuses, and the wrapper that turns a metric call into a Score.

A metric is a pure function plus a small declarative wrapper (name, direction, rate, needs).
Metrics raise `InvalidInput` when the input makes them undefined and `MetricFailed` when they
ran and produced no number; `evaluate` turns either (and any other exception) into a status.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from harness.audio import Audio, problem_finite, problem_silent
from harness.errors import InvalidInput, MetricFailed
from harness.metrics.backends import DEFAULT_CONTEXT, DEFAULTS, FAST, REFERENCE, ScoringContext, family_of

OK, FAILED, INVALID = "ok", "failed", "invalid"
STATUSES = (OK, FAILED, INVALID)

# Metric kinds. intrusive: an estimate against its reference. non-intrusive: the estimate alone
# (needs_reference False). multi-source: defined over a set of sources scored jointly (BSSEval;
# one source is the one-source case); the joint call is the family's own (bsseval.evaluate_sources).
# improvement: the metric named by `of` on the estimate minus its value on a baseline the task
# knows (the mixture, the recordings), computed by `evaluate` from the `baseline` it is given.
INTRUSIVE, NON_INTRUSIVE, MULTI_SOURCE, IMPROVEMENT = (
    "intrusive", "non-intrusive", "multi-source", "improvement")
KINDS = (INTRUSIVE, NON_INTRUSIVE, MULTI_SOURCE, IMPROVEMENT)

# dB metrics of a (near-)perfect estimate are +inf; they are reported at this ceiling instead.
# Clipping is monotone, so frame medians and orderings below the ceiling are unchanged.
DB_CEILING = 100.0


class Metric(Protocol):
    name: str
    kind: str
    higher_is_better: bool
    sample_rate: int | None
    needs_listener: bool
    needs_reference: bool
    unit: str
    description: str

    def __call__(
        self,
        estimate: Audio,
        reference: Audio,
        *,
        listener: Any = None,
        ear: str | None = None,
        seed: int | None = None,
    ) -> float: ...


@dataclass(frozen=True)
class Score:
    """One number (or its absence, with the reason) for one metric on one output."""

    metric: str
    value: float | None
    status: str
    reason: str = ""
    ear: str = ""
    stem: str = ""
    backend: str = "reference"


@dataclass(frozen=True)
class FunctionMetric:
    """A metric defined by its reference implementation `fn(estimate, reference, **kw) -> float`,
    its `fast` implementation where one exists (the same numbers within the family's parity
    tolerance; harness.metrics.backends lists the families that have one), and its facts. An
    improvement metric has neither: it is `of` minus its value on a baseline."""

    name: str
    fn: Callable[..., float] | None
    higher_is_better: bool = True
    sample_rate: int | None = None
    needs_listener: bool = False
    needs_reference: bool = True
    unit: str = ""
    description: str = ""
    estimate_may_be_silent: bool = False
    # The metric itself aligns an estimate of another length (HAAQI: pyclarity's ear model trims
    # the pair to the shorter), so a recipe's longer output is scored as the recipe scores it.
    lengths_may_differ: bool = False
    kind: str = INTRUSIVE
    of: FunctionMetric | None = None  # improvement metrics: the metric that is improved
    fast: Callable[..., float] | None = None  # the `fast` backend's implementation

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"metric {self.name}: kind {self.kind!r} is not one of {KINDS}")
        if (self.kind == IMPROVEMENT) != (self.of is not None):
            raise ValueError(f"metric {self.name}: an improvement metric (and only one) names `of`")
        if (self.kind == NON_INTRUSIVE) == self.needs_reference:
            raise ValueError(f"metric {self.name}: non-intrusive exactly when needs_reference is False")

    def implementation(self, backend: str | None = None) -> Callable[..., float]:
        """The function computing this metric under `backend` (None: the family's default)."""
        backend = backend or DEFAULTS.get(family_of(self.name) or "", REFERENCE)
        return self.fast if (backend == FAST and self.fast is not None) else self.fn

    def with_options(self, **options: Any) -> FunctionMetric:
        """This metric with keyword options bound in both implementations (HAAQI's level1)."""
        return dataclasses.replace(
            self, fn=functools.partial(self.fn, **options),
            fast=functools.partial(self.fast, **options) if self.fast is not None else None)

    def __call__(self, estimate, reference, *, listener=None, ear=None, seed=None,
                 backend: str | None = None) -> float:
        return self.implementation(backend)(estimate, reference, listener=listener, ear=ear,
                                            seed=seed)


PROCESS_STATE = threading.RLock()  # held while numpy's global generator or stdout is in use


@contextlib.contextmanager
def process_state(seed: Any = None, *, quiet: bool = True):
    """For the reference packages that use process-wide state: numpy's global generator (seeded
    with an int, set from a RandomState that is advanced with it on success, or as it stands for
    None; its state restored afterwards) and, with `quiet`, stdout swallowed (pyclarity and
    speechmos print). The state is the holder's alone: the device scorer scores jobs on threads,
    whose draws and stdout swaps must not interleave."""
    with PROCESS_STATE:
        state = np.random.get_state()
        try:
            if isinstance(seed, np.random.RandomState):
                np.random.set_state(seed.get_state())
            elif seed is not None:
                np.random.seed(seed)
            with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
                yield
            if isinstance(seed, np.random.RandomState):
                seed.set_state(np.random.get_state())
        finally:
            np.random.set_state(state)


def seed_for(*parts: str) -> int:
    """A 32-bit seed from strings (item id, listener id, ear): reruns draw the same noise."""
    digest = hashlib.md5(":".join(parts).encode()).hexdigest()
    return int(digest[:8], 16)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else ""
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def status_of(exc: BaseException) -> tuple[str, str]:
    """(status, reason) of a metric that raised, the one mapping for every caller: bad input is
    `invalid` with its message, a metric that cannot give a value `failed` with its message, any
    other exception (the reference packages raise many types) `failed` with its type and first
    line."""
    if isinstance(exc, InvalidInput):
        return INVALID, str(exc)
    if isinstance(exc, MetricFailed):
        return FAILED, str(exc)
    return FAILED, first_line(exc)


def value_of(score: Score, prefix: str = "") -> float:
    """The value of an ok Score; otherwise raise what `status_of` maps back to its status and
    reason (with `prefix`): for baselines computed through `evaluate`."""
    if score.status == OK:
        return float(score.value)
    raise (InvalidInput if score.status == INVALID else MetricFailed)(prefix + score.reason)


def validate_pair(metric: FunctionMetric, estimate: Audio, reference: Audio | None) -> None:
    """Input checks shared by every metric: finite samples, non-silent reference, rates."""
    if (p := problem_finite(estimate)) is not None:
        raise InvalidInput(f"estimate has {p}")
    if reference is not None:
        if (p := problem_finite(reference)) is not None:
            raise InvalidInput(f"reference has {p}")
        if problem_silent(reference):
            raise InvalidInput(f"reference is silent: {metric.name} is undefined")
        if estimate.rate != reference.rate:
            raise InvalidInput(f"estimate at {estimate.rate} Hz, reference at {reference.rate} Hz")
        if metric.lengths_may_differ and estimate.channels == reference.channels:
            pass
        elif estimate.samples.shape != reference.samples.shape:
            raise InvalidInput(
                f"estimate shape {estimate.samples.shape} differs from reference "
                f"{reference.samples.shape}"
            )
    if not metric.estimate_may_be_silent and problem_silent(estimate):
        raise InvalidInput(f"estimate is silent: {metric.name} is undefined")


def evaluate(
    metric: FunctionMetric,
    estimate: Audio,
    reference: Audio | None,
    *,
    listener: Any = None,
    ear: str = "",
    stem: str = "",
    seed: int | None = None,
    ctx: ScoringContext | None = None,
    baseline: Callable[[], float] | None = None,
    of: Score | None = None,
) -> Score:
    """Run one metric and return a Score with status ok / invalid / failed (never a silent 0).
    `ctx` (default: the default backends, no memo) picks the backend of the metric's family;
    the Score records it. An improvement metric takes `baseline`, a callable giving the
    baseline's value of `metric.of` (it raises InvalidInput / MetricFailed, see `value_of`, when
    there is none), and `of`, the estimate's Score of `metric.of` when the caller has it."""
    ctx = ctx or DEFAULT_CONTEXT
    backend = ctx.backend_of(metric.name)

    def make(value, status, reason=""):
        return Score(metric.name, value, status, reason, ear, stem, backend)

    if metric.kind == IMPROVEMENT:
        if baseline is None:
            return make(None, INVALID, f"{metric.name} needs a baseline (given by the task)")
        est = of or evaluate(metric.of, estimate, reference, listener=listener, ear=ear,
                             stem=stem, seed=seed, ctx=ctx)
        if est.status != OK:
            return make(None, est.status, est.reason)
        try:
            return make(est.value - float(baseline()), OK)
        except Exception as exc:
            return make(None, *status_of(exc))
    try:
        validate_pair(metric, estimate, reference)
        value = metric(estimate, reference, listener=listener, ear=ear or None, seed=seed,
                       backend=backend)
    except Exception as exc:
        return make(None, *status_of(exc))
    value = float(value)
    if math.isnan(value):
        return make(None, FAILED, f"{metric.name} returned NaN")
    if math.isinf(value):
        return make(None, FAILED, f"{metric.name} returned {value}")
    return make(value, OK)


def clip_db(value: float) -> float:
    """Apply the dB ceiling (see DB_CEILING) to a dB value; -inf stays an error for the caller."""
    return float(np.minimum(value, DB_CEILING))
