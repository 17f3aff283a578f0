"""MRX (cocktail fork): the paper-size network has the published size, the SI-SDR loss equals its
closed form, a few training steps of a tiny model give a checkpoint that `mrx` runs end to end,
and bad configs and checkpoints are one-line errors naming the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import run_cli

from harness.errors import CheckpointError
from harness.training.losses import neg_si_sdr
from systems.mrx.model import ARCH_PAPER, ARCH_SMALL, MRX, SOURCES, parameter_count

TINY = """seed = 5
batch_size = 2
segment_s = 1.5
[arch]
windows = [256, 512]
hop = 128
hidden = 16
blstms = 1
layers = 1
[steps]
sisdr = 3
[data]
voices = ["slt", "rms"]  # evaluation voices: flite needs no festival package
allow_evaluation_voices = true
pool = 2
pool_s = 3.0
validation_items = 1
validation_s = 1.5
cache = "{cache}"
"""


def test_paper_size_and_shipped_size():
    assert 29e6 < parameter_count(ARCH_PAPER) < 32e6  # "about 30 M parameters"
    small = parameter_count(ARCH_SMALL)
    assert small * 4 < 16e6  # the shipped checkpoint (float32) stays under 16 MB


def test_si_sdr_loss_in_closed_form():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(4000)
    ref -= ref.mean()
    noise = rng.standard_normal(4000)
    noise -= noise.mean()
    noise -= ref * np.dot(noise, ref) / np.dot(ref, ref)  # orthogonal to the reference
    est = 3.0 * ref + noise  # SI-SDR is scale-invariant: the 3 must not matter
    want = 10 * np.log10(np.dot(ref, ref) * 9 / np.dot(noise, noise))
    got = -float(neg_si_sdr(torch.tensor(est[None]), torch.tensor(ref[None]), eps=0.0))
    assert got == pytest.approx(want, abs=1e-9)


def test_outputs_have_the_input_length():
    model = MRX({**ARCH_SMALL, "hidden": 8, "layers": 1}).eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 12345))
    assert set(out) == set(SOURCES) and all(v.shape == (2, 12345) for v in out.values())


def test_a_tiny_training_run_gives_a_checkpoint_mrx_runs(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY.format(cache=tmp_path / "cache"))
    ckpt = tmp_path / "m.safetensors"
    r = run_cli("train", "mrx", "--config", str(cfg), "--out", str(ckpt), "--device", "cpu", "-q")
    assert r.returncode == 0, r.stderr
    from harness import checkpoints

    _, record = checkpoints.load(ckpt, "mrx")
    assert record["training"]["steps"] == 3 and record["data"]["voices"] == ["slt", "rms"]
    assert set(record["training"]["validation"][-1]) >= {f"si_sdri_{s}" for s in SOURCES}
    r = run_cli("suites", "make", "cocktail-fork", "--out", str(tmp_path / "cf"), "--items", "2",
                "--seconds", "2", "--seed", "77")
    assert r.returncode == 0, r.stderr
    r = run_cli("run", "--suite", str(tmp_path / "cf"), "--system", "mrx", "--out", str(tmp_path / "o"),
                "-q", "--param", f"mrx.checkpoint={ckpt}")
    assert r.returncode == 0, r.stderr
    from harness.store import Store

    with Store(tmp_path / "o", create=False) as store:
        df = store.scores(store.resolve("latest"))
    assert (df.status == "ok").all() and len(df) == 2 * 3 * 2, df[["status", "reason"]]
    r = run_cli("run", "--suite", "speech-enhancement-quick", "--system", "mrx", "--out",
                str(tmp_path / "o2"), "-q", "--param", f"mrx.checkpoint={ckpt}")
    assert r.returncode == 2 and "mrx does not do speech-enhancement" in r.stderr
    with pytest.raises(CheckpointError, match="a 'mrx' checkpoint, expected 'unet-sr'"):
        checkpoints.load(ckpt, "unet-sr")


def test_bad_training_configs_are_one_line(tmp_path, monkeypatch, capsys):
    from helpers.hostile import cli, one_line_error

    for text, message in [
        ("[arch]\nwindows = [1000]\n", "arch.windows must be powers of two >= 64"),
        ("[arch]\nhop = 300\n", "arch.hop must divide every window"),
        ("segment_s = 60.0\n", "segment_s must be in (0, data.pool_s]"),
    ]:
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        code, _, err = cli(monkeypatch, capsys, "train", "mrx", "--config", bad, "--out",
                           tmp_path / "x.safetensors")
        one_line_error(code, err, message)


def unit_mask_model(arch: dict) -> MRX:
    """An MRX whose every mask is exactly 1 (last linear layer zero, its batch norm's bias 1)."""
    model = MRX(arch).eval()
    with torch.no_grad():
        for k in model.dec2:
            model.dec2[k].weight.zero_()
            model.dec2[k].bias.zero_()
            bn = model.dec2_norm[k]
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0)
            bn.weight.zero_()
            bn.bias.fill_(1.0)
    return model


def test_unit_masks_reconstruct_the_input_at_every_resolution():
    arch = {**ARCH_SMALL, "hidden": 8, "layers": 1}
    model = unit_mask_model(arch)
    x = torch.randn(2, 20000, dtype=torch.float32)
    with torch.inference_mode():
        out, masks = model(x, with_masks=True)
    # each resolution's STFT -> iSTFT is exact; the resolutions' signals are summed
    for s in SOURCES:
        assert torch.allclose(out[s], len(arch["windows"]) * x, atol=1e-5), s
    # one mask per source and resolution, of that resolution's shape (batch, bins, frames)
    frames = 20000 // arch["hop"] + 1
    assert set(masks) == {f"{s}_{i}" for s in SOURCES for i in range(len(arch["windows"]))}
    for s in SOURCES:
        for i, w in enumerate(arch["windows"]):
            assert masks[f"{s}_{i}"].shape == (2, w // 2 + 1, frames)
            assert torch.all(masks[f"{s}_{i}"] == 1.0)


def test_the_loss_is_the_metric():
    """The loss takes SI-SDR of zero-mean signals (Le Roux et al. 2019, as the paper); the task's
    metric does not remove the mean: on zero-mean signals the two are the same number."""
    from harness.metrics.snr import si_sdr_db

    rng = np.random.default_rng(3)
    ref = rng.standard_normal((3, 8000))
    est = ref + 0.5 * rng.standard_normal((3, 8000))
    ref -= ref.mean(axis=1, keepdims=True)
    est -= est.mean(axis=1, keepdims=True)
    want = np.mean([si_sdr_db(est[i], ref[i]) for i in range(3)])
    assert -float(neg_si_sdr(torch.tensor(est), torch.tensor(ref), eps=0.0)) == pytest.approx(want, abs=1e-9)


def test_a_checkpoint_of_another_architecture_is_one_line(tmp_path):
    from harness import checkpoints
    from systems.mrx.system import MRXSystem

    small = {**ARCH_SMALL, "hidden": 8, "layers": 1}
    tensors = MRX(small).state_dict()
    claimed = {**small, "hidden": 16}
    checkpoints.save(tmp_path / "m.safetensors", tensors, {"architecture": {"name": "mrx", "config": claimed}})
    sys_ = MRXSystem(checkpoint=str(tmp_path / "m.safetensors"))
    with pytest.raises(CheckpointError) as err:
        sys_.prepare("cpu")
    text = str(err.value)
    assert "m.safetensors" in text and "\n" not in text
    assert "(8," in text or "8)" in text  # the first mismatched tensor's shapes are named


@pytest.mark.slow
def test_the_shipped_mrx_beats_the_weight_free_baseline_on_every_stem(tmp_path):
    """On a small suite of a seed and voices no training step used: the shipped checkpoint above
    `cocktail-dsp` on each stem's SI-SDRi, and above the issue's bar (6 dB speech, 3 dB music
    and effects) on average."""
    from harness.store import Store

    r = run_cli("suites", "make", "cocktail-fork", "--out", str(tmp_path / "cf"), "--items", "4",
                "--seconds", "6", "--seed", "31337")
    assert r.returncode == 0, r.stderr
    r = run_cli("run", "--suite", str(tmp_path / "cf"), "--system", "mrx", "--system", "cocktail-dsp",
                "--metric", "si_sdri", "--out", str(tmp_path / "o"), "-q")
    assert r.returncode == 0, r.stderr
    with Store(tmp_path / "o", create=False) as store:
        df = store.scores(store.resolve("latest"))
    assert (df.status == "ok").all()
    mean = df.groupby(["system", "stem"]).value.mean()
    for stem, bar in (("speech", 6.0), ("music", 3.0), ("sfx", 3.0)):
        assert mean[("mrx", stem)] > max(bar, mean[("cocktail-dsp", stem)]), (stem, mean)
