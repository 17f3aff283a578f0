"""The offline synthesisers the generators call, and what to install when one is missing."""

from __future__ import annotations

import shutil
import subprocess
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


TOOL_TIMEOUT_S = 300.0  # one synthesiser call (a sentence, a song's stem) takes seconds


def run_tool(cmd: list[str], what: str, stdin: bytes | None = None, timeout: float | None = None) -> None:
    """Run a synthesiser (flite, text2wave, fluidsynth) with a deadline: one that fails or hangs
    is a one-line SuiteError naming `what` and the program's last words, never a traceback or a
    generation (or a training run) that waits forever."""
    timeout = TOOL_TIMEOUT_S if timeout is None else timeout
    try:
        subprocess.run(cmd, input=stdin, check=True, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SuiteError(f"{what}: {cmd[0]} did not finish in {timeout:g} s (killed)") from None
    except subprocess.CalledProcessError as exc:
        said = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        raise SuiteError(f"{what}: {cmd[0]} failed with exit code {exc.returncode}"
                         + (f": {said[-1][:200]}" if said else "")) from None
    except OSError as exc:
        raise SuiteError(f"{what}: cannot run {cmd[0]}: {exc.strerror or exc}") from None
