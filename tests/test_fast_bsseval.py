"""Parity of the torch BSSEval v4 (harness.metrics.fast.bsseval) with museval, frame by frame,
and the metrics-backend switch."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal

from harness.audio import Audio
from harness.errors import ConfigError
from harness.metrics import backends
from harness.metrics.bsseval import bsseval_v4, bsseval_v4_frames
from harness.metrics.fast.bsseval import bsseval_v4_frames as fast_frames

RATE = 8000


def tone_track(rng, seconds: float, sources: int, channels: int) -> np.ndarray:
    """Music-like references: harmonic notes with envelopes, one instrument per source."""
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    out = np.zeros((sources, n, channels))
    for s in range(sources):
        f0 = 110 * 2 ** (s * 5 / 12)
        env = np.abs(np.sin(np.pi * t * (1.5 + s))) ** 2
        x = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in range(1, 8)) * env
        x += 0.05 * rng.standard_normal(n)
        for c in range(channels):
            out[s, :, c] = x * (0.6 + 0.4 * c) + 0.01 * rng.standard_normal(n)
    return out


def degrade(rng, refs: np.ndarray) -> np.ndarray:
    """Estimates with leakage, filtering, clipping, band-limiting and noise."""
    mix = refs.sum(0)
    est = 0.8 * refs + 0.15 * mix[None] + 0.02 * rng.standard_normal(refs.shape)
    b = scipy.signal.firwin(31, 0.4)
    est[0] = scipy.signal.lfilter(b, 1, est[0], axis=0)  # low-passed estimate
    est[-1] = np.clip(est[-1], -0.5, 0.5)  # clipped
    return est


def assert_frames_match(refs, ests, tol=0.01, names=("sdr", "isr", "sir", "sar"), device=None):
    a = bsseval_v4_frames(refs, ests, RATE)
    b = fast_frames(refs, ests, RATE, device=device)
    for name in names:
        assert a[name].shape == b[name].shape, name
        assert np.array_equal(np.isnan(a[name]), np.isnan(b[name])), name
        assert np.array_equal(np.isinf(a[name]), np.isinf(b[name])), name  # one source: SIR inf
        ok = np.isfinite(a[name])
        assert np.all(np.abs(a[name][ok] - b[name][ok]) < tol), name
    return a


@pytest.mark.parametrize("sources,channels,seconds", [(3, 2, 3.5), (1, 1, 2.0), (2, 1, 0.7)])
def test_frames_match_museval(sources, channels, seconds):
    rng = np.random.default_rng(sources * 10 + channels)
    refs = tone_track(rng, seconds, sources, channels)
    a = assert_frames_match(refs, degrade(rng, refs))
    assert np.all(np.isfinite(a["sdr"]))  # the case is not vacuous


@pytest.mark.gpu
@pytest.mark.parametrize("sources,channels,seconds", [(3, 2, 3.5), (1, 1, 2.0)])
def test_frames_match_museval_on_cuda(sources, channels, seconds):
    rng = np.random.default_rng(sources * 10 + channels)
    refs = tone_track(rng, seconds, sources, channels)
    a = assert_frames_match(refs, degrade(rng, refs), device="cuda")
    assert np.all(np.isfinite(a["sdr"]))


def band_limited_case(floor: float):
    rng = np.random.default_rng(7)
    refs = tone_track(rng, 4.0, 2, 2)
    sos = scipy.signal.butter(8, 1000, fs=RATE, output="sos")
    refs[1] = scipy.signal.sosfilt(sos, refs[1], axis=0)  # nothing above 1 kHz...
    refs[1] += floor * rng.standard_normal(refs[1].shape)  # ...but a noise floor, as recorded
    refs[0, RATE: 2 * RATE] = 0.0  # a silent second in one reference: NaN frame
    return refs, degrade(rng, refs)


def test_band_limited_references_and_silent_frames_match_museval():
    refs, ests = band_limited_case(1e-3)  # floor 60 dB down
    a = assert_frames_match(refs, ests)
    assert np.isnan(a["sdr"][:, 1]).all() and not np.isnan(a["sdr"][:, 0]).any()


def test_a_reference_with_empty_bands_keeps_sdr_and_the_well_posed_isr():
    """Without a noise floor the Gram matrix is singular up to museval's eps regulariser: the
    filters are then ill-determined and museval's own SIR moves by 3 dB and its SAR by 0.002 dB
    between one and two BLAS threads (see fast/bsseval.py). SDR does not use the filters, and the
    full-band source's ISR uses only its own (regular) block: those still match."""
    refs, ests = band_limited_case(0.0)
    a = bsseval_v4_frames(refs, ests, RATE)
    b = fast_frames(refs, ests, RATE)
    ok = ~np.isnan(a["sdr"])
    assert np.all(np.abs(a["sdr"][ok] - b["sdr"][ok]) < 0.01)
    ok0 = ~np.isnan(a["isr"][0])
    assert np.all(np.abs(a["isr"][0][ok0] - b["isr"][0][ok0]) < 0.01)


def test_batch_equals_tracks_one_by_one():
    rng = np.random.default_rng(3)
    refs = np.stack([tone_track(rng, 2.0, 2, 2) for _ in range(3)])
    ests = np.stack([degrade(rng, r) for r in refs])
    batch = fast_frames(refs, ests, RATE)
    for b in range(3):
        one = fast_frames(refs[b], ests[b], RATE)
        for name in batch:
            assert np.allclose(batch[name][b], one[name], atol=1e-9)


def test_backend_switch_scores_the_same_within_tolerance():
    rng = np.random.default_rng(11)
    refs = tone_track(rng, 3.0, 2, 2)
    ests = degrade(rng, refs)
    R = [Audio(r.T, RATE) for r in refs]
    E = [Audio(e.T, RATE) for e in ests]
    a = bsseval_v4(R, E, backend="reference")
    b = bsseval_v4(R, E, backend="fast")
    for name in a:
        assert np.max(np.abs(a[name] - b[name])) < 0.01


def test_backend_resolution():
    assert backends.resolve(None)["bsseval"] == "fast"  # parity holds: fast by default
    assert backends.resolve(None)["haaqi"] == "fast"
    assert backends.resolve({"haaqi": "reference"})["haaqi"] == "reference"
    assert backends.resolve("reference")["bsseval"] == "reference"
    assert backends.resolve({"sdr": "reference"})["bsseval"] == "reference"
    assert backends.resolve("fast")["pesq"] == "reference"  # no fast PESQ: stays reference
    with pytest.raises(ConfigError, match="unknown metric"):
        backends.resolve({"nope": "fast"})
    with pytest.raises(ConfigError, match="must be reference or fast"):
        backends.resolve({"sdr": "gpu"})


def test_run_records_the_backend_of_each_score(tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app
    from harness.store import Store

    ids = {}
    for choice in ("reference", "fast"):
        res = CliRunner().invoke(app, ["run", "--suite", "speech-enhancement-quick", "--system",
                                       "unprocessed", "--metric", "sdr", "--metrics-backend",
                                       choice, "--out", str(tmp_path), "--jobs", "1", "-q"])
        assert res.exit_code == 0, res.output
        store = Store(tmp_path)
        known = {r["run_id"] for r in store.runs()}
        store.close()
        ids[choice] = next(iter(known - set(ids.values())))
    assert ids["fast"] != ids["reference"]  # the backend is part of the run identity
    store = Store(tmp_path)
    try:
        for choice, rid in ids.items():
            scores = store.scores(rid)
            assert len(scores) and set(scores.backend) == {choice}
            assert store.manifest(rid)["metrics_backend"]["bsseval"] == choice
        a, b = (store.scores(ids[c]).sort_values("item_id").value.to_numpy() for c in ids)
        assert np.max(np.abs(a - b)) < 0.01
    finally:
        store.close()


def test_block_levinson_solves_block_toeplitz_systems_like_a_dense_solver():
    """The Levinson recursion against torch's dense solver on the Gram matrix of a random
    3-channel signal over 40 lags (block Toeplitz by construction), 2 right-hand sides."""
    import torch

    from harness.metrics.fast.bsseval import _toeplitz_residual, block_levinson

    rng = np.random.default_rng(3)
    P, L, Q, N = 3, 40, 2, 4000
    x = scipy.signal.lfilter([1.0], [1.0, -0.9], rng.standard_normal((P, N)), axis=1)  # coloured
    # R(k)[p, q] = sum_n x_p[n] x_q[n + k], k = -(L-1)..L-1
    Rfull = np.stack([[[np.dot(x[p, max(0, -k):N - max(0, k)], x[q, max(0, k):N - max(0, -k)])
                        for q in range(P)] for p in range(P)] for k in range(-(L - 1), L)])
    T = np.block([[Rfull[i - j + L - 1] for j in range(L)] for i in range(L)])
    assert np.allclose(T, T.T)
    D = rng.standard_normal((L * P, Q))
    want = np.linalg.solve(T, D)
    Rt = torch.as_tensor(Rfull)[None]
    X = block_levinson(Rt[:, L - 1:].contiguous(), torch.as_tensor(D.reshape(L, P, Q))[None])
    got = X[0].reshape(L * P, Q).numpy()
    assert np.linalg.norm(got - want) / np.linalg.norm(want) < 1e-9
    assert _toeplitz_residual(Rt, X, torch.as_tensor(D.reshape(L, P, Q))[None]) < 1e-10
    assert _toeplitz_residual(Rt, 1.01 * X, torch.as_tensor(D.reshape(L, P, Q))[None]) > 1e-3


@pytest.mark.parametrize("name", ["sdr", "isr", "sar"])  # one source: SIR is infinite
def test_registered_metrics_match_museval_under_every_backend(name):
    """The registered one-source metric through `evaluate` (reference and fast backends) against
    museval's bss_eval called directly (its metrics.py file, as `import museval` needs ffmpeg):
    median over 1 s frames, NaN frames left out."""
    from helpers import Case, assert_parity

    from harness.metrics.bsseval import museval_metrics

    mm = museval_metrics()
    from harness.metrics import get_metric

    rng = np.random.default_rng(21)
    cases = []
    for i, seconds in enumerate((3.0, 2.5, 4.0)):
        refs = tone_track(rng, seconds, 1, 2)
        ests = degrade(rng, refs) + (0.1 * i) * rng.standard_normal(refs.shape)
        cases.append(Case(f"track {i}", Audio(ests[0].T, RATE), Audio(refs[0].T, RATE)))
    cases.append(Case("silent estimate", Audio(np.zeros((2, RATE * 2)), RATE),
                      Audio(tone_track(rng, 2.0, 1, 2)[0].T, RATE), "invalid"))

    def museval_value(c: Case) -> float:
        out = mm.bss_eval(c.reference.samples.T[None].astype(np.float64),
                          c.estimate.samples.T[None].astype(np.float64), window=RATE, hop=RATE,
                          compute_permutation=False, framewise_filters=False,
                          bsseval_sources_version=False)
        return float(np.nanmedian(out[("sdr", "isr", "sir", "sar").index(name)][0]))

    assert_parity(get_metric(name), cases, museval_value, tol=0.01, min_spread=0.3)
