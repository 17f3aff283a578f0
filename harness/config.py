"""Run configuration: every `harness run` flag has a key in a TOML file.

    suites = ["speech-enhancement-quick", "music-remix-quick"]
    systems = ["unprocessed", "oracle"]
    panel = "builtin"            # or a path to a Clarity/Cadenza listeners*.json
    listeners = []               # optional subset of the panel's ids
    metrics = []                 # empty: each task's default metrics
    jobs = 2                     # scoring worker processes
    device = "auto"              # auto | cpu | cuda | cuda:N
    out = "harness-runs"
    batch_size = 4
    run_name = ""                # default: the run id (a hash of what determines the numbers)
    quiet = false
    system_timeout = "auto"      # seconds a system may take per call (per batch of items), or
                                 # "auto": 120 s + 10 s per second of input audio in the call
    executor = "local"           # local | ray (pip install 'audio-harness[ray]')
    ray_address = ""             # an existing Ray cluster (ray://host:10001, host:6379, auto);
                                 # empty: a private local Ray instance
    ray_actors = 1               # Ray actors per system (each loads the model once)
    ray_num_gpus = 0.0           # GPUs per system actor (0.5: two actors share one)
    ray_retries = 2              # a batch or scoring task whose worker died is retried this often
    scoring = "auto"             # auto | processes | device: where the local executor scores.
                                 # device: threads of the driver score up to scoring_threads jobs
                                 # at once on the run's device, their HAAQI calls computed
                                 # together in batches (the GPU's way); processes: `jobs` worker
                                 # processes on the CPU; auto: device when the run's device is a
                                 # GPU, else processes
    scoring_threads = 64         # jobs scored at once by the device scorer
    haaqi_memory_gb = 0.0        # the device scorer's HAAQI batch budget (0: half the GPU's
                                 # free memory, 2 GiB on the CPU)
    metrics_backend = "default"  # default (fast where parity holds) | reference | fast, or a
                                 # table: [metrics_backend] sdr = "reference"

    [system_params.some-system]  # keyword arguments for a system's constructor
    option = 1

Flags given on the command line override the file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, read_structured
from harness.suites import DEFAULT_SUITES


def default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


@dataclass
class RunConfig:
    suites: list[str] = field(default_factory=lambda: list(DEFAULT_SUITES))
    systems: list[str] = field(default_factory=lambda: ["unprocessed", "oracle"])
    panel: str = "builtin"
    listeners: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    jobs: int = field(default_factory=default_jobs)
    device: str = "auto"
    out: str = "harness-runs"
    batch_size: int = 4
    run_name: str = ""
    quiet: bool = False
    system_params: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics_backend: Any = "default"  # default | reference | fast | {family or metric = backend}
    system_timeout: Any = "auto"  # seconds per system call, or "auto" (see harness.workers)
    executor: str = "local"  # local | ray (harness.ray_executor)
    ray_address: str = ""  # an existing Ray cluster; empty: a private local instance
    ray_actors: int = 1  # Ray actors per system
    ray_num_gpus: float = 0.0  # GPUs per system actor (fractions share a GPU)
    ray_retries: int = 2  # retries of a batch or scoring task whose Ray worker died
    scoring: str = "auto"  # auto | processes | device (harness.scoring)
    scoring_threads: int = 64  # jobs scored at once by the device scorer
    haaqi_memory_gb: float = 0.0  # the device scorer's HAAQI batch budget; 0: the default

    def validate(self) -> RunConfig:
        for key, kind in SCHEMA.items():
            check_type(key, getattr(self, key), kind)
        if not self.suites:
            raise ConfigError("no suite given")
        if not self.systems:
            raise ConfigError("no system given")
        from harness.suites.types import control_free

        if not control_free(self.run_name):
            raise ConfigError(f"run_name {self.run_name!r} holds control characters (a terminal would act "
                              "on them)")
        if self.jobs < 1:
            raise ConfigError(f"jobs must be at least 1, got {self.jobs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        self.system_timeout = parse_timeout(self.system_timeout)
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"executor must be 'local' or 'ray', got {self.executor!r}")
        if self.ray_address and self.executor != "ray":
            raise ConfigError(f"a Ray cluster address ({self.ray_address!r}) is for --executor ray; "
                              f"this run's executor is {self.executor!r}")
        if self.ray_actors < 1:
            raise ConfigError(f"ray_actors must be at least 1, got {self.ray_actors}")
        if self.ray_num_gpus < 0 or self.ray_retries < 0:
            raise ConfigError("ray_num_gpus and ray_retries must not be negative")
        if self.scoring not in ("auto", "processes", "device"):
            raise ConfigError(f"scoring must be auto, processes or device, got {self.scoring!r}")
        if self.scoring_threads < 1:
            raise ConfigError(f"scoring_threads must be at least 1, got {self.scoring_threads}")
        if self.haaqi_memory_gb < 0:
            raise ConfigError(f"haaqi_memory_gb must not be negative, got {self.haaqi_memory_gb}")
        if self.executor == "ray":
            import importlib.util

            if importlib.util.find_spec("ray") is None:
                raise ConfigError("executor 'ray' needs the ray package: pip install 'audio-harness[ray]'")
        from harness.metrics.backends import resolve

        resolve(self.metrics_backend)  # raises a ConfigError naming the bad key
        return self


# The type of every key: a run config is checked against it when it is loaded, so a wrong type
# is a one-line error naming the key, not a traceback later.
SCHEMA: dict[str, Any] = {
    "suites": [str], "systems": [str], "panel": str, "listeners": [str], "metrics": [str],
    "jobs": int, "device": str, "out": str, "batch_size": int, "run_name": str, "quiet": bool,
    "system_params": {str: {str: object}}, "metrics_backend": (str, {str: str}),
    "system_timeout": (str, float),
    "executor": str, "ray_address": str, "ray_actors": int, "ray_num_gpus": float, "ray_retries": int,
    "scoring": str, "scoring_threads": int, "haaqi_memory_gb": float,
}


_NAMES = {str: ("a string", "strings"), int: ("an integer", "integers"), float: ("a number", "numbers"),
          bool: ("true or false", "booleans"), object: ("a value", "values"), dict: ("a table", "tables"),
          list: ("a list", "lists")}


def _type_name(kind: Any, plural: bool = False) -> str:
    if isinstance(kind, list):
        return "lists" if plural else f"a list of {_type_name(kind[0], True)}"
    if isinstance(kind, dict):
        (_, v), = kind.items()
        if plural:
            return "tables"
        return "a table" if v is object else f"a table of {_type_name(v, True)}"
    if isinstance(kind, tuple):
        return " or ".join(_type_name(k, plural) for k in kind)
    return _NAMES[kind][1 if plural else 0]


def _matches(value: Any, kind: Any) -> bool:
    if isinstance(kind, tuple):
        return any(_matches(value, k) for k in kind)
    if isinstance(kind, list):
        return isinstance(value, list) and all(_matches(v, kind[0]) for v in value)
    if isinstance(kind, dict):
        (k, v), = kind.items()
        return isinstance(value, dict) and all(isinstance(key, str) and _matches(x, v)
                                               for key, x in value.items())
    if kind is object:
        return True
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def check_type(key: str, value: Any, kind: Any) -> None:
    """ConfigError('key KEY must be ..., got ...') when `value` is not of `kind` (the SCHEMA's
    notation: a type, [type] for a list, {str: type} for a table, a tuple for alternatives)."""
    if not _matches(value, kind):
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        raise ConfigError(f"key {key!r} must be {_type_name(kind)}, got {type(value).__name__} {shown}")


def parse_timeout(value: Any) -> float | str:
    """'auto', or a positive number of seconds (a string of digits from the command line too)."""
    if value == "auto":
        return "auto"
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"system_timeout must be 'auto' or seconds, got {value!r}") from None
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigError(f"system_timeout must be a positive number of seconds, got {value!r}")
    return seconds


_INTERVAL = re.compile(r"^([\[(])\s*(-?inf|[-+0-9.eE]+)\s*,\s*(-?inf|[-+0-9.eE]+)\s*([\])])$")


def within(interval: str, value: float) -> bool:
    """Whether `value` lies in `interval`, written as mathematicians do: "[0, 1)" (0 in, 1 out),
    "(0, inf)", "[1, inf)". NaN lies in none."""
    m = _INTERVAL.match(interval)
    if not m:
        raise ValueError(f"not an interval: {interval!r} (write e.g. '[0, 1)' or '(0, inf)')")
    lo, hi = float(m[2]), float(m[3])
    return (value >= lo if m[1] == "[" else value > lo) and (value <= hi if m[4] == "]" else value < hi)


def limit_problem(rule: Any, value: Any) -> str | None:
    """What is wrong with `value` under `rule`, or None: an interval string for a number
    ("integer [2, 16]" wants whole numbers), or a tuple of the values allowed; a list's elements
    are checked each."""
    if isinstance(rule, str):
        listed = isinstance(value, (list, tuple))
        whole = rule.startswith("integer ")
        interval = rule.removeprefix("integer ")
        kind = int if whole else (int, float)
        numbers = value if listed else [value]
        if not all(isinstance(v, kind) and not isinstance(v, bool) and within(interval, v) for v in numbers):
            return (f"must be {'an integer ' if whole else ''}in {interval}{' (each)' if listed else ''}, "
                    f"got {value!r}")
        return None
    listed = isinstance(value, (list, tuple))
    if not all(v in rule for v in (value if listed else [value])):
        each = " (each)" if listed else ""
        return f"must be one of {', '.join(repr(r) for r in rule)}{each}, got {value!r}"
    return None


def check_limits(system: str, params: dict[str, Any], limits: dict[str, Any]) -> None:
    """Given parameters against a system's `limits` (limit_problem). A None given where the default
    is None ("off", "auto") is not checked. ConfigError names system_params.SYSTEM.KEY, the limit
    and the value."""
    for key, rule in limits.items():
        if key in params and params[key] is not None:
            problem = limit_problem(rule, params[key])
            if problem:
                raise ConfigError(f"key 'system_params.{system}.{key}' {problem}")


def check_params(system: str, params: dict[str, Any], defaults: dict[str, Any],
                 limits: dict[str, Any] | None = None) -> None:
    """A system's parameters against its defaults: no parameter it does not declare, each of its
    default's type (int is accepted for float, None defaults take anything), then each within the
    system's `limits` (check_limits); ConfigError names system_params.SYSTEM.KEY."""
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        known = ", ".join(defaults) or "none"
        raise ConfigError(f"system_params.{system}: unknown parameter(s) {', '.join(unknown)} "
                          f"(known: {known})")
    for key, value in params.items():
        if defaults[key] is None:
            continue
        d = defaults[key]
        if isinstance(d, dict):  # a stage's options: a table, or None / false for "off"
            if not (isinstance(value, dict) or value is None or value is False):
                raise ConfigError(f"key 'system_params.{system}.{key}' must be a table (or false "
                                  f"for off), got {type(value).__name__} {value!r}")
            continue
        check_type(f"system_params.{system}.{key}", value, float if isinstance(d, float) else type(d))
    if limits:
        check_limits(system, params, limits)


KEYS = {f.name for f in fields(RunConfig)}
_LISTS = {"suites", "systems", "listeners", "metrics"}


def parse_param(text: str) -> tuple[str, list[str], Any]:
    """`SYSTEM.KEY=VALUE` (a `--param` flag; KEY may be dotted for a nested table) as (system,
    key path, value). VALUE is read as a TOML value when it is one (10, 0.5, true, [1, 2],
    "text"), otherwise taken as a string (a path, a name)."""
    import tomllib

    left, eq, value = text.partition("=")
    system, dot, key = left.strip().partition(".")
    if not eq or not dot or not system or not key or any(not k for k in key.split(".")):
        raise ConfigError(f"--param {text!r}: expected SYSTEM.KEY=VALUE (e.g. wpe.taps=10)")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return system, key.split("."), parsed


def apply_params(system_params: dict[str, dict[str, Any]], params: list[str]) -> dict:
    """`system_params` with every `--param SYSTEM.KEY=VALUE` set (later flags win)."""
    out = {k: dict(v) for k, v in system_params.items()}
    for text in params:
        system, keys, value = parse_param(text)
        table = out.setdefault(system, {})
        for k in keys[:-1]:
            table = table.setdefault(k, {}) if isinstance(table.get(k, {}), dict) else {}
        table[keys[-1]] = value
    return out


def load_config(path: str | Path | None, overrides: dict[str, Any]) -> RunConfig:
    """Merge a TOML file (if given) with command-line overrides (None/empty means 'not given');
    `overrides["params"]` holds `--param SYSTEM.KEY=VALUE` flags, set over `system_params`."""
    overrides = dict(overrides)
    params = overrides.pop("params", None) or []
    values: dict[str, Any] = {}
    if path:
        p = Path(path)
        if p.suffix.lower() != ".toml":
            raise ConfigError(f"{p}: a run config must be a .toml file")
        raw = read_structured(p, ConfigError, "config file", "config file not found")
        unknown = sorted(set(raw) - KEYS)
        if unknown:
            raise ConfigError(f"{p}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(KEYS))})")
        for k, v in raw.items():
            if k in _LISTS and isinstance(v, str):
                v = [v]
            values[k] = v
    for k, v in overrides.items():
        if v is None or (k in _LISTS and not v):
            continue
        values[k] = v
    if params:
        current = values.get("system_params", {})
        values["system_params"] = apply_params(current if isinstance(current, dict) else {}, params)
    where = f"{path}: " if path else ""
    try:
        cfg = RunConfig(**values)
    except TypeError as exc:
        raise ConfigError(f"{where}bad configuration: {exc}") from None
    try:
        cfg.validate()
        _check_system_params(cfg.system_params)
        return cfg
    except ConfigError as exc:
        raise ConfigError(f"{where}{exc}") from None


def _check_system_params(system_params: dict[str, dict[str, Any]]) -> None:
    """Each system's parameters against the types of its declared defaults (systems that declare
    none check their own parameters when built)."""
    from harness import registry
    from harness.errors import HarnessError

    for spec, params in system_params.items():
        try:
            cls = registry.load("harness.systems", spec.partition("/")[0])
        except HarnessError:
            continue  # an unknown system is reported by the plan, with the known names
        defaults = getattr(cls, "defaults", None)
        if isinstance(defaults, dict):
            check_params(spec, params, defaults, getattr(cls, "limits", None))
