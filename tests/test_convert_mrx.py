"""`harness checkpoints convert mrx`: MRX weights in the cocktail-fork repository's layout.

That repository is not a package (nothing to import), so the reference here is a module built
the way its `mrx.py` is (its submodule names give the state dict's keys: `_encoders.i.layer`,
`_cross_net.lstm.b`, `_decoders.s.i.block`, decoders ordered music, speech, sfx) with its
forward written out: normalized STFTs, magnitude -> BatchNorm -> Linear (no bias) -> BatchNorm
-> tanh per resolution, mean over resolutions, mean of the BLSTM branches, concatenation,
per source and resolution Linear (no bias) -> BN -> ReLU -> Linear (no bias) -> BN -> ReLU masks,
normalized inverse STFTs summed. Random weights and batch-norm statistics, saved the ways the
repository saves them (`torch.save` of the state dict; a Lightning checkpoint); the converted
`mrx` gives the reference's sources."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import run_cli
from torch import nn

from harness import checkpoints
from harness.errors import CheckpointError

WINDOWS, HOP, HIDDEN, LAYERS = [1024, 2048], 256, 16, 2  # the hop is the repository's (not in the file)


class Enc(nn.Module):
    def __init__(self, bins: int) -> None:
        super().__init__()
        self.layer = nn.Sequential(nn.BatchNorm1d(bins), nn.Linear(bins, HIDDEN, bias=False),
                                   nn.BatchNorm1d(HIDDEN))


class Dec(nn.Module):
    def __init__(self, bins: int) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Linear(2 * HIDDEN, HIDDEN, bias=False), nn.BatchNorm1d(HIDDEN), nn.ReLU(),
                                   nn.Linear(HIDDEN, bins, bias=False), nn.BatchNorm1d(bins), nn.ReLU())


class Cross(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.ModuleList(nn.LSTM(HIDDEN, HIDDEN // 2, num_layers=LAYERS, bidirectional=True,
                                          batch_first=True, dropout=0.4) for _ in range(3))


class Upstream(nn.Module):
    """The repository's MRX layout and forward (mono: channels are its batch)."""

    def __init__(self) -> None:
        super().__init__()
        bins = [w // 2 + 1 for w in WINDOWS]
        self._encoders = nn.ModuleList(Enc(f) for f in bins)
        self._cross_net = Cross()
        self._decoders = nn.ModuleList(nn.ModuleList(Dec(f) for f in bins) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (channels, samples) -> (3, channels, samples)
        n = x.shape[-1]
        specs, encs = [], []
        for w, enc in zip(WINDOWS, self._encoders, strict=True):
            spec = torch.stft(x, w, HOP, window=torch.hann_window(w), normalized=True, center=True,
                              return_complex=True, pad_mode="reflect")
            specs.append(spec)
            frames = spec.shape[-1]
            z = enc.layer(spec.transpose(-1, -2).reshape(-1, w // 2 + 1).abs())
            encs.append(torch.tanh(z.reshape(-1, frames, HIDDEN)))
        c1 = torch.stack(encs).mean(0)
        c2 = torch.stack([lstm(c1)[0] for lstm in self._cross_net.lstm]).mean(0)
        feat = torch.cat([c1, c2], dim=-1)
        out = []
        for decs in self._decoders:
            y = 0
            for w, spec, dec in zip(WINDOWS, specs, decs, strict=True):
                m = dec.block(feat.reshape(-1, 2 * HIDDEN)).reshape(-1, spec.shape[-1], w // 2 + 1)
                y = y + torch.istft(m.transpose(-1, -2).reshape(spec.shape) * spec, w, HOP,
                                    window=torch.hann_window(w), normalized=True, center=True, length=n)
            out.append(y)
        return torch.stack(out)


def upstream_model(seed: int = 0) -> Upstream:
    torch.manual_seed(seed)
    model = Upstream()
    with torch.no_grad():  # batch-norm statistics and affine parameters far from their defaults
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm1d):
                mod.running_mean.uniform_(0.0, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
                mod.num_batches_tracked.fill_(1234)
    return model.eval()


def test_converted_weights_give_the_repositorys_sources(tmp_path):
    from systems.mrx.model import MRX

    model = upstream_model()
    torch.save(model.state_dict(), tmp_path / "best_model.pth")  # the repository's own way
    r = run_cli("checkpoints", "convert", "mrx", str(tmp_path / "best_model.pth"), "--out",
                str(tmp_path / "m.safetensors"))
    assert r.returncode == 0, r.stderr
    tensors, record = checkpoints.load(tmp_path / "m.safetensors", "mrx")
    arch = record["architecture"]["config"]
    assert arch["windows"] == WINDOWS and arch["hidden"] == HIDDEN and arch["layers"] == LAYERS
    assert arch["blstms"] == 3 and record["inference"]["input_lufs"] == -27.0
    ours = MRX(arch).eval()
    checkpoints.load_into(ours, tensors, "m")
    x = torch.randn(2, 11025) * 0.1
    with torch.inference_mode():
        want = model(x)
        got = ours(x)
    for i, s in enumerate(("music", "speech", "sfx")):
        assert torch.allclose(got[s], want[i], atol=1e-6, rtol=1e-5), (s, float((got[s] - want[i]).abs().max()))


def test_a_lightning_checkpoint_converts_the_same_and_mrx_runs_it(tmp_path):
    model = upstream_model(1)
    plain = model.state_dict()
    torch.save(plain, tmp_path / "a.pth")
    torch.save({"epoch": 3, "global_step": 100, "pytorch-lightning_version": "2.1.0",
                "state_dict": {f"model.{k}": v for k, v in plain.items()}}, tmp_path / "b.ckpt")
    for src, dst in (("a.pth", "a.safetensors"), ("b.ckpt", "b.safetensors")):
        r = run_cli("checkpoints", "convert", "mrx", str(tmp_path / src), "--out", str(tmp_path / dst))
        assert r.returncode == 0, r.stderr
    a, _ = checkpoints.load(tmp_path / "a.safetensors")
    b, _ = checkpoints.load(tmp_path / "b.safetensors")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    # the mrx system: input at -27 LUFS as the repository's separate_soundtrack, sources scaled back
    r = run_cli("suites", "make", "cocktail-fork", "--out", str(tmp_path / "cf"), "--items", "1",
                "--seconds", "2", "--seed", "5")
    assert r.returncode == 0, r.stderr
    r = run_cli("run", "--suite", str(tmp_path / "cf"), "--system", "mrx", "--out", str(tmp_path / "o"),
                "-q", "--param", f"mrx.checkpoint={tmp_path / 'b.safetensors'}")
    assert r.returncode == 0, r.stderr
    from harness.store import Store

    with Store(tmp_path / "o", create=False) as store:
        df = store.scores(store.resolve("latest"))
    assert (df.status == "ok").all() and set(df.stem) == {"speech", "music", "sfx"}


def test_the_input_loudness_step_is_the_repositorys(tmp_path):
    """mrx with input_lufs: the mixture is scaled to that loudness, separated, scaled back."""
    import pyloudnorm as pyln

    from systems.mrx.model import MRX

    model = upstream_model(2)
    torch.save(model.state_dict(), tmp_path / "m.pth")
    from systems.mrx.convert import convert_mrx

    convert_mrx(tmp_path / "m.pth", tmp_path / "m.safetensors")
    tensors, record = checkpoints.load(tmp_path / "m.safetensors")
    ours = MRX(record["architecture"]["config"]).eval()
    checkpoints.load_into(ours, tensors, "m")
    import soundfile as sf

    from harness.suites.types import FileRef, Item
    from systems.mrx.system import MRXSystem

    rng = np.random.default_rng(0)
    sf.write(tmp_path / "mix.wav", rng.standard_normal(44100) * 0.01, 44100, subtype="FLOAT")
    x = sf.read(tmp_path / "mix.wav")[0]
    gain = 10 ** ((-27.0 - pyln.Meter(44100).integrated_loudness(x)) / 20)
    with torch.inference_mode():
        want = model(torch.tensor(x[None] * gain, dtype=torch.float32))[1, 0].double().numpy() / gain
    item = Item("i", "cocktail-fork", tmp_path, {"mixture": FileRef("mix.wav", 44100, 1, 44100, "")}, {})
    sys_ = MRXSystem(checkpoint=str(tmp_path / "m.safetensors"))
    sys_.prepare("cpu")
    out = sys_.process([item], None)[0]
    assert np.allclose(out["speech"].samples[0], want, atol=1e-5 * np.abs(want).max())
    assert sys_.input_lufs == -27.0  # from the sidecar; the harness's own checkpoints have none


def test_what_the_converter_refuses_is_one_line(tmp_path, monkeypatch, capsys):
    from helpers.hostile import cli, one_line_error

    model = upstream_model()
    state = model.state_dict()
    torch.save({k: v for k, v in state.items() if not k.startswith("_decoders.2.")}, tmp_path / "two.pth")
    code, _, err = cli(monkeypatch, capsys, "checkpoints", "convert", "mrx", tmp_path / "two.pth", "--out",
                       tmp_path / "x.safetensors")
    one_line_error(code, err, "2 decoders; MRX of the cocktail fork has 3")
    torch.save({"weights": {"a": 1}, "fn": print}, tmp_path / "evil.pth")
    code, _, err = cli(monkeypatch, capsys, "checkpoints", "convert", "mrx", tmp_path / "evil.pth", "--out",
                       tmp_path / "x.safetensors")
    one_line_error(code, err, "not an MRX state dict the harness can read safely")
    torch.save({"encoder.weight": torch.zeros(2)}, tmp_path / "other.pth")
    code, _, err = cli(monkeypatch, capsys, "checkpoints", "convert", "mrx", tmp_path / "other.pth", "--out",
                       tmp_path / "x.safetensors")
    one_line_error(code, err, "not an MRX of the cocktail-fork repository")
    bad = dict(state)
    bad["_encoders.0.layer.2.weight"] = torch.zeros(HIDDEN + 1)
    torch.save(bad, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError, match="does not fit the MRX model"):
        from systems.mrx.convert import convert_mrx

        convert_mrx(tmp_path / "shape.pth", tmp_path / "y.safetensors")
