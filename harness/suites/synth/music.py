"""Multi-stem music: arrangements drawn from a seed, written as one MIDI file per stem and
rendered with fluidsynth and a General MIDI soundfont.

Stems: `vocals` (a lead melody line on a voice-like instrument), `drums`, `bass`, `other`
(chords). Styles differ in tempo range, metre, mode, drum pattern and instruments. Render
lengths differ by release tails, so every stem is cut to the asked length; the mixture is the
float sum of the cut stems.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from harness.suites.synth.tools import require, run_tool, soundfont
from harness.tasks.music_remix import STEMS

RATE = 44100
MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)

# style: tempo range, beats per bar, mode, chord progressions (scale degrees), programs per stem
STYLES = {
    "pop": dict(tempo=(100, 128), beats=4, mode=MAJOR, progressions=[(0, 4, 5, 3), (0, 5, 3, 4)],
                vocals=(53, 54, 73, 65), other=(0, 4, 24, 48), bass=(33, 34, 38), swing=0.0),
    "ballad": dict(tempo=(66, 84), beats=4, mode=MINOR, progressions=[(0, 5, 2, 6), (0, 3, 4, 0)],
                   vocals=(52, 53, 71, 68), other=(48, 49, 0, 89), bass=(32, 33), swing=0.0),
    "waltz": dict(tempo=(84, 108), beats=3, mode=MAJOR, progressions=[(0, 3, 4, 0), (0, 1, 4, 0)],
                  vocals=(40, 73, 71), other=(0, 21, 46), bass=(32, 43), swing=0.0),
    "shuffle": dict(tempo=(90, 116), beats=4, mode=MAJOR, progressions=[(0, 3, 0, 4), (0, 0, 3, 4)],
                    vocals=(65, 66, 56), other=(16, 17, 4), bass=(32, 33), swing=0.33),
    "electronic": dict(tempo=(118, 128), beats=4, mode=MINOR,
                       progressions=[(0, 5, 6, 4), (0, 6, 5, 6)],
                       vocals=(80, 81, 85), other=(88, 90, 94), bass=(38, 39), swing=0.0),
}
# Classical chamber music (the classical-rebalance generator picks its instruments itself; never
# drawn by a style-less `arrangement`, so the pop styles' suites are unchanged).
CHAMBER = {
    "chamber": dict(tempo=(63, 96), beats=4, mode=MAJOR, progressions=[(0, 3, 4, 0), (0, 5, 3, 4)],
                    vocals=(40, 73), other=(41,), bass=(42,), swing=0.0),
    "chamber-minor": dict(tempo=(56, 88), beats=3, mode=MINOR, progressions=[(0, 3, 4, 0), (0, 5, 2, 4)],
                          vocals=(40, 73), other=(41,), bass=(42,), swing=0.0),
}
PAN = {"vocals": 64, "drums": 64, "bass": 58, "other": 36}
KICK, SNARE, HAT, OPEN_HAT, CLAP = 36, 38, 42, 46, 39


@dataclass(frozen=True)
class Arrangement:
    style: str
    tempo: int
    key: int  # MIDI note of the tonic (bass octave + 24)
    beats: int
    mode: tuple[int, ...]
    progression: tuple[int, ...]
    programs: dict
    melody: tuple[tuple[float, float, int], ...]  # (start beat, length in beats, scale degree)
    swing: float

    def to_json(self) -> dict:
        d = asdict(self)
        d.pop("melody")
        d["mode"] = "major" if self.mode == MAJOR else "minor"
        d["melody_notes"] = len(self.melody)
        return d


def arrangement(rng: np.random.Generator, seconds: float, style: str | None = None) -> Arrangement:
    """Draw an arrangement long enough to fill `seconds` (plus a bar)."""
    style = style or list(STYLES)[int(rng.integers(len(STYLES)))]
    s = {**STYLES, **CHAMBER}[style]
    tempo = int(rng.integers(s["tempo"][0], s["tempo"][1] + 1))
    key = 48 + int(rng.integers(0, 12))
    progression = s["progressions"][int(rng.integers(len(s["progressions"])))]
    programs = {stem: int(rng.choice(s[stem])) for stem in ("vocals", "other", "bass")}
    total_beats = int(np.ceil(seconds * tempo / 60)) + s["beats"]
    melody, beat, degree = [], 0.0, int(rng.integers(0, 5))
    while beat < total_beats:
        length = float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0]))
        if rng.random() < 0.15:  # a rest
            beat += length
            continue
        degree = int(np.clip(degree + rng.choice([-2, -1, -1, 0, 1, 1, 2, 3]), -2, 9))
        melody.append((beat, length, degree))
        beat += length
    return Arrangement(style, tempo, key, s["beats"], s["mode"], tuple(progression), programs,
                       tuple(melody), s["swing"])


def _note(arr: Arrangement, degree: int, octave: int) -> int:
    return arr.key + 12 * octave + arr.mode[degree % 7] + 12 * (degree // 7)


def write_midi(arr: Arrangement, stem: str, seconds: float, path: Path) -> None:
    import mido

    tpb = 480
    mid = mido.MidiFile(ticks_per_beat=tpb)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(arr.tempo)))
    ch = 9 if stem == "drums" else 0
    if stem != "drums":
        tr.append(mido.Message("program_change", program=arr.programs[stem], channel=ch))
    tr.append(mido.Message("control_change", control=10, value=PAN[stem], channel=ch))
    beats = int(np.ceil(seconds * arr.tempo / 60)) + arr.beats
    bars = int(np.ceil(beats / arr.beats))
    events: list[tuple[int, int, int, int]] = []  # (tick, on, note, velocity)

    def add(start_beat: float, length: float, note: int, vel: int) -> None:
        t0 = int(round(start_beat * tpb))
        t1 = max(t0 + 1, int(round((start_beat + length) * tpb)) - 20)
        events.extend([(t0, 1, note, vel), (t1, 0, note, 0)])

    def swung(b: float) -> float:
        return b + arr.swing * 0.5 if (b % 1.0) == 0.5 else b

    if stem == "vocals":
        for start, length, degree in arr.melody:
            add(swung(start), length, _note(arr, degree, 2), 96)
    elif stem == "bass":
        for bar in range(bars):
            chord = arr.progression[bar % len(arr.progression)]
            for b in range(arr.beats):
                degree = chord if b % 2 == 0 else chord + 4
                add(bar * arr.beats + b, 0.9, _note(arr, degree, 0), 104)
    elif stem == "other":
        for bar in range(bars):
            chord = arr.progression[bar % len(arr.progression)]
            hits = range(arr.beats) if arr.style in ("waltz", "shuffle") else [0, arr.beats // 2]
            length = 1.0 if arr.style in ("waltz", "shuffle") else arr.beats / 2
            for b in hits:
                for k in (0, 2, 4):
                    add(bar * arr.beats + b, length, _note(arr, chord + k, 1), 66)
    else:
        for bar in range(bars):
            for b in range(arr.beats):
                t = bar * arr.beats + b
                add(t, 0.25, HAT, 70)
                add(swung(t + 0.5), 0.25, HAT if arr.style != "electronic" else OPEN_HAT, 52)
                if arr.style == "electronic":
                    add(t, 0.3, KICK, 112)
                    if b % 2 == 1:
                        add(t, 0.3, CLAP, 96)
                elif arr.beats == 3:
                    add(t, 0.3, KICK if b == 0 else SNARE, 100 if b == 0 else 70)
                else:
                    add(t, 0.3, KICK if b % 2 == 0 else SNARE, 108)
    append_notes(tr, events, ch)
    mid.save(path)


def append_notes(track, events: list[tuple[int, int, int, int]], channel: int) -> None:
    """Append (tick, on, note, velocity) events to a MIDI track as delta-timed messages, note-offs
    before note-ons at the same tick."""
    import mido

    now = 0
    for tick, on, note, vel in sorted(events, key=lambda e: (e[0], e[1])):
        kind = "note_on" if on else "note_off"
        track.append(mido.Message(kind, note=note, velocity=vel, channel=channel, time=tick - now))
        now = tick


def render(arr: Arrangement, seconds: float, rate: int = RATE, font: str | Path | None = None,
           stems: tuple[str, ...] = STEMS) -> dict[str, np.ndarray]:
    """Render the stems (stereo float64, (2, n) with n = round(seconds * rate))."""
    require(["fluidsynth"], "music rendering")
    sf2 = soundfont(font)
    n = int(round(seconds * rate))
    out = {}
    import soundfile as sf

    with tempfile.TemporaryDirectory() as tmp:
        for stem in stems:
            mid, wav = Path(tmp) / f"{stem}.mid", Path(tmp) / f"{stem}.wav"
            write_midi(arr, stem, seconds, mid)
            run_tool(["fluidsynth", "-ni", "-q", "-g", "0.5", "-R", "0", "-C", "0", "-r", str(rate),
                      "-O", "s16", "-T", "wav", "-F", str(wav), str(sf2), str(mid)],
                     f"fluidsynth rendering the {stem} stem")
            x, _ = sf.read(str(wav), dtype="float64", always_2d=True)
            x = x.T
            if x.shape[1] < n:
                x = np.pad(x, ((0, 0), (0, n - x.shape[1])))
            out[stem] = x[:, :n]
    return out
