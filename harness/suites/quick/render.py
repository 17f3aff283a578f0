"""Render the two built-in quick suites (run once by a maintainer; the results are committed).

    apt-get install flite festival festvox-us-slt-hts fluidsynth timgm6mb-soundfont
    pip install -e .
    python -m harness.suites.quick.render [speech-enhancement-quick] [music-remix-quick]

speech-enhancement-quick: flite/festival speech at 16 kHz; the input adds an exponentially
decaying synthetic room response (RT60 given), band-limits it like a consumer microphone
(4th-order Butterworth band-pass, zero-phase as the generators' devices are: a causal filter's
phase would shift the input against the dry reference and SI-SDR would measure that shift, up to
124 samples here; version 1 of the suite did so) and adds noise (white, pink, mains hum or
babble) at a stated SNR measured against the reverberant band-limited speech.
music-remix-quick: two short multi-stem arrangements written as MIDI and rendered per stem with
fluidsynth (TimGM6mb General MIDI soundfont), stereo 44.1 kHz, stems stored as 16-bit FLAC and
the mixture as the exact sum of the stored stems (24-bit FLAC).

Everything is deterministic: fixed texts, voices, seeds and MIDI. The generators of a later
release build larger suites of the same kind.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from scipy import signal

from harness.audio import Audio, read, resample, write
from harness.suites.synth.degrade import bandlimit
from harness.suites.synth.music import append_notes
from harness.suites.types import Item, Suite, file_ref, write_manifest
from harness.tasks.music_remix import STEMS

HERE = Path(__file__).parent
SOUNDFONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")

SPEECH = [
    # id, voice, text, snr dB, (rt60 s, drr dB), band (Hz), noise
    ("se01", "slt", "The birch canoe slid on the smooth planks.", 5, (0.3, 9), (200, 6000), "pink"),
    ("se02", "rms", "Glue the sheet to the dark blue background.", 0, (0.5, 3), (300, 3400), "babble"),
    ("se03", "awb", "It is easy to tell the depth of a well.", 10, (0.7, 0), (100, 7000), "white"),
    ("se04", "kal16", "These days a chicken leg is a rare dish.", 15, (0.2, 12), (150, 5000), "hum50"),
    ("se05", "hts_slt", "Rice is often served in round bowls.", 20, (0.4, 6), (250, 4000), "pink"),
    ("se06", "slt", "The juice of lemons makes fine punch.", 2, (0.6, -3), (300, 3400), "white"),
]
BABBLE_TEXTS = [
    ("rms", "Four hours of steady work faced us."),
    ("awb", "A large size in stockings is hard to sell."),
    ("kal16", "The box was thrown beside the parked truck."),
]


def tts(voice: str, text: str, out: Path) -> Audio:
    if voice == "hts_slt":
        cmd = ["text2wave", "-eval", "(voice_cmu_us_slt_arctic_hts)", "-o", str(out)]
        subprocess.run(cmd, input=text.encode(), check=True, capture_output=True)
    else:
        subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(out)], check=True)
    x = read(out)
    return resample(Audio(x.samples[:1], x.rate), 16000)


def trim_silence(x: np.ndarray, rate: int, pad: float = 0.1) -> np.ndarray:
    env = np.abs(x) > 0.01 * np.abs(x).max()
    idx = np.flatnonzero(env)
    a = max(idx[0] - int(pad * rate), 0)
    b = min(idx[-1] + int(pad * rate), len(x))
    return x[a:b]


def room_response(rt60: float, drr_db: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Direct path plus an exponentially decaying noise tail (-60 dB at rt60) from 5 ms on,
    scaled so the direct-to-reverberant energy ratio is drr_db."""
    n = int(rt60 * rate)
    t = np.arange(n) / rate
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)
    tail[: int(0.005 * rate)] = 0.0
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail**2))
    h = tail
    h[0] = 1.0
    return h / np.sqrt(np.sum(h**2))


def noise(kind: str, n: int, rate: int, rng: np.random.Generator, babble: np.ndarray) -> np.ndarray:
    if kind == "white":
        return rng.standard_normal(n)
    if kind == "pink":
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.maximum(np.fft.rfftfreq(n, 1 / rate), 1.0)
        return np.fft.irfft(spec / np.sqrt(f), n)
    if kind == "hum50":
        t = np.arange(n) / rate
        return sum(np.sin(2 * np.pi * 50 * k * t + k) / k for k in range(1, 8)) + 0.05 * (
            rng.standard_normal(n)
        )
    if kind == "babble":
        start = rng.integers(0, max(len(babble) - n, 1))
        out = np.resize(babble[start:], n)
        return out
    raise ValueError(kind)


def render_speech(root: Path) -> Suite:
    rng = np.random.default_rng(20261121)
    tmp = Path(tempfile.mkdtemp())
    voices = [trim_silence(tts(v, t, tmp / f"b{i}.wav").mono(), 16000)
              for i, (v, t) in enumerate(BABBLE_TEXTS)]
    length = max(len(v) for v in voices)
    babble = sum(np.pad(v, (0, length - len(v))) for v in voices)
    items = []
    for iid, voice, text, snr, (rt60, drr), band, kind in SPEECH:
        clean = trim_silence(tts(voice, text, tmp / f"{iid}.wav").mono(), 16000)
        clean = clean / np.sqrt(np.mean(clean**2)) * 10 ** (-26 / 20)  # -26 dBFS RMS
        wet = signal.fftconvolve(clean, room_response(rt60, drr, 16000, rng))[: len(clean)]
        wet = bandlimit(wet, 16000, *band, order=4)
        nz = noise(kind, len(clean), 16000, rng, babble)
        nz = nz / np.sqrt(np.mean(nz**2)) * np.sqrt(np.mean(wet**2)) * 10 ** (-snr / 20)
        degraded = wet + nz
        peak = np.max(np.abs(degraded))
        assert peak < 1.0, (iid, peak)
        cpath = write(root / "clean" / f"{iid}.flac", Audio(clean, 16000), "PCM_16")
        dpath = write(root / "input" / f"{iid}.flac", Audio(degraded, 16000), "PCM_16")
        items.append(
            Item(
                id=iid,
                task="speech-enhancement",
                root=root,
                inputs={"input": file_ref(root, dpath)},
                references={"clean": file_ref(root, cpath)},
                metadata={
                    "voice": voice, "text": text, "snr_db": snr, "rt60_s": rt60, "drr_db": drr,
                    "band_hz": list(band), "noise": kind,
                    "device": f"band-pass {band[0]}-{band[1]} Hz",
                },
            )
        )
    shutil.rmtree(tmp)
    return Suite(
        name="speech-enhancement-quick",
        version="2",
        task="speech-enhancement",
        root=root,
        items=tuple(items),
        description="Six synthetic utterances (flite/festival, 16 kHz) with room, microphone "
        "band-limits and noise at 0-20 dB SNR",
    )


# ---------------------------------------------------------------- music

SONGS = {
    "song01-pop": dict(
        tempo=120, key=60, scale=[0, 2, 4, 5, 7, 9, 11], chords=[0, 5, 3, 4],
        vocal_prog=53, other_prog=0, bass_prog=33, melody=[4, 4, 5, 4, 2, 0, 2, 4],
        seed=1,
    ),
    "song02-minor": dict(
        tempo=96, key=57, scale=[0, 2, 3, 5, 7, 8, 10], chords=[0, 5, 2, 6],
        vocal_prog=73, other_prog=48, bass_prog=38, melody=[0, 2, 4, 2, 6, 4, 2, 1],
        seed=2,
    ),
}
SECONDS = 1.5
PAN = {"vocals": 64, "drums": 64, "bass": 60, "other": 40}


def _midi(stem: str, song: dict, path: Path) -> None:
    import mido

    tpb = 480
    mid = mido.MidiFile(ticks_per_beat=tpb)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(song["tempo"])))
    ch = 9 if stem == "drums" else 0
    if stem != "drums":
        prog = {"vocals": song["vocal_prog"], "bass": song["bass_prog"], "other": song["other_prog"]}
        tr.append(mido.Message("program_change", program=prog[stem], channel=ch))
    tr.append(mido.Message("control_change", control=10, value=PAN[stem], channel=ch))
    events = []  # (tick, on/off, note, velocity)
    key, scale = song["key"], song["scale"]
    beats = 8
    if stem == "vocals":
        for i, deg in enumerate(song["melody"]):
            note = key + 12 + scale[deg % 7] + 12 * (deg // 7)
            events += [(i * tpb, 1, note, 100), ((i + 1) * tpb - 40, 0, note, 0)]
    elif stem == "bass":
        for bar, c in enumerate(song["chords"]):
            root = key - 24 + scale[c]
            for half in range(2):
                t0 = (bar * 2 + half) * tpb
                events += [(t0, 1, root, 110), (t0 + tpb - 60, 0, root, 0)]
    elif stem == "other":
        for bar, c in enumerate(song["chords"]):
            notes = [key + scale[(c + k) % 7] + (12 if c + k >= 7 else 0) for k in (0, 2, 4)]
            t0 = bar * 2 * tpb
            for n in notes:
                events += [(t0, 1, n, 70), (t0 + 2 * tpb - 30, 0, n, 0)]
    else:  # drums: kick 36, snare 38, closed hat 42
        for b in range(beats):
            t0 = b * tpb
            events += [(t0, 1, 42, 70), (t0 + 100, 0, 42, 0)]
            events += [(t0 + tpb // 2, 1, 42, 50), (t0 + tpb // 2 + 100, 0, 42, 0)]
            drum = 36 if b % 2 == 0 else 38
            events += [(t0, 1, drum, 110), (t0 + 200, 0, drum, 0)]
    append_notes(tr, events, ch)
    mid.save(path)


def render_music(root: Path) -> Suite:
    tmp = Path(tempfile.mkdtemp())
    n = int(SECONDS * 44100)
    items = []
    for song_id, song in SONGS.items():
        stems = {}
        for stem in STEMS:
            mid = tmp / f"{song_id}-{stem}.mid"
            wav = tmp / f"{song_id}-{stem}.wav"
            _midi(stem, song, mid)
            subprocess.run(
                ["fluidsynth", "-ni", "-q", "-g", "0.5", "-R", "0", "-C", "0", "-r", "44100",
                 "-O", "s16", "-T", "wav", "-F", str(wav), str(SOUNDFONT), str(mid)],
                check=True, capture_output=True,
            )
            x = read(wav)
            if x.frames < n:
                raise RuntimeError(f"{wav}: rendered {x.frames} frames, need {n}")
            stems[stem] = x.samples[:, :n].astype(np.float64)
        peak = np.max(np.abs(sum(stems.values())))
        gain = 0.7 / peak
        paths = {}
        quantised = {}
        for stem, x in stems.items():
            q = np.round(x * gain * 32768) / 32768  # soundfile's PCM_16 grid: stored exactly
            quantised[stem] = q
            paths[stem] = write(root / song_id / f"{stem}.flac", Audio(q, 44100), "PCM_16")
        mix = sum(quantised.values())
        paths["mixture"] = write(root / song_id / "mixture.flac", Audio(mix, 44100), "PCM_24")
        stored = sum(read(paths[s]).samples.astype(np.float64) for s in stems)
        check = read(paths["mixture"]).samples.astype(np.float64)
        assert np.max(np.abs(check - stored)) < 1e-7, "mixture must equal the sum of the stored stems"
        items.append(
            Item(
                id=song_id,
                task="music-remix",
                root=root,
                inputs={"mixture": file_ref(root, paths["mixture"])},
                references={s: file_ref(root, paths[s]) for s in STEMS},
                metadata={
                    "tempo_bpm": song["tempo"], "key_midi": song["key"],
                    "programs": {"vocals": song["vocal_prog"], "bass": song["bass_prog"],
                                 "other": song["other_prog"]},
                    "soundfont": SOUNDFONT.name, "seconds": SECONDS,
                },
            )
        )
    shutil.rmtree(tmp)
    return Suite(
        name="music-remix-quick",
        version="1",
        task="music-remix",
        root=root,
        items=tuple(items),
        description="Two 1.5 s multi-stem songs (fluidsynth, GM soundfont), stereo 44.1 kHz",
    )


def main(which: tuple[str, ...] = ()) -> None:
    """Render the named suites (both when none is named)."""
    renderers = {"speech-enhancement-quick": render_speech, "music-remix-quick": render_music}
    unknown = sorted(set(which) - set(renderers))
    if unknown:
        raise SystemExit(f"unknown quick suite {', '.join(unknown)} (known: {', '.join(renderers)})")
    for name, fn in renderers.items():
        if which and name not in which:
            continue
        root = HERE / name
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        suite = fn(root)
        write_manifest(suite)
        print(f"{name}: {len(suite.items)} items, {suite.duration:.1f} s, hash {suite.hash[:12]}")


if __name__ == "__main__":
    import sys

    main(tuple(sys.argv[1:]))
