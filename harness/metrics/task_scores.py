"""Challenge scores that tasks compute themselves, registered for their facts: CAD2 Task 1's
lyrics_correct and cad2_score (harness/tasks/lyric_intelligibility.py: the scene's lyrics and its
weight alpha) and ICASSP 2023's combined score (harness/tasks/hearing_aid_speech.py); none is a
function of one signal pair."""

from __future__ import annotations

from harness.metrics.base import FunctionMetric


def _task_computed(*_args, **_kwargs) -> float:
    raise NotImplementedError("computed by its task, not from a signal pair")


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
ICASSP2023_SCORE = FunctionMetric(
    "icassp2023_score", _task_computed, unit="0..1", needs_listener=True,
    description="ICASSP 2023 Clarity score: 0.5 x (better-ear HASPI v2 + better-ear HASQI v2) of "
                "the amplified (NAL-R, compressor, tanh) output",
)
TASK_SCORES = (LYRICS_CORRECT, CAD2_SCORE, ICASSP2023_SCORE)
