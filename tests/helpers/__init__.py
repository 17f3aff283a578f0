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


# ------------------------------------------------------------------ challenge recipes
def score_recipe_outputs(layout: str, dataset: Path, enhanced: Path, panel: Path, work: Path,
                         *extra: str) -> dict[tuple[str, str, str], float]:
    """`harness suites import LAYOUT DATASET --split valid`, then `harness score` on the folder a
    recipe wrote; every score must be ok and the files named as the recipe writes them. Returns
    (item, listener, ear) -> value."""
    import subprocess
    import sys

    def cli(*args):
        res = subprocess.run([sys.executable, "-m", "harness.cli", *map(str, args)],
                             cwd=QUICK.parents[2], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        return res

    cli("suites", "import", layout, dataset, "--split", "valid", "--out", work / "suite")
    res = cli("score", enhanced, "--suite", work / "suite", "--panel", panel, "--out", work / "runs",
              "--quiet", *extra)
    assert "named as the official recipe writes them" in res.stderr
    from harness.store import Store

    with Store(work / "runs") as store:
        df = store.scores(store.resolve("latest"))
    assert (df.status == "ok").all(), df[df.status != "ok"].reason.unique()
    return {(r.item_id, r.listener_id, r.ear): r.value for r in df.itertuples()}


def assert_equal_per_ear(ours: dict[tuple[str, str, str], float], theirs: dict[tuple[str, str], dict],
                         ear_column: Callable[[str], str], mean_column: str, label: str,
                         tol: float = 1e-6) -> float:
    """Every (scene, listener) of a recipe's scores.csv (`theirs`: row dicts) scored by the
    harness, each ear within `tol` and the mean of the ears the recipe's combined score; returns
    the largest difference (printed)."""
    assert {(s, lid) for s, lid, _ in ours} == set(theirs)
    worst = 0.0
    for (scene, lid), row in theirs.items():
        for ear in ("left", "right"):
            want = float(row[ear_column(ear)])
            assert abs(ours[(scene, lid, ear)] - want) <= tol, (scene, lid, ear, ours[(scene, lid, ear)], want)
            worst = max(worst, abs(ours[(scene, lid, ear)] - want))
        mean = (ours[(scene, lid, "left")] + ours[(scene, lid, "right")]) / 2
        assert abs(mean - float(row[mean_column])) <= tol, (scene, lid, mean, row[mean_column])
    print(f"{label}: {2 * len(theirs)} values, largest |harness - recipe| = {worst:.2e}")
    return worst


def run_recipe(enhance_module, evaluate_fn: Callable, dataset: Path, work: Path, monkeypatch
               ) -> tuple[Path, dict[tuple[str, str], dict]]:
    """A recipe's own enhance and evaluation on `dataset`, with its config.yaml (root set), in
    `work/exp` as its hydra entry points would run: returns (the exp folder, its scores.csv rows
    keyed by (scene, listener))."""
    import csv

    from omegaconf import OmegaConf

    config = OmegaConf.load(str(enhance_module.__file__).replace("enhance.py", "config.yaml"))
    config.path.root = str(dataset)
    exp = work / "exp"
    exp.mkdir()
    monkeypatch.chdir(exp)
    enhance_module.enhance(config)
    evaluate_fn(config)
    with open(exp / "scores.csv") as f:
        return exp, {(r["scene"], r["listener"]): r for r in csv.DictReader(f)}


def stored_scores(folder: Path):
    """The latest run's stored scores in a results folder, run id dropped and rows in a fixed
    order, so that two runs' frames compare with pandas' assert_frame_equal."""
    from harness.store import Store

    with Store(folder, create=False) as store:
        df = store.scores(store.resolve("latest"))
    return df.drop(columns=["run_id"]).sort_values(["job_key", "metric", "ear", "stem"]).reset_index(drop=True)
