"""The Cadenza CAD1 Task 2 layout (car-music suites), as the challenge's recipe reads it
(pyclarity 0.9.0, recipes/cad1/task2/baseline/config.yaml):

<root>/metadata/scenes.json              scene id -> {song, song_path, split, hr, snr, car_noise_parameters}
<root>/metadata/scenes_listeners.json    scene id -> [listener id, ...]
<root>/metadata/listeners.<split>.json   the panel
<root>/metadata/eBrird_BRIR.json         split -> head rotation -> {car, anechoic} ->
                                         {left_speaker, right_speaker} -> {left_side, right_side}
<root>/audio/music/<song_path>           the songs (44.1 kHz; the challenge's are MP3)
<root>/audio/eBrird/{Car,Anechoic}/audio/<name>.wav   the BRIRs the json names, and the anechoic
                                         noise BRIRs HR36/HR0/HR72_E02_CH1_{Left,Right}.wav

One item per scene of the split (its id the scene id, which seeds the car noise and HAAQI),
scored for the scene's listeners; the BRIRs are the item's references.
"""

from __future__ import annotations

from pathlib import Path

from harness.suites.layouts.common import Layout, TreeProblems, check_split, checked_ref, scene_listeners
from harness.suites.layouts.musdb import _panel_ids, _read_json
from harness.suites.types import Item, Suite
from harness.tasks.car_music import NOISE_BRIRS, SIDES, SONG_RATE, SPEAKERS

SCENE_KEYS = ("song", "song_path", "split", "hr", "snr", "car_noise_parameters")


def load_cad1_task2(root: Path, split: str = "valid", hash_content: bool = True) -> Suite:
    """CAD1 Task 2 scenes of `split` (train, valid or test)."""
    layout = "CAD1 Task 2"
    check_split(root, layout, split)
    meta, audio = root / "metadata", root / "audio"
    problems: list[str] = []
    files = {"scenes": meta / "scenes.json", "scenes_listeners": meta / "scenes_listeners.json",
             "brirs": meta / "eBrird_BRIR.json"}
    data = {k: _read_json(p, problems, dict) for k, p in files.items()}
    listeners_file = meta / f"listeners.{split}.json"
    panel_ids = _panel_ids(listeners_file, audio, problems)
    if problems:
        raise TreeProblems(root, layout, problems)
    brir_dir = audio / "eBrird"
    refs_cache: dict[Path, object] = {}

    def ref(path: Path, channels: int, rate: int | None = None):
        if path not in refs_cache:
            refs_cache[path] = checked_ref(audio, path, problems, hash_content=hash_content,
                                           channels=channels, rate=rate)
        return refs_cache[path]

    noise = {}
    for d, name in NOISE_BRIRS.items():
        for ear in SIDES:
            noise[f"noise_{d}_{ear}"] = ref(brir_dir / "Anechoic" / "audio" / f"{name}_{ear.title()}.wav", 1)
    rotations = data["brirs"].get(split)
    if not isinstance(rotations, dict):
        problems.append(f"{files['brirs']}: no BRIRs for split {split!r}")
        raise TreeProblems(root, layout, problems)
    items = []
    for scene_id, scene in data["scenes"].items():
        if not isinstance(scene, dict) or scene.get("split") != split:
            continue
        where = f"{files['scenes']}: scene {scene_id!r}"
        missing = [k for k in SCENE_KEYS if k not in scene]
        if missing:
            problems.append(f"{where} lacks {', '.join(missing)}")
            continue
        listeners = scene_listeners(data["scenes_listeners"].get(scene_id), scene_id,
                                    files["scenes_listeners"], panel_ids, listeners_file, problems)
        if listeners is None:
            continue
        hr = rotations.get(str(scene["hr"]))
        refs = {}
        for room, folder in (("car", "Car"), ("anechoic", "Anechoic")):
            for sp, speaker in SPEAKERS.items():
                for ear, side in SIDES.items():
                    try:
                        name = hr[room][speaker][side]
                    except (KeyError, TypeError):
                        problems.append(f"{files['brirs']}: {split}.{scene['hr']}.{room}.{speaker}."
                                        f"{side} is missing (scene {scene_id!r})")
                        break
                    refs[f"{room}_{sp}_{ear}"] = ref(brir_dir / folder / "audio" / f"{name}.wav", 1)
        song = ref(audio / "music" / str(scene["song_path"]), 2, SONG_RATE)
        refs["music"] = song
        refs.update(noise)
        if any(v is None for v in refs.values()) or len(refs) != 15:
            continue
        items.append(Item(
            id=str(scene_id), task="car-music", root=audio, inputs={"music": song},
            references=refs,
            metadata={"song": scene["song"], "song_path": scene["song_path"], "split": split,
                      "hr": scene["hr"], "snr": scene["snr"],
                      "car_noise_parameters": scene["car_noise_parameters"],
                      "listeners": list(listeners), "dataset": "Cadenza CAD1 Task 2"},
        ))
    if problems:
        raise TreeProblems(root, layout, problems)
    return Suite(
        name=f"cad1-task2-{split}", version="1", task="car-music", root=audio, items=tuple(items),
        description=f"Cadenza CAD1 Task 2 music in a car, {split} scenes; panel: {listeners_file}",
    )


CAD1_TASK2 = Layout(
    "cad1-task2", load_cad1_task2,
    "Cadenza CAD1 Task 2 (music in a car): <root>/audio/music/<song_path>, <root>/audio/eBrird/"
    "{Car,Anechoic}/audio/*.wav, <root>/metadata/{scenes,scenes_listeners,eBrird_BRIR}.json and "
    "listeners.<split>.json; one item per scene of the split, scored for its listeners (--split valid)",
)
