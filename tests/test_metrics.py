"""Each metric against an independent expectation: closed forms, the reference package, ordering."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import Case, assert_parity, at_snr

from harness.audio import Audio
from harness.metrics import DB_CEILING, evaluate, get_metric, seed_for
from harness.metrics.bsseval import bsseval_v4
from harness.metrics.snr import si_sdr_db, snr_db

RATE = 16000


def add_noise_at(x: np.ndarray, snr: float, seed: int = 0) -> np.ndarray:
    return at_snr(x, snr, rng=seed)


# ------------------------------------------------------------------ SNR and SI-SDR (closed form)
@pytest.mark.parametrize("target", [-5.0, 0.0, 12.5, 40.0])
def test_snr_closed_form(target):
    rng = np.random.default_rng(1)
    r = rng.standard_normal(8000)
    n = rng.standard_normal(8000)
    n *= np.sqrt(np.dot(r, r) / np.dot(n, n) / 10 ** (target / 10))  # ||r||^2/||n||^2 = 10^(t/10)
    assert snr_db(r + n, r) == pytest.approx(target, abs=1e-9)


@pytest.mark.parametrize("scale", [0.01, 1.0, 7.0])
def test_si_sdr_is_scale_invariant_closed_form(scale):
    rng = np.random.default_rng(2)
    r = rng.standard_normal(8000)
    n = rng.standard_normal(8000)
    n -= np.dot(n, r) / np.dot(r, r) * r  # orthogonal to r: the projection recovers scale * r
    n *= np.sqrt(np.dot(r, r) / np.dot(n, n) / 10 ** (15 / 10))
    # SI-SDR = 10 log10(||scale r||^2 / ||scale n||^2) = 15 dB for every scale
    assert si_sdr_db(scale * (r + n), r) == pytest.approx(15.0, abs=1e-9)


def test_perfect_estimate_is_reported_at_the_ceiling():
    r = np.random.default_rng(3).standard_normal(1000)
    assert snr_db(r, r) == DB_CEILING
    assert si_sdr_db(0.5 * r, r) == DB_CEILING


# ------------------------------------------------------------------ PESQ and STOI (reference packages)
def test_pesq_identical_speech_above_4_4_and_falls_with_noise(speech):
    pesq = get_metric("pesq")
    ref = Audio(speech, RATE)
    same = evaluate(pesq, ref, ref)
    assert same.status == "ok" and same.value > 4.4
    values = [evaluate(pesq, Audio(add_noise_at(speech, snr), RATE), ref).value
              for snr in (30, 15, 5, 0)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False)), values


def test_pesq_narrow_band_runs_at_8k(speech):
    ref = Audio(speech, RATE)
    s = evaluate(get_metric("pesq_nb"), Audio(add_noise_at(speech, 10), RATE), ref)
    assert s.status == "ok" and 1.0 < s.value < 4.5


@pytest.mark.parametrize("name", ["stoi", "estoi"])
def test_stoi_orders_with_snr(speech, name):
    metric = get_metric(name)
    ref = Audio(speech, RATE)
    values = [evaluate(metric, Audio(add_noise_at(speech, snr), RATE), ref).value
              for snr in (20, 5, -5, -15)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False)), values
    assert evaluate(metric, ref, ref).value == pytest.approx(1.0, abs=1e-6)


# ------------------------------------------------------------------ BSSEval v4 (known answers)
@pytest.mark.parametrize("gain", [0.5, 0.9, 1.2])
def test_bsseval_v4_gain_is_spatial_distortion_closed_form(gain):
    # museval v4 is BSSEval *images*: SDR compares against the true image, so an estimate
    # g * s has e_spat = (g - 1) s and SDR = ISR = -20 log10 |1 - g|; no artefacts (SAR at ceiling).
    rng = np.random.default_rng(4)
    ref = rng.standard_normal((2, 3 * 8000))
    out = bsseval_v4([Audio(ref, 8000)], [Audio(gain * ref, 8000)])
    expected = -20 * np.log10(abs(1 - gain))
    assert out["sdr"][0] == pytest.approx(expected, abs=1e-3)
    assert out["isr"][0] == pytest.approx(expected, abs=1e-3)
    assert out["sar"][0] > 60


def test_bsseval_white_noise_sdr_equals_snr_and_interference_gives_sir():
    rng = np.random.default_rng(5)
    s1, s2 = rng.standard_normal((2, 1, 4 * 8000))
    est1 = at_snr(s1, 20, rng=rng)
    est2 = s2 + 0.1 * s1  # leaks s1 into source 2 at 20 dB below
    out = bsseval_v4([Audio(s1, 8000), Audio(s2, 8000)], [Audio(est1, 8000), Audio(est2, 8000)])
    # White noise is nearly orthogonal to the 512 filtered copies of the reference:
    # SDR ~= SNR = 20 dB (the projection removes ~512/8000 of the noise energy, < 0.3 dB).
    assert out["sdr"][0] == pytest.approx(20.0, abs=0.35)
    assert out["sar"][0] == pytest.approx(20.0, abs=0.35)
    assert out["sir"][1] == pytest.approx(20.0, abs=0.35)


# ------------------------------------------------------------------ HAAQI (pyclarity reference)
def test_haaqi_matches_pyclarity_and_is_seeded(music_item):
    """The registered metric under both backends against pyclarity's compute_haaqi with the same
    seed (CAD1's 65 dB SPL level1), for listeners from mild to severe; a silent reference is
    refused by every backend; the same seed gives the same value twice."""
    from clarity.evaluator.haaqi import compute_haaqi

    from harness.audio import resample
    from harness.listener import haaqi_audiogram, resolve_panel

    ref = resample(music_item.reference("vocals"), 24000).channel(0)
    panel = resolve_panel("builtin")
    cases = []
    for i, (lid, snr) in enumerate([("N2", 10), ("N4", 0), ("N6", 25)]):
        li = panel.get(lid)
        est = Audio(add_noise_at(ref.mono().astype(np.float64), snr, seed=i), 24000)
        kw = {"listener": li, "ear": "left", "seed": seed_for(music_item.id, li.id, "left")}
        cases.append(Case(f"{lid} snr {snr}", est, ref, kwargs=kw))
    cases.append(Case("silent reference", cases[0].estimate, Audio(np.zeros_like(ref.samples), 24000),
                      "invalid", kwargs=cases[0].kwargs))

    def pyclarity(c: Case) -> float:
        r, e = c.reference.mono().astype(np.float64), c.estimate.mono().astype(np.float64)
        np.random.seed(c.kwargs["seed"])
        level1 = 65 - 20 * np.log10(np.sqrt(np.mean(r ** 2)))
        return compute_haaqi(e, r, 24000, 24000,
                             haaqi_audiogram(c.kwargs["listener"].audiogram_left), 1, level1)

    got = assert_parity(get_metric("haaqi"), cases, pyclarity, tol=1e-9, min_spread=0.05)
    again = evaluate(get_metric("haaqi"), cases[0].estimate, ref, **cases[0].kwargs)
    assert again.value == got["fast"][0]


# ------------------------------------------------------------------ statuses, never a silent 0
def test_bad_inputs_get_statuses_with_reasons(speech):
    ref = Audio(speech, RATE)
    nan = speech.copy()
    nan[100] = np.nan
    cases = [
        ("pesq", Audio(nan, RATE), ref, "invalid", "NaN"),
        ("stoi", Audio(np.zeros_like(speech), RATE), ref, "invalid", "silent"),
        ("pesq", Audio(np.zeros_like(speech), RATE), ref, "invalid", "silent"),
        ("si_sdr", ref, Audio(np.zeros_like(speech), RATE), "invalid", "reference is silent"),
        ("snr", Audio(speech[:-1], RATE), ref, "invalid", "shape"),
        ("pesq", Audio(speech[:2000], RATE), Audio(speech[:2000], RATE), "failed", "too short"),
        ("stoi", Audio(speech[:3000], RATE), Audio(speech[:3000], RATE), "failed", "30 frames"),
    ]
    for name, est, r, status, reason in cases:
        s = evaluate(get_metric(name), est, r)
        assert (s.status, s.value) == (status, None), (name, s)
        assert reason in s.reason, (name, s.reason)


# ------------------------------------------------------------------ scoring context, no globals
def test_two_backends_interleaved_in_one_process_each_give_their_own_values(monkeypatch):
    """The backend travels with the ScoringContext, not with the process: scoring one item
    under `reference` and `fast` alternately calls each implementation for its own context,
    labels each score with it, and equals each backend scored alone."""
    import pystoi

    import harness.metrics.bsseval as bss_mod
    import harness.metrics.fast.bsseval as fast_bss
    import harness.metrics.fast.stoi as fast_stoi
    from harness.metrics.backends import ScoringContext
    from harness.suites import resolve_suite
    from harness.tasks import get_protocol

    calls = []

    def spy(name, fn):
        def wrapped(*a, **k):
            calls.append(name)
            return fn(*a, **k)
        return wrapped

    monkeypatch.setattr(pystoi, "stoi", spy("stoi:reference", pystoi.stoi))
    monkeypatch.setattr(fast_stoi, "stoi_scores", spy("stoi:fast", fast_stoi.stoi_scores))
    monkeypatch.setattr(bss_mod, "bsseval_v4_frames", spy("sdr:reference", bss_mod.bsseval_v4_frames))
    monkeypatch.setattr(fast_bss, "bsseval_v4_frames", spy("sdr:fast", fast_bss.bsseval_v4_frames))

    item = resolve_suite("speech-enhancement-quick").items[0]
    protocol = get_protocol("speech-enhancement")
    noisy = protocol.anchor("unprocessed", item, None)
    ctx = {b: ScoringContext({"stoi": b, "bsseval": b}) for b in ("reference", "fast")}
    alone = {b: protocol.score(item, noisy, None, ["stoi", "sdr"], ctx=ctx[b]) for b in ctx}
    calls.clear()
    for b in ("reference", "fast", "reference", "fast"):
        rows = protocol.score(item, noisy, None, ["stoi", "sdr"], ctx=ctx[b])
        assert calls == [f"stoi:{b}", f"sdr:{b}"], (b, calls)
        calls.clear()
        assert [r.backend for r in rows] == [b, b]
        assert [r.value for r in rows] == [r.value for r in alone[b]]
    # the two implementations agree to their parity tolerance, and are not the same call
    for r, f in zip(alone["reference"], alone["fast"], strict=True):
        assert r.value == pytest.approx(f.value, abs=1e-6)


# ------------------------------------------------------------------ improvement metrics
def orthogonal_at(ref: np.ndarray, sdr_db: float, seed: int) -> np.ndarray:
    """ref plus noise exactly orthogonal to it, at `sdr_db` below it: SI-SDR = sdr_db exactly."""
    n = np.random.default_rng(seed).standard_normal(ref.shape)
    n -= np.dot(n.ravel(), ref.ravel()) / np.dot(ref.ravel(), ref.ravel()) * ref
    n *= np.sqrt(np.sum(ref ** 2) / np.sum(n ** 2) * 10 ** (-sdr_db / 10))
    return ref + n


def test_si_sdri_is_the_closed_form_difference_and_says_why_when_it_cannot_be():
    from harness.errors import InvalidInput
    from harness.metrics.base import IMPROVEMENT, value_of

    rng = np.random.default_rng(9)
    ref = rng.standard_normal((1, RATE))
    est, mix = Audio(orthogonal_at(ref, 12.0, 1), RATE), Audio(orthogonal_at(ref, -3.0, 2), RATE)
    r = Audio(ref, RATE)
    m = get_metric("si_sdri")
    assert m.kind == IMPROVEMENT and m.of is get_metric("si_sdr")

    def mixture() -> float:
        return value_of(evaluate(get_metric("si_sdr"), mix, r), "mixture: ")

    s = evaluate(m, est, r, baseline=mixture, stem="speech")
    assert (s.status, s.stem) == ("ok", "speech")
    assert s.value == pytest.approx(15.0, abs=1e-4)
    # no baseline given, a silent estimate, a baseline that has no value: each with its reason
    assert evaluate(m, est, r).status == "invalid"
    silent = evaluate(m, Audio(np.zeros_like(ref), RATE), r, baseline=mixture)
    assert (silent.status, silent.value) == ("invalid", None) and "silent" in silent.reason

    def no_mixture() -> float:
        raise InvalidInput("mixture: reference is silent")

    bad = evaluate(m, est, r, baseline=no_mixture)
    assert (bad.status, bad.reason) == ("invalid", "mixture: reference is silent")


def test_cocktail_fork_si_sdri_equals_the_closed_form_per_stem():
    from harness.tasks import get_protocol

    protocol = get_protocol("cocktail-fork")
    rng = np.random.default_rng(3)
    refs = {s: rng.standard_normal((1, RATE)) for s in ("speech", "music", "sfx")}
    mixture = sum(refs.values())
    # the closed form: SI-SDR of the mixture against each stem, from first principles
    base = {}
    for s, x in refs.items():
        a = np.dot(mixture.ravel(), x.ravel()) / np.dot(x.ravel(), x.ravel())
        base[s] = 10 * np.log10(np.sum((a * x) ** 2) / np.sum((mixture - a * x) ** 2))
    item = _memory_item("cocktail-fork", {"mixture": mixture}, refs)
    outputs = {s: Audio(orthogonal_at(x, 10.0, i), RATE) for i, (s, x) in enumerate(refs.items())}
    rows = protocol.score(item, outputs, None, ["si_sdri"])
    assert {r.stem: r.status for r in rows} == dict.fromkeys(refs, "ok")
    for r in rows:
        assert r.value == pytest.approx(10.0 - base[r.stem], abs=1e-3), r


def _memory_item(task: str, inputs: dict, refs: dict):
    """An Item whose files live in a temporary folder (the protocol reads them through Item)."""
    import tempfile
    from pathlib import Path

    from harness.audio import write
    from harness.suites.types import Item, file_ref

    root = Path(tempfile.mkdtemp())

    def ref(name, x):
        return file_ref(root, write(root / f"{name}.wav", Audio(x, RATE), "FLOAT"))

    return Item("it", task, root, {k: ref(k, v) for k, v in inputs.items()},
                {k: ref(k, v) for k, v in refs.items()})


def test_every_metric_of_a_family_with_a_fast_kernel_registers_both_implementations():
    """The backend table (metrics/backends.py) and the metrics agree: a family said to have a fast
    kernel gives each of its metrics a `fast` implementation distinct from the reference one, and
    no other metric claims one (so a score labelled `fast` was computed by the fast code)."""
    from harness.metrics import all_metrics
    from harness.metrics.backends import HAS_FAST, family_of
    from harness.metrics.base import IMPROVEMENT

    for name, m in all_metrics().items():
        if m.kind == IMPROVEMENT:
            assert m.fn is None and m.fast is None, name
        elif family_of(name) in HAS_FAST:
            assert m.fast is not None and m.fast is not m.fn, name
            assert m.implementation("fast") is m.fast and m.implementation("reference") is m.fn
        else:
            assert m.fast is None and m.implementation("fast") is m.fn, name


def test_usdr_closed_form_cases():
    """uSDR (MDX 2021 / SDX 2023): the error energy a hundredth of the reference's is 20 dB;
    a silent estimate 0 dB (the error is the reference); one stem over both channels at once."""
    from harness.metrics.snr import usdr_db

    rng = np.random.default_rng(3)
    ref = rng.standard_normal((2, 48000))
    noise = rng.standard_normal((2, 48000))
    noise *= np.sqrt(np.sum(ref ** 2) / np.sum(noise ** 2) / 100)
    assert abs(usdr_db(ref + noise, ref) - 20.0) < 1e-9
    assert abs(usdr_db(np.zeros_like(ref), ref)) < 1e-12
    s = evaluate(get_metric("usdr"), Audio(ref, 24000), Audio(ref, 24000))
    assert s.status == "ok" and s.value == 100.0  # perfect: (E + 1e-7) / 1e-7, over the ceiling


def demucs_new_sdr():
    """demucs's own `new_sdr` (demucs/evaluate.py, the MDX challenge definition), compiled from the
    installed file: the module imports `dora`, a training framework not installed here, so the
    one function is taken from it as it ships."""
    import ast
    from pathlib import Path

    import demucs
    import torch

    path = Path(demucs.__file__).parent / "evaluate.py"
    tree = ast.parse(path.read_text())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "new_sdr")
    namespace = {"th": torch}
    exec(compile(ast.Module([fn], type_ignores=[]), str(path), "exec"), namespace)
    return namespace["new_sdr"]


def test_usdr_equals_demucs_new_sdr():
    """uSDR through the shared parity tester against the MDX definition as demucs ships it
    (references and estimates as demucs's eval_track passes them: batch x sources x time x
    channels, float64)."""
    import torch

    new_sdr = demucs_new_sdr()
    rng = np.random.default_rng(11)
    ref = rng.standard_normal((2, 44100)) * np.linspace(0.1, 1, 44100)

    def noisy(snr):
        return at_snr(ref.T, snr, rng=rng).T

    cases = [Case(f"noise at {snr} dB", Audio(noisy(snr), 44100), Audio(ref, 44100)) for snr in (-5, 0, 10, 30)]
    cases += [
        Case("scaled by 0.5", Audio(0.5 * ref, 44100), Audio(ref, 44100)),
        Case("one channel silent", Audio(np.stack([ref[0], 0 * ref[1]]), 44100), Audio(ref, 44100)),
        Case("silent estimate", Audio(np.zeros_like(ref), 44100), Audio(ref, 44100)),
        Case("mono", Audio(ref[0] + 0.1 * rng.standard_normal(44100), 44100), Audio(ref[0], 44100)),
    ]

    def reference(case: Case) -> float:
        r = torch.from_numpy(np.atleast_2d(case.reference.samples).T.copy())[None, None]
        e = torch.from_numpy(np.atleast_2d(case.estimate.samples).T.copy())[None, None]
        return float(new_sdr(r.double(), e.double())[0, 0])

    assert_parity(get_metric("usdr"), cases, reference, 1e-9, min_spread=30.0)


def test_usdr_in_a_music_remix_run_is_the_closed_form_on_the_scored_signals(tmp_path):
    """The oracle's uSDR is near the ceiling (its stems are resampled with soxr HQ, as HAAQI's
    recipe does, the BSSEval references with VHQ: they differ by ~90 dB); the unprocessed
    anchor's equals the formula on its outputs (both ears stacked) against the 24 kHz stem."""
    from harness.config import RunConfig
    from harness.planning import plan
    from harness.runner import execute
    from harness.store import Store
    from harness.suites import resolve_suite
    from harness.tasks import get_protocol

    execute(plan(RunConfig(out=str(tmp_path), suites=["music-remix-quick"], systems=["unprocessed", "oracle"],
                           metrics=["usdr"], listeners=["NH"], jobs=1, quiet=True)), progress=False)
    with Store(tmp_path, create=False) as st:
        df = st.scores(st.resolve("latest"))
    assert (df.status == "ok").all() and len(df) == 2 * 2 * 4
    assert (df[df.system == "oracle"].value > 80.0).all()
    item = resolve_suite("music-remix-quick").items[0]
    proto = get_protocol("music-remix")
    outs = proto.anchor("unprocessed", item, None)
    from harness.audio import resample
    from harness.metrics.snr import usdr_db

    for stem in ("vocals", "drums", "bass", "other"):
        ref = resample(item.reference(stem), 24000).samples.astype(np.float64)
        est = np.stack([outs[f"{e}_{stem}"].samples[0][: ref.shape[1]] for e in ("left", "right")])
        r, e = ref.ravel(), est.astype(np.float64).ravel()
        want = 10 * np.log10((r @ r + 1e-7) / ((r - e) @ (r - e) + 1e-7))
        got = df[(df.system == "unprocessed") & (df.item_id == item.id) & (df.stem == stem)].value.iloc[0]
        assert abs(got - want) < 1e-6, (stem, got, want)
    del usdr_db
