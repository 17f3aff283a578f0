"""cocktail-dsp, the weight-free cocktail-fork baseline: its masks partition the mixture (the three
stems sum back to it: soft masks that sum to one, and the STFT's perfect reconstruction), and on
a mixture built from one clearly sustained tone, speech-band syllables and clicks, each stem
comes out closer to its own source than the mixture is (positive SI-SDRi for all three)."""

from __future__ import annotations

import numpy as np

from systems.cocktail import CocktailDSP, separate

RATE = 44100


def si_sdr(est: np.ndarray, ref: np.ndarray) -> float:
    a = np.dot(est, ref) / np.dot(ref, ref)
    t = a * ref
    return float(10 * np.log10(np.dot(t, t) / np.dot(est - t, est - t)))


def sources(seconds: float = 4.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * RATE)) / RATE
    # music: a held chord (three partials each of three notes), on all the time
    music = sum(0.03 * np.sin(2 * np.pi * f * k * t) / k for f in (110.0, 138.6, 164.8) for k in (1, 2, 3))
    # speech-like: 150 ms voiced syllables on a gliding 180-260 Hz pitch, 5 per second
    speech = np.zeros_like(t)
    for start in np.arange(0.05, seconds - 0.2, 0.2):
        n = int(0.15 * RATE)
        i = int(start * RATE)
        tt = np.arange(n) / RATE
        f0 = 180 + 80 * tt / 0.15
        phase = 2 * np.pi * np.cumsum(f0) / RATE
        speech[i:i + n] += np.hanning(n) * sum(0.08 / k * np.sin(k * phase) for k in range(1, 12))
    # effects: clicks (short decaying noise bursts) at random times
    sfx = np.zeros_like(t)
    for i in rng.integers(0, len(t) - 2000, 12):
        sfx[i:i + 2000] += 0.3 * rng.standard_normal(2000) * np.exp(-np.arange(2000) / 200)
    return {"speech": speech, "music": music, "sfx": sfx}


def test_the_three_stems_sum_to_the_mixture():
    src = sources(2.0)
    mix = sum(src.values())
    out = separate(mix, RATE, CocktailDSP.defaults)
    np.testing.assert_allclose(sum(out.values()), mix, atol=1e-9)


def test_each_stem_moves_towards_its_source():
    src = sources()
    mix = sum(src.values())
    out = separate(mix, RATE, CocktailDSP.defaults)
    for k, ref in src.items():
        gain = si_sdr(out[k], ref) - si_sdr(mix, ref)
        assert gain > 3.0, (k, gain)
