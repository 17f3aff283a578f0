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
from harness.audio import Audio
from harness.errors import AudioError, SuiteError, read_structured

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "harness-suite/1"
TASKS = (
    "speech-enhancement",
    "bandwidth-extension",
    "music-remix",
    "music-rebalance",
    "crowd-enhancement",
    "cocktail-fork",
)


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
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def problems(self) -> list[str]:
        """Files that are missing on disk, each as '<path>: file not found'."""
        out = []
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


def _file_from_json(manifest: Path, where: str, raw: Any) -> FileRef:
    if not isinstance(raw, dict):
        raise SuiteError(f"{manifest}: {where} must be an object with path/rate/channels/frames")
    try:
        return FileRef(
            path=str(raw["path"]),
            rate=int(raw["rate"]),
            channels=int(raw["channels"]),
            frames=int(raw["frames"]),
            sha256=str(raw.get("sha256", "")),
            start=int(raw.get("start", 0)),
            segment="start" in raw,
        )
    except KeyError as exc:
        raise SuiteError(f"{manifest}: {where} lacks key {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise SuiteError(f"{manifest}: {where} has a malformed value ({exc})") from None


def load_suite(folder: str | Path) -> Suite:
    """Load a suite folder (a folder holding manifest.json, or the manifest path itself)."""
    folder = Path(folder)
    manifest = folder if folder.name == MANIFEST_NAME else folder / MANIFEST_NAME
    raw = read_structured(manifest, SuiteError, "suite manifest", "no suite manifest here")
    if not isinstance(raw, dict) or raw.get("format") != MANIFEST_FORMAT:
        raise SuiteError(f"{manifest}: not a suite manifest (expected format {MANIFEST_FORMAT!r})")
    for key in ("name", "task", "items"):
        if key not in raw:
            raise SuiteError(f"{manifest}: lacks key {key!r}")
    task = raw["task"]
    if task not in TASKS:
        raise SuiteError(f"{manifest}: unknown task {task!r} (known: {', '.join(TASKS)})")
    if not isinstance(raw["items"], list) or not raw["items"]:
        raise SuiteError(f"{manifest}: 'items' must be a non-empty list")
    root_ref = str(raw.get("root", ""))
    root = (manifest.parent / root_ref).resolve() if root_ref else manifest.parent
    if not root.is_dir():
        raise SuiteError(f"{manifest}: its root {root} is not a folder")
    items, seen = [], set()
    for i, it in enumerate(raw["items"]):
        where = f"item {i}"
        if not isinstance(it, dict) or "id" not in it:
            raise SuiteError(f"{manifest}: {where} must be an object with an 'id'")
        iid = str(it["id"])
        if iid in seen:
            raise SuiteError(f"{manifest}: duplicate item id {iid!r}")
        seen.add(iid)
        inputs = {
            k: _file_from_json(manifest, f"item {iid!r} input {k!r}", v)
            for k, v in (it.get("inputs") or {}).items()
        }
        refs = {
            k: _file_from_json(manifest, f"item {iid!r} reference {k!r}", v)
            for k, v in (it.get("references") or {}).items()
        }
        items.append(
            Item(
                id=iid,
                task=task,
                root=root,
                inputs=inputs,
                references=refs,
                metadata=dict(it.get("metadata") or {}),
                suite=str(raw["name"]),
            )
        )
    return Suite(
        name=str(raw["name"]),
        version=str(raw.get("version", "1")),
        task=task,
        root=root,
        items=tuple(items),
        description=str(raw.get("description", "")),
        root_ref=root_ref,
        generator=dict(raw.get("generator") or {}),
    )
