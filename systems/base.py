"""The System contract, for the adapters in this package and for plugins: it lives in
`harness.api` (the engine never imports `systems`); this module re-exports it."""

from harness.api import (  # noqa: F401
    ANY_TASK,
    BaseSystem,
    Output,
    System,
    get_system,
    system_from_spec,
    system_names,
)
