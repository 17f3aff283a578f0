"""Checkpoints: safetensors + JSON sidecar round-trip, and every way a checkpoint can be wrong
refused in one line naming the file (also through `harness run`, as the item's reason)."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from conftest import run_cli

from harness import checkpoints
from harness.errors import CheckpointError


def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv1d(1, 4, 3), torch.nn.Conv1d(4, 1, 1))


def saved(tmp_path, name="m", arch="toy"):
    model = small_model()
    path = checkpoints.save(tmp_path / f"{name}.safetensors", model.state_dict(),
                            {"architecture": {"name": arch, "config": {"width": 4}}, "note": "x"})
    return model, path


def test_round_trip_keeps_every_tensor_and_records_what_it_is(tmp_path):
    model, path = saved(tmp_path)
    tensors, record = checkpoints.load(path, "toy")
    assert set(tensors) == set(model.state_dict())
    for k, v in model.state_dict().items():
        assert torch.equal(tensors[k], v)
    assert record["parameters"] == 4 * 1 * 3 + 4 + 1 * 4 * 1 + 1  # counted by hand
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["architecture"] == {"name": "toy", "config": {"width": 4}} and record["note"] == "x"
    assert record["format"] == checkpoints.FORMAT and "git" in record and "harness_version" in record
    other = small_model()
    torch.nn.init.zeros_(other[0].weight)
    checkpoints.load_into(other, tensors, path)
    assert torch.equal(other[0].weight, model[0].weight)


def test_every_broken_checkpoint_is_one_line_naming_the_file(tmp_path):
    model, path = saved(tmp_path)
    cases = []
    cases.append((tmp_path / "absent.safetensors", "no such checkpoint file"))
    pickled = tmp_path / "pickled.safetensors"
    torch.save(model.state_dict(), pickled)
    cases.append((pickled, "pickled PyTorch file"))
    bare = tmp_path / "bare.safetensors"
    bare.write_bytes(path.read_bytes())
    cases.append((bare, "no sidecar bare.json"))
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:-40])
    side = json.loads(checkpoints.sidecar_of(path).read_text())
    checkpoints.sidecar_of(truncated).write_text(json.dumps(side))
    cases.append((truncated, "does not match its sidecar"))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    checkpoints.sidecar_of(garbage).write_text(json.dumps(
        {**side, "sha256": hashlib.sha256(b"\x00" * 64).hexdigest()}))
    cases.append((garbage, "not a readable safetensors file"))
    badside = tmp_path / "badside.safetensors"
    badside.write_bytes(path.read_bytes())
    checkpoints.sidecar_of(badside).write_text("{not json")
    cases.append((badside, "not a readable JSON sidecar"))
    for p, message in cases:
        with pytest.raises(CheckpointError) as exc:
            checkpoints.load(p, "toy")
        text = str(exc.value)
        assert message in text and p.stem in text and "\n" not in text, text
    with pytest.raises(CheckpointError, match=r"m.safetensors: a 'toy' checkpoint, expected 'hifigan'"):
        checkpoints.load(path, "hifigan")
    wide = torch.nn.Sequential(torch.nn.Conv1d(1, 8, 3), torch.nn.Conv1d(8, 1, 1))
    tensors, _ = checkpoints.load(path)
    with pytest.raises(CheckpointError, match=r"m.safetensors: does not fit the Sequential model "
                                              r"\(shape of 0.weight \(4, 1, 3\) != \(8, 1, 3\)\)"):
        checkpoints.load_into(wide, tensors, path)


def test_a_bad_hifigan_checkpoint_fails_its_items_with_the_file_named(tmp_path):
    from harness.api import get_system

    model, path = saved(tmp_path, "other", arch="unet-sr")
    pickled = tmp_path / "weights.pth.safetensors"
    torch.save(model.state_dict(), pickled)
    for ckpt, message in ((path, "a 'unet-sr' checkpoint, expected 'hifigan'"),
                          (tmp_path / "nothing.safetensors", "no such checkpoint file")):
        with pytest.raises(CheckpointError, match=message):
            get_system("hifigan", checkpoint=str(ckpt)).prepare("cpu")
    # through a run: every item failed, its reason naming the file, nothing else lost
    out = tmp_path / "run"
    r = run_cli("run", "--suite", "speech-enhancement-quick", "--system", "hifigan", "--system",
                "unprocessed", "--param", f"hifigan.checkpoint={pickled}", "--metric", "snr",
                "--out", str(out), "-q")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    from harness.store import Store

    with Store(out, create=False) as s:
        scores = s.scores(s.resolve("latest"))
    mine = scores[scores.system == "hifigan"]
    assert set(mine.status) == {"failed"} and set(scores[scores.system == "unprocessed"].status) == {"ok"}
    assert all("pickled PyTorch file" in r and pickled.name in r for r in mine.reason), mine.reason.iloc[0]


def test_checkpoints_show_prints_the_record_and_refuses_a_bad_file(tmp_path, monkeypatch, capsys):
    from helpers.hostile import cli, one_line_error

    model, path = saved(tmp_path)
    code, text, _ = cli(monkeypatch, capsys, "checkpoints", "show", path)
    count = sum(p.numel() for p in model.parameters())
    assert code == 0 and "toy" in text and f"{count:,} in 4 tensors" in text
    assert hashlib.sha256(path.read_bytes()).hexdigest() in text
    code, _, err = cli(monkeypatch, capsys, "checkpoints", "show", tmp_path / "none.safetensors")
    one_line_error(code, err, "none.safetensors: no such checkpoint file")


def test_a_safetensors_header_length_that_looks_like_a_pickle_or_zip_still_loads(tmp_path):
    """The first byte of a safetensors file is the low byte of its header's length: 0x80 (a
    pickle's opcode) or 'P' must not be taken for torch.save's formats."""
    from safetensors.torch import save

    t = {"w": torch.arange(6, dtype=torch.float32)}
    for first in (0x80, ord("P")):
        pad = next(k for k in range(400) if save(t, metadata={"p": "x" * k})[0] == first)
        blob = save(t, metadata={"p": "x" * pad})
        path = tmp_path / f"h{first}.safetensors"
        path.write_bytes(blob)
        checkpoints.sidecar_of(path).write_text(json.dumps({
            "format": checkpoints.FORMAT, "architecture": {"name": "toy"},
            "sha256": hashlib.sha256(blob).hexdigest()}))
        tensors, _ = checkpoints.load(path, "toy")
        assert torch.equal(tensors["w"], t["w"])


def toy(tmp_path, name, weight, arch="toy", width=4, step=None, metadata=None):
    """A checkpoint of a bias-free 1x1 convolution whose weights are `weight` (a linear model),
    with an integer buffer that must survive averaging unchanged."""
    tensors = {"conv.weight": torch.tensor(weight, dtype=torch.float32).reshape(1, len(weight), 1),
               "steps_seen": torch.tensor([5], dtype=torch.int64)}
    record = {"architecture": {"name": arch, "config": {"width": width}}}
    if step is not None:
        record["training"] = {"steps": step}
    return checkpoints.save(tmp_path / f"{name}.safetensors", tensors, record, metadata=metadata)


def test_average_is_the_mean_of_the_weights_and_of_a_linear_models_outputs(tmp_path):
    a = toy(tmp_path, "a", [1.0, 2.0, 3.0, 4.0], step=100)
    b = toy(tmp_path, "b", [3.0, 2.0, 0.0, -4.0], step=200)
    c = toy(tmp_path, "c", [2.0, 5.0, 0.5, 1.0], step=300)
    out = checkpoints.average([a, b, c], tmp_path / "avg.safetensors")
    tensors, record = checkpoints.load(out, "toy")
    assert torch.equal(tensors["conv.weight"].flatten(), torch.tensor([2.0, 3.0, 3.5 / 3, 1.0 / 3]))
    assert torch.equal(tensors["steps_seen"], torch.tensor([5]))
    # linear in the weights: the averaged model's output is the mean of the three models' outputs
    x = torch.randn(1, 4, 50, generator=torch.Generator().manual_seed(1))
    outs = [torch.nn.functional.conv1d(x, checkpoints.load(p)[0]["conv.weight"]) for p in (a, b, c)]
    assert torch.allclose(torch.nn.functional.conv1d(x, tensors["conv.weight"]), sum(outs) / 3, atol=1e-6)
    assert [e["steps"] for e in record["averaged_from"]] == [100, 200, 300]
    assert [e["sha256"] for e in record["averaged_from"]] == [hashlib.sha256(p.read_bytes()).hexdigest()
                                                              for p in (a, b, c)]
    assert record["training"] == {"steps": 300} and record["architecture"]["config"] == {"width": 4}
    # a checkpoint averaged with itself is itself, bit for bit (float64 sum, cast back)
    same = checkpoints.average([c, c], tmp_path / "cc.safetensors")
    assert torch.equal(checkpoints.load(same)[0]["conv.weight"], checkpoints.load(c)[0]["conv.weight"])


def test_average_refuses_what_cannot_be_averaged_in_one_line_naming_the_file(tmp_path):
    a = toy(tmp_path, "a", [1.0, 2.0, 3.0, 4.0])
    cases = [
        (toy(tmp_path, "other", [1.0, 2.0, 3.0, 4.0], arch="other"), "other.safetensors: its architecture"),
        (toy(tmp_path, "wide", [1.0, 2.0, 3.0, 4.0], width=8), "wide.safetensors: its architecture"),
        (toy(tmp_path, "short", [1.0, 2.0]), "short.safetensors: tensor 'conv.weight' is torch.float32 (1, 2, 1)"),
        (toy(tmp_path, "meta", [1.0, 2.0, 3.0, 4.0], metadata={"k": "v"}), "meta.safetensors: its safetensors header"),
        (tmp_path / "absent.safetensors", "absent.safetensors: no such checkpoint file"),
    ]
    counted = checkpoints.save(tmp_path / "counted.safetensors",
                               {"conv.weight": torch.ones(1, 4, 1), "steps_seen": torch.tensor([6])},
                               {"architecture": {"name": "toy", "config": {"width": 4}}})
    cases.append((counted, "counted.safetensors: non-floating tensor 'steps_seen' differs"))
    for other, message in cases:
        with pytest.raises(CheckpointError) as e:
            checkpoints.average([a, other], tmp_path / "out.safetensors")
        assert message in str(e.value) and "\n" not in str(e.value), str(e.value)
    with pytest.raises(CheckpointError, match="at least two checkpoints"):
        checkpoints.average([a], tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()


def test_checkpoints_average_command_writes_and_refuses_overwrites(tmp_path, monkeypatch, capsys):
    from helpers.hostile import cli, one_line_error

    a = toy(tmp_path, "a", [1.0, 2.0, 3.0, 4.0])
    b = toy(tmp_path, "b", [3.0, 4.0, 5.0, 6.0])
    code, text, err = cli(monkeypatch, capsys, "checkpoints", "average", a, b, "--out", tmp_path / "m.safetensors")
    assert code == 0, err
    assert "the average of 2 checkpoints" in text
    assert checkpoints.load(tmp_path / "m.safetensors")[0]["conv.weight"].flatten().tolist() == [2.0, 3.0, 4.0, 5.0]
    code, _, err = cli(monkeypatch, capsys, "checkpoints", "average", a, b, "--out", tmp_path / "m.safetensors")
    one_line_error(code, err, "m.safetensors: exists; pass --force to overwrite it")
    code, _, err = cli(monkeypatch, capsys, "checkpoints", "average", a, b, "--out", a, "--force")
    one_line_error(code, err, "a.safetensors: is one of the checkpoints to average")
    assert checkpoints.load(a)[0]["conv.weight"].flatten().tolist() == [1.0, 2.0, 3.0, 4.0]
    code, _, err = cli(monkeypatch, capsys, "checkpoints", "average", a, "--out", tmp_path / "one.safetensors")
    one_line_error(code, err, "a.safetensors: averaging needs at least two checkpoints")
