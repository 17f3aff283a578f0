"""Learned separator backends: a randomly initialised model saved as safetensors and reloaded
through the backend gives the same stems as the model itself; checkpoint errors are one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.errors import ConfigError
from systems.remix.learned import DEMUCS_ORDER, save_checkpoint
from systems.remix.separators import STEMS, make_separator
from systems.remix.umx import UmxSeparator

pytest.importorskip("demucs")

MODELS = {
    "hdemucs": dict(channels=4),
    "htdemucs": dict(channels=8, dconv_comp=4, t_layers=1, t_heads=2, segment=2),
    "openunmix": dict(hidden_size=16, nb_layers=1, max_bin=256),
}


def build(name: str, args: dict):
    torch.manual_seed(0)
    if name == "hdemucs":
        from demucs.hdemucs import HDemucs

        return HDemucs(sources=list(DEMUCS_ORDER), **args)
    if name == "htdemucs":
        from demucs.htdemucs import HTDemucs

        return HTDemucs(sources=list(DEMUCS_ORDER), **args)
    model = UmxSeparator(**args)
    for m in model.modules():  # non-trivial batch-norm statistics, so eval mode matters
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize("name", list(MODELS))
def test_save_reload_gives_the_same_stems(name, tmp_path):
    model = build(name, MODELS[name]).eval()
    path = save_checkpoint(model, tmp_path / f"{name}.safetensors", MODELS[name], name)
    sep = make_separator(name, checkpoint=str(path))
    sep.prepare("cpu")
    rng = np.random.default_rng(1)
    x = 0.1 * rng.standard_normal((2, 44100 * 2))
    stems = sep.separate(x, 44100)
    assert sorted(stems) == sorted(STEMS)
    # the same model called directly on the standardised mixture
    ref = x.mean(axis=0)
    mean, std = ref.mean(), ref.std()
    with torch.inference_mode():
        t = torch.as_tensor((x - mean) / std, dtype=torch.float32)[None]
        if name == "openunmix":
            direct = {k: v.double().numpy() for k, v in model(t).items()}
        else:
            y = model(t)[0]
            direct = {s: y[i].double().numpy() for i, s in enumerate(DEMUCS_ORDER)}
    for s in STEMS:
        assert stems[s].shape == x.shape
        expected = direct[s] * std + mean / 4
        assert np.max(np.abs(stems[s] - expected)) <= 1e-5 * max(1.0, np.max(np.abs(expected)))


def test_openunmix_parameter_names_are_the_published_ones():
    keys = set(UmxSeparator(hidden_size=16, nb_layers=3).state_dict())
    for stem in STEMS:
        p = f"target_models.{stem}."
        for k in ("fc1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                  "lstm.weight_ih_l0", "lstm.weight_hh_l2_reverse", "lstm.bias_ih_l1",
                  "fc2.weight", "bn2.weight", "fc3.weight", "bn3.running_var",
                  "input_mean", "input_scale", "output_scale", "output_mean"):
            assert p + k in keys, p + k


def test_missing_or_wrong_checkpoint_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError, match="needs separator_options.checkpoint"):
        make_separator("hdemucs")
    with pytest.raises(ConfigError, match="nope.safetensors: checkpoint for separator openunmix not found"):
        make_separator("openunmix", checkpoint=str(tmp_path / "nope.safetensors"))
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="not a readable safetensors checkpoint"):
        make_separator("htdemucs", checkpoint=str(tmp_path / "bad.safetensors"))
    small = build("openunmix", MODELS["openunmix"])
    path = save_checkpoint(small, tmp_path / "umx.safetensors", MODELS["openunmix"], "openunmix")
    with pytest.raises(ConfigError, match="does not fit the model"):
        make_separator("hdemucs", checkpoint=str(path))


@pytest.mark.slow
@pytest.mark.parametrize("config", ["e016.toml", "cad1-baseline.toml"])
def test_shipped_configs_run_end_to_end(config, tmp_path):
    """Both shipped configs, as written (the CAD1 one with a small random Hybrid Demucs at its
    checkpoint path), on the quick suite for one listener."""
    from conftest import ROOT, run_cli

    from harness.store import Store

    if config == "cad1-baseline.toml":
        (tmp_path / "checkpoints").mkdir()
        save_checkpoint(build("hdemucs", MODELS["hdemucs"]), tmp_path / "checkpoints" / "hdemucs.safetensors",
                        MODELS["hdemucs"], "hdemucs")
    path = ROOT / "systems" / "remix" / "configs" / config
    r = run_cli("run", "--config", str(path), "--listener", "N2", "--out", str(tmp_path / "store"),
                "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    store = Store(tmp_path / "store")
    df = store.scores(store.resolve("latest"))
    store.close()
    assert (df.status == "ok").all(), df[df.status != "ok"].reason.unique()
    assert set(df.metric) == {"haaqi", "sdr"} and df.system.nunique() == 2
