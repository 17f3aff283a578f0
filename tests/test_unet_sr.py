"""unet-sr: the subpixel shuffle against a hand-written loop, the paper's shapes, the spline path
against scipy, the LSD loss against the metric, and the training data against the suite
generator's chain."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from scipy import interpolate, signal

from systems.sr import unet


def test_subpixel_shuffle_equals_a_hand_written_reshape():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 5))  # (B, r*C, N) with r = 2, C = 3
    want = np.zeros((2, 3, 10))
    for b in range(2):
        for c in range(3):
            for n in range(5):
                for i in range(2):
                    want[b, c, 2 * n + i] = x[b, i * 3 + c, n]
    got = unet.subpixel1d(torch.tensor(x)).numpy()
    np.testing.assert_array_equal(got, want)


def test_subpixel_shuffle_refuses_an_odd_channel_count():
    with pytest.raises(ValueError, match="not a multiple of 2"):
        unet.subpixel1d(torch.zeros(1, 3, 4))


@pytest.mark.parametrize("arch", [unet.ARCH_SMALL, unet.ARCH_PAPER])
def test_the_network_keeps_the_length_and_halves_it_per_block(arch):
    model = unet.UNetSR(arch).eval()
    n = model.multiple * 8
    y = model(torch.zeros(2, 1, n), torch.tensor([2.0, 4.0]))
    assert y.shape == (2, 1, n)
    assert model.multiple == 2 ** (len(arch["filters"]) + 1) == 32


def test_the_paper_size_parameter_count():
    # conv weights + biases of the authors' audiounet.py at B = 4 (filters 128/384/512/512,
    # kernels 65/33/17/9, bottleneck 512 k9, final 2 k9), one input channel
    f, k = [128, 384, 512, 512], [65, 33, 17, 9]
    count, prev = 0, 1
    for fi, ki in zip(f, k, strict=True):
        count += prev * fi * ki + fi
        prev = fi
    count += prev * 512 * 9 + 512
    prev = 512
    for fi, ki in zip(reversed(f), reversed(k), strict=True):
        count += prev * 2 * fi * ki + 2 * fi
        prev = 2 * fi
    count += prev * 2 * 9 + 2
    assert unet.parameter_count(unet.ARCH_PAPER) == count


def test_a_zero_initialised_small_network_is_the_spline():
    model = unet.UNetSR(unet.ARCH_SMALL).eval()
    x = np.random.default_rng(1).normal(size=3000) * 0.05
    np.testing.assert_allclose(unet.upsample(model, x, 4), x, atol=1e-6)


def test_chunked_upsampling_equals_one_pass():
    torch.manual_seed(0)
    arch = {**unet.ARCH_SMALL, "filters": [4, 8, 8, 8], "bottleneck": 8, "zero_last": False}
    model = unet.UNetSR(arch).eval()
    x = np.random.default_rng(2).normal(size=5000) * 0.05
    whole = unet.upsample(model, x, 4, chunk=1 << 20)
    parts = unet.upsample(model, x, 4, chunk=1024)
    # each chunk sees a margin of the receptive field, zero padded at the ends as the whole is
    np.testing.assert_allclose(parts, whole, atol=1e-5)


def test_the_spline_path_equals_scipy():
    from harness.suites.synth.gen_speech import spline_upsample

    rng = np.random.default_rng(3)
    low = rng.normal(size=200)
    ref = interpolate.CubicSpline(np.arange(200) * 4, low, bc_type="not-a-knot")(np.arange(800))
    np.testing.assert_allclose(spline_upsample(low, 4, 800), ref, atol=1e-9)


def test_the_lsd_loss_equals_the_metric():
    from harness.metrics.spectral import lsd
    from systems.sr.train import lsd_loss

    rng = np.random.default_rng(4)
    a, b = rng.normal(size=8192), rng.normal(size=8192) * 0.3 + 0.1 * rng.normal(size=8192)
    got = float(lsd_loss(torch.tensor(a)[None, None], torch.tensor(b)[None, None]))
    assert got == pytest.approx(lsd(a, b), rel=1e-9)


def test_a_training_example_is_the_suite_generators_chain():
    from systems.sr.train import SpeechSR, default_config

    data = SpeechSR(default_config()["data"], 5)
    clean = np.random.default_rng(6).normal(size=4800)
    x = data.pair(clean, 4)
    low = signal.decimate(clean, 4, n=8, ftype="iir", zero_phase=True)
    np.testing.assert_allclose(x[::4], low, atol=1e-9)  # the spline passes through the low-rate samples


def test_the_shipped_speech_checkpoint_is_small_and_trained_on_no_suite_voice():
    from harness import checkpoints
    from harness.suites.synth.speech import VOICES
    from systems.sr.system import CHECKPOINTS

    path = CHECKPOINTS / "unet-sr-speech.safetensors"
    assert path.stat().st_size < 16 * 2**20
    tensors, record = checkpoints.load(path, "unet-sr")
    assert record["parameters"] == unet.parameter_count(record["architecture"]["config"])
    assert not set(record["data"]["voices"]) & set(VOICES)
    # trained before the data record named its rate (16 kHz, then the only one): the system reads
    # a record without one as 16 kHz
    assert record["data"].get("rate", 16000) == 16000 and record["data"]["ratios"] == [2, 4, 6]


SHIPPED_PER_RATIO = (2, 4, 6)


@pytest.mark.parametrize("ratio", SHIPPED_PER_RATIO)
def test_the_shipped_per_ratio_checkpoints_are_small_for_their_ratio_and_no_suite_voice(ratio):
    from harness import checkpoints
    from harness.suites.synth.speech import VOICES
    from systems.sr.system import CHECKPOINTS

    path = CHECKPOINTS / f"unet-sr-speech-{ratio}x.safetensors"
    assert path.stat().st_size < 16 * 2**20
    _, record = checkpoints.load(path, "unet-sr")
    assert record["parameters"] == unet.parameter_count(record["architecture"]["config"])
    assert record["data"]["rate"] == 16000 and record["data"]["ratios"] == [ratio]
    assert record["data"]["voices"] and not set(record["data"]["voices"]) & set(VOICES)


def bwe_item(folder, ratio: int, seconds: float = 1.0):
    """A bandwidth-extension item of the quick suite's clean speech (an evaluation voice),
    decimated and spline-upsampled as the generator does."""
    import soundfile as sf

    from harness.audio import Audio, write
    from harness.suites.synth.gen_speech import spline_upsample
    from harness.suites.types import Item, file_ref

    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    clean, rate = sf.read(root / "harness/suites/quick/speech-enhancement-quick/clean/se02.flac")
    n = int(seconds * rate) if seconds else len(clean)
    clean = clean[: n // 12 * 12]
    low = signal.decimate(clean, ratio, n=8, ftype="iir", zero_phase=True)
    x = spline_upsample(low, ratio, len(clean))
    folder.mkdir(parents=True, exist_ok=True)
    write(folder / "in.wav", Audio(x, rate))
    write(folder / "ref.wav", Audio(clean, rate))
    item = Item(f"q{ratio}", "bandwidth-extension", folder,
                {"input": file_ref(folder, folder / "in.wav")},
                {"clean": file_ref(folder, folder / "ref.wav")}, {"ratio": ratio})
    return item, x, clean


def enhanced(item, **params) -> np.ndarray:
    from harness.api import get_system

    system = get_system("unet-sr", **params)
    system.prepare("cpu")
    (out,) = system.process([item], None)
    return out["enhanced"].mono().astype(np.float64)


def test_unet_sr_runs_the_checkpoint_of_the_items_ratio_and_refuses_a_ratio_none_was_trained_for(tmp_path):
    from harness.errors import InvalidInput
    from systems.sr.system import CHECKPOINTS

    general = str(CHECKPOINTS / "unet-sr-speech.safetensors")
    for ratio in SHIPPED_PER_RATIO:
        item, _, _ = bwe_item(tmp_path / str(ratio), ratio)
        y = enhanced(item)
        np.testing.assert_array_equal(y, enhanced(item, checkpoint=str(CHECKPOINTS / f"unet-sr-speech-{ratio}x.safetensors")))
        assert np.abs(y - enhanced(item, checkpoint=general)).max() > 1e-3  # the comparison can fail
    item, _, _ = bwe_item(tmp_path / "3", 3)  # no checkpoint of its own: the three-ratio one, which refuses it
    with pytest.raises(InvalidInput) as e:
        enhanced(item)
    assert general in str(e.value) and "[2, 4, 6]" in str(e.value) and "\n" not in str(e.value)


def test_a_checkpoint_for_another_ratio_is_refused_in_one_line_naming_it(tmp_path):
    from harness.errors import InvalidInput
    from systems.sr.system import CHECKPOINTS

    item, _, _ = bwe_item(tmp_path, 2)
    path = CHECKPOINTS / "unet-sr-speech-4x.safetensors"
    with pytest.raises(InvalidInput) as e:
        enhanced(item, checkpoint=str(path))
    assert str(path) in str(e.value) and "[4]" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("ratio", [2, 4, 6])
def test_the_shipped_model_beats_the_spline_on_lsd(tmp_path, ratio):
    """On the quick suite's clean speech (voices and sentences of the evaluation suites, never
    trained on), decimated as the generator does, with the checkpoint `unet-sr` picks for the
    ratio: LSD (the metric's formula) well below the spline's."""
    from harness.metrics.spectral import lsd

    item, x, clean = bwe_item(tmp_path, ratio, seconds=0)
    y = enhanced(item)
    assert lsd(y, clean) < 0.6 * lsd(x, clean)


def test_the_shipped_wideband_checkpoint_is_for_32k_and_no_suite_voice():
    from harness import checkpoints
    from harness.suites.synth.speech import VOICES, WIDEBAND_TRAINING_VOICES
    from systems.sr.system import CHECKPOINTS

    path = CHECKPOINTS / "unet-sr-speech-32k.safetensors"
    assert path.stat().st_size < 16 * 2**20
    _, record = checkpoints.load(path, "unet-sr")
    assert record["data"]["rate"] == 32000 and record["data"]["ratios"] == [2, 4]
    assert set(record["data"]["voices"]) <= set(WIDEBAND_TRAINING_VOICES)
    assert not set(record["data"]["voices"]) & set(VOICES)


def test_the_shipped_music_checkpoint_is_small_and_for_music_at_4x():
    from harness import checkpoints
    from systems.sr.system import CHECKPOINTS

    path = CHECKPOINTS / "unet-sr-music.safetensors"
    assert path.stat().st_size < 16 * 2**20
    tensors, record = checkpoints.load(path, "unet-sr")
    assert record["parameters"] == unet.parameter_count(record["architecture"]["config"])
    assert record["data"]["source"] == "music" and record["data"]["rate"] == 16000
    assert record["data"]["ratios"] == [4]


def test_the_shipped_music_model_beats_the_spline_on_unseen_songs(tmp_path):
    """The music-remix quick suite's mixtures (arrangements of seeds no training song had),
    down-mixed to mono at 16 kHz and decimated 4x as the generator does: `unet-sr/music` has a
    far lower LSD and a higher SNR than the spline (both by the metrics' formulas)."""
    from harness.api import system_from_spec
    from harness.audio import Audio, resample, write
    from harness.metrics.spectral import lsd
    from harness.suites import resolve_suite
    from harness.suites.synth.gen_speech import spline_upsample
    from harness.suites.types import Item, file_ref

    def snr(est, ref):
        return 10 * np.log10(np.sum(ref ** 2) / np.sum((est - ref) ** 2))

    system = system_from_spec("unet-sr/music")
    system.prepare("cpu")
    gains, lsds = [], []
    for k, song in enumerate(resolve_suite("music-remix-quick").items):
        mix = song.input("mixture")
        clean = resample(Audio(mix.samples.mean(axis=0), mix.rate), 16000).mono().astype(np.float64)
        clean = clean[: len(clean) // 12 * 12]
        x = spline_upsample(signal.decimate(clean, 4, n=8, ftype="iir", zero_phase=True), 4, len(clean))
        write(tmp_path / f"in{k}.wav", Audio(x, 16000))
        write(tmp_path / f"ref{k}.wav", Audio(clean, 16000))
        item = Item(f"m{k}", "bandwidth-extension", tmp_path,
                    {"input": file_ref(tmp_path, tmp_path / f"in{k}.wav")},
                    {"clean": file_ref(tmp_path, tmp_path / f"ref{k}.wav")}, {"ratio": 4})
        (out,) = system.process([item], None)
        y = out["enhanced"].mono().astype(np.float64)
        gains.append(snr(y, clean) - snr(x, clean))
        lsds.append((lsd(y, clean), lsd(x, clean)))
    assert all(a < 0.6 * b for a, b in lsds), lsds
    assert np.mean(gains) > 0.5, gains


def test_band_errors_bands_follow_the_ratio_and_hold_parsevals_energy():
    """The diagnostic's bands: 0, the anti-alias edge (0.8 of the low Nyquist), the low Nyquist,
    its octaves; the energy of two whole-cycle sines lands in their bands as A^2 N / 2 each."""
    from systems.sr.band_errors import band_edges, band_energies, lowband

    assert band_edges(16000, 4) == [0.0, 1600.0, 2000.0, 4000.0, 8001.0]
    assert band_edges(16000, 2) == [0.0, 3200.0, 4000.0, 8001.0]
    n, rate = 16000, 16000
    t = np.arange(n) / rate
    low, high = 0.3 * np.sin(2 * np.pi * 1000 * t), 0.1 * np.sin(2 * np.pi * 5000 * t)
    e = band_energies(low + high, rate, band_edges(rate, 4))
    np.testing.assert_allclose(e, [0.3 ** 2 * n / 2, 0, 0, 0.1 ** 2 * n / 2], atol=1e-9)
    assert e.sum() == pytest.approx(np.sum((low + high) ** 2))
    np.testing.assert_allclose(lowband(low + high, rate, 2000.0), low, atol=1e-12)


def test_band_errors_of_the_spline_system_are_the_inputs_own(tmp_path):
    """`spline` on a bandwidth-extension item returns its input, so its error row is the input's
    row and its SNR the input's; a suite of two ratios is refused with one line naming it."""
    from harness.suites.synth.generators import make_suite
    from systems.sr.band_errors import table

    make_suite("bandwidth-extension", tmp_path / "s4", items=2, seed=99, options={"ratios": 4})
    lines = table(str(tmp_path / "s4"), "spline", {}).splitlines()
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in lines
            if line.startswith("| ") and not line.startswith("| |")}
    assert set(rows) == {"clean", "input (spline) error", "spline output error"}
    assert rows["input (spline) error"] == rows["spline output error"]
    assert len(rows["clean"]) == 4  # 0-1600, 1600-2000, 2000-4000, 4000-8000 Hz
    snrs = re.findall(r"(-?\d+\.\d+) dB", lines[-1])
    assert len(snrs) == 3 and snrs[0] == snrs[1]  # input, spline output, clean low band
    assert float(snrs[2]) > float(snrs[0])  # the clean low band beats the spline's
    make_suite("bandwidth-extension", tmp_path / "s24", items=2, seed=99, options={"ratios": [2, 4]})
    with pytest.raises(SystemExit, match=r"s24: band_errors wants .* one ratio, not ratios \[2, 4\]"):
        table(str(tmp_path / "s24"), "spline", {})


def test_the_identity_follows_the_checkpoints_content_not_its_path(tmp_path, monkeypatch):
    """A checkpoint replaced at the same path gives another identity (a resumed run does not
    reuse the old model's scores); the same files in another clone give the same one."""
    import shutil

    from harness.api import get_system
    from systems.sr.system import CHECKPOINTS

    def put(name: str, folder):
        folder.mkdir(exist_ok=True)
        for ext in (".safetensors", ".json"):
            shutil.copy(CHECKPOINTS / f"unet-sr-speech-{name}{ext}", folder / f"m{ext}")
        return str(folder / "m.safetensors")

    path = put("4x", tmp_path / "a")
    first = get_system("unet-sr", checkpoint=path).identity()
    put("2x", tmp_path / "a")
    assert get_system("unet-sr", checkpoint=path).identity() != first
    here = get_system("unet-sr").identity()
    clone = tmp_path / "clone"
    clone.mkdir()
    for f in CHECKPOINTS.glob("unet-sr-speech*"):
        shutil.copy(f, clone / f.name)
    monkeypatch.setattr("systems.sr.system.CHECKPOINTS", clone)
    assert get_system("unet-sr").identity() == here
    shutil.copy(clone / "unet-sr-speech-2x.json", clone / "unet-sr-speech-4x.json")
    assert get_system("unet-sr").identity() != here  # and the comparison can fail
