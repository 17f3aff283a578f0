"""What the tests share: signal makers written once, and the one metric parity tester.

Import as `from helpers import ...` (pytest puts `tests/` on the path; it has no __init__.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.signal
import soundfile as sf

from harness.audio import Audio
from harness.metrics import OK, evaluate
from harness.metrics.backends import FAMILIES, HAS_FAST, ScoringContext, family_of

QUICK = Path(__file__).resolve().parents[2] / "harness" / "suites" / "quick"


# ------------------------------------------------------------------ signals
def at_snr(x: np.ndarray, snr_db: float, noise: np.ndarray | None = None,
           rng: np.random.Generator | int | None = 0) -> np.ndarray:
    """x plus noise scaled so that power(x) / power(noise) is `snr_db` (closed form, over all
    samples). `noise` defaults to white Gaussian noise of x's shape drawn from `rng` (a
    Generator, or a seed); a given noise is cut to x's length."""
    x = np.asarray(x, dtype=np.float64)
    if noise is None:
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        noise = gen.standard_normal(x.shape)
    noise = np.asarray(noise, dtype=np.float64)[..., : x.shape[-1]]
    return x + noise * np.sqrt(np.mean(x ** 2) / np.mean(noise ** 2)) * 10 ** (-snr_db / 20)


def quick_speech(name: str, rate: int) -> np.ndarray:
    """A clean utterance of the built-in speech-enhancement-quick suite, mono, at `rate`."""
    x, r = sf.read(QUICK / "speech-enhancement-quick" / "clean" / name, always_2d=True)
    return scipy.signal.resample_poly(x[:, 0], rate, r) if r != rate else x[:, 0]


# ------------------------------------------------------------------ the parity tester
@dataclass
class Case:
    """One corpus entry: a name, the estimate and reference (Audio), and for a case the metric
    must refuse, the status every backend has to give (the reference is then not called)."""

    name: str
    estimate: Audio
    reference: Audio
    status: str = OK
    kwargs: dict[str, Any] = field(default_factory=dict)  # listener, ear, seed for evaluate


def assert_parity(metric, cases: Iterable[Case], reference: Callable[[Case], float], tol: float,
                  *, backends: tuple[str, ...] | None = None, min_spread: float = 0.0) -> dict:
    """Score every case through `harness.metrics.evaluate` with each backend of the metric's
    family (reference and, where one exists, fast; each in its own ScoringContext, in one
    process) and check:

    - an ok case: ok under every backend, within `tol` of `reference(case)` (the field's
      package, called directly), and the stored backend label is the one asked for;
    - a refused case: the status it names, under every backend, with a reason;
    - the corpus is not vacuous: the reference values span at least `min_spread`.

    Returns {backend: [values]} for further assertions."""
    cases = list(cases)
    family = family_of(metric.name)
    if backends is None:
        backends = ("reference", "fast") if family in HAS_FAST else ("reference",)
    want = {c.name: reference(c) for c in cases if c.status == OK}
    got: dict[str, list] = {}
    for backend in backends:
        ctx = ScoringContext({family: backend} if family in FAMILIES else {})
        got[backend] = []
        for c in cases:
            s = evaluate(metric, c.estimate, c.reference, ctx=ctx, **c.kwargs)
            assert s.status == c.status, (backend, c.name, s.status, s.reason)
            if c.status != OK:
                assert s.reason and s.value is None, (backend, c.name)
                continue
            assert s.backend == ctx.backend_of(metric.name), (backend, c.name, s.backend)
            assert abs(s.value - want[c.name]) <= tol, (backend, c.name, s.value, want[c.name])
            got[backend].append(s.value)
    if want:
        assert np.ptp(list(want.values())) >= min_spread, want
    return got
