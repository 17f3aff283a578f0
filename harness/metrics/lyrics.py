"""The lyric-intelligibility task's own scores (CAD2 Task 1), registered for their facts: they are
computed by the task (harness/tasks/lyric_intelligibility.py), which knows the scene's lyrics and
its weight alpha, not by a signal pair."""

from __future__ import annotations

from harness.metrics.base import FunctionMetric


def _task_computed(*_args, **_kwargs) -> float:
    raise NotImplementedError("computed by the lyric-intelligibility task, not from a signal pair")


LYRICS_CORRECT = FunctionMetric(
    "lyrics_correct", _task_computed, unit="share of words", needs_listener=True,
    description="share of the lyrics' words Whisper transcribes correctly after the ear's MSBG "
                "hearing-loss model (CAD2 Task 1); needs a local Whisper checkpoint "
                "(HARNESS_WHISPER_MODEL), else failed",
)
CAD2_SCORE = FunctionMetric(
    "cad2_score", _task_computed, unit="0..1", needs_listener=True,
    description="CAD2 Task 1 ranking score: alpha x best-ear lyrics_correct + (1 - alpha) x "
                "mean-ear HAAQI",
)
LYRICS = (LYRICS_CORRECT, CAD2_SCORE)
