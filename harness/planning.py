"""Plan a run: (system x item x listener) jobs with their keys, the device, the metrics.

A job's key hashes the system (name, version, parameters), the item (content hash) and the
listener id; jobs already stored for the run are skipped by the runner, so rerunning a run
resumes it. `plan` checks everything it can before any system runs (systems support the task,
metrics are defined for it, items are valid) and says what it found in `Plan.notes`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.chain import identity_of, split_spec, supports
from harness.config import RunConfig
from harness.errors import ConfigError
from harness.listener import Listener, Panel, resolve_panel
from harness.manifest import environment
from harness.suites import Item, Suite, resolve_suite
from harness.tasks import TaskProtocol, get_protocol

NO_LISTENER = "-"


@dataclass
class Job:
    key: str
    suite: Suite
    item: Item
    system: str
    listener: Listener | None
    protocol: TaskProtocol
    metrics: list[str]
    problems: list[str] = dataclasses.field(default_factory=list)  # found at plan time: invalid

    @property
    def listener_id(self) -> str:
        return self.listener.id if self.listener is not None else NO_LISTENER

    def row(self) -> dict[str, str]:
        return {
            "key": self.key, "suite": self.suite.name, "task": self.suite.task,
            "protocol": self.protocol.version, "system": self.system, "item_id": self.item.id,
            "listener_id": self.listener_id,
        }


@dataclass
class Plan:
    run_id: str
    name: str
    config: RunConfig
    device: str
    suites: list[Suite]
    panel: Panel
    systems: dict[str, Any]
    jobs: list[Job]
    manifest: dict[str, Any]
    skipped: list[str]
    backends: dict[str, str] | None = None  # metric family -> reference | fast


def resolve_device(spec: str) -> str:
    """'auto' -> cuda when torch sees a GPU, else cpu; an unavailable cuda is a ConfigError."""
    if spec not in ("auto", "cpu") and not spec.startswith("cuda"):
        raise ConfigError(f"unknown device {spec!r} (auto, cpu, cuda, cuda:N)")
    if spec == "cpu":
        return "cpu"
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if spec == "auto":
        return "cuda" if has_cuda else "cpu"
    if not has_cuda:
        raise ConfigError(f"device {spec!r} requested but torch sees no CUDA device")
    return spec


def _stage_names(systems: dict[str, Any]) -> list[str]:
    """The run's system specs, with each chain's stages as well."""
    return [part for n in systems for part in [n, *split_spec(n)]]


def job_key(system: Any, item: Item, listener_id: str) -> str:
    blob = f"{identity_of(system)}|{item.hash}|{listener_id}"
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def check_metric_names(names: list[str]) -> list[str]:
    """The metric names, each once; an unknown one is a ConfigError naming the closest match."""
    import difflib

    from harness.metrics import all_metrics

    known = list(all_metrics())
    for n in names:
        if n not in known:
            close = difflib.get_close_matches(n, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown metric {n!r}{hint} (known: {', '.join(known)})")
    return list(dict.fromkeys(names))


def voices_trained_on(system: Any) -> dict[str, list[str]]:
    """Checkpoint file -> the voices its record says it was trained on (`data.voices`, and any
    evaluation voice a diagnostic model was allowed), for each checkpoint `system` may load."""
    from harness import checkpoints

    out = {}
    for path in getattr(system, "checkpoint_files", list)():
        try:
            data = checkpoints.read_record(path).get("data", {})
        except Exception:  # a missing or broken checkpoint fails its items when the system runs
            continue
        voices = [*(data.get("voices") or []), *(data.get("evaluation_voices_used") or [])]
        if voices:
            out[str(path)] = list(dict.fromkeys(str(v) for v in voices))
    return out


def heard_voice_notes(name: str, system: Any, suite: Suite) -> list[str]:
    """A plan note for each checkpoint of `system` trained on voices that items of `suite` speak
    with (a diagnostic model trained on evaluation voices; a suite made with `-O voices=` naming a
    training voice): those items' scores are not held-out scores."""
    notes = []
    for path, used in voices_trained_on(system).items():
        heard = [it for it in suite.items if it.metadata.get("voice") in used]
        if heard:
            voices = sorted({str(it.metadata["voice"]) for it in heard})
            notes.append(f"{name}: {Path(path).name} was trained on {', '.join(voices)}, the voice(s) "
                         f"of {len(heard)} item(s) of {suite.name}: their scores are not held-out")
    return notes


def plan(cfg: RunConfig, prebuilt: dict[str, Any] | None = None) -> Plan:
    """Resolve suites, systems, panel and metrics; expand into jobs; derive the run id.

    `prebuilt` maps system names of `cfg.systems` to system objects built by the caller (the
    submission replay of `harness score`) instead of the registry.
    """
    from harness.api import system_from_spec

    device = resolve_device(cfg.device)
    suites = [resolve_suite(s) for s in dict.fromkeys(cfg.suites)]
    names = [s.name for s in suites]
    if len(set(names)) != len(names):
        raise ConfigError(f"a suite is named twice: {', '.join(names)}")
    panel = resolve_panel(cfg.panel, list(dict.fromkeys(cfg.listeners)) or None)
    wanted = check_metric_names(cfg.metrics)
    prebuilt = prebuilt or {}
    systems = {
        n: prebuilt[n] if n in prebuilt else system_from_spec(n, cfg.system_params)
        for n in dict.fromkeys(cfg.systems)
    }
    jobs: list[Job] = []
    skipped: list[str] = [
        f"system_params for {spec!r} are not used: no system {spec!r} is run "
        f"(systems: {', '.join(systems)})"
        for spec in cfg.system_params
        if spec not in systems and not any(n.partition("/")[0] == spec for n in _stage_names(systems))
    ]
    per_suite: dict[str, Any] = {}
    heard: list[str] = []  # items a system's checkpoint heard the voice of (not held-out)
    for suite in suites:
        protocol = get_protocol(suite.task)
        metrics = [m for m in wanted if m in protocol.supported_metrics] if wanted else list(
            protocol.default_metrics
        )
        left_out = [m for m in wanted if m not in protocol.supported_metrics]
        if left_out:
            skipped.append(
                f"{', '.join(left_out)} not computed on {suite.name}: task {suite.task} does not "
                f"define {'it' if len(left_out) == 1 else 'them'} "
                f"(it has {', '.join(protocol.supported_metrics)})"
            )
        if wanted and not metrics:
            raise ConfigError(
                f"none of the metrics {', '.join(wanted)} applies to suite {suite.name} "
                f"(task {suite.task}: {', '.join(protocol.supported_metrics)})"
            )
        pairs = {item.id: protocol.listeners_for(item, list(panel.listeners))
                 for item in suite.items}
        in_panel = {li.id for li in panel.listeners}
        absent = sorted({lid for item in suite.items
                         for lid in (item.metadata.get("listeners") or [])
                         if isinstance(lid, str) and lid not in in_panel})
        if protocol.uses_listener and absent:
            skipped.append(f"{suite.name} names listener(s) that panel {panel.name} lacks, not "
                           f"scored: {', '.join(absent[:5])}"
                           + (f" (and {len(absent) - 5} more)" if len(absent) > 5 else ""))
        per_suite[suite.name] = {
            "hash": suite.hash, "version": suite.version, "task": suite.task,
            "protocol": protocol.version, "metrics": metrics, "items": len(suite.items),
            "resampling": protocol.resampling_note,
        }
        if protocol.seeding:
            per_suite[suite.name]["seeding"] = protocol.seeding
        problems = {item.id: protocol.item_problems(item) for item in suite.items}
        bad = [i for i, pr in problems.items() if pr]
        if bad:
            skipped.append(f"{len(bad)} item(s) of {suite.name} are invalid and will be stored so "
                           f"with their reason: {problems[bad[0]][0]}"
                           + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))
        for name, system in systems.items():
            stages = getattr(system, "stages", None)
            if not supports(system, suite.task):
                if stages and any(supports(s, suite.task) for s in stages):
                    raise ConfigError(system.problems(suite.items[0], protocol)[0] + f" (suite {suite.name})")
                skipped.append(f"{name} does not do {suite.task}: skipped on {suite.name}")
                continue
            heard.extend(heard_voice_notes(name, system, suite))
            if stages:
                for item in suite.items:
                    found = [] if problems[item.id] else system.problems(item, protocol)
                    if found:
                        raise ConfigError(f"{found[0]} (suite {suite.name}, item {item.id})")
            for item in suite.items:
                for li in pairs[item.id]:
                    lid = li.id if li is not None else NO_LISTENER
                    jobs.append(Job(job_key(system, item, lid), suite, item, name, li, protocol,
                                    metrics, problems[item.id]))
    skipped.extend(heard)
    if not jobs:
        raise ConfigError("nothing to run: " + "; ".join(
            s for s in skipped if "does not do" in s or "lacks" in s))
    from harness.metrics import backends as metric_backends

    chosen = metric_backends.resolve(cfg.metrics_backend)
    identity = {
        "metrics_backend": chosen,
        "suites": per_suite,
        "systems": {n: identity_of(s) for n, s in systems.items()},
        "panel": panel.digest(),
        "harness": environment()["harness_version"],
    }
    run_id = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    manifest = {
        **environment(),
        "run_id": run_id,
        "device": device,
        "config": {k: v for k, v in vars(cfg).items()},
        "suites": per_suite,
        "systems": {
            n: {"version": s.version, "task": s.task, "params": getattr(s, "params", {}),
                **({"stages": [{"name": st.name, "version": st.version,
                                "params": getattr(st, "params", {})} for st in s.stages]}
                   if getattr(s, "stages", None) else {})}
            for n, s in systems.items()
        },
        "panel": {"name": panel.name, "source": panel.source, "listeners": panel.digest()},
        "seeds": {
            "metrics": {n: s["seeding"] for n, s in per_suite.items() if "seeding" in s},
            "bootstrap": 0,
        },
        "metrics_backend": chosen,
        "jobs": len(jobs),
        **({"not_held_out": heard} if heard else {}),
    }
    return Plan(run_id, cfg.run_name or run_id, cfg, device, suites, panel, systems, jobs,
                manifest, skipped, chosen)
