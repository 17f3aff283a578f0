"""MRX (cocktail fork): the paper-size network has the published size, the SI-SDR loss equals its
closed form, a few training steps of a tiny model give a checkpoint that `mrx` runs end to end,
and bad configs and checkpoints are one-line errors naming the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import run_cli

from harness.errors import CheckpointError
from systems.mrx.model import ARCH_PAPER, ARCH_SMALL, MRX, SOURCES, neg_si_sdr, parameter_count

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
voices = ["slt", "rms"]
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
