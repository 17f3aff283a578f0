"""crowd-enhancement systems: the alignment pre-stage, eq. 7 consolidation, every system's output
contract, and the 2013 experiment's ordering (slow)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from conftest import run_cli
from scipy import signal

from harness.api import get_system
from harness.suites import load_suite
from harness.suites.synth.tools import PACKAGES, missing
from harness.tasks import get_protocol
from systems.plcs import align
from systems.plcs.system import CrowdSystem

_MISSING = missing(["flite", "text2wave", "fluidsynth"])
_WHY = "scene generation needs flite, festival and fluidsynth: sudo apt-get install " + " ".join(PACKAGES.values())
if _MISSING and os.environ.get("HARNESS_REQUIRE_SYNTH"):
    raise RuntimeError(f"HARNESS_REQUIRE_SYNTH is set but {', '.join(_MISSING)} missing; {_WHY}")
needs_synth = pytest.mark.skipif(bool(_MISSING), reason=_WHY)


def test_alignment_finds_known_lags_across_different_bands():
    rng = np.random.default_rng(0)
    rate, n = 16000, 3 * 16000
    src = rng.standard_normal(n + 8000)
    bands = [(100, 7000), (300, 3400), (1000, 7900), (50, 2000)]
    lags = [0, 1234, -2200, 3999]
    recs = []
    for (lo, hi), d in zip(bands, lags, strict=True):
        sos = signal.butter(6, [lo, hi], btype="bandpass", fs=rate, output="sos")
        # zero-phase (as the generator's devices): the filters add no delay of their own
        x = signal.sosfiltfilt(sos, src)[4000 + d: 4000 + d + n]  # sample j is source time j + d
        recs.append(x + 0.5 * np.std(x) * rng.standard_normal(n))  # its own noise, 6 dB down
    _, est = align.align(recs, n, max_lag=8000)
    assert est == lags


def test_consolidation_is_eq_7():
    # Recording 0 covers bins 0-3, recording 1 bins 0-7, same content where both play:
    # bins 0-3 get the mean of the two, bins 4-7 recording 1 alone.
    S1 = torch.ones(8, 5, dtype=torch.complex128)
    S0 = S1.clone()
    S0[4:] = 0
    out = CrowdSystem.consolidate(torch.stack([S0, S1]))
    # y_f: S0 puts 1/4 of its mass in each of bins 0-3; S1 1/8 in each bin; w_f = sum / max
    assert torch.allclose(out[:4], torch.full((4, 5), 2 / 1.5, dtype=torch.complex128))
    assert torch.allclose(out[4:], torch.ones(4, 5, dtype=torch.complex128))


def test_unknown_options_are_refused():
    from harness.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown parameter"):
        get_system("plcs", n_comon=3)
    with pytest.raises(ConfigError, match="key 'system_params.plcs.priors' must be one of 'none', 'init', 'source', 'both', got 'lots'"):
        get_system("plcs", priors="lots")


@pytest.fixture(scope="module")
def default_scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("crowd") / "s"
    r = run_cli("suites", "make", "crowd-enhancement", "--items", "3", "--seconds", "4", "-O",
                "recordings=5", "-O", "priors=true", "--seed", "3", "--out", str(root), "-q")
    assert r.returncode == 0, r.stderr
    return load_suite(root)


@needs_synth
def test_estimated_offsets_equal_the_generators(default_scenes):
    """Random devices, talkers at -5 to 10 dB SIR, clipping, offsets up to 0.5 s."""
    for it in default_scenes.items:
        rate = it.references["source"].rate
        roles = align.recordings(it)
        _, est = align.align(align.load_on_rate(it, roles, rate), it.references["source"].frames, rate)
        assert est == align.true_lags(it, roles, rate), it.id


@needs_synth
@pytest.mark.parametrize("spec", [
    ("plcs", {"iterations": 10}),
    ("plcs", {"iterations": 10, "priors": "none", "neighbours": 0.6, "search": "hash"}),
    ("plcs", {"iterations": 10, "dtype": "float64", "neighbours": 2}),
    ("plca-oracle", {"iterations": 10}),
    ("crowd-median", {}),
    ("crowd-mean", {}),
    ("crowd-best", {}),
])
def test_every_crowd_system_meets_the_output_contract(default_scenes, spec):
    name, params = spec
    p = get_protocol("crowd-enhancement")
    it = default_scenes.items[0]
    out = get_system(name, **params).process([it], None)[0]
    assert p.validate_outputs(it, out) == {}
    scores = {r.metric: r for r in p.score(it, out, None, ["sdr", "sdr_improvement"])}
    assert all(r.status == "ok" for r in scores.values()), scores


@needs_synth
@pytest.mark.slow
def test_2013_experiment_orders_plcs_with_priors_over_oracle_plca_over_median(tmp_path):
    """Five scenes like the ICASSP 2013 experiment; the paper: PLCS + both priors +4.57 dB,
    oracle PLCA +3.85, median -2.1 (mean SDR improvement)."""
    r = run_cli("suites", "make", "crowd-enhancement", "--preset", "2013", "--out",
                str(tmp_path / "s"), "-q")
    assert r.returncode == 0, r.stderr
    r = run_cli("run", "--suite", str(tmp_path / "s"), "--system", "plcs", "--system",
                "plca-oracle", "--system", "crowd-median", "--metric", "sdr_improvement",
                "--out", str(tmp_path / "runs"), "-q")
    assert r.returncode == 0, r.stderr
    from harness.store import Store

    store = Store(tmp_path / "runs")
    df = store.scores(store.resolve("latest"))
    store.close()
    assert (df.status == "ok").all() and len(df) == 15
    mean = df.groupby("system").value.mean()
    assert mean["plcs"] > mean["plca-oracle"] > mean["crowd-median"], mean
