"""What every dataset-layout loader shares: the Layout record, the tree-problems error and the
checked file entry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.errors import AudioError, SuiteError
from harness.suites.types import FileRef, Suite, file_ref


@dataclass(frozen=True)
class Layout:
    """A dataset layout `harness suites import NAME ROOT` reads: its loader and what it expects
    on disk. Registered in the `harness.layouts` group of `harness.registry`."""

    name: str
    load: Callable[..., Suite]  # load(root, split=..., hash_content=...) -> Suite
    description: str


class TreeProblems(SuiteError):
    """A dataset tree has problems; the message lists each one with its path."""

    def __init__(self, root: Path, layout: str, problems: list[str]):
        self.problems = problems
        head = f"{root}: {len(problems)} problem(s) in this {layout} tree"
        super().__init__(head + "\n" + "\n".join(f"  - {p}" for p in problems))


def checked_ref(root: Path, path: Path, problems: list[str], *, hash_content: bool = True,
                channels: int | None = None, rate: int | None = None) -> FileRef | None:
    """A manifest entry for an audio file, or None after recording why not (missing, unreadable,
    wrong rate or channel count) in `problems`, with its path."""
    if not path.is_file():
        problems.append(f"{path}: file not found")
        return None
    try:
        ref = file_ref(root, path, hash_content=hash_content)
    except AudioError as exc:
        problems.append(str(exc))
        return None
    layout = {1: "mono", 2: "stereo"}.get(channels or 0, f"{channels} channels")
    if rate is not None and (ref.rate, ref.channels) != (rate, channels):
        problems.append(f"{path}: {ref.rate} Hz, {ref.channels} channel(s); expected {rate} Hz {layout}")
        return None
    if channels is not None and ref.channels != channels:
        problems.append(f"{path}: {ref.channels} channels, expected {layout}")
        return None
    return ref


def scene_listeners(listeners, scene_id: str, source: Path, panel_ids: set[str], listeners_file: Path,
                    problems: list[str]) -> list[str] | None:
    """A scene's listener list as a challenge's scene-listeners file gives it, checked: a non-empty
    list whose every id the panel file has; else None after recording what is wrong."""
    if not isinstance(listeners, list) or not listeners:
        problems.append(f"{source}: no listener list for scene {scene_id!r}")
        return None
    unknown = [li for li in listeners if li not in panel_ids]
    if unknown:
        problems.append(f"{source}: scene {scene_id!r} names listener(s) "
                        f"{', '.join(map(str, unknown))} that {listeners_file.name} lacks")
        return None
    return list(listeners)


def check_split(root: Path, layout: str, split: str, allowed: tuple[str, ...] = ("train", "valid", "test")
                ) -> None:
    """A split the layout has, else TreeProblems naming the ones it has."""
    if split not in allowed:
        raise TreeProblems(root, layout, [f"unknown split {split!r} ({', '.join(allowed)})"])
