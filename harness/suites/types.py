"""Item and Suite types and the JSON suite manifest.

A suite folder holds `manifest.json` and audio files referenced by relative paths. Every file
entry records its rate, channel count, frame count and sha256, so a suite is hashed by its
manifest alone and a changed file is caught when it is read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import audio as audio_mod
from harness import registry
from harness.audio import Audio
from harness.errors import AudioError, SuiteError, read_structured

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "harness-suite/1"


@dataclass(frozen=True)
class FileRef:
    """One audio file of an item, with what the manifest promises about it."""

    path: str  # relative to the suite root
    rate: int
    channels: int
    frames: int  # of the segment when `start` or a segment is given, else of the file
    sha256: str  # of the whole file ("" when the suite was imported without hashing)
    start: int = 0  # first frame of the segment within the file
    segment: bool = False  # True: read `frames` frames from `start`; False: the whole file

    def to_json(self) -> dict[str, Any]:
        out = {
            "path": self.path,
            "rate": self.rate,
            "channels": self.channels,
            "frames": self.frames,
            "sha256": self.sha256,
        }
        if self.segment:
            out["start"] = self.start
        return out


@dataclass(frozen=True)
class Item:
    """One unit of work: named input and reference files plus free-form metadata."""

    id: str
    task: str
    root: Path
    inputs: dict[str, FileRef]
    references: dict[str, FileRef]
    metadata: dict[str, Any] = field(default_factory=dict)
    suite: str = ""
    defects: tuple[str, ...] = ()  # what is wrong with the item's manifest entry (it is invalid)
    manifest: str = ""  # the manifest it was read from (for messages; not part of the hash)

    @property
    def hash(self) -> str:
        """Hash of the item's id, task, files (by content hash) and metadata."""
        blob = json.dumps(
            {
                "id": self.id,
                "task": self.task,
                "inputs": {k: v.to_json() for k, v in sorted(self.inputs.items())},
                "references": {k: v.to_json() for k, v in sorted(self.references.items())},
                "metadata": self.metadata,
                **({"defects": list(self.defects)} if self.defects else {}),
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def problems(self) -> list[str]:
        """What makes the item unusable: its manifest defects, then files missing on disk
        ('<path>: file not found')."""
        out = list(self.defects)
        for ref in [*self.inputs.values(), *self.references.values()]:
            p = self.root / ref.path
            if not p.is_file():
                out.append(f"{p}: file not found")
        return out

    def _load(self, ref: FileRef) -> Audio:
        path = self.root / ref.path
        if ref.sha256 and path.is_file() and file_sha256(path) != ref.sha256:
            raise AudioError(f"{path}: content differs from the suite manifest (sha256 mismatch)")
        if ref.segment:
            x = audio_mod.read(path, ref.start, ref.frames)
        else:
            x = audio_mod.read(path)
        return audio_mod.check(
            x, name=str(path), rate=ref.rate, channels=ref.channels, frames=ref.frames
        )

    def input(self, role: str) -> Audio:
        """Read and validate input `role`; AudioError names the file on any problem."""
        return self._load(self.inputs[role])

    def reference(self, role: str) -> Audio:
        """Read and validate reference `role`; AudioError names the file on any problem."""
        return self._load(self.references[role])

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "inputs": {k: v.to_json() for k, v in self.inputs.items()},
            "references": {k: v.to_json() for k, v in self.references.items()},
            "metadata": self.metadata,
        }


@dataclass(frozen=True)
class Suite:
    """A named, versioned, hashed list of items of one task."""

    name: str
    version: str
    task: str
    root: Path
    items: tuple[Item, ...]
    description: str = ""
    root_ref: str = ""  # as written in the manifest ("" = the manifest's folder)
    generator: dict[str, Any] = field(default_factory=dict)  # how a generated suite was made

    @property
    def hash(self) -> str:
        """Hash of the manifest content, without `root`: the same data at another path is the
        same suite."""
        data = {k: v for k, v in self.to_json().items() if k != "root"}
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()

    @property
    def duration(self) -> float:
        """Total seconds of reference audio (first reference of each item)."""
        total = 0.0
        for it in self.items:
            ref = next(iter(it.references.values()), None)
            if ref:
                total += ref.frames / ref.rate
        return total

    def to_json(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "name": self.name,
            "version": self.version,
            "task": self.task,
            "description": self.description,
            **({"root": self.root_ref} if self.root_ref else {}),
            **({"generator": self.generator} if self.generator else {}),
            "items": [it.to_json() for it in self.items],
        }


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) within a process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


def file_ref(
    root: Path, path: Path, *, start: int | None = None, frames: int | None = None,
    hash_content: bool = True,
) -> FileRef:
    """Describe an existing audio file (or a segment of it) for a manifest, from its header."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception as exc:
        raise AudioError(f"{path}: not a readable audio file ({str(exc).splitlines()[0]})") from None
    rel = path.resolve().relative_to(root.resolve()).as_posix()
    sha = file_sha256(path) if hash_content else ""
    if start is None and frames is None:
        return FileRef(rel, info.samplerate, info.channels, info.frames, sha)
    start = start or 0
    frames = info.frames - start if frames is None else frames
    if start < 0 or frames <= 0 or start + frames > info.frames:
        raise AudioError(f"{path}: segment {start}+{frames} frames lies outside its {info.frames} frames")
    return FileRef(rel, info.samplerate, info.channels, frames, sha, start, True)


def write_manifest(suite: Suite, folder: Path | None = None) -> Path:
    """Write `manifest.json` for a suite into its root (or into `folder`, in which case the
    suite's root is recorded in the manifest so relative paths still resolve)."""
    folder = Path(folder or suite.root)
    folder.mkdir(parents=True, exist_ok=True)
    data = suite.to_json()
    if folder.resolve() != Path(suite.root).resolve():
        data = {**data, "root": str(Path(suite.root).resolve())}
        order = ("format", "name", "version", "task", "description", "root", "generator", "items")
        data = {k: data[k] for k in order if k in data}
    path = folder / MANIFEST_NAME
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


def _positive_int(raw: dict, key: str, default: int | None = None) -> int:
    value = raw.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} must be an integer, got {value!r}")
    if value <= 0 and not (key == "start" and value == 0):
        raise ValueError(f"{key} must be {'at least 0' if key == 'start' else 'positive'}, got {value}")
    return value


def _file_from_json(root: Path, where: str, raw: Any) -> FileRef:
    """One file entry; ValueError('<where>: <what is wrong>') for a malformed one, or one whose
    path leaves the suite root (absolute, '..', or a symbolic link out)."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be an object with path/rate/channels/frames, "
                         f"got {type(raw).__name__}")
    for key in ("path", "rate", "channels", "frames"):
        if key not in raw:
            raise ValueError(f"{where} lacks key {key!r}")
    path = raw["path"]
    if not isinstance(path, str) or not path.strip() or "\x00" in path:
        raise ValueError(f"{where}: path must be a non-empty string, got {path!r}")
    sha = raw.get("sha256", "")
    if not isinstance(sha, str):
        raise ValueError(f"{where}: sha256 must be a string, got {sha!r}")
    try:
        ref = FileRef(
            path=path,
            rate=_positive_int(raw, "rate"),
            channels=_positive_int(raw, "channels"),
            frames=_positive_int(raw, "frames"),
            sha256=sha,
            start=_positive_int(raw, "start", 0),
            segment="start" in raw,
        )
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    inside = inside_root(root, path)
    if inside is not None:
        raise ValueError(f"{where}: path {path!r} {inside} (refused: files must lie inside the "
                         f"suite's root {root}; set the manifest's 'root' to the folder that holds them)")
    return ref


def inside_root(root: Path, rel: str) -> str | None:
    """Why `rel` does not name a place inside `root` (None when it does): absolute, climbs out
    with '..', or resolves out through a symbolic link."""
    p = Path(rel)
    if p.is_absolute():
        return "is absolute"
    if ".." in p.parts:
        return "climbs out of the suite root with '..'"
    if not (root / p).resolve().is_relative_to(root.resolve()):
        return "resolves outside the suite root (a symbolic link out)"
    return None


def _item_from_json(manifest: Path, root: Path, task: str, suite: str, raw: dict) -> Item:
    """One item; what is wrong with its entry becomes the item's defects (it is scored invalid
    with them), never an error for the whole suite."""
    iid = str(raw["id"])
    defects: list[str] = []
    files: dict[str, dict[str, FileRef]] = {"inputs": {}, "references": {}}
    for kind, word in (("inputs", "input"), ("references", "reference")):
        entries = raw.get(kind)
        if entries is None:
            continue
        if not isinstance(entries, dict):
            defects.append(f"{manifest}: item {iid!r}: {kind} must be an object of "
                           f"{word} name -> file, got {type(entries).__name__}")
            continue
        for role, entry in entries.items():
            try:
                files[kind][str(role)] = _file_from_json(root, f"item {iid!r} {word} {role!r}", entry)
            except ValueError as exc:
                defects.append(f"{manifest}: {exc}")
    metadata = raw.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        defects.append(f"{manifest}: item {iid!r}: metadata must be an object, "
                       f"got {type(metadata).__name__}")
        metadata = None
    listeners = (metadata or {}).get("listeners")
    if listeners is not None and not (isinstance(listeners, list) and all(
            isinstance(x, str) and plain_component(x) for x in listeners)):
        defects.append(f"{manifest}: item {iid!r}: metadata.listeners must be a list of listener "
                       f"ids (the listeners the item is scored for), got {listeners!r:.80}")
    return Item(id=iid, task=task, root=root, inputs=files["inputs"], references=files["references"],
                metadata=dict(metadata or {}), suite=suite, defects=tuple(defects),
                manifest=str(manifest))


def control_free(text: str, allow: str = "") -> bool:
    """No control characters (C0, DEL, C1: what a terminal would act on, such as ESC starting a
    sequence that clears the screen) other than those in `allow`."""
    return not any((ord(c) < 32 or 127 <= ord(c) < 160) and c not in allow for c in text)


def plain_component(name: str) -> bool:
    """One plain path component: no separator, not '.' or '..', no control characters."""
    return (bool(name.strip()) and name not in (".", "..") and "/" not in name and "\\" not in name
            and control_free(name))


def _is_item_id(value: Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip() != ""


def load_suite(folder: str | Path) -> Suite:
    """Load a suite folder (a folder holding manifest.json, or the manifest path itself).

    What makes the whole suite unusable (not a manifest, unknown task, no items, an item without
    an id, a duplicate id) is a SuiteError naming the manifest; what is wrong with one item is
    recorded on that item (`Item.defects`) and scored `invalid`, while every other item runs."""
    folder = Path(folder)
    manifest = folder if folder.name == MANIFEST_NAME else folder / MANIFEST_NAME
    raw = read_structured(manifest, SuiteError, "suite manifest", "no suite manifest here")
    if not isinstance(raw, dict) or raw.get("format") != MANIFEST_FORMAT:
        raise SuiteError(f"{manifest}: not a suite manifest (expected format {MANIFEST_FORMAT!r})")
    for key in ("name", "task", "items"):
        if key not in raw:
            raise SuiteError(f"{manifest}: lacks key {key!r}")
    task = raw["task"]
    tasks = registry.names("harness.tasks")
    if task not in tasks:
        raise SuiteError(f"{manifest}: unknown task {task!r} (known: {', '.join(tasks)})")
    name = raw["name"]
    if not isinstance(name, str) or not name.strip():
        raise SuiteError(f"{manifest}: 'name' must be a non-empty string, got {name!r}")
    if not control_free(name) or not control_free(str(raw.get("description", "")), "\n\t"):
        raise SuiteError(f"{manifest}: 'name' and 'description' must hold no control characters "
                         "(a terminal would act on them)")
    if not isinstance(raw["items"], list) or not raw["items"]:
        raise SuiteError(f"{manifest}: 'items' must be a non-empty list")
    root_ref = raw.get("root", "")
    if not isinstance(root_ref, str):
        raise SuiteError(f"{manifest}: 'root' must be a string (a folder), got {root_ref!r}")
    for key in ("version", "description"):
        if key in raw and not isinstance(raw[key], (str, int, float)):
            raise SuiteError(f"{manifest}: {key!r} must be a string, got {type(raw[key]).__name__}")
    if "generator" in raw and not isinstance(raw["generator"], dict):
        raise SuiteError(f"{manifest}: 'generator' must be an object")
    root = (manifest.parent / root_ref).resolve() if root_ref else manifest.parent
    if not root.is_dir():
        raise SuiteError(f"{manifest}: its root {root} is not a folder")
    items, seen = [], set()
    for i, it in enumerate(raw["items"]):
        if not isinstance(it, dict) or not _is_item_id(it.get("id")):
            raise SuiteError(f"{manifest}: item {i} must be an object with an 'id' (a non-empty "
                             "string)")
        iid = str(it["id"])
        if not plain_component(iid):
            raise SuiteError(f"{manifest}: item id {iid!r} is not a plain name (submissions and packs "
                             "use it as a file name: no '/', '\\', '..', '.' or control characters)")
        if iid in seen:
            raise SuiteError(f"{manifest}: duplicate item id {iid!r}")
        seen.add(iid)
        items.append(_item_from_json(manifest, root, task, name, it))
    return Suite(
        name=name,
        version=str(raw.get("version", "1")),
        task=task,
        root=root,
        items=tuple(items),
        description=str(raw.get("description", "")),
        root_ref=root_ref,
        generator=dict(raw.get("generator") or {}),
    )
