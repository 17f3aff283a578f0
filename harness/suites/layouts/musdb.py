"""MUSDB18-HQ and Cadenza CAD1 Task 1 layouts (music-remix suites), and the Cadenza ICASSP 2024
rebalancing layout (music-rebalance suites: `load_icassp2024`).

MUSDB18-HQ: <root>/{train,test}/<Artist - Title>/{mixture,vocals,drums,bass,other}.wav,
44.1 kHz stereo. CAD1 keeps the same tracks under <root>/audio/musdb18hq/ and adds
<root>/metadata/musdb18.{train,valid,test}.json (track lists; Split "test" lives under test/,
everything else under train/), musdb18.segments.test.json (the 30 s objective-evaluation segment
of each test song) and listeners.{train,valid,test}.json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.errors import ListenerError
from harness.listener import load_listener_file
from harness.suites.layouts.common import Layout, TreeProblems, check_split, checked_ref, scene_listeners
from harness.suites.types import FileRef, Item, Suite, file_ref
from harness.tasks.music_remix import STEMS

FILES = ("mixture", *STEMS)
RATE, CHANNELS = 44100, 2


def _track_refs(
    data_root: Path, track_dir: Path, problems: list[str], *, hash_content: bool,
    segment: tuple[int, int] | None = None,
) -> dict[str, FileRef] | None:
    """FileRefs of one track's five files, or None after recording every problem."""
    refs: dict[str, FileRef] = {}
    before = len(problems)
    for name in FILES:
        whole = checked_ref(data_root, track_dir / f"{name}.wav", problems, hash_content=False,
                            channels=CHANNELS, rate=RATE)
        if whole is not None:
            refs[name] = whole
    if len(problems) > before:
        return None
    lengths = {r.frames for r in refs.values()}
    if len(lengths) > 1:
        detail = ", ".join(f"{k} {v.frames}" for k, v in refs.items())
        problems.append(f"{track_dir}: files differ in length ({detail} frames)")
        return None
    n = lengths.pop()
    out = {}
    for name, ref in refs.items():
        path = data_root / ref.path
        if segment is not None:
            start, frames = segment
            if start + frames > n:
                problems.append(f"{path}: segment {start}+{frames} frames lies outside its {n} frames")
                return None
            out[name] = file_ref(data_root, path, start=start, frames=frames, hash_content=hash_content)
        else:
            out[name] = file_ref(data_root, path, hash_content=hash_content) if hash_content else ref
    return out


def _item(track: str, refs: dict[str, FileRef], root: Path, metadata: dict[str, Any]) -> Item:
    return Item(
        id=track, task="music-remix", root=root, inputs={"mixture": refs["mixture"]},
        references={s: refs[s] for s in STEMS}, metadata=metadata,
    )


def load_musdb18hq(root: Path, split: str = "test", hash_content: bool = True) -> Suite:
    """All tracks of one split ('train', 'test') or both ('all')."""
    splits = ("train", "test") if split == "all" else (split,)
    problems: list[str] = []
    for s in splits:
        if s not in ("train", "test"):
            raise TreeProblems(root, "MUSDB18-HQ", [f"unknown split {s!r} (train, test, all)"])
        if not (root / s).is_dir():
            problems.append(f"{root / s}: split folder not found")
    if problems:
        raise TreeProblems(root, "MUSDB18-HQ", problems)
    items = []
    for s in splits:
        tracks = sorted(p for p in (root / s).iterdir() if p.is_dir())
        if not tracks:
            problems.append(f"{root / s}: no track folders")
        for track_dir in tracks:
            refs = _track_refs(root, track_dir, problems, hash_content=hash_content)
            if refs:
                items.append(_item(track_dir.name, refs, root, {"split": s, "dataset": "MUSDB18-HQ"}))
    if problems:
        raise TreeProblems(root, "MUSDB18-HQ", problems)
    return Suite(
        name=f"musdb18hq-{split}", version="1", task="music-remix", root=root, items=tuple(items),
        description=f"MUSDB18-HQ {split} split, full tracks, 44.1 kHz stereo",
    )


def load_cad1(root: Path, split: str = "test", hash_content: bool = True) -> Suite:
    """CAD1 Task 1 songs of `split` ('valid' or 'test'); test songs are cut to their objective
    30 s segment as the CAD1 evaluation does. The matching panel is metadata/listeners.<split>.json."""
    check_split(root, "CAD1", split)
    meta = root / "metadata"
    audio_root = root / "audio" / "musdb18hq"
    problems: list[str] = []
    tracks_file = meta / f"musdb18.{split}.json"
    seg_file = meta / "musdb18.segments.test.json"
    listeners_file = meta / f"listeners.{split}.json"
    tracks = _read_json(tracks_file, problems, list)
    segments = _read_json(seg_file, problems, dict) if split == "test" else {}
    _panel_ids(listeners_file, audio_root, problems)
    if problems:
        raise TreeProblems(root, "CAD1", problems)
    items = []
    for i, entry in enumerate(tracks):
        if not isinstance(entry, dict) or "Track Name" not in entry:
            problems.append(f"{tracks_file}: entry {i} has no 'Track Name'")
            continue
        name = entry["Track Name"]
        folder = audio_root / ("test" if entry.get("Split") == "test" else "train") / name
        segment = None
        meta_item = {
            "split": split, "genre": entry.get("Genre", ""), "source": entry.get("Source", ""),
            "license": entry.get("License", ""), "dataset": "CAD1",
        }
        if split == "test":
            seg = (segments.get(name) or {}).get("objective_evaluation")
            if not isinstance(seg, dict) or "start" not in seg:
                problems.append(f"{seg_file}: no objective_evaluation segment for {name!r}")
                continue
            start_s = float(seg["start"])
            end_s = float(seg["end"]) if "end" in seg else start_s + float(seg.get("duration", 0))
            segment = recipe_segment(start_s, end_s, RATE)
            meta_item["segment_s"] = [start_s, end_s]
        if not folder.is_dir():
            problems.append(f"{folder}: track folder not found")
            continue
        refs = _track_refs(audio_root, folder, problems, hash_content=hash_content, segment=segment)
        if refs:
            items.append(_item(name, refs, audio_root, meta_item))
    if problems:
        raise TreeProblems(root, "CAD1", problems)
    return Suite(
        name=f"cad1-{split}", version="1", task="music-remix", root=audio_root, items=tuple(items),
        description=f"Cadenza CAD1 Task 1 {split} songs"
        + (" (30 s objective segments)" if split == "test" else "")
        + f"; panel: {listeners_file}",
    )


def _panel_ids(listeners_file: Path, audio_root: Path, problems: list[str]) -> set[str]:
    """The ids of a challenge's listeners file (recording what is wrong with it, or with the
    audio folder, in `problems`)."""
    ids: set[str] = set()
    if listeners_file.is_file():
        try:
            ids = {li.id for li in load_listener_file(listeners_file).listeners}
        except ListenerError as exc:
            problems.append(str(exc))
    else:
        problems.append(f"{listeners_file}: file not found")
    if not audio_root.is_dir():
        problems.append(f"{audio_root}: audio folder not found")
    return ids


def recipe_segment(start_s: float, end_s: float, rate: int) -> tuple[int, int]:
    """(first frame, frame count) of a segment as the CAD1 recipe cuts it:
    `signal[int(start * sample_rate) : int(end * sample_rate)]` (recipes/cad1/task1/baseline/
    test.py, pyclarity 0.9.0). Rounding instead puts about 13% of 30 s segments on a 0.1 s grid
    one sample off, and correct submissions would be refused."""
    first = int(start_s * rate)
    return first, int(end_s * rate) - first


def _read_json(path: Path, problems: list[str], kind: type):
    if not path.is_file():
        problems.append(f"{path}: file not found")
        return kind()
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        problems.append(f"{path}: not valid JSON ({exc})")
        return kind()
    if not isinstance(data, kind):
        problems.append(f"{path}: expected a JSON {'list' if kind is list else 'object'}")
        return kind()
    return data


def load_icassp2024(root: Path, split: str = "valid", hash_content: bool = True) -> Suite:
    """Cadenza ICASSP 2024 rebalancing scenes of `split` (train, valid or test), as the
    challenge's recipes read them (pyclarity 0.9.0, recipes/cad_icassp_2024/baseline):

    <root>/metadata/scenes.<split>.json            scene id -> {music, gain, head_loudspeaker_positions}
    <root>/metadata/scene_listeners.<split>.json   scene id -> [listener id, ...]
    <root>/metadata/gains.json                     gain id -> {vocals, drums, bass, other} in dB
    <root>/metadata/at_mic_music.<split>.json      "<music>-<head position>" -> {"Path": ...}
    <root>/metadata/listeners.<split>.json         the panel
    <root>/audio/at_mic_music/<Path>/{mixture,vocals,drums,bass,other}.wav

    One item per scene (its id the scene id, which seeds HAAQI as the recipe does), scored for
    the listeners the scene names."""
    check_split(root, "ICASSP 2024", split)
    meta = root / "metadata"
    audio_root = root / "audio" / "at_mic_music"
    problems: list[str] = []
    files = {
        "scenes": meta / f"scenes.{split}.json",
        "scene_listeners": meta / f"scene_listeners.{split}.json",
        "gains": meta / "gains.json",
        "music": meta / f"at_mic_music.{split}.json",
    }
    data = {k: _read_json(p, problems, dict) for k, p in files.items()}
    listeners_file = meta / f"listeners.{split}.json"
    panel_ids = _panel_ids(listeners_file, audio_root, problems)
    if problems:
        raise TreeProblems(root, "ICASSP 2024", problems)
    items = []
    tracks: dict[str, dict[str, FileRef] | None] = {}
    for scene_id, scene in data["scenes"].items():
        where = f"{files['scenes']}: scene {scene_id!r}"
        if not isinstance(scene, dict) or not all(k in scene for k in
                                                 ("music", "gain", "head_loudspeaker_positions")):
            problems.append(f"{where} needs music, gain and head_loudspeaker_positions")
            continue
        gains = data["gains"].get(scene["gain"])
        if not isinstance(gains, dict) or sorted(gains) != sorted(STEMS):
            problems.append(f"{files['gains']}: gain {scene['gain']!r} (of scene {scene_id!r}) needs "
                            f"a dB value for each of {', '.join(STEMS)}")
            continue
        listeners = scene_listeners(data["scene_listeners"].get(scene_id), scene_id,
                                    files["scene_listeners"], panel_ids, listeners_file, problems)
        if listeners is None:
            continue
        song = f"{scene['music']}-{scene['head_loudspeaker_positions']}"
        entry = data["music"].get(song)
        if not isinstance(entry, dict) or not isinstance(entry.get("Path"), str):
            problems.append(f"{files['music']}: no entry with a Path for {song!r} (scene {scene_id!r})")
            continue
        if song not in tracks:
            folder = audio_root / entry["Path"]
            if not folder.is_dir():
                problems.append(f"{folder}: scene folder not found (for {song!r})")
                tracks[song] = None
            else:
                tracks[song] = _track_refs(audio_root, folder, problems, hash_content=hash_content)
        refs = tracks[song]
        if not refs:
            continue
        items.append(Item(
            id=str(scene_id), task="music-rebalance", root=audio_root,
            inputs={"mixture": refs["mixture"]}, references={s: refs[s] for s in STEMS},
            metadata={"gains_db": {s: gains[s] for s in STEMS}, "listeners": list(listeners),
                      "music": scene["music"], "gain": scene["gain"],
                      "head_loudspeaker_positions": scene["head_loudspeaker_positions"],
                      "split": split, "dataset": "Cadenza ICASSP 2024"},
        ))
    if problems:
        raise TreeProblems(root, "ICASSP 2024", problems)
    return Suite(
        name=f"icassp2024-{split}", version="1", task="music-rebalance", root=audio_root,
        items=tuple(items),
        description=f"Cadenza ICASSP 2024 rebalancing, {split} scenes; panel: {listeners_file}",
    )


MUSDB18HQ = Layout(
    "musdb18hq", load_musdb18hq,
    "MUSDB18-HQ: <root>/{train,test}/<track>/{mixture,vocals,drums,bass,other}.wav",
)
CAD1 = Layout(
    "cad1", load_cad1,
    "Cadenza CAD1 Task 1: <root>/audio/musdb18hq/..., <root>/metadata/*.json; "
    "test songs cut to their 30 s objective segments",
)
ICASSP2024 = Layout(
    "icassp2024", load_icassp2024,
    "Cadenza ICASSP 2024 rebalancing: <root>/audio/at_mic_music/..., <root>/metadata/"
    "{scenes,scene_listeners,at_mic_music,listeners}.<split>.json and gains.json; one item "
    "per scene, scored for the scene's listeners (--split valid by default)",
)
