"""What both executors (harness.runner, harness.ray_executor) do with a job's system outputs in
the driver: check them against the task's output spec, cache them, and the rows of a job that
could not be scored."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import audio as audio_mod
from harness.audio import Audio
from harness.errors import StoreError
from harness.metrics import Score
from harness.metrics.base import first_line

if TYPE_CHECKING:
    from harness.planning import Job


def cache_outputs(cache: Path, outputs: dict[str, Audio]) -> dict[str, str]:
    """Write outputs once, content-addressed, as float32 WAV (exact); return name -> path.

    A write that fails (a full disk) stops the run with a one-line StoreError: every job stored
    so far is kept and the same command resumes."""
    paths = {}
    for name, a in outputs.items():
        sha = a.sha256()
        path = cache / sha[:2] / f"{sha}.wav"
        if not path.exists():
            tmp = path.with_suffix(f".{os.getpid()}.tmp.wav")
            try:
                audio_mod.write(tmp, a, "FLOAT")
                tmp.replace(path)
            except Exception as exc:
                tmp.unlink(missing_ok=True)
                raise StoreError(f"{tmp}: cannot write a system output ({io_reason(exc, cache)}); "
                                 "the jobs stored so far are kept, and the same command resumes "
                                 "once this is fixed") from None
        paths[name] = str(path)
    return paths


def io_reason(exc: Exception, folder: Path) -> str:
    """An I/O failure in words, naming a full disk when that is what it is."""
    try:
        st = os.statvfs(folder)
        if st.f_bavail * st.f_frsize < (1 << 20):
            return "the disk is full"
    except OSError:
        pass
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return first_line(exc)


def rows(job: Job, status: str, reason: str) -> list[Score]:
    """The rows of a job that was not scored: every expected score with `status` and `reason`."""
    return [Score(m, None, status, reason, e, s) for m, e, s in job.protocol.expected(job.item, job.metrics)]


def check_outputs(job: Job, outputs: Any) -> dict[str, str]:
    """The protocol's problems with a system's outputs ('' = the whole output is unusable)."""
    try:
        return job.protocol.validate_outputs(job.item, outputs)
    except Exception as exc:  # outputs odd enough to break the checks themselves
        return {"": f"system {job.system} returned outputs that cannot be checked ({first_line(exc)})"}
