"""`harness checkpoints convert openunmix`: target models made by the `openunmix` package itself
(randomly initialised, with random normalisation and batch-norm statistics, saved as its training
script saves them: `torch.save(model.state_dict(), "<target>.pth")` with `<target>.json`, and as
the published files are named, `<target>-<hash>.pth`), converted: each converted target gives the
original's output, the four separate through `remix/openunmix` end to end, and what is not an
Open-Unmix model is refused in one line without running code.

The openunmix package imports torchaudio at module level for its data loaders and CLI; the
torchaudio wheel here does not load against torch 2.13, so a stand-in module is put in its place
for the import (the model and its STFT use torch only)."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
import torch
from conftest import run_cli

from harness.errors import CheckpointError

TARGETS = ("vocals", "drums", "bass", "other")
ARCH = dict(nb_bins=2049, nb_channels=2, hidden_size=24, nb_layers=2, max_bin=600)


@pytest.fixture
def umx(monkeypatch):
    try:
        import torchaudio  # noqa: F401
    except Exception:
        monkeypatch.setitem(sys.modules, "torchaudio", types.ModuleType("torchaudio"))
        for name in [m for m in sys.modules if m.startswith("openunmix")]:
            monkeypatch.delitem(sys.modules, name)
    return pytest.importorskip("openunmix.model")


def upstream_models(umx, folder, hashed: bool = False, **arch) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    models = {}
    for k, target in enumerate(TARGETS):
        torch.manual_seed(k)
        m = umx.OpenUnmix(**{**ARCH, **arch})
        with torch.no_grad():  # non-trivial normalisations and batch-norm statistics
            for p in (m.input_mean, m.input_scale, m.output_scale, m.output_mean):
                p.copy_(torch.rand_like(p) + 0.5)
            for bn in (m.bn1, m.bn2, m.bn3):
                bn.running_mean.copy_(0.1 * torch.randn_like(bn.running_mean))
                bn.running_var.copy_(torch.rand_like(bn.running_var) + 0.5)
        m.eval()
        name = f"{target}-{k:08x}.pth" if hashed else f"{target}.pth"
        torch.save(m.state_dict(), folder / name)
        (folder / f"{target}.json").write_text(json.dumps({"args": {
            "nfft": 2 * (m.nb_output_bins - 1), "nhop": 512, "nb_channels": 2,
            "hidden_size": m.hidden_size}}))
        models[target] = m
    return models


@pytest.mark.parametrize("hashed", [False, True])
def test_converted_targets_give_the_originals_outputs(umx, tmp_path, hashed):
    models = upstream_models(umx, tmp_path / "umx", hashed)
    r = run_cli("checkpoints", "convert", "openunmix", str(tmp_path / "umx"), "--out",
                str(tmp_path / "umx.safetensors"))
    assert r.returncode == 0, r.stderr
    from harness import checkpoints
    from systems.remix.separators import make_separator

    _, record = checkpoints.load(tmp_path / "umx.safetensors", "openunmix")
    assert record["architecture"]["config"] == {"nb_channels": 2, "hidden_size": 24, "nb_layers": 2,
                                                "max_bin": 600, "n_fft": 4096, "n_hop": 512,
                                                "unidirectional": False}
    assert record["parameters"] == sum(v.numel() for m in models.values() for v in m.state_dict().values())
    sep = make_separator("openunmix", checkpoint=str(tmp_path / "umx.safetensors"))
    mag = torch.rand(1, 2, 2049, 37, generator=torch.Generator().manual_seed(9))
    with torch.inference_mode():
        for target, m in models.items():
            want = m(mag)
            got = sep.model.target_models[target](mag)
            assert torch.max(torch.abs(got - want)) <= 1e-6 * max(1.0, float(want.abs().max())), target
            assert float(want.abs().max()) > 0  # the masks are not all zero
    sep.prepare("cpu")
    x = 0.1 * np.random.default_rng(1).standard_normal((2, 44100))
    stems = sep.separate(x, 44100)
    assert set(stems) == set(TARGETS) and all(v.shape == x.shape for v in stems.values())


def test_a_unidirectional_model_converts(umx, tmp_path):
    models = upstream_models(umx, tmp_path / "u", unidirectional=True, nb_layers=1)
    from systems.remix.convert import convert_openunmix
    from systems.remix.separators import make_separator

    convert_openunmix(tmp_path / "u", tmp_path / "u.safetensors")
    sep = make_separator("openunmix", checkpoint=str(tmp_path / "u.safetensors"))
    mag = torch.rand(1, 2, 2049, 11)
    with torch.inference_mode():
        assert torch.allclose(sep.model.target_models["bass"](mag), models["bass"](mag), atol=1e-6)


def test_what_is_not_an_open_unmix_model_is_refused_in_one_line(umx, tmp_path):
    from systems.remix.convert import convert_openunmix

    upstream_models(umx, tmp_path / "m")
    (tmp_path / "m" / "other.pth").unlink()
    with pytest.raises(CheckpointError, match=r"expected one other\.pth .* found none"):
        convert_openunmix(tmp_path / "m", tmp_path / "o.safetensors")
    marker = tmp_path / "pwned"
    torch.save({"fc1.weight": Payload(marker)}, tmp_path / "m" / "other.pth")
    with pytest.raises(CheckpointError, match="not an Open-Unmix state dict the harness can read safely"):
        convert_openunmix(tmp_path / "m", tmp_path / "o.safetensors")
    assert not marker.exists() and not (tmp_path / "o.safetensors").exists()
    torch.save({"weights": torch.zeros(3)}, tmp_path / "m" / "other.pth")
    with pytest.raises(CheckpointError, match="not an Open-Unmix target model"):
        convert_openunmix(tmp_path / "m", tmp_path / "o.safetensors")
    upstream_models(umx, tmp_path / "m2")
    small = umx.OpenUnmix(**{**ARCH, "hidden_size": 16})
    torch.save(small.state_dict(), tmp_path / "m2" / "drums.pth")
    with pytest.raises(CheckpointError, match="differs from the other targets"):
        convert_openunmix(tmp_path / "m2", tmp_path / "o.safetensors")
    r = run_cli("checkpoints", "convert", "openunmix", str(tmp_path / "m2" / "vocals.pth"), "--out",
                str(tmp_path / "o.safetensors"))
    assert r.returncode == 2 and "not a folder" in r.stderr and "Traceback" not in r.stderr


class Payload:
    """Unpickling this would create a file: the test checks that it never does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_converted_model_runs_through_remix_end_to_end(umx, tmp_path):
    from harness.store import Store

    upstream_models(umx, tmp_path / "umx", hashed=True)
    assert run_cli("checkpoints", "convert", "openunmix", str(tmp_path / "umx"), "--out",
                   str(tmp_path / "m.safetensors")).returncode == 0
    ckpt = tmp_path / "m.safetensors"
    r = run_cli("run", "--suite", "music-remix-quick", "--system", "remix/openunmix", "--listener", "N2",
                "--metric", "sdr", "--param", f"remix/openunmix.separator_options={{checkpoint = \"{ckpt}\"}}",
                "--out", str(tmp_path / "store"), "-q")
    assert r.returncode == 0, r.stderr
    with Store(tmp_path / "store", create=False) as store:
        df = store.scores(store.resolve("latest"))
    assert (df.status == "ok").all() and len(df) == 2 * 4, df[["status", "reason"]]
