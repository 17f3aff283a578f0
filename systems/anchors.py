"""The two anchors every report needs, for every task: `unprocessed` and `oracle`.

`unprocessed` passes the input through (the lower anchor); `oracle` returns the reference (the
upper anchor). What "the input" and "the reference" are in a task's output format is the
protocol's business, so both delegate to it.
"""

from __future__ import annotations

from typing import Any

from harness.api import ANY_TASK, BaseSystem, Output
from harness.suites.types import Item
from harness.tasks import get_protocol


class Unprocessed(BaseSystem):
    name = "unprocessed"
    task = ANY_TASK
    defaults: dict = {}  # no parameters
    description = "Lower anchor: the input passed through (no separation, no enhancement)"

    def process(self, items: list[Item], listener: Any | None) -> list[Output]:
        return [get_protocol(it.task).anchor("unprocessed", it, listener) for it in items]


class Oracle(BaseSystem):
    name = "oracle"
    task = ANY_TASK
    defaults: dict = {}  # no parameters
    description = "Upper anchor: returns the reference signals"

    def process(self, items: list[Item], listener: Any | None) -> list[Output]:
        return [get_protocol(it.task).anchor("oracle", it, listener) for it in items]
