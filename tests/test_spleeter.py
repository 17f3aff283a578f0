"""The Spleeter-style separator of the remix pipeline: the published size in closed form, the
STFT it sees equals a hand-framed numpy one, ratio masks give stems that sum to the mixture, a
mask that is one for a stem gives it the whole mixture (with masks and with the Wiener filter),
the loss is the L1 it says, and a tiny `harness train remix/spleeter` gives a checkpoint that
`remix/spleeter` runs end to end; bad checkpoints are one-line errors naming the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import run_cli

from harness.errors import CheckpointError
from systems.remix import spleeter as sp

TINY_ARCH = {**sp.ARCH_SMALL, "filters": [2, 2, 4, 4, 8, 8], "frames": 64}
TINY = """seed = 7
batch_size = 2
[arch]
frames = 64
filters = [2, 2, 4, 4, 8, 8]
[data]
pool = 2
pool_s = 4.0
validation_items = 1
validation_s = 2.0
cache = "{cache}"
[steps]
l1 = 3
"""


def unet_parameters(filters: list[int], channels: int, k: int = 5) -> int:
    """The U-Net's parameter count layer by layer (weights + biases; batch-norm scale and shift)."""
    total, cin = 0, channels
    for i, f in enumerate(filters):  # encoder convs; batch norm on all but the last
        total += k * k * cin * f + f + (2 * f if i < len(filters) - 1 else 0)
        cin = f
    ins = [filters[-1]] + [2 * f for f in reversed(filters[:-1])]
    outs = list(reversed(filters[:-1])) + [1]
    for i, o in zip(ins, outs, strict=True):  # transposed convs, each with batch norm
        total += k * k * i * o + o + 2 * o
    return total + 4 * 4 * 1 * channels + channels  # the 4x4 mask layer


def test_the_published_size_and_the_shipped_size():
    paper = sp.parameter_count(sp.ARCH_PAPER)
    assert paper == 4 * unet_parameters([16, 32, 64, 128, 256, 512], 2)
    assert 9.8e6 < paper / 4 < 9.9e6  # the published 4-stem model: about 9.8 M per stem
    small = sp.parameter_count(sp.ARCH_SMALL)
    assert small == 4 * unet_parameters(sp.ARCH_SMALL["filters"], 2) and small * 4 < 16e6


def test_masks_have_the_input_shape_and_lie_in_0_1():
    model = sp.Spleeter(TINY_ARCH).eval()
    x = torch.rand(3, 2, 64, 1024)
    with torch.inference_mode():
        masks = {s: net(x) for s, net in model.nets.items()}
    for m in masks.values():
        assert m.shape == x.shape and float(m.min()) >= 0 and float(m.max()) <= 1


def test_the_stft_is_a_hann_windowed_rfft_of_reflect_padded_frames():
    cfg = {"frame": 256, "hop": 64}
    rng = np.random.default_rng(1)
    x = rng.standard_normal(1000)
    got = sp.stft(torch.tensor(x[None, None]), cfg)[0, 0].numpy()  # (frames, bins)
    padded = np.pad(x, 128, mode="reflect")
    w = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(256) / 256)  # periodic Hann
    want = np.stack([np.fft.rfft(padded[t * 64:t * 64 + 256] * w) for t in range(1000 // 64 + 1)])
    assert got.shape == want.shape and np.allclose(got, want, atol=1e-9)


def test_ratio_masks_give_stems_that_sum_to_the_mixture():
    model = sp.Spleeter(TINY_ARCH).eval()
    x = np.random.default_rng(2).standard_normal((2, 30000)) * 0.1
    out = sp.separate(model, x)
    assert set(out) == set(sp.STEMS) and all(v.shape == x.shape for v in out.values())
    assert np.max(np.abs(sum(out.values()) - x)) < 1e-5
    # mask_extension "zeros" drops everything above the model's bins (11.0 kHz at 1024 of 4096)
    t = np.arange(30000) / sp.RATE
    high = np.tile(0.3 * np.sin(2 * np.pi * 15000 * t), (2, 1))
    dropped = sum(sp.separate(model, high, mask_extension="zeros").values())
    kept = sum(sp.separate(model, high, mask_extension="average").values())
    assert np.sqrt(np.mean(dropped[:, 4096:-4096] ** 2)) < 1e-4 * 0.3
    assert np.max(np.abs(kept - high)) < 1e-5


def one_stem_model(stem: str):
    """A model whose `stem` mask is sigmoid(30) ~ 1 and every other one sigmoid(-30) ~ 0."""
    model = sp.Spleeter(TINY_ARCH).eval()
    with torch.no_grad():
        for s, net in model.nets.items():
            net.out.weight.zero_()
            net.out.bias.fill_(30.0 if s == stem else -30.0)
    return model


@pytest.mark.parametrize("wiener", [False, True])
def test_a_stem_whose_mask_is_one_gets_the_whole_mixture(wiener):
    model = one_stem_model("bass")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 20000)) * 0.1
    out = sp.separate(model, x, wiener=wiener)
    assert np.max(np.abs(out["bass"] - x)) < 1e-4 * np.max(np.abs(x))
    for s in ("vocals", "drums", "other"):
        assert np.max(np.abs(out[s])) < 1e-4 * np.max(np.abs(x)), s


def test_the_loss_is_the_sum_over_stems_of_the_mean_absolute_magnitude_error():
    from systems.remix.train_spleeter import SpleeterTraining

    spec = SpleeterTraining()
    cfg = {**spec.defaults(), "arch": TINY_ARCH}
    model = sp.Spleeter(TINY_ARCH).eval()
    rng = np.random.default_rng(4)
    mix = torch.tensor(rng.random((2, 2, 64, 1024)), dtype=torch.float32)
    refs = torch.tensor(rng.random((2, 4, 2, 64, 1024)), dtype=torch.float32)
    loss, parts = spec.loss(cfg, "l1", "spleeter", {"spleeter": model}, (mix, refs), {})
    with torch.no_grad():
        est = {s: (net(mix) * mix).numpy() for s, net in model.nets.items()}
    want = [np.mean(np.abs(est[s] - refs[:, i].numpy())) for i, s in enumerate(sp.STEMS)]
    assert float(loss.detach()) == pytest.approx(sum(want), rel=1e-5)
    assert [parts[f"l1_{s}"] for s in sp.STEMS] == pytest.approx(want, rel=1e-5)


def test_a_training_batch_is_the_stems_and_their_sum(tmp_path):
    """The batch's mixture magnitude is |STFT| of the stems' sum (STFT is linear; the magnitude
    is not: compare with the sum taken in time)."""
    from systems.remix.train_spleeter import SpleeterTraining

    spec = SpleeterTraining()
    cfg = spec.defaults()
    cfg.update(arch=TINY_ARCH, batch_size=2,
               data={**cfg["data"], "pool": 2, "pool_s": 4.0, "cache": str(tmp_path)})
    mix, refs = spec.batch(cfg, 0, "cpu")
    assert mix.shape == (2, 2, 64, 1024) and refs.shape == (2, 4, 2, 64, 1024)
    n = 63 * 1024
    stems = spec.data(cfg).batch(0, 2, n)
    want = sp.stft(torch.tensor(stems.sum(axis=1)), TINY_ARCH)[..., :1024].abs()
    assert torch.allclose(mix.double(), want, atol=1e-4)
    # the same step draws the same batch (resume sees what an uninterrupted run saw)
    again, _ = spec.batch(cfg, 0, "cpu")
    assert torch.equal(mix, again)


def test_a_tiny_training_run_gives_a_checkpoint_remix_spleeter_runs(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY.format(cache=tmp_path / "cache"))
    ckpt = tmp_path / "s.safetensors"
    r = run_cli("train", "remix/spleeter", "--config", str(cfg), "--out", str(ckpt), "--device", "cpu", "-q")
    assert r.returncode == 0, r.stderr
    from harness import checkpoints

    _, record = checkpoints.load(ckpt, "spleeter")
    assert record["training"]["steps"] == 3 and record["data"]["pool"] == 2
    assert set(record["training"]["validation"][-1]) >= {f"sdr_{s}" for s in sp.STEMS}
    r = run_cli("suites", "make", "music-remix", "--out", str(tmp_path / "mr"), "--items", "1",
                "--seconds", "2", "--seed", "77")
    assert r.returncode == 0, r.stderr
    r = run_cli("run", "--suite", str(tmp_path / "mr"), "--system", "remix/spleeter", "--listener", "N2",
                "--metric", "sdr", "--out", str(tmp_path / "o"), "-q",
                "--param", f"remix/spleeter.separator_options.checkpoint={ckpt}")
    assert r.returncode == 0, r.stderr
    from harness.store import Store

    with Store(tmp_path / "o", create=False) as store:
        df = store.scores(store.resolve("latest"))
    assert (df.status == "ok").all() and sorted(df.stem) == sorted(sp.STEMS), df[["status", "stem"]]
    r = run_cli("train", "remix/dsp", "--out", str(tmp_path / "d.safetensors"))
    assert r.returncode != 0 and "remix/dsp is not trainable" in r.stderr


def test_bad_spleeter_checkpoints_are_one_line(tmp_path, monkeypatch, capsys):
    from helpers.hostile import cli, one_line_error

    from harness import checkpoints

    mr = "music-remix-quick"
    code, _, err = cli(monkeypatch, capsys, "run", "-s", mr, "-y", "remix/spleeter", "--out", tmp_path / "o",
                       "-p", f"remix/spleeter.separator_options.checkpoint={tmp_path / 'nope.safetensors'}")
    one_line_error(code, err, "nope.safetensors: no such checkpoint file")
    from systems.mrx.model import ARCH_SMALL, MRX

    checkpoints.save(tmp_path / "m.safetensors", MRX({**ARCH_SMALL, "hidden": 8, "layers": 1}).state_dict(),
                     {"architecture": {"name": "mrx", "config": {}}})
    code, _, err = cli(monkeypatch, capsys, "run", "-s", mr, "-y", "remix/spleeter", "--out", tmp_path / "o",
                       "-p", f"remix/spleeter.separator_options.checkpoint={tmp_path / 'm.safetensors'}")
    one_line_error(code, err, "a 'mrx' checkpoint, expected 'spleeter'")
    code, _, err = cli(monkeypatch, capsys, "run", "-s", mr, "-y", "remix/spleeter", "--out", tmp_path / "o",
                       "-p", "remix/spleeter.separator_options.mask_extension=mean")
    one_line_error(code, err, "mask_extension must be average or zeros")
    # weights that do not fit the architecture their sidecar records
    tensors = sp.Spleeter(TINY_ARCH).state_dict()
    checkpoints.save(tmp_path / "s.safetensors", tensors,
                     {"architecture": {"name": "spleeter", "config": {**TINY_ARCH, "filters": [2] * 6}}})
    sep = sp.SpleeterSeparator(str(tmp_path / "s.safetensors"))
    with pytest.raises(CheckpointError) as e:
        sep.prepare("cpu")
    assert "s.safetensors" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.slow
def test_the_shipped_spleeter_beats_the_weight_free_separator(tmp_path):
    """On songs of a seed no training step drew: the shipped checkpoint above `remix/dsp` by the
    issue's 2 dB on separation SDR (the task's BSSEval with NAL-R off, so that it scores the
    separation and not the hearing-aid filter), and on HAAQI for a listener with hearing loss
    (the whole pipeline); the oracle's stems above both on SDR."""
    from harness.store import Store

    r = run_cli("suites", "make", "music-remix", "--out", str(tmp_path / "mr"), "--items", "2",
                "--seconds", "4", "--seed", "4242")
    assert r.returncode == 0, r.stderr
    systems = ["--system", "remix/spleeter", "--system", "remix/dsp", "--system", "remix/oracle"]
    r = run_cli("run", "--suite", str(tmp_path / "mr"), *systems[:4], "--listener", "N3", "--metric", "haaqi",
                "--out", str(tmp_path / "o"), "-q", "--run-name", "panel")
    assert r.returncode == 0, r.stderr
    off = [a for s in ("spleeter", "dsp", "oracle") for a in ("--param", f"remix/{s}.nalr=false")]
    r = run_cli("run", "--suite", str(tmp_path / "mr"), *systems, "--listener", "NH", "--metric", "sdr",
                *off, "--out", str(tmp_path / "o"), "-q", "--run-name", "separation")
    assert r.returncode == 0, r.stderr
    with Store(tmp_path / "o", create=False) as store:
        haaqi = store.scores(store.resolve("panel"))
        sdr = store.scores(store.resolve("separation"))
    assert (haaqi.status == "ok").all() and (sdr.status == "ok").all()
    h = haaqi.groupby("system").value.mean()
    d = sdr.groupby("system").value.mean()
    assert d["remix/oracle"] > d["remix/spleeter"] > d["remix/dsp"] + 2.0, d
    assert h["remix/spleeter"] > h["remix/dsp"], h
