"""Loaders for real dataset layouts on disk (`harness suites import LAYOUT PATH`).

Each loader validates the whole tree first and reports every missing or malformed file by path
(`TreeProblems`), then returns a Suite whose files stay where they are: the manifest written by
`harness suites import` records the dataset root, and paths inside it are relative to that root.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from harness.errors import SuiteError
from harness.suites.layouts.common import TreeProblems, checked_ref  # noqa: F401  (re-exported)
from harness.suites.types import Suite


def _layouts() -> dict[str, tuple[Callable[..., Suite], str]]:
    from harness.suites.layouts import dnr, musdb, speech

    return {
        "musdb18hq": (
            musdb.load_musdb18hq,
            "MUSDB18-HQ: <root>/{train,test}/<track>/{mixture,vocals,drums,bass,other}.wav",
        ),
        "cad1": (
            musdb.load_cad1,
            "Cadenza CAD1 Task 1: <root>/audio/musdb18hq/..., <root>/metadata/*.json; "
            "test songs cut to their 30 s objective segments",
        ),
        "icassp2024": (
            musdb.load_icassp2024,
            "Cadenza ICASSP 2024 rebalancing: <root>/audio/at_mic_music/..., <root>/metadata/"
            "{scenes,scene_listeners,at_mic_music,listeners}.<split>.json and gains.json; one item "
            "per scene, scored for the scene's listeners (--split valid by default)",
        ),
        "voicebank-demand": (
            speech.load_voicebank_demand,
            "VoiceBank-DEMAND: <root>/{clean,noisy}_testset_wav/*.wav, <root>/logfiles/log_testset.txt",
        ),
        "daps": (
            speech.load_daps,
            "DAPS: <root>/clean/<spk>_<script>_clean.wav and device folders (--split DEVICE or all); "
            "aligned to the clean twin by cross-correlation",
        ),
        "dnr": (
            dnr.load_dnr,
            "Divide and Remaster v2: <root>/{tr,cv,tt}/<mix_id>/{mix,speech,music,sfx}.wav "
            "(--split tt by default)",
        ),
    }


def layout_names() -> dict[str, str]:
    return {k: v[1] for k, v in _layouts().items()}


def import_layout(layout: str, root: str | Path, **options) -> Suite:
    table = _layouts()
    if layout not in table:
        raise SuiteError(f"unknown layout {layout!r} (known: {', '.join(table)})")
    root = Path(root)
    if not root.is_dir():
        raise SuiteError(f"{root}: not a folder")
    return table[layout][0](root, **options)
