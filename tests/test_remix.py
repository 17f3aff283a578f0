"""The remix system's stages against the published formulas and the protocol's contract."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from harness.api import system_from_spec
from harness.listener import resolve_panel
from harness.suites import resolve_suite
from harness.tasks import get_protocol
from systems.remix import stages
from systems.remix.separators import DspSeparator, chunked, validate_stems

FREQS = [250, 500, 1000, 2000, 4000, 6000]


def nal_r(hl: np.ndarray) -> np.ndarray:
    """Byrne & Dillon (1986), as listed in the reference: X + 0.31 HL + k, floored at 0."""
    three = hl[1] + hl[2] + hl[3]
    x = 0.05 * three if three <= 180 else 9 + 0.116 * (three - 180)
    k = np.array([-17, -8, 1, -1, -2, -2])
    return np.clip(x + 0.31 * hl + k, 0, None)


@pytest.mark.parametrize("rate", [44100, 24000])
def test_nalr_filter_matches_the_prescription_for_every_builtin_audiogram(rate):
    for listener in resolve_panel("builtin").listeners:
        for audiogram in (listener.audiogram_left, listener.audiogram_right):
            hl = np.interp(np.log(FREQS), np.log(audiogram.frequencies), audiogram.levels)
            fir = stages.NalR(rate).fir(audiogram)
            _, h = signal.freqz(fir, worN=np.array(FREQS, float), fs=rate)
            measured = 20 * np.log10(np.abs(h))
            assert np.max(np.abs(measured - nal_r(hl))) < 0.5, (listener.id, measured, nal_r(hl))


def test_nalr_keeps_stems_aligned():
    audiogram = resolve_panel("builtin", ["N3"]).listeners[0].audiogram_left
    x = np.zeros(8000)
    x[3000] = 1.0
    for design in ("precise", "clarity"):
        y = stages.NalR(44100, design=design).apply(audiogram, x)
        assert len(y) == len(x) and int(np.argmax(np.abs(y))) == 3000


def test_bandpass_minus_3_db_points():
    sos = stages.bandpass_sos(44100)  # 5th-order Butterworth, 250 Hz - 18.5 kHz
    f, h = signal.sosfreqz(sos, worN=1 << 18, fs=44100)
    db = 20 * np.log10(np.maximum(np.abs(h), 1e-30))
    passband = f[db >= -3.0]
    assert passband[0] == pytest.approx(250.0, rel=0.05)
    assert passband[-1] == pytest.approx(18500.0, rel=0.05)
    assert sos.shape == (5, 6)  # second-order sections of a 5th-order band-pass (10 poles)


def test_soft_clip_and_level():
    x = np.linspace(-3, 3, 1001)
    y = stages.soft_clip(x, 0.9)
    assert np.max(np.abs(y)) <= 1.0 and np.all(np.diff(y) >= 0)
    assert np.all(np.diff(y[np.abs(x) < 1.5]) > 0)  # strictly increasing until it saturates
    assert np.array_equal(y[np.abs(x) <= 0.9], x[np.abs(x) <= 0.9])
    assert np.array_equal(stages.soft_clip(x, 1.0), x)  # a knee at full scale is off (it divided by 0)
    z = stages.to_level(np.sin(np.linspace(0, 100, 10000)), 65.0)
    assert 20 * np.log10(np.sqrt(np.mean(z**2))) + 100 == pytest.approx(65.0, abs=1e-9)


def test_chunked_cross_fades_are_complementary():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 44100 * 25 + 17))
    out = chunked(lambda c: {"a": 0.25 * c, "b": 0.75 * c}, x, 44100, chunk_s=10.0, overlap=0.1)
    assert np.allclose(out["a"], 0.25 * x) and np.allclose(out["b"] + out["a"], x)
    for overlap in (0.0, 0.5):  # abutting chunks (no fade: this raised before), the widest fade
        out = chunked(lambda c: {"a": c}, x, 44100, chunk_s=10.0, overlap=overlap)
        assert np.allclose(out["a"], x, rtol=0, atol=1e-12)


def test_dsp_separator_stems_sum_to_the_mixture(music_item):
    mix = music_item.input("mixture").samples.astype(np.float64)
    stems = validate_stems(DspSeparator().separate(mix, 44100), mix.shape, "dsp")
    assert np.max(np.abs(sum(stems.values()) - mix)) < 1e-6
    assert all(np.sqrt(np.mean(s**2)) > 1e-4 for s in stems.values())


def test_validate_stems_names_the_problem():
    shape = (2, 10)
    good = {s: np.zeros(shape) for s in ("vocals", "drums", "bass", "other")}
    with pytest.raises(ValueError, match="returned no bass"):
        validate_stems({k: v for k, v in good.items() if k != "bass"}, shape, "x")
    with pytest.raises(ValueError, match="stem drums has shape"):
        validate_stems({**good, "drums": np.zeros((2, 9))}, shape, "x")
    with pytest.raises(ValueError, match="non-finite"):
        validate_stems({**good, "vocals": np.full(shape, np.nan)}, shape, "x")


@pytest.mark.parametrize("spec", ["remix/oracle", "remix/dsp"])
def test_remix_outputs_follow_the_cad1_contract(spec):
    item = resolve_suite("music-remix-quick").items[0]
    listener = resolve_panel("builtin", ["N2"]).listeners[0]
    out = system_from_spec(spec).process([item], listener)[0]
    assert get_protocol("music-remix").validate_outputs(item, out) == {}
    assert sorted(out) == sorted([f"{e}_{s}" for e in ("left", "right")
                                  for s in ("vocals", "drums", "bass", "other")] + ["remix"])


class OneStemSeparator:
    """A separator backend that returns one stem of four."""

    def separate(self, x, rate):
        return {"vocals": x}


def test_a_broken_separator_fails_its_item_not_the_run():
    from harness.runner import _process
    from harness.workers import SystemProcess

    system = system_from_spec("remix/dsp")
    system.separator = OneStemSeparator()

    class J:
        item = resolve_suite("music-remix-quick").items[0]
        listener = resolve_panel("builtin", ["NH"]).listeners[0]
        system = "remix/dsp"

    worker = SystemProcess("remix/dsp", system, "cpu")
    try:
        [(outputs, status, reason)] = _process(worker, [J()])
    finally:
        worker.close()
    assert outputs is None and status == "failed"
    assert "separator dsp returned no drums, bass, other" in reason


def test_remix_rejects_unknown_parameters():
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown parameter"):
        system_from_spec("remix", {"remix": {"seperator": "dsp"}})
    with pytest.raises(ConfigError, match="unknown separator"):
        system_from_spec("remix/nmf")
