"""The Cadenza CAD2 Task 2 layout (classical-rebalance suites), as the challenge's recipe reads it
(pyclarity 0.9.0, recipes/cad2/task2/baseline/config.yaml):

<root>/metadata/scenes.<split>.json             scene id -> {music, gain}  (scene.<split>.json too)
<root>/metadata/scene_listeners.<split>.json    scene id -> [listener id, ...]
<root>/metadata/gains.json                      gain id -> {source_1: dB, source_2: dB, ...}
<root>/metadata/music.<split>.json              music -> {mixture: {track, start, duration, ...},
                                                          source_k: {instrument, track, ...}}
<root>/metadata/compressor_params.<split>.json  listener id -> {cr_l, cr_r, gain_l, gain_r}
<root>/metadata/listeners.<split>.json          the panel
<root>/audio/<track>                            the FLAC files the music entries name

One item per scene (its id the scene id, which seeds HAAQI and picks the recipe's output folder),
scored for the scene's listeners with their compressor fittings. The mixture is read as the
recipe's segment (`[int(start * rate) : int((start + duration) * rate)]`), the sources whole, as
its evaluate.py reads them.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import AudioError
from harness.suites.layouts.common import Layout, TreeProblems, check_split, checked_ref, scene_listeners
from harness.suites.layouts.musdb import _panel_ids, _read_json, recipe_segment
from harness.suites.types import FileRef, Item, Suite, file_ref
from harness.tasks.classical_rebalance import FITTING_KEYS, SOURCE

RATE, CHANNELS = 44100, 2


def _song_refs(audio: Path, song: str, entry, where: str, problems: list[str],
               hash_content: bool) -> tuple[dict[str, FileRef], dict[str, str]] | None:
    """(FileRefs of the song's mixture segment and whole sources, source -> instrument)."""
    if not isinstance(entry, dict) or not isinstance(entry.get("mixture"), dict):
        problems.append(f"{where}: song {song!r} needs a mixture entry")
        return None
    names = [k for k in entry if k != "mixture"]
    bad = [k for k in names if not SOURCE.match(k) or not isinstance(entry[k], dict)
           or not isinstance(entry[k].get("track"), str)]
    if bad or not names:
        problems.append(f"{where}: song {song!r}: every entry besides mixture must be source_<k> "
                        f"with a track ({', '.join(bad) or 'none given'})")
        return None
    mix = entry["mixture"]
    try:
        start, duration = float(mix["start"]), float(mix["duration"])
        track = str(mix["track"])
    except (KeyError, TypeError, ValueError):
        problems.append(f"{where}: song {song!r}: mixture needs track, start and duration")
        return None
    before = len(problems)
    whole = checked_ref(audio, audio / track, problems, hash_content=False, channels=CHANNELS,
                        rate=RATE)
    refs: dict[str, FileRef] = {}
    if whole is not None:
        first, frames = recipe_segment(start, start + duration, RATE)
        try:
            refs["mixture"] = file_ref(audio, audio / track, start=first, frames=frames,
                                       hash_content=hash_content)
        except AudioError as exc:
            problems.append(f"{exc} (song {song!r}, start {start:g} s, duration {duration:g} s)")
    for k in names:
        ref = checked_ref(audio, audio / entry[k]["track"], problems, hash_content=hash_content,
                          channels=CHANNELS, rate=RATE)
        if ref is not None:
            refs[k] = ref
    if len(problems) > before:
        return None
    return refs, {k: str(entry[k].get("instrument", "")) for k in names}


def _fitting_problem(fit) -> str | None:
    if not isinstance(fit, dict):
        return "is not an object"
    missing = [k for k in FITTING_KEYS if k not in fit]
    if missing:
        return f"lacks {', '.join(missing)}"
    return None


def _metadata(root: Path, layout: str, split: str, scene_names: tuple[str, str],
              extra: dict[str, Path]) -> tuple[dict[str, Path], dict[str, dict], Path, set[str]]:
    """The CAD2 metadata files of a split, read (every missing or malformed one a TreeProblems
    line): the scenes file (the recipe's spelling, else the other one), scene listeners, music,
    compressor fittings, `extra`, and the panel's ids."""
    meta, audio = root / "metadata", root / "audio"
    problems: list[str] = []
    scenes_file = meta / f"{scene_names[0]}.{split}.json"
    if not scenes_file.is_file() and (meta / f"{scene_names[1]}.{split}.json").is_file():
        scenes_file = meta / f"{scene_names[1]}.{split}.json"
    files = {"scenes": scenes_file, "scene_listeners": meta / f"scene_listeners.{split}.json",
             **extra, "music": meta / f"music.{split}.json",
             "compressor": meta / f"compressor_params.{split}.json"}
    data = {k: _read_json(p, problems, dict) for k, p in files.items()}
    listeners_file = meta / f"listeners.{split}.json"
    panel_ids = _panel_ids(listeners_file, audio, problems)
    if problems:
        raise TreeProblems(root, layout, problems)
    return files, data, listeners_file, panel_ids


def _scene_listeners(scene_id: str, data: dict, files: dict, panel_ids: set[str],
                     listeners_file: Path, problems: list[str]
                     ) -> tuple[list[str], dict[str, dict]] | None:
    """The scene's listeners (all in the panel) and their compressor fittings, or None after
    recording what is wrong (CAD2 Tasks 1 and 2 share this metadata)."""
    listeners = scene_listeners(data["scene_listeners"].get(scene_id), scene_id,
                                files["scene_listeners"], panel_ids, listeners_file, problems)
    if listeners is None:
        return None
    fits = {}
    for li in listeners:
        bad = _fitting_problem(data["compressor"].get(li))
        if bad:
            problems.append(f"{files['compressor']}: listener {li!r} (of scene {scene_id!r}) {bad}")
            continue
        fits[li] = {k: data["compressor"][li][k] for k in FITTING_KEYS}
    return (list(listeners), fits) if len(fits) == len(listeners) else None


def load_cad2_task2(root: Path, split: str = "valid", hash_content: bool = True) -> Suite:
    """CAD2 Task 2 scenes of `split` (train, valid or test)."""
    layout = "CAD2 Task 2"
    check_split(root, layout, split)
    meta, audio = root / "metadata", root / "audio"
    problems: list[str] = []
    files, data, listeners_file, panel_ids = _metadata(
        root, layout, split, ("scenes", "scene"), {"gains": meta / "gains.json"})
    items, songs = [], {}
    for scene_id, scene in data["scenes"].items():
        where = f"{files['scenes']}: scene {scene_id!r}"
        if not isinstance(scene, dict) or not all(k in scene for k in ("music", "gain")):
            problems.append(f"{where} needs music and gain")
            continue
        gains = data["gains"].get(scene["gain"])
        if not isinstance(gains, dict) or not gains:
            problems.append(f"{files['gains']}: no gain set {scene['gain']!r} (of scene {scene_id!r})")
            continue
        found = _scene_listeners(scene_id, data, files, panel_ids, listeners_file, problems)
        if found is None:
            continue
        listeners, fits = found
        song = scene["music"]
        if song not in songs:
            songs[song] = _song_refs(audio, song, data["music"].get(song), str(files["music"]),
                                     problems, hash_content)
        found = songs[song]
        if found is None:
            continue
        refs, instruments = found
        missing = [k for k in instruments if k not in gains]
        if missing:
            problems.append(f"{files['gains']}: gain set {scene['gain']!r} (of scene {scene_id!r}) "
                            f"has no gain for {', '.join(missing)}")
            continue
        items.append(Item(
            id=str(scene_id), task="classical-rebalance", root=audio,
            inputs={"mixture": refs["mixture"]},
            references={k: v for k, v in refs.items() if k != "mixture"},
            metadata={"gains_db": dict(gains), "listeners": list(listeners), "compressor": fits,
                      "instruments": instruments, "music": song, "gain": scene["gain"],
                      "split": split, "dataset": "Cadenza CAD2 Task 2"},
        ))
    if problems:
        raise TreeProblems(root, layout, problems)
    return Suite(
        name=f"cad2-task2-{split}", version="1", task="classical-rebalance", root=audio,
        items=tuple(items),
        description=f"Cadenza CAD2 Task 2 classical rebalancing, {split} scenes; panel: {listeners_file}",
    )


CAD2_TASK2 = Layout(
    "cad2-task2", load_cad2_task2,
    "Cadenza CAD2 Task 2 (classical rebalancing): <root>/audio/<tracks>, <root>/metadata/{scenes,"
    "scene_listeners,music,compressor_params,listeners}.<split>.json and gains.json; one item per "
    "scene, scored for the scene's listeners with their compressor fittings (--split valid)",
)


# --------------------------------------------------------------------------- CAD2 Task 1
T1_STEMS = ("mixture", "vocals", "drums", "bass", "other")


def load_cad2_task1(root: Path, split: str = "valid", hash_content: bool = True) -> Suite:
    """CAD2 Task 1 (lyric intelligibility) scenes of `split`, as recipes/cad2/task1/baseline reads
    them: <root>/metadata/{scene,scene_listeners,music,compressor_params,listeners}.<split>.json,
    alpha.json; <root>/audio/<music path>/{mixture,vocals,drums,bass,other}.flac. The mixture is
    the scene's segment (`[int(start_time * rate) : int(end_time * rate)]`); the stems stay whole
    (the reference is brought to -40 LUFS over the whole song, then cut)."""
    from harness.suites.layouts.musdb import recipe_segment as cut

    layout = "CAD2 Task 1"
    check_split(root, layout, split)
    meta, audio = root / "metadata", root / "audio"
    problems: list[str] = []
    files, data, listeners_file, panel_ids = _metadata(
        root, layout, split, ("scene", "scenes"), {"alphas": meta / "alpha.json"})
    items, songs = [], {}
    for scene_id, scene in data["scenes"].items():
        where = f"{files['scenes']}: scene {scene_id!r}"
        if not isinstance(scene, dict) or not all(k in scene for k in ("segment_id", "alpha")):
            problems.append(f"{where} needs segment_id and alpha")
            continue
        alpha = data["alphas"].get(scene["alpha"])
        if not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
            problems.append(f"{files['alphas']}: alpha {scene['alpha']!r} (of scene {scene_id!r}) "
                            "must be a number in 0..1")
            continue
        found = _scene_listeners(scene_id, data, files, panel_ids, listeners_file, problems)
        if found is None:
            continue
        listeners, fits = found
        seg_id = scene["segment_id"]
        entry = data["music"].get(seg_id)
        try:
            folder = audio / str(entry["path"])
            start, end = float(entry["start_time"]), float(entry["end_time"])
            text = str(entry.get("text", ""))
        except (KeyError, TypeError, ValueError):
            problems.append(f"{files['music']}: segment {seg_id!r} (of scene {scene_id!r}) needs "
                            "path, start_time and end_time")
            continue
        if seg_id not in songs:
            before = len(problems)
            refs = {n: checked_ref(audio, folder / f"{n}.flac", problems, hash_content=hash_content,
                                   channels=CHANNELS, rate=RATE) for n in T1_STEMS}
            first, frames = cut(start, end, RATE)
            if len(problems) == before:
                lengths = {r.frames for r in refs.values()}
                if len(lengths) > 1:
                    problems.append(f"{folder}: files differ in length "
                                    f"({', '.join(f'{k} {v.frames}' for k, v in refs.items())} frames)")
                elif first + frames > lengths.pop() or frames <= 0:
                    problems.append(f"{files['music']}: segment {seg_id!r} ({start:g}-{end:g} s) lies "
                                    f"outside {folder}'s files")
            if len(problems) > before:
                songs[seg_id] = None
            else:
                refs["mixture"] = file_ref(audio, folder / "mixture.flac", start=first, frames=frames,
                                           hash_content=hash_content)
                songs[seg_id] = (refs, [first, first + frames], text)
        found = songs[seg_id]
        if found is None:
            continue
        refs, seg, text = found
        items.append(Item(
            id=str(scene_id), task="lyric-intelligibility", root=audio,
            inputs={"mixture": refs["mixture"]},
            references={k: v for k, v in refs.items() if k != "mixture"},
            metadata={"segment": seg, "alpha": float(alpha), "alpha_text": str(alpha),
                      "text": text, "listeners": list(listeners), "compressor": fits,
                      "segment_id": seg_id, "alpha_id": scene["alpha"], "split": split,
                      "dataset": "Cadenza CAD2 Task 1"},
        ))
    if problems:
        raise TreeProblems(root, layout, problems)
    return Suite(
        name=f"cad2-task1-{split}", version="1", task="lyric-intelligibility", root=audio,
        items=tuple(items),
        description=f"Cadenza CAD2 Task 1 lyric intelligibility, {split} scenes; panel: {listeners_file}",
    )


CAD2_TASK1 = Layout(
    "cad2-task1", load_cad2_task1,
    "Cadenza CAD2 Task 1 (lyric intelligibility): <root>/audio/<path>/{mixture,vocals,drums,bass,"
    "other}.flac, <root>/metadata/{scene,scene_listeners,music,compressor_params,listeners}."
    "<split>.json and alpha.json; one item per scene (--split valid)",
)
