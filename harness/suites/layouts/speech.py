"""VoiceBank-DEMAND and DAPS layouts (speech-enhancement suites).

VoiceBank-DEMAND: <root>/clean_testset_wav/, <root>/noisy_testset_wav/ (same file names,
48 kHz mono) and <root>/logfiles/log_testset.txt ('<utt_id> <noise_type> <snr>' per line).

DAPS: <root>/clean/<spk>_<script>_clean.wav and device folders such as ipad_office1/ holding
<spk>_<script>_<device>.wav. A device file is a real re-recording of its clean twin, so the two
are not sample-aligned: the loader estimates the offset by cross-correlation and records both
files as equal-length segments over their common span (offsets in each item's metadata).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from harness import audio as audio_mod
from harness.errors import AudioError
from harness.suites.layouts.common import Layout, TreeProblems, checked_ref
from harness.suites.types import FileRef, Item, Suite

DAPS_DEVICES = (
    "ipad_balcony1", "ipad_bedroom1", "ipad_confroom1", "ipad_confroom2", "ipad_livingroom1",
    "ipad_office1", "ipad_office2", "ipadflat_confroom1", "ipadflat_office1", "iphone_balcony1",
    "iphone_bedroom1", "iphone_livingroom1",
)
DAPS_NAME = re.compile(r"^(?P<spk>[fm]\d+)_(?P<script>script\d+)_(?P<version>[a-z0-9_]+)\.wav$")


def _ref(root: Path, path: Path, problems: list[str], hash_content: bool) -> FileRef | None:
    return checked_ref(root, path, problems, hash_content=hash_content, channels=1)


# ------------------------------------------------------------------ VoiceBank-DEMAND
def load_voicebank_demand(root: Path, split: str = "test", hash_content: bool = True) -> Suite:
    if split != "test":
        raise TreeProblems(root, "VoiceBank-DEMAND", [f"unknown split {split!r} (test)"])
    clean_dir, noisy_dir = root / "clean_testset_wav", root / "noisy_testset_wav"
    log = root / "logfiles" / "log_testset.txt"
    problems: list[str] = []
    for folder in (clean_dir, noisy_dir):
        if not folder.is_dir():
            problems.append(f"{folder}: folder not found")
    if not log.is_file():
        problems.append(f"{log}: file not found")
    if problems:
        raise TreeProblems(root, "VoiceBank-DEMAND", problems)
    conditions: dict[str, tuple[str, float]] = {}
    for n, line in enumerate(log.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            conditions[parts[0]] = (parts[1], float(parts[2]))
        except (IndexError, ValueError):
            problems.append(f"{log}:{n}: expected '<utt_id> <noise_type> <snr>', got {line.strip()!r}")
    clean = {p.stem: p for p in clean_dir.glob("*.wav")}
    noisy = {p.stem: p for p in noisy_dir.glob("*.wav")}
    if not clean:
        problems.append(f"{clean_dir}: no .wav files")
    for utt in sorted(set(clean) - set(noisy)):
        problems.append(f"{noisy_dir / (utt + '.wav')}: file not found (its clean twin exists)")
    for utt in sorted(set(noisy) - set(clean)):
        problems.append(f"{clean_dir / (utt + '.wav')}: file not found (its noisy twin exists)")
    items = []
    for utt in sorted(set(clean) & set(noisy)):
        c = _ref(root, clean[utt], problems, hash_content)
        x = _ref(root, noisy[utt], problems, hash_content)
        if c is None or x is None:
            continue
        if (c.rate, c.frames) != (x.rate, x.frames):
            problems.append(f"{noisy[utt]}: {x.frames} frames at {x.rate} Hz, its clean twin has "
                            f"{c.frames} at {c.rate} Hz")
            continue
        if utt not in conditions:
            problems.append(f"{log}: no line for {utt}")
            continue
        noise, snr = conditions[utt]
        items.append(Item(
            id=utt, task="speech-enhancement", root=root, inputs={"input": x},
            references={"clean": c},
            metadata={"speaker": utt.split("_")[0], "noise": noise, "snr_db": snr,
                      "dataset": "VoiceBank-DEMAND"},
        ))
    if problems:
        raise TreeProblems(root, "VoiceBank-DEMAND", problems)
    return Suite(
        name="voicebank-demand-test", version="1", task="speech-enhancement", root=root,
        items=tuple(items),
        description="VoiceBank-DEMAND test set (48 kHz; scored at 16 kHz), noise type and SNR per item",
    )


# ------------------------------------------------------------------ DAPS
def estimate_offset(reference: np.ndarray, recording: np.ndarray, rate: int,
                    max_lag_s: float = 2.0, window_s: float = 60.0) -> int:
    """Lag (frames) at which `recording` best matches `reference`: recording[lag + t] ~ ref[t].

    FFT cross-correlation over the first `window_s` seconds, lags within +/- max_lag_s.
    """
    from scipy.signal import correlate

    n = int(window_s * rate)
    ref = np.asarray(reference[:n], dtype=np.float64)
    rec = np.asarray(recording[: n + int(max_lag_s * rate)], dtype=np.float64)
    xc = correlate(rec, ref, mode="full", method="fft")
    lags = np.arange(-len(ref) + 1, len(rec))
    keep = np.abs(lags) <= int(max_lag_s * rate)
    return int(lags[keep][np.argmax(np.abs(xc[keep]))])


def load_daps(root: Path, split: str = "all", hash_content: bool = True) -> Suite:
    """Every device recording (split 'all') or one device folder (split = its name) against its
    clean twin."""
    clean_dir = root / "clean"
    devices = DAPS_DEVICES if split == "all" else (split,)
    problems: list[str] = []
    if split != "all" and split not in DAPS_DEVICES:
        known = ", ".join(DAPS_DEVICES)
        raise TreeProblems(root, "DAPS", [f"unknown device folder {split!r} ({known}, all)"])
    if not clean_dir.is_dir():
        problems.append(f"{clean_dir}: folder not found")
    present = [d for d in devices if (root / d).is_dir()]
    if split != "all" and not present:
        problems.append(f"{root / split}: folder not found")
    if not present and split == "all":
        problems.append(f"{root}: none of the device folders ({', '.join(DAPS_DEVICES)}) found")
    if problems:
        raise TreeProblems(root, "DAPS", problems)
    items = []
    for device in present:
        for path in sorted((root / device).glob("*.wav")):
            m = DAPS_NAME.match(path.name)
            if not m or m["version"] != device:
                problems.append(f"{path}: name is not <speaker>_<script>_{device}.wav")
                continue
            twin = clean_dir / f"{m['spk']}_{m['script']}_clean.wav"
            if not twin.is_file():
                problems.append(f"{twin}: file not found (clean twin of {path.name})")
                continue
            item = _daps_item(root, path, twin, device, m["spk"], m["script"], problems, hash_content)
            if item:
                items.append(item)
    if not items and not problems:
        problems.append(f"{root}: no device recordings found")
    if problems:
        raise TreeProblems(root, "DAPS", problems)
    return Suite(
        name=f"daps-{split}", version="1", task="speech-enhancement", root=root, items=tuple(items),
        description="DAPS device recordings against clean speech (aligned by cross-correlation; "
        "scored at 16 kHz)",
    )


def _daps_item(root, path, twin, device, spk, script, problems, hash_content) -> Item | None:
    c = _ref(root, twin, problems, hash_content)
    d = _ref(root, path, problems, hash_content)
    if c is None or d is None:
        return None
    if c.rate != d.rate:
        problems.append(f"{path}: {d.rate} Hz, its clean twin {twin.name} is {c.rate} Hz")
        return None
    try:
        clean = audio_mod.read(root / c.path).mono()
        rec = audio_mod.read(root / d.path).mono()
    except AudioError as exc:
        problems.append(str(exc))
        return None
    lag = estimate_offset(clean, rec, c.rate)
    c_start, d_start = max(-lag, 0), max(lag, 0)
    frames = min(c.frames - c_start, d.frames - d_start)
    if frames <= c.rate:  # under a second in common: the pairing is wrong
        problems.append(f"{path}: under 1 s overlaps its clean twin (offset {lag} frames)")
        return None
    seg = lambda ref, start: FileRef(ref.path, ref.rate, 1, frames, ref.sha256, start, True)  # noqa: E731
    return Item(
        id=f"{spk}_{script}_{device}", task="speech-enhancement", root=root,
        inputs={"input": seg(d, d_start)}, references={"clean": seg(c, c_start)},
        metadata={"speaker": spk, "script": script, "device": device, "offset_frames": lag,
                  "dataset": "DAPS"},
    )


VOICEBANK_DEMAND = Layout(
    "voicebank-demand", load_voicebank_demand,
    "VoiceBank-DEMAND: <root>/{clean,noisy}_testset_wav/*.wav, <root>/logfiles/log_testset.txt",
)
DAPS = Layout(
    "daps", load_daps,
    "DAPS: <root>/clean/<spk>_<script>_clean.wav and device folders (--split DEVICE or all); "
    "aligned to the clean twin by cross-correlation",
)
