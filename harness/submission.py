"""Challenge submissions: the naming convention, safe unpacking, validation, and the system that
replays a submission's files so the ordinary runner scores them.

A submission is a folder, or a zip / tar archive, of processed audio named after the suite's
convention (`expected_files`), or what a Cadenza recipe writes (scale files, its lengths and
names). Archives are untrusted and unpacked by harness.archives, within bounds this module sets
from what a valid submission could need (`limits_for`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from harness.api import BaseSystem
from harness.archives import (  # noqa: F401  (re-exported for callers of submission)
    Limits,
    SubmissionError,
    _copy_bounded,
    extract,
)
from harness.audio import Audio
from harness.errors import HarnessError
from harness.listener import Panel
from harness.suites import Item, Suite
from harness.tasks import get_protocol
from harness.tasks.base import OutputSpec, Unusable

AUDIO_EXTS = (".flac", ".wav")
# PCM of 16 bits or more, or float: what a challenge accepts. 8-bit and compressed formats are not.
SUBTYPES = {"PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"}
FORMATS = {".flac": {"FLAC"}, ".wav": {"WAV", "WAVEX"}}


@dataclass(frozen=True)
class Expected:
    item: Item
    listener_id: str | None
    output: str
    spec: OutputSpec
    recipe: str | None = None  # the path (no extension) the official recipe writes, if another


def stem_path(task: str, item_id: str, listener_id: str | None, output: str, single: bool) -> str:
    """The path (without extension) of one output in a submission.

    Listener tasks follow Cadenza CAD1: `<listener>/<item>/<listener>_<item>_<output>`.
    Other tasks: `<item>` when the task has one output, else `<item>/<item>_<output>`.
    """
    if listener_id is not None:
        return f"{listener_id}/{item_id}/{listener_id}_{item_id}_{output}"
    if single:
        return item_id
    return f"{item_id}/{item_id}_{output}"


def expected_files(suite: Suite, panel: Panel | None) -> dict[str, Expected]:
    """Extension-less relative path -> what must be there, for every (item, listener, output)."""
    protocol = get_protocol(suite.task)
    panel_listeners = list(panel.listeners) if (protocol.uses_listener and panel) else []
    out: dict[str, Expected] = {}
    for item in suite.items:
        if protocol.item_problems(item):  # an invalid item: its jobs are stored invalid anyway
            continue
        spec = protocol.output_spec(item)
        listeners = ([li.id for li in protocol.listeners_for(item, panel_listeners)]
                     if protocol.uses_listener and panel else [None])
        for lid in listeners:
            for name, s in spec.items():
                out[stem_path(suite.task, item.id, lid, name, len(spec) == 1)] = Expected(
                    item, lid, name, s, protocol.recipe_path(item, lid, name)
                )
    return out


def scale_of(audio_file: Path) -> tuple[Path, float | None] | None:
    """The Cadenza recipes' scale file beside a FLAC (`<name>.txt`, the stem's peak before it
    was normalised): (its path, its value, or None when it does not parse), or None if absent."""
    if audio_file.suffix.lower() != ".flac":
        return None
    txt = audio_file.with_suffix(".txt")
    if not txt.is_file():
        return None
    try:
        value = float(txt.read_text(encoding="utf-8", errors="replace").strip()[:64])
    except ValueError:
        value = None
    return txt, (value if value is not None and np.isfinite(value) and value > 0 else None)


def read_submitted(path: Path) -> Audio:
    """A submitted file as the official evaluator reads it: a FLAC with a scale file beside it
    as pyclarity's `read_flac_signal` does (16-bit samples / 32768 as float32, times the scale in
    float32); any other file as it is (float32)."""
    x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    scale = scale_of(path)
    if scale is not None and scale[1] is not None:
        x = np.ascontiguousarray(x, dtype=np.float32)
        x *= scale[1]
    return Audio(x.T, rate)


# ------------------------------------------------------------------------- archives


def limits_for(expected: dict[str, Expected], max_ratio: float = 200.0) -> Limits:
    """Bounds a valid submission cannot exceed: twice the expected file count (plus slack) and
    the expected audio stored as 64-bit floats (plus 16 MB for headers and metadata)."""
    need = sum((e.spec.frames + e.spec.tail) * e.spec.channels * 8 for e in expected.values())
    return Limits(max_files=2 * len(expected) + 64, max_bytes=need + (16 << 20), max_ratio=max_ratio)


def submission_root(submission: Path, out_dir: Path, expected: dict[str, Expected],
                    max_ratio: float = 200.0, say=lambda message: None) -> Path:
    """The folder to validate: the submission itself when it is a folder (the results folder
    may not lie inside it: the harness writes nothing into a submission), or an archive
    unpacked once under <out_dir>/submissions/<sha256 prefix>/ (a marker file beside it says it
    was unpacked whole; a partial unpack is redone)."""
    from harness.errors import ConfigError

    if submission.is_dir():
        if out_dir.resolve().is_relative_to(submission.resolve()):
            raise ConfigError(f"{out_dir}: lies inside the submission {submission}; give an --out "
                              "outside it (the harness writes nothing into a submission)")
        return submission
    if not submission.is_file():
        raise SubmissionError(f"{submission}: no such file or folder")
    h = hashlib.sha256()
    with open(submission, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    work = out_dir / "submissions"
    root = work / h.hexdigest()[:16]
    # The marker lies beside the unpacked folder, where no archive entry can put anything.
    marker = work / f"{h.hexdigest()[:16]}.unpacked"
    if marker.exists() and not marker.is_file():
        raise SubmissionError(f"{marker}: expected the harness's unpack marker (a file); "
                              "remove it and score again")
    if not marker.is_file():
        if root.is_symlink() or root.is_file():
            root.unlink()
        shutil.rmtree(root, ignore_errors=True)
        extract(submission, root, limits_for(expected, max_ratio))
        say(f"unpacked {submission} into {root}")
        marker.write_text(submission.name + "\n")
    return root


# ------------------------------------------------------------------------- validation


@dataclass
class Validation:
    root: Path
    expected: int
    found: dict[str, Path] = field(default_factory=dict)  # stem path -> file
    problems: list[str] = field(default_factory=list)  # "path: what is wrong"
    bad: dict[str, str] = field(default_factory=dict)  # stem path present but invalid -> why
    notes: list[str] = field(default_factory=list)  # what the harness did to read the files

    @property
    def ok(self) -> bool:
        return not self.problems


def _walk(root: Path) -> tuple[list[str], list[str]]:
    """Relative file paths under root, and entries that are links or not regular files."""
    files, odd = [], []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for d in list(dirnames):
            if os.path.islink(os.path.join(dirpath, d)):
                odd.append(os.path.relpath(os.path.join(dirpath, d), root))
                dirnames.remove(d)
        for f in filenames:
            full = os.path.join(dirpath, f)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            if stat.S_ISREG(st.st_mode):
                files.append(rel.replace(os.sep, "/"))
            else:
                odd.append(rel)
    return sorted(files), sorted(odd)


def check_file(path: Path, spec: OutputSpec, seen: dict[str, int] | None = None) -> list[str]:
    """What is wrong with one submitted audio file against its output spec (`seen` counts the
    files of the recipe's length and those read with a scale file)."""
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises several types for unreadable files
        return [f"not a readable audio file ({str(exc).splitlines()[0][:120]})"]
    ext = path.suffix.lower()
    problems = []
    if info.format not in FORMATS.get(ext, set()):
        problems.append(f"a {info.format} file named {ext}")
    if info.subtype not in SUBTYPES:
        problems.append(f"sample format {info.subtype} (need 16/24/32-bit PCM or float)")
    if info.samplerate != spec.rate:
        problems.append(f"rate {info.samplerate} Hz, expected {spec.rate} Hz")
    if info.channels != spec.channels:
        problems.append(f"{info.channels} channel(s), expected {spec.channels}")
    wrong_length = spec.length_problem(info.frames)
    if wrong_length:
        problems.append(wrong_length)
    scale = scale_of(path)
    if scale is not None:
        if scale[1] is None:
            problems.append(f"its scale file {scale[0].name} does not hold a positive number")
        elif info.subtype != "PCM_16":
            problems.append(f"a scale file beside a {info.subtype} FLAC: the recipe's reader "
                            "(pyclarity's read_flac_signal) takes 16-bit FLAC only")
    if not problems:
        if seen is not None:
            seen["tail"] += info.frames != spec.frames
            seen["scaled"] += scale is not None
        try:
            x, _ = sf.read(str(path), dtype="float32", always_2d=True)
        except Exception as exc:
            return [f"cannot decode ({str(exc).splitlines()[0][:120]})"]
        if x.shape[0] != info.frames:
            problems.append(f"decodes to {x.shape[0]} frames, header says {info.frames}")
        bad = int(np.count_nonzero(~np.isfinite(x)))
        if bad:
            problems.append(f"{bad} non-finite sample(s) (NaN or Inf)")
    return problems


def validate(root: Path, expected: dict[str, Expected]) -> Validation:
    """Every expected file present once, nothing else, each with the right format and content."""
    v = Validation(root, len(expected))
    files, odd = _walk(root)
    for o in odd:
        v.problems.append(f"{o}: a link or special file (refused)")
    required = {k for k, e in expected.items() if e.spec.required}
    recipe = {e.recipe: k for k, e in expected.items() if e.recipe}
    present = set(files)
    renamed = 0
    for rel in files:
        stem, ext = os.path.splitext(rel)
        if ext.lower() == ".txt" and any(stem + e in present for e in (".flac", ".FLAC")):
            continue  # a recipe's scale file: checked with its FLAC
        key = stem if stem in expected else recipe.get(stem)
        if ext.lower() not in AUDIO_EXTS or key is None:
            v.problems.append(f"{rel}: unexpected file (not in the suite's naming convention)")
            continue
        renamed += key != stem
        if key in v.found:
            problem = f"{rel}: a second file for {key} (also {v.found[key].relative_to(root)})"
            v.problems.append(problem)
            v.bad[key] = problem
            continue
        v.found[key] = root / rel
    for stem in sorted(required - set(v.found)):
        v.problems.append(f"{stem}.flac: missing")
    seen = {"tail": 0, "scaled": 0}
    for stem, path in sorted(v.found.items()):
        if stem in v.bad:
            continue
        found = [f"{path.relative_to(root)}: {p}"
                 for p in check_file(path, expected[stem].spec, seen)]
        if found:
            v.problems += found
            v.bad[stem] = "; ".join(found)
    if renamed:
        v.notes.append(f"{renamed} file(s) named as the official recipe writes them (e.g. "
                       f"{next(k for k in recipe)}.flac), read as the suite's outputs")
    if seen["scaled"]:
        v.notes.append(f"{seen['scaled']} file(s) read with their scale file (.txt) as pyclarity's "
                       "read_flac_signal reads them: 16-bit samples / 32768 x the scale")
    if seen["tail"]:
        v.notes.append(f"{seen['tail']} file(s) have the recipe's length (its NAL-R's full-"
                       "convolution tail); scored as its evaluator scores them")
    return v


def digest(root: Path) -> str:
    """Content hash of a submission folder (paths and bytes), independent of where it lies."""
    h = hashlib.sha256()
    files, _ = _walk(root)
    for rel in files:
        h.update(rel.encode() + b"\0")
        with open(root / rel, "rb") as fh:
            while chunk := fh.read(1 << 20):
                h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------- the replay system


class SubmissionSystem(BaseSystem):
    """Replays a submission's files as a system's outputs (`harness score` builds it).

    Files that validation refused (with --partial) stand as `Unusable` with validation's reason,
    so their scores are stored `invalid` with it; files that are fine load as they are.
    """

    name = "submission"
    task = "*"
    version = "1"
    variant_param = "label"
    description = "A submitted folder of processed audio (built by `harness score`)"

    def __init__(self, root: str = "", digest: str = "", skip: dict[str, str] | None = None,
                 label: str = "", **params: Any) -> None:
        super().__init__(root=root, digest=digest, skip=dict(sorted((skip or {}).items())),
                         label=label, **params)
        self.root = Path(root)
        self.skip = dict(skip or {})

    def identity(self) -> str:
        blob = f"submission|{self.version}|{self.params['digest']}|{sorted(self.skip)}"
        return hashlib.sha256(blob.encode()).hexdigest()

    def process(self, items: list[Item], listener: Any | None) -> list[dict[str, Audio]]:
        outs = []
        lid = listener.id if listener is not None else None
        for item in items:
            spec = get_protocol(item.task).output_spec(item)
            found: dict[str, Audio] = {}
            protocol = get_protocol(item.task)
            for name in spec:
                stem = stem_path(item.task, item.id, lid, name, len(spec) == 1)
                if stem in self.skip:
                    found[name] = Unusable(f"refused by validation: {self.skip[stem]}")
                    continue
                names = [stem, protocol.recipe_path(item, lid, name)]
                paths = [self.root / f"{n}{ext}" for n in names if n for ext in AUDIO_EXTS]
                path = next((p for p in paths if p.is_file()), None)
                if path is not None:
                    found[name] = read_submitted(path)
            outs.append(found)
        return outs


def write_submission(entries: list[tuple[Item, str | None, dict[str, Audio]]], dest: Path,
                     fmt: str = "flac") -> int:
    """Write (item, listener id, outputs) entries as a submission folder; returns the file count.

    flac: 24-bit PCM (the form challenges ask for: samples are clipped to [-1, 1) and quantised
    to 24 bits); wav: 32-bit float (exactly the system's samples).
    """
    if fmt not in ("flac", "wav"):
        raise HarnessError(f"unknown submission format {fmt!r} (flac, wav)")
    n = 0
    for item, lid, outs in entries:
        spec = get_protocol(item.task).output_spec(item)
        for name, a in outs.items():
            stem = stem_path(item.task, item.id, lid, name, len(spec) == 1)
            path = dest / f"{stem}.{fmt}"
            path.parent.mkdir(parents=True, exist_ok=True)
            if fmt == "flac":
                sf.write(str(path), np.clip(a.samples.T, -1.0, 1.0 - 2.0**-23), a.rate,
                         format="FLAC", subtype="PCM_24")
            else:
                sf.write(str(path), a.samples.T, a.rate, format="WAV", subtype="FLOAT")
            n += 1
    return n
