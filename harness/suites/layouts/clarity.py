"""The Clarity CEC2 and ICASSP 2023 layouts (hearing-aid-speech and hearing-aid-enhancement
suites), as the recipes read them (pyclarity 0.9.0, recipes/cec2/baseline/config.yaml,
recipes/icassp_2023/baseline/config.yaml):

<root>/clarity_data/metadata/scenes_listeners.<split>.json   scene id -> [listener id, ...]
<root>/clarity_data/metadata/listeners.json                 the panel
<root>/clarity_data/<split>/scenes/<scene>_mix_CH1.wav       (and _mix_CH2, _mix_CH3 when present)
<root>/clarity_data/<split>/scenes/<scene>_target_anechoic_CH1.wav, <scene>_target_CH1.wav

One item per scene, scored for the listeners the scene names; the scene id seeds HASPI/HASQI.
"""

from __future__ import annotations

from pathlib import Path

from harness.suites.layouts.common import Layout, TreeProblems, checked_ref, scene_listeners
from harness.suites.layouts.musdb import _panel_ids, _read_json
from harness.suites.types import Item, Suite

RATE, CHANNELS = 44100, 2
FILES = {"mix_CH1": "mix_CH1", "target_anechoic": "target_anechoic_CH1", "target": "target_CH1"}
OPTIONAL = {"mix_CH2": "mix_CH2", "mix_CH3": "mix_CH3"}


def _load(root: Path, split: str, hash_content: bool, task: str, layout: str,
          files: dict[str, str] = FILES, rate: int = RATE) -> Suite:
    data_root = root / "clarity_data"
    meta, scenes_dir = data_root / "metadata", data_root / split / "scenes"
    problems: list[str] = []
    sl_file = meta / f"scenes_listeners.{split}.json"
    scenes_listeners = _read_json(sl_file, problems, dict)
    listeners_file = meta / "listeners.json"
    panel_ids = _panel_ids(listeners_file, scenes_dir, problems)
    if problems:
        raise TreeProblems(root, layout, problems)
    items = []
    for scene, listeners in scenes_listeners.items():
        listeners = scene_listeners(listeners, scene, sl_file, panel_ids, listeners_file, problems)
        if listeners is None:
            continue
        before = len(problems)
        refs = {}
        for role, name in files.items():
            path = scenes_dir / f"{scene}_{name}.wav"
            mono_ok = role == "reference" and path.is_file() and sf_channels(path) == 1
            refs[role] = checked_ref(data_root, path, problems, hash_content=hash_content,
                                     channels=1 if mono_ok else CHANNELS, rate=rate)
        for role, name in OPTIONAL.items():
            if role not in files and (scenes_dir / f"{scene}_{name}.wav").is_file():
                refs[role] = checked_ref(data_root, scenes_dir / f"{scene}_{name}.wav", problems,
                                         hash_content=hash_content, channels=CHANNELS, rate=rate)
        if len(problems) > before:
            continue
        lengths = {r.frames for r in refs.values()}
        if len(lengths) > 1:
            problems.append(f"{scenes_dir}: scene {scene!r}'s files differ in length "
                            f"({', '.join(f'{k} {v.frames}' for k, v in refs.items())} frames)")
            continue
        items.append(Item(
            id=str(scene), task=task, root=data_root,
            inputs={k: v for k, v in refs.items() if k.startswith("mix_")},
            references={k: v for k, v in refs.items() if not k.startswith("mix_")},
            metadata={"listeners": list(listeners), "split": split, "dataset": layout},
        ))
    if problems:
        raise TreeProblems(root, layout, problems)
    return Suite(name=f"{layout.lower().replace(' ', '')}-{split}", version="1", task=task,
                 root=data_root, items=tuple(items),
                 description=f"{layout} scenes ({split}); panel: {listeners_file}")


def sf_channels(path: Path) -> int:
    import soundfile as sf

    try:
        return int(sf.info(str(path)).channels)
    except Exception:
        return 0


def load_cec3(root: Path, split: str = "dev", hash_content: bool = True) -> Suite:
    """CEC3 (recipes/cec3/baseline/config.yaml, one task folder `<root>` = <data>/<task>):
    <root>/clarity_data/<split>/scenes/<scene>_{mix_CH1,mix_CH2,mix_CH3,reference}.wav at 48 kHz
    (the reference mono or stereo), metadata as CEC2."""
    files = {"mix_CH1": "mix_CH1", "mix_CH2": "mix_CH2", "mix_CH3": "mix_CH3", "reference": "reference"}
    return _load(root, split, hash_content, "hearing-aid-cec3", "Clarity CEC3", files, 48000)


def load_cec2(root: Path, split: str = "dev", hash_content: bool = True) -> Suite:
    return _load(root, split, hash_content, "hearing-aid-speech", "Clarity CEC2")


def load_icassp2023(root: Path, split: str = "dev", hash_content: bool = True) -> Suite:
    return _load(root, split, hash_content, "hearing-aid-enhancement", "Clarity ICASSP2023")


CEC2 = Layout(
    "cec2", load_cec2,
    "Clarity CEC2: <root>/clarity_data/{metadata/scenes_listeners.<split>.json, metadata/"
    "listeners.json, <split>/scenes/<scene>_{mix_CH1,target_anechoic_CH1,target_CH1}.wav}; "
    "hearing-aid-speech, one item per scene (--split dev)",
)
ICASSP2023 = Layout(
    "icassp2023", load_icassp2023,
    "Clarity ICASSP 2023: the CEC2 tree; hearing-aid-enhancement, one item per scene (--split dev)",
)
CEC3 = Layout(
    "cec3", load_cec3,
    "Clarity CEC3 (one task folder): <root>/clarity_data/{metadata/scenes_listeners.<split>.json, "
    "metadata/listeners.json, <split>/scenes/<scene>_{mix_CH1,mix_CH2,mix_CH3,reference}.wav}, "
    "48 kHz; hearing-aid-cec3, one item per scene (--split dev)",
)
