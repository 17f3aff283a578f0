"""The offline synthesisers the generators call, and what to install when one is missing."""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.errors import SuiteError

# program -> Debian packages that provide it (and the voices/soundfonts the generators use)
PACKAGES = {
    "flite": "flite",
    "text2wave": "festival festvox-us-slt-hts",
    "fluidsynth": "fluidsynth timgm6mb-soundfont",
}
HTS_VOICE_DIRS = (
    Path("/usr/share/festival/voices/us/cmu_us_slt_arctic_hts"),
)
SOUNDFONTS = (
    Path("/usr/share/sounds/sf2/TimGM6mb.sf2"),
    Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"),
)


def missing(programs: list[str]) -> list[str]:
    out = [p for p in programs if shutil.which(p) is None]
    if "text2wave" in programs and "text2wave" not in out and not any(d.is_dir() for d in HTS_VOICE_DIRS):
        out.append("text2wave")  # festival without the HTS voice
    if "fluidsynth" in programs and "fluidsynth" not in out and soundfont(None, quiet=True) is None:
        out.append("fluidsynth")
    return out


def require(programs: list[str], what: str) -> None:
    """Raise a one-line SuiteError naming the Debian packages to install for missing programs."""
    gone = missing(programs)
    if gone:
        pkgs = " ".join(dict.fromkeys(" ".join(PACKAGES[p] for p in gone).split()))
        raise SuiteError(
            f"{what} needs {', '.join(gone)} (not found, or without its voice/soundfont): "
            f"sudo apt-get install {pkgs}"
        )


def soundfont(path: str | Path | None, quiet: bool = False) -> Path | None:
    """The soundfont to render with: the given path, else the first General MIDI one installed."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise SuiteError(f"{p}: soundfont not found")
        return p
    for p in SOUNDFONTS:
        if p.is_file():
            return p
    if quiet:
        return None
    raise SuiteError("no General MIDI soundfont found: sudo apt-get install timgm6mb-soundfont")
