"""Progress of a run on stderr: a bar with elapsed time and ETA on a terminal, a plain line
every 15 s otherwise (logs, CI)."""

from __future__ import annotations

import time


class RunProgress:
    """The progress bar, or a plain line every 15 s when stderr is not a terminal."""

    def __init__(self, run_id: str, total: int, done: int, enabled: bool) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=True)
        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
            console=self.console, disable=not enabled or not self.console.is_terminal,
            transient=False,
        )
        self.plain = enabled and not self.console.is_terminal
        self.total, self.start_done, self.done = total, done, done
        self.run_id = run_id
        self.t_start = self.last = time.time()
        self.task = self.bar.add_task(f"run {run_id}", total=self.total, completed=done)

    def advance(self) -> None:
        self.bar.advance(self.task)
        self.done += 1
        now = time.time()
        if self.plain and (now - self.last >= 15 or self.done == self.total):
            self.last = now
            new = self.done - self.start_done
            elapsed = now - self.t_start
            eta = elapsed / new * (self.total - self.done) if new else float("nan")
            self.console.print(f"run {self.run_id}: {self.done}/{self.total} jobs, "
                               f"{elapsed:.0f} s elapsed, eta {eta:.0f} s", highlight=False)
