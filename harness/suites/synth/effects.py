"""Procedural sound effects for the cocktail-fork `sfx` stem: short events (knocks, whooshes,
beeps, rain, engine, glass, footsteps) placed at random times, all from numpy and a seed."""

from __future__ import annotations

import numpy as np

from harness.suites.synth.degrade import bandlimit, fade

KINDS = ("knock", "whoosh", "beep", "rain", "engine", "glass", "footsteps")


def _decay(n: int, rate: int, tau: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (tau * rate))


def event(kind: str, rate: int, rng: np.random.Generator) -> np.ndarray:
    """One effect of a kind, peak-normalised to 1."""
    if kind == "knock":
        hits = int(rng.integers(2, 5))
        gap = int(rng.uniform(0.12, 0.25) * rate)
        n = gap * hits + int(0.2 * rate)
        x = np.zeros(n)
        for k in range(hits):
            burst = rng.standard_normal(int(0.08 * rate)) * _decay(int(0.08 * rate), rate, 0.012)
            x[k * gap: k * gap + len(burst)] += burst
        x = bandlimit(x, rate, 120.0, float(rng.uniform(800, 2000)), 2)
    elif kind == "whoosh":
        n = int(rng.uniform(0.6, 1.5) * rate)
        noise = rng.standard_normal(n)
        centre = np.geomspace(rng.uniform(300, 800), rng.uniform(2000, 6000), 8)
        x = np.zeros(n)
        seg = n // len(centre)
        for k, c in enumerate(centre):
            part = bandlimit(noise, rate, c / 1.5, c * 1.5, 2)
            win = np.zeros(n)
            win[k * seg: (k + 2) * seg] = np.hanning(len(win[k * seg: (k + 2) * seg]))
            x += part * win
    elif kind == "beep":
        f = float(rng.choice([440.0, 660.0, 880.0, 1000.0, 1200.0]))
        beeps = int(rng.integers(1, 4))
        on, off = int(0.15 * rate), int(0.1 * rate)
        t = np.arange(on) / rate
        tone = fade(np.sin(2 * np.pi * f * t), rate, 0.005)
        x = np.concatenate([np.concatenate([tone, np.zeros(off)]) for _ in range(beeps)])
    elif kind == "rain":
        n = int(rng.uniform(1.0, 2.0) * rate)
        x = np.zeros(n)
        drops = rng.integers(0, n - 200, size=int(rng.uniform(80, 200) * n / rate))
        for d in drops:
            x[d: d + 200] += rng.uniform(0.2, 1.0) * rng.standard_normal(200) * _decay(200, rate, 0.0015)
        x = bandlimit(x, rate, 1000.0, 9000.0, 2)
    elif kind == "engine":
        n = int(rng.uniform(1.0, 2.0) * rate)
        t = np.arange(n) / rate
        f0 = rng.uniform(30, 70)
        saw = 2 * ((f0 * t) % 1.0) - 1
        x = bandlimit(saw * (1 + 0.3 * np.sin(2 * np.pi * rng.uniform(3, 8) * t)), rate, None, 1500.0, 2)
    elif kind == "glass":
        n = int(0.8 * rate)
        t = np.arange(n) / rate
        x = sum(np.sin(2 * np.pi * rng.uniform(2000, 7000) * t) * _decay(n, rate, rng.uniform(0.05, 0.3))
                for _ in range(6))
    elif kind == "footsteps":
        steps = int(rng.integers(3, 7))
        period = int(rng.uniform(0.4, 0.6) * rate)
        x = np.zeros(steps * period)
        for k in range(steps):
            thump = rng.standard_normal(int(0.06 * rate)) * _decay(int(0.06 * rate), rate, 0.01)
            x[k * period: k * period + len(thump)] += thump
        x = bandlimit(x, rate, 60.0, 1200.0, 2)
    else:
        raise ValueError(f"unknown effect {kind!r} (known: {', '.join(KINDS)})")
    x = fade(np.asarray(x, dtype=np.float64), rate, 0.005)
    return x / np.max(np.abs(x))


def effects_track(rng: np.random.Generator, seconds: float, rate: int) -> tuple[np.ndarray, list[dict]]:
    """A track of events at random times (about one every 1.5 s, at least one) with per-event
    level jitter of +/-1 LU (approximated as +/-1 dB of peak level)."""
    n = int(round(seconds * rate))
    out = np.zeros(n)
    events = []
    count = max(1, int(rng.poisson(seconds / 1.5)))
    for _ in range(count):
        kind = str(rng.choice(KINDS))
        x = event(kind, rate, rng)[: n]
        start = int(rng.integers(0, max(n - len(x), 1)))
        gain_db = float(rng.uniform(-1.0, 1.0))
        out[start: start + len(x)] += x[: n - start] * 10 ** (gain_db / 20)
        events.append({"kind": kind, "start_s": round(start / rate, 4), "gain_db": round(gain_db, 3)})
    return out, events
