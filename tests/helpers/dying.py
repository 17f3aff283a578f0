"""A scoring job that kills its own worker process (SIGKILL, as the kernel's out-of-memory killer
does) for one item: imported by reference in the scoring workers (tests/ is on their path)."""

from __future__ import annotations

import os
import signal

from harness.scoring import score_job

CULPRIT = "se03"


def score_or_die(task, item, *args, **kwargs):
    if item.id == CULPRIT:
        os.kill(os.getpid(), signal.SIGKILL)
    return score_job(task, item, *args, **kwargs)
