"""Divide and Remaster v2 (cocktail-fork suites).

<root>/{tr,cv,tt}/<mix_id>/{mix,speech,music,sfx}.wav (mono, 44.1 kHz, 60 s) and an optional
annots.csv per mixture (time-stamped class annotations). In DnR the mixture is approximately,
not exactly, the sum of the stems: the loader records, and does not require, that.
"""

from __future__ import annotations

import csv
from pathlib import Path

from harness.suites.layouts.common import Layout, TreeProblems, checked_ref
from harness.suites.types import Item, Suite

SPLITS = {"tr": "train", "cv": "validation", "tt": "test"}
FILES = {"mixture": "mix", "speech": "speech", "music": "music", "sfx": "sfx"}


def _annotations(path: Path, problems: list[str]) -> dict:
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError) as exc:
        problems.append(f"{path}: unreadable CSV ({exc})")
        return {}
    columns = list(rows[0]) if rows else []
    return {"annotations": "annots.csv", "annotation_rows": len(rows), "annotation_columns": columns}


def load_dnr(root: Path, split: str = "tt", hash_content: bool = True) -> Suite:
    if split not in SPLITS:
        raise TreeProblems(root, "Divide and Remaster", [f"unknown split {split!r} ({', '.join(SPLITS)})"])
    folder = root / split
    if not folder.is_dir():
        raise TreeProblems(root, "Divide and Remaster", [f"{folder}: folder not found"])
    problems: list[str] = []
    items = []
    mixes = sorted(p for p in folder.iterdir() if p.is_dir())
    if not mixes:
        problems.append(f"{folder}: no mixture folders")
    for mix_dir in mixes:
        refs = {}
        for role, stem in FILES.items():
            ref = checked_ref(root, mix_dir / f"{stem}.wav", problems, hash_content=hash_content, channels=1)
            if ref is not None:
                refs[role] = ref
        if len(refs) != len(FILES):
            continue
        mix = refs["mixture"]
        bad = [r for r in refs.values() if (r.rate, r.frames) != (mix.rate, mix.frames)]
        for r in bad:
            problems.append(f"{root / r.path}: {r.frames} frames at {r.rate} Hz, the mixture has "
                            f"{mix.frames} at {mix.rate} Hz")
        if bad:
            continue
        meta = {"split": SPLITS[split], "dataset": "Divide and Remaster v2"}
        annots = mix_dir / "annots.csv"
        if annots.is_file():
            meta.update(_annotations(annots, problems))
        items.append(Item(
            id=mix_dir.name, task="cocktail-fork", root=root, inputs={"mixture": mix},
            references={k: refs[k] for k in ("speech", "music", "sfx")}, metadata=meta,
        ))
    if problems:
        raise TreeProblems(root, "Divide and Remaster", problems)
    return Suite(
        name=f"dnr-{split}", version="1", task="cocktail-fork", root=root, items=tuple(items),
        description=f"Divide and Remaster v2, {SPLITS[split]} split: speech/music/sfx stems",
    )


DNR = Layout(
    "dnr", load_dnr,
    "Divide and Remaster v2: <root>/{tr,cv,tt}/<mix_id>/{mix,speech,music,sfx}.wav "
    "(--split tt by default)",
)
