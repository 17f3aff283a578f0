"""Tasks, one module per task: everything a task knows (its constants, output spec, references,
metrics and aggregation, anchors, resampling note) lives in `harness/tasks/<task>.py` as a
`TaskProtocol` subclass, registered in the `harness.tasks` group of `harness.registry` (a plugin
adds a task with an entry point). The task names are the registry's; nothing else lists them."""

from __future__ import annotations

from functools import cache

from harness import registry
from harness.errors import RegistryError
from harness.tasks.base import OutputSpec, TaskProtocol

__all__ = ["OutputSpec", "TaskProtocol", "get_protocol", "task_names"]


def task_names() -> tuple[str, ...]:
    """Every registered task (built-ins first)."""
    return tuple(registry.names("harness.tasks"))


@cache
def get_protocol(task: str) -> TaskProtocol:
    """The protocol of a task (one instance per process; protocols hold no state)."""
    obj = registry.load("harness.tasks", task, expect=TaskProtocol)
    protocol = obj() if isinstance(obj, type) else obj
    if protocol.task != task:
        raise RegistryError(f"harness.tasks entry {task!r} declares task {protocol.task!r}")
    return protocol
