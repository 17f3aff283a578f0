"""Task protocols, one module per task."""

from __future__ import annotations

from harness.errors import RegistryError
from harness.protocols.bandwidth_extension import BandwidthExtension
from harness.protocols.base import OutputSpec, TaskProtocol
from harness.protocols.cocktail_fork import CocktailFork
from harness.protocols.crowd_enhancement import CrowdEnhancement
from harness.protocols.music_rebalance import MusicRebalance
from harness.protocols.music_remix import MusicRemix
from harness.protocols.speech_enhancement import SpeechEnhancement

PROTOCOLS: dict[str, TaskProtocol] = {p.task: p for p in (
        SpeechEnhancement(), BandwidthExtension(), MusicRemix(), MusicRebalance(),
        CrowdEnhancement(), CocktailFork(),
    )}

__all__ = ["OutputSpec", "PROTOCOLS", "TaskProtocol", "get_protocol"]


def get_protocol(task: str) -> TaskProtocol:
    if task not in PROTOCOLS:
        raise RegistryError(
            f"no protocol for task {task!r} yet (implemented: {', '.join(PROTOCOLS)})"
        )
    return PROTOCOLS[task]
