"""Audio value type, I/O, resampling and loudness against closed-form expectations."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from harness import audio
from harness.audio import Audio
from harness.errors import AudioError


def sine(freq, rate, seconds, amp=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return amp * np.sin(2 * np.pi * freq * t)


def test_audio_is_immutable_float32_channels_by_frames():
    a = Audio(np.zeros(100, dtype=np.float64), 8000)
    assert a.samples.dtype == np.float32 and a.samples.shape == (1, 100)
    with pytest.raises(ValueError):
        a.samples[0, 0] = 1.0
    assert a.duration == pytest.approx(100 / 8000)


@pytest.mark.parametrize("suffix,subtype,tol", [(".wav", "FLOAT", 0), (".flac", "PCM_24", 2**-22)])
def test_write_read_round_trip(tmp_path, suffix, subtype, tol):
    x = Audio(np.stack([sine(440, 16000, 0.5), sine(880, 16000, 0.5, 0.25)]), 16000)
    y = audio.read(audio.write(tmp_path / f"x{suffix}", x, subtype))
    assert y.rate == 16000 and y.samples.shape == x.samples.shape
    assert np.max(np.abs(y.samples - x.samples)) <= tol


def test_resample_keeps_frequency_and_amplitude():
    x = Audio(sine(1000, 44100, 1.0, 0.5), 44100)
    y = audio.resample(x, 24000)
    assert y.rate == 24000 and y.frames == 24000
    spec = np.abs(np.fft.rfft(y.mono()[2400:-2400] * np.hanning(19200)))
    peak_hz = np.argmax(spec) * 24000 / 19200
    assert peak_hz == pytest.approx(1000, abs=2)
    assert audio.rms(y.mono()[2400:-2400]) == pytest.approx(0.5 / np.sqrt(2), rel=1e-3)


def test_loudness_of_full_scale_sine_is_minus_3_lufs():
    # ITU-R BS.1770-4: a 0 dBFS 997 Hz sine on one channel reads -3.01 LKFS; -20 dB less at 0.1.
    x = Audio(sine(997, 48000, 5.0, 0.1), 48000)
    assert audio.loudness(x) == pytest.approx(-23.01, abs=0.1)


def test_not_audio_and_truncated_files_raise_one_line_errors(tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("this is not audio")
    with pytest.raises(AudioError, match="notes.wav: not a readable audio file"):
        audio.read(bad)
    good = tmp_path / "speech.wav"
    sf.write(good, sine(440, 16000, 1.0), 16000, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    cut.write_bytes(good.read_bytes()[:10000])
    with pytest.raises(AudioError, match="cut.wav: truncated"):
        audio.read(cut)
    with pytest.raises(AudioError, match="missing.wav: file not found"):
        audio.read(tmp_path / "missing.wav")


def test_check_names_every_problem():
    x = Audio(np.array([[0.0, np.nan, np.inf, 0.0]]), 8000)
    with pytest.raises(AudioError) as exc:
        audio.check(x, name="f.wav", rate=16000, channels=2, frames=5)
    msg = str(exc.value)
    for part in ("f.wav", "8000 Hz, expected 16000", "1 channel(s), expected 2",
                 "4 frames, expected 5", "1 NaN and 1 Inf"):
        assert part in msg
    assert audio.problem_silent(Audio(np.zeros(10), 8000)) is not None
    assert audio.problem_silent(Audio(np.ones(10), 8000)) is None
