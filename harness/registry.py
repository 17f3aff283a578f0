"""The one registry: lazy, entry-point backed, for every pluggable kind of thing.

Groups (entry-point group = registry group):

- `harness.systems`    systems (classes implementing `harness.api.System`)
- `harness.metrics`    metrics beyond the built-ins (`harness.metrics.base.FunctionMetric` or
                       any object with the `Metric` protocol's attributes)
- `harness.tasks`      task protocols (`harness.tasks.base.TaskProtocol` subclasses)
- `harness.generators` suite generators (`harness.suites.synth.generators.Generator`)
- `harness.layouts`    dataset loaders (`harness.suites.layouts.common.Layout`)
- `harness.panels`     listener panels (functions returning a `harness.listener.Panel`)

Built-ins are listed below as `module:attr` strings and nothing is imported until an entry is
asked for, so `harness --help` stays fast and a broken plugin cannot take the harness down.
Built-in systems and panels are also declared as entry points of this distribution, so they
are found exactly like third-party ones: `pip install my-system` makes it appear in
`harness systems`. The caller of `load` passes the base class it expects; an entry that is
something else is refused with a one-line error naming it.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from harness.errors import RegistryError

_TASKS = "harness.tasks"
_GEN = "harness.suites.synth"
_LAYOUTS = "harness.suites.layouts"

# Fallbacks and built-ins; the entry points in pyproject.toml say the same for systems/panels.
BUILTIN: dict[str, dict[str, str]] = {
    "harness.systems": {
        "unprocessed": "systems.anchors:Unprocessed",
        "oracle": "systems.anchors:Oracle",
    },
    "harness.panels": {"builtin": "listeners.builtin:builtin_panel"},
    "harness.metrics": {},
    "harness.tasks": {
        "speech-enhancement": f"{_TASKS}.speech_enhancement:SpeechEnhancement",
        "bandwidth-extension": f"{_TASKS}.bandwidth_extension:BandwidthExtension",
        "speech-restoration": f"{_TASKS}.speech_restoration:SpeechRestoration",
        "music-remix": f"{_TASKS}.music_remix:MusicRemix",
        "music-rebalance": f"{_TASKS}.music_rebalance:MusicRebalance",
        "classical-rebalance": f"{_TASKS}.classical_rebalance:ClassicalRebalance",
        "lyric-intelligibility": f"{_TASKS}.lyric_intelligibility:LyricIntelligibility",
        "hearing-aid-speech": f"{_TASKS}.hearing_aid_speech:HearingAidSpeech",
        "hearing-aid-enhancement": f"{_TASKS}.hearing_aid_speech:HearingAidEnhancement",
        "hearing-aid-cec3": f"{_TASKS}.hearing_aid_speech:HearingAidCEC3",
        "crowd-enhancement": f"{_TASKS}.crowd_enhancement:CrowdEnhancement",
        "cocktail-fork": f"{_TASKS}.cocktail_fork:CocktailFork",
        "car-music": f"{_TASKS}.car_music:CarMusic",
    },
    "harness.generators": {
        "speech-enhancement": f"{_GEN}.gen_speech:SPEECH_ENHANCEMENT",
        "bandwidth-extension": f"{_GEN}.gen_speech:BANDWIDTH_EXTENSION",
        "speech-restoration": f"{_GEN}.gen_speech:SPEECH_RESTORATION",
        "music-remix": f"{_GEN}.gen_music:MUSIC_REMIX",
        "music-rebalance": f"{_GEN}.gen_music:MUSIC_REBALANCE",
        "classical-rebalance": f"{_GEN}.gen_music:CLASSICAL_REBALANCE",
        "lyric-intelligibility": f"{_GEN}.gen_music:LYRIC_INTELLIGIBILITY",
        "hearing-aid-speech": f"{_GEN}.gen_clarity:HEARING_AID_SPEECH",
        "hearing-aid-enhancement": f"{_GEN}.gen_clarity:HEARING_AID_ENHANCEMENT",
        "hearing-aid-cec3": f"{_GEN}.gen_clarity:HEARING_AID_CEC3",
        "crowd-enhancement": f"{_GEN}.gen_crowd:CROWD",
        "cocktail-fork": f"{_GEN}.gen_music:COCKTAIL_FORK",
        "car-music": f"{_GEN}.gen_music:CAR_MUSIC",
    },
    # converters of weights users have (harness checkpoints convert KIND): fn(src, dst) -> Path
    "harness.converters": {
        "demucs": "systems.remix.convert:convert_demucs",
        "openunmix": "systems.remix.convert:convert_openunmix",
        "mrx": "systems.mrx.convert:convert_mrx",
    },
    "harness.layouts": {
        "musdb18hq": f"{_LAYOUTS}.musdb:MUSDB18HQ",
        "cad1": f"{_LAYOUTS}.musdb:CAD1",
        "icassp2024": f"{_LAYOUTS}.musdb:ICASSP2024",
        "cad2-task1": f"{_LAYOUTS}.cad2:CAD2_TASK1",
        "cec2": f"{_LAYOUTS}.clarity:CEC2",
        "icassp2023": f"{_LAYOUTS}.clarity:ICASSP2023",
        "cec3": f"{_LAYOUTS}.clarity:CEC3",
        "cad2-task2": f"{_LAYOUTS}.cad2:CAD2_TASK2",
        "cad1-task2": f"{_LAYOUTS}.cad1_task2:CAD1_TASK2",
        "voicebank-demand": f"{_LAYOUTS}.speech:VOICEBANK_DEMAND",
        "daps": f"{_LAYOUTS}.speech:DAPS",
        "dnr": f"{_LAYOUTS}.dnr:DNR",
    },
}


@cache
def names(group: str) -> dict[str, str]:
    """Name -> 'module:attr' for every entry of the group (built-ins first, then plugins)."""
    found = dict(BUILTIN.get(group, {}))
    for ep in entry_points(group=group):
        found[ep.name] = ep.value
    return found


def kind_of(group: str) -> str:
    return group.split(".")[-1].rstrip("s")


def load(group: str, name: str, expect: type | tuple[type, ...] | None = None) -> Any:
    """Import and return the object registered as `name` in `group`; with `expect`, refuse an
    entry that is neither an instance nor a subclass of it."""
    table = names(group)
    if name not in table:
        raise RegistryError(f"unknown {kind_of(group)} {name!r} (known: {', '.join(sorted(table))})")
    target = table[name]
    module, _, attr = target.partition(":")
    try:
        obj = import_module(module)
        for part in attr.split(".") if attr else []:
            obj = getattr(obj, part)
    except Exception as exc:  # a broken plugin must not take the harness down
        raise RegistryError(f"{group} entry {name!r} ({target}) failed to load: {exc}") from None
    if expect is not None and not (
        isinstance(obj, expect) or (isinstance(obj, type) and issubclass(obj, expect))
    ):
        want = expect.__name__ if isinstance(expect, type) else " or ".join(e.__name__ for e in expect)
        raise RegistryError(f"{group} entry {name!r} ({target}) is a {type(obj).__name__}, "
                            f"not a {want}")
    return obj


def load_all(group: str, expect: type | tuple[type, ...] | None = None) -> dict[str, Any]:
    """Every entry of the group, loaded (a broken one raises RegistryError naming it)."""
    return {name: load(group, name, expect) for name in names(group)}


def register(group: str, name: str, target: str) -> None:
    """Register `module:attr` under `name` for this process (plugins use entry points instead)."""
    BUILTIN.setdefault(group, {})[name] = target
    names.cache_clear()
