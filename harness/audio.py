"""The Audio value type, file I/O (soundfile), resampling (soxr), loudness (pyloudnorm), checks.

Samples are float32, shaped (channels, frames). Nothing here resamples, pads, truncates or
down-mixes unless asked to by name: callers state every conversion they make.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from harness.errors import AudioError

SUBTYPES = {"PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"}


@dataclass(frozen=True, eq=False)
class Audio:
    """Immutable multichannel audio: float32 samples shaped (channels, frames) at `rate` Hz."""

    samples: np.ndarray
    rate: int

    def __post_init__(self) -> None:
        x = np.asarray(self.samples, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2:
            raise ValueError(f"audio samples must be 1-D or (channels, frames), got {x.shape}")
        if int(self.rate) <= 0:
            raise ValueError(f"sample rate must be positive, got {self.rate}")
        x = np.ascontiguousarray(x)
        x.setflags(write=False)
        object.__setattr__(self, "samples", x)
        object.__setattr__(self, "rate", int(self.rate))

    @property
    def channels(self) -> int:
        return self.samples.shape[0]

    @property
    def frames(self) -> int:
        return self.samples.shape[1]

    @property
    def duration(self) -> float:
        return self.frames / self.rate

    def channel(self, index: int) -> Audio:
        """One channel as a mono Audio."""
        return Audio(self.samples[index : index + 1], self.rate)

    def mono(self) -> np.ndarray:
        """The samples of a mono signal as a 1-D array; refuses to down-mix silently."""
        if self.channels != 1:
            raise ValueError(f"expected mono audio, got {self.channels} channels")
        return self.samples[0]

    def sha256(self) -> str:
        """Content hash of rate, shape and samples (used for the output cache and job keys)."""
        h = hashlib.sha256()
        h.update(f"{self.rate}:{self.channels}:{self.frames}:".encode())
        h.update(self.samples.tobytes())
        return h.hexdigest()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Audio):
            return NotImplemented
        return self.rate == other.rate and np.array_equal(self.samples, other.samples)

    def __repr__(self) -> str:
        return f"Audio(channels={self.channels}, frames={self.frames}, rate={self.rate})"


def read(path: str | Path, start: int = 0, frames: int | None = None) -> Audio:
    """Read a WAV/FLAC file, or `frames` frames of it from `start`; a missing, unreadable,
    truncated or too short file raises AudioError naming it."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: file not found")
    try:
        info = sf.info(str(path))
        if start or frames is not None:
            if start + (frames or 0) > info.frames or start < 0:
                raise AudioError(
                    f"{path}: segment {start}+{frames} frames lies outside its {info.frames} frames"
                )
            data, rate = sf.read(str(path), start=start, frames=-1 if frames is None else frames,
                                 dtype="float32", always_2d=True)
        else:
            data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except AudioError:
        raise
    except Exception as exc:  # soundfile raises several types for malformed files
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AudioError(f"{path}: not a readable audio file ({reason})") from None
    if start == 0 and frames is None and info.frames > 0 and data.shape[0] < info.frames:
        raise AudioError(
            f"{path}: truncated file (header says {info.frames} frames, found {data.shape[0]})"
        )
    if data.shape[0] == 0:
        raise AudioError(f"{path}: file holds no samples")
    if info.format == "WAV":
        declared, present = _wav_data_bytes(path)
        if declared is not None and present < declared:
            raise AudioError(
                f"{path}: truncated file (data chunk declares {declared} bytes, {present} present)"
            )
    return Audio(data.T, rate)


def _wav_data_bytes(path: Path) -> tuple[int | None, int]:
    """(declared, present) size of a RIFF/WAVE file's data chunk; libsndfile silently clamps
    the frame count of a truncated file, so the header is read here. None: not determinable."""
    import struct

    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None, 0
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            cid, csize = struct.unpack("<4sI", fh.read(8))
            if cid == b"data":
                if csize in (0, 0xFFFFFFFF):  # streaming writers leave the size open
                    return None, 0
                return csize, size - pos - 8
            pos += 8 + csize + (csize & 1)
    return None, 0


def write(path: str | Path, audio: Audio, subtype: str = "FLOAT") -> Path:
    """Write WAV or FLAC (by suffix). FLOAT is exact for WAV; FLAC stores PCM_16/PCM_24."""
    path = Path(path)
    if subtype not in SUBTYPES:
        raise ValueError(f"unknown subtype {subtype}")
    if path.suffix.lower() == ".flac" and subtype in ("FLOAT", "DOUBLE", "PCM_32"):
        subtype = "PCM_24"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), audio.samples.T, audio.rate, subtype=subtype)
    if path.suffix.lower() == ".wav" and subtype in ("FLOAT", "DOUBLE"):
        _zero_peak_timestamp(path)
    return path


def _zero_peak_timestamp(path: Path) -> None:
    """libsndfile's float WAVs carry a PEAK chunk stamped with the write time; zero the stamp so
    the same samples always give the same bytes (suites are hashed by content)."""
    with open(path, "r+b") as fh:
        head = fh.read(4096)
        pos = head.find(b"PEAK", 12)
        if pos >= 0 and pos + 16 <= len(head):
            fh.seek(pos + 12)  # 'PEAK', chunk size, version, then the 4-byte timestamp
            fh.write(b"\0\0\0\0")


def resample_samples(x: np.ndarray, rate_in: int, rate_out: int, quality: str = "VHQ") -> np.ndarray:
    """soxr resampling (VHQ by default: linear phase, delay-compensated) of a 1-D or
    (channels, frames) array, in float64: the harness's one resampler."""
    import soxr

    x = np.asarray(x, dtype=np.float64)
    if rate_in == rate_out:
        return np.array(x)
    if x.ndim == 1:
        return soxr.resample(x, rate_in, rate_out, quality=quality)
    return soxr.resample(x.T, rate_in, rate_out, quality=quality).T


def resample(audio: Audio, rate: int, quality: str = "VHQ") -> Audio:
    """Resample with soxr (very high quality by default); a no-op when the rate already matches."""
    rate = int(rate)
    if rate == audio.rate:
        return audio
    y = resample_samples(audio.samples, audio.rate, rate, quality)
    return Audio(np.asarray(y, dtype=np.float32), rate)


def loudness(audio: Audio) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4 through pyloudnorm)."""
    import pyloudnorm

    meter = pyloudnorm.Meter(audio.rate)
    return float(meter.integrated_loudness(audio.samples.T.astype(np.float64)))


def rms(x: np.ndarray) -> float:
    """Root mean square of all samples."""
    x = np.asarray(x, dtype=np.float64)
    return float(np.sqrt(np.mean(x**2))) if x.size else 0.0


# ---------------------------------------------------------------- validation helpers
# Each returns None when the check passes, else a short reason; `check` raises AudioError.


def problem_rate(audio: Audio, rate: int) -> str | None:
    return None if audio.rate == rate else f"sample rate {audio.rate} Hz, expected {rate} Hz"


def problem_channels(audio: Audio, channels: int) -> str | None:
    if audio.channels == channels:
        return None
    return f"{audio.channels} channel(s), expected {channels}"


def problem_length(audio: Audio, frames: int) -> str | None:
    if audio.frames == frames:
        return None
    return f"{audio.frames} frames, expected {frames} ({audio.frames - frames:+d})"


def problem_finite(audio: Audio) -> str | None:
    bad = ~np.isfinite(audio.samples)
    if not bad.any():
        return None
    n_nan = int(np.isnan(audio.samples).sum())
    return f"{n_nan} NaN and {int(bad.sum()) - n_nan} Inf samples"


def problem_silent(audio: Audio, floor: float = 0.0) -> str | None:
    """All samples at or below `floor` in magnitude (digital silence by default)."""
    if np.max(np.abs(audio.samples), initial=0.0) <= floor:
        return "signal is silent (all samples zero)"
    return None


def check(
    audio: Audio,
    *,
    name: str,
    rate: int | None = None,
    channels: int | None = None,
    frames: int | None = None,
    finite: bool = True,
    non_silent: bool = False,
) -> Audio:
    """Raise AudioError('<name>: <reason>') on the first failed requirement; else return audio."""
    problems = []
    if rate is not None:
        problems.append(problem_rate(audio, rate))
    if channels is not None:
        problems.append(problem_channels(audio, channels))
    if frames is not None:
        problems.append(problem_length(audio, frames))
    if finite:
        problems.append(problem_finite(audio))
    if non_silent:
        problems.append(problem_silent(audio))
    problems = [p for p in problems if p]
    if problems:
        raise AudioError(f"{name}: " + "; ".join(problems))
    return audio
