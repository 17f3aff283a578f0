"""Suite generators: deterministic, and every item measures what was asked (SNR, SIR, loudness,
RT60, band edges, offsets), measured here from the stored files with independent code
(scipy, pyloudnorm, pyroomacoustics' own RT60 measure)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
import soxr
from conftest import run_cli
from scipy import signal

from harness.suites import load_suite
from harness.suites.synth.tools import PACKAGES, missing

_MISSING = missing(["flite", "text2wave", "fluidsynth"])
_WHY = "generators need flite, festival and fluidsynth: sudo apt-get install " + " ".join(PACKAGES.values())
if _MISSING and os.environ.get("HARNESS_REQUIRE_SYNTH"):  # CI installs them: never skip there
    raise RuntimeError(f"HARNESS_REQUIRE_SYNTH is set but {', '.join(_MISSING)} missing; {_WHY}")
pytestmark = pytest.mark.skipif(bool(_MISSING), reason=_WHY)

# name -> (generator, arguments): small but covering every factor level of each grid
SUITES = {
    "se": ("speech-enhancement", ["--items", "6", "--seconds", "2"]),
    "bwe": ("bandwidth-extension", ["--items", "3", "--seconds", "2"]),
    "restoration": ("speech-restoration", ["--items", "5", "--seconds", "2"]),
    "music": ("music-remix", ["--items", "1", "--seconds", "2"]),
    "rebalance": ("music-rebalance", ["--items", "2", "--seconds", "2"]),
    "cf": ("cocktail-fork", ["--items", "2", "--seconds", "2.5"]),
    "crowd": ("crowd-enhancement", ["--items", "2", "--seconds", "2", "-O", "recordings=4"]),
    "crowd2013": ("crowd-enhancement", ["--items", "1", "--seconds", "3", "--preset", "2013"]),
    "massive": ("crowd-enhancement", ["--items", "1", "--seconds", "1.5", "--preset", "massive",
                                      "-O", "sensors=12"]),
}


def make(folder: Path, key: str) -> Path:
    name, args = SUITES[key]
    r = run_cli("suites", "make", name, *args, "--seed", "7", "--out", str(folder / key), "-q")
    assert r.returncode == 0, r.stderr
    return folder / key


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("generated")
    return {key: make(root, key) for key in SUITES}


def read(suite_root: Path, rel: str) -> tuple[np.ndarray, int]:
    x, rate = sf.read(str(suite_root / rel), dtype="float64", always_2d=True)
    return (x[:, 0] if x.shape[1] == 1 else x.T), rate


def db(x: float) -> float:
    return float(10 * np.log10(x))


def band_edges(x: np.ndarray, y: np.ndarray, rate: float, gain_db: float = 0.0,
               lo_hz: float = 40.0, y_rate: float | None = None) -> tuple[float, float]:
    """Lowest and highest frequencies where |H| = sqrt(Pyy / Pxx) is within 3 dB of the gain,
    scanning outwards from the band's centre (Welch, Hann segments of 0.256 s at 16 kHz
    resolution), below 0.45 x the lower rate (clear of the resamplers' transition bands).
    y may be at a lower rate y_rate (a decimated signal): its PSD is compared on its own grid."""
    y_rate = y_rate or rate
    f, pyy = signal.welch(y, y_rate, nperseg=int(4096 * y_rate / 16000))
    fx, pxx = signal.welch(x, rate, nperseg=int(4096 * rate / 16000))
    h = 10 * np.log10(pyy / np.interp(f, fx, pxx)) - gain_db
    ok = (h >= -3.0) & (f >= lo_hz) & (f <= 0.45 * min(rate, y_rate))
    centre = int(np.argmax(np.where(ok, h, -np.inf)))
    lo = centre
    while lo > 0 and ok[lo - 1]:
        lo -= 1
    hi = centre
    while hi < len(f) - 1 and ok[hi + 1]:
        hi += 1
    return float(f[lo]), float(f[hi])


# ------------------------------------------------------------------ determinism
@pytest.mark.parametrize("key", list(SUITES))
def test_same_seed_same_bytes(made, tmp_path, key):
    again = make(tmp_path, key)
    a, b = load_suite(made[key]), load_suite(again)
    assert a.hash == b.hash  # the manifest holds every file's sha256 and every parameter
    assert len(a.items) == int(SUITES[key][1][1])


def test_a_bigger_suite_extends_a_smaller_one(made, tmp_path):
    r = run_cli("suites", "make", "bandwidth-extension", "--items", "4", "--seconds", "2",
                "--seed", "7", "--out", str(tmp_path / "big"), "-q")
    assert r.returncode == 0, r.stderr
    small, big = load_suite(made["bwe"]), load_suite(tmp_path / "big")
    assert [it.to_json() for it in big.items[:3]] == [it.to_json() for it in small.items]
    other = run_cli("suites", "make", "bandwidth-extension", "--items", "1", "--seconds", "2",
                    "--seed", "8", "--out", str(tmp_path / "seed8"), "-q")
    assert other.returncode == 0
    assert load_suite(tmp_path / "seed8").items[0].hash != small.items[0].hash


# ------------------------------------------------------------------ speech-enhancement
def test_speech_enhancement_measures_what_was_asked(made):
    import pyroomacoustics as pra

    root = made["se"]
    suite = load_suite(root)
    meta = [it.metadata for it in suite.items]
    # one pass of the grid: every device and every RT60 appear
    assert {m["device"]["name"] for m in meta} == {"studio", "headset", "laptop", "phone",
                                                    "camcorder", "handheld-clipping"}
    assert {m["room"]["rt60_s"] for m in meta} == {0.0, 0.3, 0.6, 0.9}
    meter = pyloudnorm.Meter(16000)
    for it, m in zip(suite.items, meta, strict=True):
        clean, rate = read(root, it.references["clean"].path)
        assert rate == 16000
        assert meter.integrated_loudness(clean) == pytest.approx(m["level_lufs"], abs=0.5)
        s_img, dev_rate = read(root, m["components"]["speech_image"])
        n_img, _ = read(root, m["components"]["noise_image"])
        noisy, in_rate = read(root, it.inputs["input"].path)
        assert in_rate == dev_rate == m["device"]["rate"]
        assert db(np.sum(s_img**2) / np.sum(n_img**2)) == pytest.approx(m["snr_db"], abs=0.1)
        thr = m["device"]["clip_threshold"]
        if thr is None:
            assert np.max(np.abs(noisy - (s_img + n_img))) < 1e-6
        else:  # clipped exactly at the recorded threshold, untouched below it
            mix = s_img + n_img
            assert np.max(np.abs(noisy)) == pytest.approx(thr, abs=1e-6)
            below = np.abs(mix) < thr * 0.999
            assert np.max(np.abs(noisy[below] - mix[below])) < 1e-6
            assert np.mean(~below) > 0.001
        if m["room"]["rt60_s"] > 0:
            h, _ = read(root, m["components"]["rir"])
            rt = pra.experimental.measure_rt60(h, 16000, decay_db=20)
            assert rt == pytest.approx(m["room"]["rt60_s"], rel=0.2)
            wet = signal.fftconvolve(clean, h)[: len(clean)]
        else:
            wet = clean
        low, high = m["device"]["band_hz_effective"]
        if low is None and high is None:
            continue
        x = soxr.resample(wet, 16000, dev_rate, quality="VHQ")
        gain = m["device"]["gain_db"] + m["headroom_gain_db"]
        lo_m, hi_m = band_edges(x, s_img, dev_rate, gain)
        if low is not None:
            assert lo_m == pytest.approx(low, rel=0.1), (m["device"], lo_m)
        if high is not None:
            assert hi_m == pytest.approx(high, rel=0.1), (m["device"], hi_m)


# ------------------------------------------------------------------ bandwidth-extension
def test_bandwidth_extension_decimation_and_band_limit(made):
    root = made["bwe"]
    suite = load_suite(root)
    assert sorted(it.metadata["ratio"] for it in suite.items) == [2, 4, 6]
    for it in suite.items:
        r = it.metadata["ratio"]
        clean, rate = read(root, it.references["clean"].path)
        x, xrate = read(root, it.inputs["input"].path)
        assert rate == xrate == 16000 and len(x) == len(clean) and len(clean) % 12 == 0
        # the input passes through the decimated signal: order-8 Chebyshev I, as scipy.decimate
        low = signal.decimate(clean, r, n=8, ftype="iir", zero_phase=True)
        g = 10 ** (it.metadata["headroom_gain_db"] / 20)
        assert np.max(np.abs(x[::r] - g * low)) < 1e-6
        # the low-rate signal's -3 dB point is the anti-alias edge, 0.8 x its Nyquist
        _, hi = band_edges(clean, x[::r] / g, 16000, lo_hz=100.0, y_rate=16000 / r)
        assert hi == pytest.approx(0.8 * 8000 / r, rel=0.1), (r, hi)


# ------------------------------------------------------------------ speech-restoration
def test_speech_restoration_reference_is_wide_band_and_input_at_most_16k(made):
    root = made["restoration"]
    suite = load_suite(root)
    assert {it.metadata["device"]["name"] for it in suite.items} == {
        "headset", "laptop", "phone", "camcorder", "handheld-clipping"}
    for it in suite.items:
        clean, rate = read(root, it.references["clean"].path)
        x, xrate = read(root, it.inputs["input"].path)
        assert rate == 32000
        assert xrate == min(it.metadata["device"]["rate"], 16000) == it.metadata["input_rate_hz"]
        assert len(x) == len(clean) * xrate // rate
        # the reference carries the band a 16 kHz recording cannot: 8-16 kHz within 45 dB of
        # the whole (HTS slt renders at 32 kHz)
        f, p = signal.welch(clean, rate, nperseg=1024)
        assert db(p[f >= 8000].sum() / p.sum()) > -45
        # the input is that speech: its envelope follows the reference's (correlation of
        # 20 ms frame energies, the input resampled to the reference's rate)
        up = soxr.resample(x, xrate, rate)[: len(clean)]
        e = [np.log(np.convolve(s ** 2, np.ones(640), "valid")[::320] + 1e-9) for s in (clean, up)]
        assert np.corrcoef(e[0], e[1])[0, 1] > 0.5


# ------------------------------------------------------------------ music-remix
def test_music_remix_stems_sum_to_the_mixture_at_the_asked_loudness(made):
    root = made["music"]
    it = load_suite(root).items[0]
    mix, rate = read(root, it.inputs["mixture"].path)
    stems = [read(root, it.references[s].path)[0] for s in ("vocals", "drums", "bass", "other")]
    assert rate == 44100 and mix.shape == (2, 2 * 44100)
    assert np.max(np.abs(mix - sum(stems))) < 1e-7
    assert all(np.sqrt(np.mean(s**2)) > 1e-3 for s in stems)  # every stem plays
    assert pyloudnorm.Meter(44100).integrated_loudness(mix.T) == pytest.approx(-23.0, abs=0.5)


def test_music_rebalance_is_the_same_songs_with_requested_gains(made):
    songs = load_suite(made["music"]).items
    scenes = load_suite(made["rebalance"]).items
    assert scenes[0].task == "music-rebalance"
    # Same seed and length: the first scene is the music-remix generator's first song, byte for byte.
    assert {k: v.sha256 for k, v in scenes[0].references.items()} == \
        {k: v.sha256 for k, v in songs[0].references.items()}
    gains = [g for it in scenes for g in it.metadata["gains_db"].values()]
    assert len(gains) == 8 and all(-10 <= g <= 10 and (2 * g) % 1 == 0 for g in gains)
    assert len(set(gains)) > 4  # drawn, not constant


# ------------------------------------------------------------------ cocktail-fork
def test_cocktail_fork_stem_loudness(made):
    root = made["cf"]
    meter = pyloudnorm.Meter(44100)
    nominal = {"speech": -17.0, "music": -24.0, "sfx": -21.0}
    for it in load_suite(root).items:
        mix, rate = read(root, it.inputs["mixture"].path)
        total = 0
        for stem in ("speech", "music", "sfx"):
            x, _ = read(root, it.references[stem].path)
            target = it.metadata["loudness"][stem]["lufs"]
            assert abs(target - nominal[stem]) <= 3.0  # +/-2 LU per class, +/-1 LU per clip
            assert meter.integrated_loudness(x) == pytest.approx(target, abs=0.5)
            total = total + x
        assert rate == 44100 and mix.ndim == 1
        assert np.max(np.abs(mix - total)) < 1e-6


# ------------------------------------------------------------------ crowd-enhancement
def test_crowd_offsets_are_exact_and_sir_as_asked(made):
    root = made["crowd"]
    for it in load_suite(root).items:
        offsets = [rec["offset_s"] for rec in it.metadata["recordings"]]
        assert offsets[0] == 0 and any(offsets[1:])  # rec000 holds the scene's clock
        ref, src_rate = read(root, it.references["source"].path)
        rates = set()
        for rec in it.metadata["recordings"]:
            target, rate = read(root, rec["components"]["target_image"])
            rates.add(rate)
            x, xr = read(root, it.inputs[rec["role"]].path)
            assert xr == rate == rec["device"]["rate"] and len(x) == len(target)
            r = soxr.resample(ref, src_rate, rate, quality="VHQ")
            xc = signal.correlate(target, r, mode="full", method="fft")
            lag = int(np.argmax(xc)) - (len(r) - 1)  # target[j + lag] ~ r[j]
            assert -lag == rec["offset_samples"], rec
            assert rec["offset_samples"] == round(rec["offset_s"] * rate)
            if "interference_image" in rec["components"]:
                interf, _ = read(root, rec["components"]["interference_image"])
                assert db(np.sum(target**2) / np.sum(interf**2)) == pytest.approx(rec["sir_db"], abs=0.1)


def test_crowd_2013_preset_is_the_papers_three_inputs(made):
    root = made["crowd2013"]
    it = load_suite(root).items[0]
    assert sorted(it.inputs) == ["prior_interference", "prior_source", "rec000", "rec001", "rec002"]
    ref, rate = read(root, it.references["source"].path)
    assert rate == 44100
    recs = {r["role"]: r for r in it.metadata["recordings"]}
    expected = {"rec000": (None, 8000.0), "rec001": (500.0, None), "rec002": (500.0, 11500.0)}
    for role, (low, high) in expected.items():
        rec = recs[role]
        target, _ = read(root, rec["components"]["target_image"])
        lo_m, hi_m = band_edges(ref, target, rate, rec["headroom_gain_db"], lo_hz=20.0)
        if low is not None:
            assert lo_m == pytest.approx(low, rel=0.1)
        if high is not None:
            assert hi_m == pytest.approx(high, rel=0.1)
    assert recs["rec000"]["interferer_voice"] != recs["rec001"]["interferer_voice"]
    assert recs["rec000"]["sir_db"] == recs["rec001"]["sir_db"] == 0.0
    x2, _ = read(root, it.inputs["rec002"].path)
    thr = recs["rec002"]["clip_threshold"]
    assert np.max(np.abs(x2)) == pytest.approx(thr, abs=1e-6)
    assert np.mean(np.abs(x2) >= thr - 1e-6) > 0.001
    prior, prate = read(root, it.inputs["prior_source"].path)
    assert prate == 44100 and len(prior) == 30 * 44100


def test_crowd_massive_is_a_level_by_distance_mixture(made):
    root = made["massive"]
    it = load_suite(root).items[0]
    geo = json.loads((root / it.metadata["geometry"]).read_text())
    src = np.array(geo["sources_m"])
    mics = np.array(geo["sensors_m"])
    assert len(src) == 30 and len(mics) == 12
    assert sum(k.startswith("talker") for k in geo["source_kinds"]) == 20
    assert src[0].tolist() == [25.0, 25.0]  # the target talker at the centre
    assert (mics >= 0).all() and (mics <= 50).all()
    gains = 1.0 / np.maximum(np.linalg.norm(mics[:, None] - src[None], axis=2), 1.0)
    assert np.allclose(gains, geo["gains"], rtol=1e-12, atol=0)
    sources = np.stack([read(root, f"{it.metadata['geometry'].split('/')[0]}/sources/src{k:02d}.flac")[0]
                        for k in range(30)])
    talkers = sources[1:20]
    # the target is 20 dB louder than the other talkers at the same distance
    assert db(np.mean(sources[0] ** 2) / np.mean(talkers**2)) == pytest.approx(20.0, abs=0.1)
    for l_ in range(12):
        x, _ = read(root, it.inputs[f"rec{l_:04d}"].path)
        assert np.max(np.abs(x - np.array(geo["gains"][l_]) @ sources)) < 1e-5


# ------------------------------------------------------------------ scoring every generated suite
@pytest.mark.parametrize("key", list(SUITES))
def test_anchors_run_on_every_generated_suite(made, tmp_path, key):
    extra = ["--listener", "NH"] if key in ("music", "rebalance") else []
    r = run_cli("run", "--suite", str(made[key]), "--system", "unprocessed", "--system", "oracle",
                "--out", str(tmp_path / "store"), "-q", *extra)
    assert r.returncode == 0, r.stderr
    lower_is_better = {"lsd"}
    from harness.store import Store

    store = Store(tmp_path / "store")
    df = store.scores(store.resolve("latest"))
    store.close()
    assert (df.status == "ok").all(), df[df.status != "ok"].reason.unique()
    means = df.groupby(["system", "metric"]).value.mean().unstack()
    for metric in means.columns:
        o, u = means.loc["oracle", metric], means.loc["unprocessed", metric]
        assert (o < u) if metric in lower_is_better else (o > u), (metric, o, u)

