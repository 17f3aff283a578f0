"""`harness checkpoints convert demucs`: files written by the demucs package's own save path
(`demucs.states.serialize_model` + `torch.save`, as its solver saves models) from randomly
initialised HDemucs / HTDemucs, converted, give the same stems as the original model; a
converted model runs through `remix/hdemucs` end to end; a file that would run code when
unpickled is refused without running it."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
from conftest import run_cli
from test_remix_learned import MODELS, build

from harness.errors import CheckpointError
from systems.remix.learned import DEMUCS_ORDER
from systems.remix.separators import STEMS, make_separator

pytest.importorskip("demucs")


def demucs_file(name: str, path, half: bool = False):
    """A model file exactly as the demucs package writes one."""
    from demucs.states import serialize_model
    from omegaconf import OmegaConf

    model = build(name, MODELS[name]).eval()
    torch.save(serialize_model(model, OmegaConf.create({"seed": 0}), half=half), path)
    return model


def direct_stems(model, x: np.ndarray) -> dict[str, np.ndarray]:
    ref = x.mean(axis=0)
    mean, std = ref.mean(), ref.std()
    with torch.inference_mode():
        y = model(torch.as_tensor((x - mean) / std, dtype=torch.float32)[None])[0]
    return {s: y[i].double().numpy() * std + mean / 4 for i, s in enumerate(DEMUCS_ORDER)}


@pytest.mark.parametrize("name", ["hdemucs", "htdemucs"])
def test_a_converted_demucs_file_separates_like_the_original(name, tmp_path):
    model = demucs_file(name, tmp_path / f"{name}.th")
    r = run_cli("checkpoints", "convert", "demucs", str(tmp_path / f"{name}.th"),
                "--out", str(tmp_path / f"{name}.safetensors"))
    assert r.returncode == 0, r.stderr
    from harness import checkpoints

    tensors, record = checkpoints.load(tmp_path / f"{name}.safetensors", name)
    assert record["converted_from"]["sha256"] == checkpoints.sha256_file(tmp_path / f"{name}.th")
    assert record["parameters"] == sum(v.numel() for v in model.state_dict().values())
    sep = make_separator(name, checkpoint=str(tmp_path / f"{name}.safetensors"))
    sep.prepare("cpu")
    x = 0.1 * np.random.default_rng(1).standard_normal((2, 44100 * 2))
    got, want = sep.separate(x, 44100), direct_stems(model, x)
    for s in STEMS:
        assert np.max(np.abs(got[s] - want[s])) <= 1e-5 * max(1.0, np.max(np.abs(want[s]))), s


def test_a_half_precision_file_is_widened_to_float32(tmp_path):
    model = demucs_file("hdemucs", tmp_path / "h.th", half=True)
    from systems.remix.convert import convert_demucs

    convert_demucs(tmp_path / "h.th", tmp_path / "h.safetensors")
    sep = make_separator("hdemucs", checkpoint=str(tmp_path / "h.safetensors"))
    assert all(v.dtype == torch.float32 for k, v in sep.model.state_dict().items() if v.is_floating_point())
    for k, v in model.state_dict().items():  # the original's weights rounded to half, no further
        assert torch.equal(sep.model.state_dict()[k], v.half().float() if v.is_floating_point() else v), k


class Payload:
    """Unpickling this runs os.system: what a hostile .th file would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_file_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.th"
    torch.save({"klass": Payload(marker), "args": [], "kwargs": {}, "state": {}}, bad)
    from systems.remix.convert import convert_demucs

    with pytest.raises(CheckpointError, match="not a Demucs model file the harness can read safely "
                                              r"\(it holds objects other than tensors"):
        convert_demucs(bad, tmp_path / "out.safetensors")
    assert not marker.exists()
    text = tmp_path / "notes.th"
    text.write_text("hi\n")  # not a PyTorch file at all: torch's legacy reader raised KeyError: 105
    with pytest.raises(CheckpointError, match=r"notes.th: not a Demucs model file the harness can read safely "
                                              r"\(KeyError: 105\)"):
        convert_demucs(text, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()
    plain = tmp_path / "plain.th"
    plain.write_bytes(pickle.dumps({"klass": Payload(marker)}))  # a bare pickle, not torch.save's zip
    r = run_cli("checkpoints", "convert", "demucs", str(plain), "--out", str(tmp_path / "o.safetensors"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error:") and str(plain) in r.stderr
    assert not marker.exists()


def test_convert_refuses_other_files_in_one_line(tmp_path):
    r = run_cli("checkpoints", "convert", "demucs", str(tmp_path / "none.th"), "--out", str(tmp_path / "o.safetensors"))
    assert r.returncode == 2 and "no such file" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "o.safetensors").write_bytes(b"x")
    torch.save({"state": {}}, tmp_path / "d.th")
    r = run_cli("checkpoints", "convert", "demucs", str(tmp_path / "d.th"), "--out", str(tmp_path / "o.safetensors"))
    assert r.returncode == 2 and "exists; pass --force" in r.stderr
    r = run_cli("checkpoints", "convert", "demucs", str(tmp_path / "d.th"), "--out", str(tmp_path / "o.safetensors"),
                "--force")
    assert r.returncode == 2 and "not a Demucs model package" in r.stderr
    r = run_cli("checkpoints", "convert", "spleeter", str(tmp_path / "d.th"), "--out", str(tmp_path / "p.safetensors"))
    assert r.returncode == 2 and "unknown converter 'spleeter'" in r.stderr


def test_a_converted_model_runs_through_remix_end_to_end(tmp_path):
    demucs_file("hdemucs", tmp_path / "m.th")
    assert run_cli("checkpoints", "convert", "demucs", str(tmp_path / "m.th"), "--out",
                   str(tmp_path / "m.safetensors")).returncode == 0
    r = run_cli("run", "--suite", "music-remix-quick", "--system", "remix/hdemucs", "--listener", "N2",
                "--metric", "sdr", "--param", f"remix/hdemucs.separator_options={{checkpoint = \"{tmp_path / 'm.safetensors'}\"}}",
                "--out", str(tmp_path / "store"), "-q")
    assert r.returncode == 0, r.stderr
    from harness.store import Store

    with Store(tmp_path / "store", create=False) as store:
        df = store.scores(store.resolve("latest"))
    assert (df.status == "ok").all() and len(df) == 2 * 4, df[["status", "reason"]]
