"""Degradation building blocks, the LSD metric and the crowd protocol's alignment, against
closed forms; and the message when a synthesiser is missing. None needs flite or fluidsynth."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import run_cli

from harness.audio import Audio
from harness.errors import SuiteError
from harness.metrics.spectral import lsd
from harness.suites.synth import degrade as dg
from harness.suites.synth import tools


@pytest.mark.parametrize("gain_db", [1.0, 6.0, -12.0])
def test_lsd_of_a_gain_is_a_tenth_of_its_decibels(speech, gain_db):
    """log10|aY|^2 - log10|Y|^2 = 2 log10 a = gain_db / 10 in every bin (floor negligible)."""
    x = speech + 1e-3 * np.random.default_rng(0).standard_normal(len(speech))  # no silent bins
    assert lsd(x * 10 ** (gain_db / 20), x) == pytest.approx(abs(gain_db) / 10, abs=1e-5)
    assert lsd(x, x) == 0.0


def test_butterworth_edges_are_minus_3_db_and_filtering_has_no_delay():
    g = dg.butterworth_gain(np.array([300.0, 3400.0]), 300.0, 3400.0, 4)
    # each edge: -3 dB from its own section, a little more from the other (far) section
    assert 20 * np.log10(g) == pytest.approx([-3.0103, -3.0103], abs=0.01)
    x = np.zeros(4096)
    x[1000] = 1.0
    y = dg.bandlimit(x, 16000, 300.0, 3400.0, 4)
    assert int(np.argmax(np.abs(y))) == 1000  # zero phase: the impulse stays put
    assert y[1000] == pytest.approx(np.sum(dg.butterworth_gain(np.fft.rfftfreq(8192, 1 / 16000),
                                                                300.0, 3400.0, 4)) * 2 / 8192, rel=0.01)


@pytest.mark.parametrize("snr", [-5.0, 0.0, 17.5])
@pytest.mark.parametrize("kind", ["white", "pink", "brown", "hum50", "hum60"])
def test_noise_mixed_at_the_asked_snr(kind, snr):
    rng = np.random.default_rng(1)
    target = rng.standard_normal(16000) * 0.1
    noise = dg.make_noise(kind, 16000, 16000, rng)
    assert np.sqrt(np.mean(noise**2)) == pytest.approx(1.0)
    scaled = dg.scale_to_snr(target, noise, snr)
    assert 10 * np.log10(np.sum(target**2) / np.sum(scaled**2)) == pytest.approx(snr, abs=1e-9)


def test_noise_colours_have_their_spectral_slopes():
    rng = np.random.default_rng(2)
    f = np.fft.rfftfreq(1 << 16, 1 / 16000)
    band = (f > 100) & (f < 4000)
    for kind, slope in (("white", 0.0), ("pink", -1.0), ("brown", -2.0)):
        p = np.abs(np.fft.rfft(dg.make_noise(kind, 1 << 16, 16000, rng))) ** 2
        fit = np.polyfit(np.log10(f[band]), np.log10(p[band]), 1)[0]
        assert fit == pytest.approx(slope, abs=0.1), kind
    hum = np.abs(np.fft.rfft(dg.make_noise("hum60", 16000, 16000, rng)))
    assert {int(k) for k in np.argsort(hum)[-3:]} == {60, 120, 180}


def test_schroeder_rt60_of_an_exponential_decay():
    """Energy decaying by 60 dB in T seconds: the T20 fit gives T."""
    rate, t60 = 16000, 0.5
    t = np.arange(int(1.0 * rate)) / rate
    h = np.random.default_rng(3).standard_normal(len(t)) * 10 ** (-3 * t / t60)
    assert dg.schroeder_rt60(h, rate) == pytest.approx(t60, rel=0.05)


def test_quantise_is_exact_in_pcm24(tmp_path):
    import soundfile as sf

    x = dg.quantise(np.random.default_rng(4).uniform(-0.9, 0.9, 1000))
    sf.write(tmp_path / "q.flac", x, 16000, subtype="PCM_24")
    assert np.array_equal(sf.read(tmp_path / "q.flac")[0], x)


def test_missing_synthesiser_names_the_debian_packages(monkeypatch, tmp_path):
    monkeypatch.setattr(tools.shutil, "which", lambda name: None)
    with pytest.raises(SuiteError) as exc:
        tools.require(["flite", "text2wave", "fluidsynth"], "speech-enhancement")
    msg = str(exc.value)
    assert "sudo apt-get install flite festival festvox-us-slt-hts fluidsynth timgm6mb-soundfont" in msg
    # and through the CLI, with none of them on PATH: one line, exit 1, nothing written
    import os

    r = run_cli("suites", "make", "music-remix", "--out", str(tmp_path / "m"), "-q")
    assert r.returncode in (0, 2)  # (fluidsynth may be installed here)
    env_path = os.environ.get("PATH", "")
    try:
        os.environ["PATH"] = str(tmp_path)
        r = run_cli("suites", "make", "speech-enhancement", "--out", str(tmp_path / "s"), "-q")
    finally:
        os.environ["PATH"] = env_path
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "apt-get install flite" in r.stderr, r.stderr


@pytest.mark.skipif(shutil.which("text2wave") is None, reason="festival not installed")
def test_a_festival_voice_not_installed_is_named_with_its_package(monkeypatch):
    """text2wave exits 0 and writes nothing when the voice function is unbound."""
    from harness.suites.synth import speech

    monkeypatch.setitem(speech.FESTIVAL_VOICES, "nsh", "voice_not_installed_here")
    speech._synth.cache_clear()
    with pytest.raises(SuiteError) as exc:
        speech.say("nsh", "A short test.")
    speech._synth.cache_clear()
    assert str(exc.value) == ("festival voice 'nsh' (voice_not_installed_here) is not installed: "
                              "sudo apt-get install festvox-ru")


@pytest.mark.skipif(shutil.which("text2wave") is None, reason="festival not installed")
def test_festival_speech_is_kept_on_disk_and_read_back_without_festival(monkeypatch, tmp_path):
    import soundfile as sf

    from harness.suites.synth import speech

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    speech._synth.cache_clear()
    first = speech.say("ked", "Hop over the fence.")
    kept = speech.festival_cache_path("ked", "Hop over the fence.")
    assert kept.is_relative_to(tmp_path) and kept.is_file()
    raw, rate = sf.read(kept, dtype="int16")
    assert rate == 16000 and len(raw) > 8000  # festival's own PCM, not a re-encoding

    def no_synthesiser(*args, **kwargs):
        raise AssertionError("festival ran although its output was kept")

    monkeypatch.setattr(speech, "run_tool", no_synthesiser)
    speech._synth.cache_clear()
    try:
        again = speech.say("ked", "Hop over the fence.")
    finally:
        speech._synth.cache_clear()
    assert np.array_equal(first, again)


def test_unknown_generator_and_option(tmp_path):
    r = run_cli("suites", "make", "nope", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "unknown generator 'nope'" in r.stderr
    r = run_cli("suites", "make", "bandwidth-extension", "-O", "ratio=3", "--out", str(tmp_path / "y"))
    assert r.returncode == 2 and "unknown option(s) ratio" in r.stderr


@pytest.mark.parametrize(("args", "message"), [
    # each of these ran before: a traceback (ZeroDivisionError, MemoryError, a clip RuntimeError),
    # a cryptic numpy message, or a suite made of nonsense (ratio 1, no recordings, a 0 m room)
    (["bandwidth-extension", "-O", "ratios=0"], "bandwidth-extension: -O ratios must be an integer in [2, 16] (each), got [0]"),
    (["bandwidth-extension", "-O", "ratios=2,2.5"], "must be an integer in [2, 16] (each), got [2, 2.5]"),
    (["speech-enhancement", "-O", "rt60s=5"], "speech-enhancement: -O rt60s must be in [0, 2] (each), got [5]"),
    (["speech-restoration", "-O", "rt60s=0,-1"], "-O rt60s must be in [0, 2] (each), got [0, -1]"),
    (["speech-enhancement", "-O", "level_lufs=10"], "-O level_lufs must be in [-60, -10], got 10"),
    (["crowd-enhancement", "-O", "recordings=0"], "-O recordings must be an integer in [1, 64], got 0"),
    (["crowd-enhancement", "-O", "room_m=0"], "-O room_m must be in [1, 1000], got 0"),
    (["crowd-enhancement", "-O", "source=nosuch"], "-O source must be one of 'music', 'speech', got 'nosuch'"),
    (["hearing-aid-speech", "-O", "interferers=nosuch"],
     "-O interferers must be one of 'speech', 'noise' (each), got ['nosuch']"),
    (["speech-enhancement", "-O", "snrs=0,5", "-O", "snrs=10"], "--option snrs is given twice"),
    (["crowd-enhancement", "--preset", "2013", "-O", "preset=massive"], "--preset 2013 and -O preset=massive disagree"),
])
def test_a_generator_option_out_of_range_is_one_line(args, message, tmp_path, monkeypatch, capsys):
    from helpers.hostile import cli, one_line_error

    code, _, err = cli(monkeypatch, capsys, "suites", "make", *args, "--items", "1", "--out", tmp_path / "s")
    one_line_error(code, err, message)
    assert not (tmp_path / "s" / "manifest.json").exists()


def test_every_generator_default_lies_within_its_limits():
    """A generator's limits name its options, and the values it uses when not given lie within them
    (the defaults recorded by a generated suite's manifest: the grids of the built-in suites)."""
    from harness.config import limit_problem
    from harness.suites.synth.gen_speech import BWE_RATIOS, SE_RT60S, SE_SNRS, SR_RT60S, SR_SNRS
    from harness.suites.synth.generators import generators

    gens = generators()
    for g in gens.values():
        assert set(g.limits) <= set(g.options), g.name
    rule = gens["speech-enhancement"].limits
    for key, grid in (("snrs", SE_SNRS), ("rt60s", SE_RT60S), ("snrs", SR_SNRS), ("rt60s", SR_RT60S)):
        assert limit_problem(rule[key], list(grid)) is None, (key, grid)
    assert limit_problem(gens["bandwidth-extension"].limits["ratios"], list(BWE_RATIOS)) is None


def test_crowd_alignment_puts_each_recording_on_the_source_grid(tmp_path):
    """A recording that starts 0.1 s after the source, at half the rate, lands 1600 samples in."""
    from harness.audio import write
    from harness.suites.types import Item, file_ref
    from harness.tasks.crowd_enhancement import aligned

    rate = 16000
    t = np.arange(rate) / rate
    src = 0.5 * np.sin(2 * np.pi * 440 * t)
    rec = src[1600:][::2]  # covers 0.1 s .. 1 s of the source, sampled at 8 kHz
    write(tmp_path / "s.wav", Audio(src, rate))
    write(tmp_path / "r.wav", Audio(rec, 8000))
    item = Item("x", "crowd-enhancement", tmp_path, {"rec000": file_ref(tmp_path, tmp_path / "r.wav")},
                {"source": file_ref(tmp_path, tmp_path / "s.wav")},
                {"recordings": [{"role": "rec000", "offset_s": 0.1}]})
    a = aligned(item, "rec000").mono()
    assert len(a) == rate and np.all(a[:1600] == 0)
    assert np.max(np.abs(a[2000:15000] - src[2000:15000])) < 1e-3


def test_a_suite_speaking_with_training_voices_is_noted():
    """`suites make -O voices=ked` may name a training voice; the note names those voices (the
    training lists of the module, not the evaluation ones) and nothing for an evaluation suite."""
    from harness.suites.synth.speech import (
        TRAINING_VOICES,
        VOICES,
        WIDEBAND_TRAINING_VOICES,
        training_voice_note,
    )

    assert training_voice_note(list(VOICES) + [None]) is None
    note = training_voice_note(["slt", "ked", "dita", "ked", None])
    assert note.startswith("dita, ked: training voice(s), not an evaluation suite's")
    assert {"ked", "dita"} <= set(TRAINING_VOICES) | set(WIDEBAND_TRAINING_VOICES)


def test_a_synthesiser_that_fails_or_hangs_is_one_line():
    """flite, text2wave and fluidsynth run with a deadline (before: a hung one waited forever and
    a failing one was a CalledProcessError traceback)."""
    import time

    from harness.suites.synth.tools import run_tool

    t0 = time.monotonic()
    with pytest.raises(SuiteError, match=r"^voice 'x' saying 'hi': sleep did not finish in 0.5 s \(killed\)$"):
        run_tool(["sleep", "30"], "voice 'x' saying 'hi'", timeout=0.5)
    assert time.monotonic() - t0 < 10
    with pytest.raises(SuiteError, match=r"^render: sh failed with exit code 3: second$"):
        run_tool(["sh", "-c", "echo first >&2; echo second >&2; exit 3"], "render")
    with pytest.raises(SuiteError, match=r"^render: cannot run no-such-synth-xyz: No such file or directory$"):
        run_tool(["no-such-synth-xyz"], "render")
    run_tool(["sh", "-c", "cat > /dev/null"], "render", stdin=b"text")  # a good run says nothing
