"""`harness train`: resume gives the weights of an uninterrupted run (in process, and after a
SIGKILL), configs are checked key by key, and what is not trainable says so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT
from safetensors.torch import load_file

TINY = """
seed = 7
batch_size = 2
segment_s = 0.5
[arch]
channels = 8
gate_channels = 16
skip_channels = 8
layers = 4
stacks = 1
head_channels = [16, 8]
postnet_layers = 2
postnet_channels = 8
disc_channels = [4, 8, 16, 16, 16]
mel_channels = 4
[steps]
wavenet = 3
postnet = 2
adversarial = 3
[data]
voices = ["slt", "rms"]  # evaluation voices: flite needs no festival package
allow_evaluation_voices = true
texts = 4
rooms = 1
validation_items = 1
cache = "{cache}"
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A tiny HiFi-GAN training config (flite voices: the test needs no extra voice package)."""
    folder = tmp_path_factory.mktemp("train")
    path = folder / "tiny.toml"
    path.write_text(TINY.format(cache=folder / "cache"))
    return path


def trainer(cfg_path: Path, out: Path):
    from harness.training.trainer import Trainer, load_train_config
    from systems.speech.learned import HiFiGAN

    spec = HiFiGAN.training()
    return Trainer(spec, load_train_config(spec, cfg_path), out, "cpu")


def same_tensors(a: Path, b: Path) -> bool:
    return not differing_tensors(a, b)


def differing_tensors(a: Path, b: Path) -> list[str]:
    """The tensors of two checkpoints that differ, each with its largest absolute difference."""
    x, y = load_file(a), load_file(b)
    if set(x) != set(y):
        return [f"keys differ: {sorted(set(x) ^ set(y))}"]
    return [f"{k} (max |diff| {float((x[k] - y[k]).abs().max()):.3g})" for k in sorted(x)
            if not torch.equal(x[k], y[k])]


def test_resume_gives_the_weights_of_an_uninterrupted_run(tiny, tmp_path):
    """Through all three stages (the GAN's optimiser states included), stopped mid-stage."""
    whole = trainer(tiny, tmp_path / "whole.safetensors")
    whole.run()
    first = trainer(tiny, tmp_path / "split.safetensors")
    first.run(4, checkpoint_every=2)  # stopped inside the postnet stage
    second = trainer(tiny, tmp_path / "split.safetensors")
    second.resume()
    assert second.step == 4
    second.run()
    assert same_tensors(tmp_path / "whole.safetensors", tmp_path / "split.safetensors")
    assert same_tensors(tmp_path / "whole.train.safetensors", tmp_path / "split.train.safetensors")
    # and training changed the weights (the comparison is not between two untouched models)
    fresh = trainer(tiny, tmp_path / "fresh.safetensors")
    fresh.save()
    assert not same_tensors(tmp_path / "whole.safetensors", tmp_path / "fresh.safetensors")


def test_a_kill_between_the_state_file_and_its_sidecar_still_resumes_exactly(tiny, tmp_path, monkeypatch):
    """The window the SIGKILL test can only hit by chance, hit on purpose: step 4's state tensors
    are on disk, its sidecars are not (the sidecar still says step 2). Resume must continue from
    the step the state file holds and end with the uninterrupted run's weights."""
    from harness import checkpoints

    whole = trainer(tiny, tmp_path / "whole.safetensors")
    whole.run()
    first = trainer(tiny, tmp_path / "cut.safetensors")
    first.run(2, checkpoint_every=2)
    real = checkpoints._atomic_write

    def killed_after_the_state_tensors(path, data):
        real(path, data)
        if path.name == "cut.train.safetensors":
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(checkpoints, "_atomic_write", killed_after_the_state_tensors)
    with pytest.raises(KeyboardInterrupt):
        first.run(4, checkpoint_every=2)
    monkeypatch.setattr(checkpoints, "_atomic_write", real)
    assert '"step": 2' in (tmp_path / "cut.train.json").read_text()  # the sidecar lags behind
    second = trainer(tiny, tmp_path / "cut.safetensors")
    second.resume()
    assert second.step == 4
    second.run()
    assert same_tensors(tmp_path / "whole.safetensors", tmp_path / "cut.safetensors")


def test_learning_rates_follow_the_stages(tiny, tmp_path):
    t = trainer(tiny, tmp_path / "lr.safetensors")
    assert [t.lr_at("generator", s) for s in (0, 2, 3, 4, 5)] == [1e-3, 1e-3, 1e-4, 1e-4, 1e-5]
    assert t.lr_at("discriminators", 6) == 1e-3


@pytest.mark.slow
def test_sigkill_then_resume_ends_with_the_uninterrupted_weights(tiny, tmp_path):
    out = tmp_path / "killed.safetensors"
    whole = tmp_path / "whole.safetensors"
    base = [sys.executable, "-m", "harness.cli", "train", "hifigan", "--config", str(tiny), "-q",
            "--checkpoint-every", "1", "--device", "cpu"]
    assert subprocess.run([*base, "--out", str(whole)], cwd=ROOT, capture_output=True).returncode == 0
    proc = subprocess.Popen([*base, "--out", str(out)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    state = tmp_path / "killed.train.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and '"step": 3' in state.read_text():
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    seen = state.read_text() if state.exists() else "(no state)"
    r = subprocess.run([*base, "--out", str(out), "--resume"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "resumed" in r.stderr
    differ = differing_tensors(whole, out)
    assert not differ, (f"{r.stderr.splitlines()[0]}; killed after a state of {seen[-200:]!r}; "
                        f"{len(differ)} tensors differ: {differ[:5]}")


def test_train_config_and_command_errors_are_one_line(tiny, tmp_path, monkeypatch, capsys):
    from helpers.hostile import cli, one_line_error

    bad_key = tmp_path / "bad-key.toml"
    bad_key.write_text("[arch]\nchanels = 8\n")
    bad_value = tmp_path / "bad-value.toml"
    bad_value.write_text('batch_size = "eight"\n')
    bad_target = tmp_path / "bad-target.toml"
    bad_target.write_text('[data]\ntarget = "wideband"\n')
    bad_lead = tmp_path / "bad-lead.toml"
    bad_lead.write_text('[data]\nlead_s = -1.0\n')
    bad_speed = tmp_path / "bad-speed.toml"
    bad_speed.write_text("[data]\nspeed = [1.2, 0.9]\n")
    eval_voice = tmp_path / "eval-voice.toml"
    eval_voice.write_text('[data]\nvoices = ["ked", "slt"]\n')
    unknown_voice = tmp_path / "unknown-voice.toml"
    unknown_voice.write_text('[data]\nvoices = ["ked", "nobody"]\n')
    for args, message in [
        (["hifigan", "--config", str(bad_key)], "bad-key.toml: unknown key 'arch.chanels'"),
        (["hifigan", "--config", str(eval_voice)],
         "eval-voice.toml: data.voices has slt, voices of the evaluation suites"),
        (["unet-sr", "--config", str(eval_voice)],
         "eval-voice.toml: data.voices has slt, voices of the evaluation suites"),
        (["mrx", "--config", str(eval_voice)],
         "eval-voice.toml: data.voices has slt, voices of the evaluation suites"),
        (["hifigan", "--config", str(unknown_voice)], "unknown-voice.toml: data.voices: unknown voice 'nobody'"),
        (["hifigan", "--config", str(bad_value)], "bad-value.toml: key 'batch_size' must be an integer"),
        (["hifigan", "--config", str(bad_target)],
         "bad-target.toml: data.target must be one of 'clean', 'device-band', 'early', got 'wideband'"),
        (["hifigan", "--config", str(bad_lead)], "bad-lead.toml: data.lead_s must be in [0, 30], got -1.0"),
        (["hifigan", "--config", str(bad_speed)],
         "bad-speed.toml: data.speed must be [lo, hi] with 0.5 <= lo <= hi <= 2, not [1.2, 0.9]"),
        (["unet-sr", "--config", str(bad_speed)],
         "bad-speed.toml: data.speed must be [lo, hi] with 0.5 <= lo <= hi <= 2, not [1.2, 0.9]"),
        (["unprocessed"], "system 'unprocessed' is not trainable (trainable: hifigan"),
        (["hifigan", "--resume"], "nothing to resume"),
        (["hifigan", "--steps", "-3"], "--steps must be >= 0, not -3"),
        (["hifigan", "--threads", "-1"], "--threads must be >= 0, not -1"),
        (["hifigan", "--checkpoint-every", "0"], "--checkpoint-every must be >= 1, not 0"),
        (["hifigan", "--validate-every", "-1"], "--validate-every must be >= 0, not -1"),
    ]:
        code, _, err = cli(monkeypatch, capsys, "train", *args, "--out", tmp_path / "x.safetensors")
        one_line_error(code, err, message)
    done = tmp_path / "done.safetensors"
    done.write_bytes(b"")
    code, _, err = cli(monkeypatch, capsys, "train", "hifigan", "--config", tiny, "--out", done)
    one_line_error(code, err, "a checkpoint is already there")


@pytest.mark.parametrize(("system", "toml", "message"), [
    # each of these trained before, or died in a traceback (ZeroDivisionError for texts = 0,
    # numpy's "high <= 0" for rooms = 0, a torch RuntimeError for channels = 0)
    ("hifigan", "seed = -1", "seed must be an integer in [0, inf), got -1"),
    ("hifigan", "[data]\ntexts = 0", "data.texts must be an integer in [1, inf), got 0"),
    ("hifigan", "[data]\nrooms = 0", "data.rooms must be an integer in [1, inf), got 0"),
    ("hifigan", "[data]\nsnr_min = 30.0\nsnr_max = 10.0", "data.snr_min (30) must not exceed data.snr_max (10)"),
    ("hifigan", "[steps]\nwavenet = -5", "steps.wavenet must be an integer in [0, inf), got -5"),
    ("hifigan", "[loss]\nl1 = -1.0", "loss.l1 must be in [0, inf), got -1.0"),
    ("hifigan", "[lr]\nwavenet = -1.0", "lr.wavenet must be in [0, inf), got -1.0"),
    ("hifigan", "[arch]\nchannels = 0", "arch.channels must be an integer in [1, inf), got 0"),
    ("hifigan", "[arch]\ngate_channels = 63", "arch.gate_channels must be even"),
    ("hifigan", "[data]\np_dry = 1.5", "data.p_dry must be in [0, 1], got 1.5"),
    ("unet-sr", "lr = -0.1", "lr must be in [0, inf), got -0.1"),
    ("unet-sr", "[data]\nratios = [2, 1]", "data.ratios must be integers >= 2"),
    ("unet-sr", "[arch]\nfilters = [32, 0, 8, 8]", "arch.filters must be an integer in [1, inf) (each), got [32, 0, 8, 8]"),
    ("mrx", "decay = 1.5", "decay must be in (0, 1], got 1.5"),
    ("mrx", "[data]\npool = 0", "data.pool must be an integer in [1, inf), got 0"),
    ("remix/spleeter", "[data]\nlevel_dbfs = [-16.0, -32.0]", "data.level_dbfs must be [lo, hi] with lo <= hi"),
    ("remix/spleeter", "[data]\nsame_song = 2.0", "data.same_song must be in [0, 1], got 2.0"),
])
def test_a_training_config_value_out_of_range_is_one_line(system, toml, message, tmp_path, monkeypatch, capsys):
    from helpers.hostile import cli, one_line_error

    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml + "\n")
    code, _, err = cli(monkeypatch, capsys, "train", system, "--config", cfg, "--out", tmp_path / "x.safetensors")
    one_line_error(code, err, f"bad.toml: {message}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


def test_every_trainer_default_lies_within_its_limits():
    """The limits a trainer declares name keys of its defaults, and the defaults (and every
    shipped training config) pass them: a limit that refused them would refuse the documented
    commands."""
    from harness.training.trainer import COMMON_LIMITS, limits_problem, load_train_config, matching
    from systems.mrx.train import MrxTraining
    from systems.remix.train_spleeter import SpleeterTraining
    from systems.speech.hifigan_train import HifiganTraining
    from systems.sr.train import UnetSRTraining

    for trainable in (HifiganTraining(), UnetSRTraining(), MrxTraining(), SpleeterTraining()):
        cfg = trainable.defaults()
        for pattern in trainable.limits:
            assert matching(cfg, pattern), (trainable.architecture, pattern)
        assert limits_problem(cfg, {**COMMON_LIMITS, **trainable.limits}) is None
    shipped = sorted(ROOT.glob("systems/**/configs/train-*.toml"))
    assert len(shipped) >= 8
    for path in shipped:
        trainable = {"speech": HifiganTraining(), "sr": UnetSRTraining(), "mrx": MrxTraining(),
                     "remix": SpleeterTraining()}[path.parts[-3]]
        load_train_config(trainable, path)


def test_without_a_terminal_training_prints_plain_progress_lines(tiny, tmp_path, monkeypatch, capsys):
    """A log file or a batch job gets no bar: a plain line every PLAIN_EVERY_S seconds and one at
    the end, each with the step, the losses, the rate and the time left."""
    import re

    from helpers.hostile import cli

    from harness.cli import train as train_cli

    code, _, err = cli(monkeypatch, capsys, "train", "hifigan", "--config", tiny, "--out", tmp_path / "a.safetensors")
    assert code == 0, err
    lines = [ln for ln in err.splitlines() if ln.startswith("train: step")]
    assert len(lines) == 1 and lines[0].startswith("train: step 8/8, ") and "eta 0 s" in lines[0], err
    monkeypatch.setattr(train_cli, "PLAIN_EVERY_S", 0.0)
    code, _, err = cli(monkeypatch, capsys, "train", "hifigan", "--config", tiny, "--out", tmp_path / "b.safetensors")
    assert code == 0, err
    steps = [int(m.group(1)) for m in re.finditer(r"^train: step (\d+)/8, .*l1 [0-9.e-]+.* steps/s, \d+ s elapsed",
                                                   err, re.M)]
    assert steps == list(range(1, 9)), err
    code, _, err = cli(monkeypatch, capsys, "train", "hifigan", "--config", tiny, "--steps", "3",
                       "--out", tmp_path / "c.safetensors")  # the header says where --steps stops it
    assert code == 0, err
    assert "8 steps, stages wavenet 3, postnet 2, adversarial 3 (stopping at step 3: --steps)" in err, err
    assert [ln.split(",")[0] for ln in err.splitlines() if ln.startswith("train: step")][-1] == "train: step 3/3", err


def test_resume_refuses_another_config_but_lets_unreached_stages_change(tiny, tmp_path):
    from harness.errors import CheckpointError

    out = tmp_path / "r.safetensors"
    trainer(tiny, out).run(4, checkpoint_every=4)  # wavenet (3 steps) done, inside postnet
    for change, message in [("seed = 7", "trained with another seed"),
                            ("[steps]\nwavenet = 3", "moves stage 'wavenet'")]:
        old = "seed = 7" if change.startswith("seed") else "[steps]\nwavenet = 3"
        new = "seed = 8" if change.startswith("seed") else "[steps]\nwavenet = 2"
        edited = tmp_path / f"edited-{len(message)}.toml"
        edited.write_text(tiny.read_text().replace(old, new))
        with pytest.raises(CheckpointError, match=message):
            trainer(edited, out).resume()
    longer = tmp_path / "longer.toml"
    longer.write_text(tiny.read_text().replace("adversarial = 3", "adversarial = 5"))
    t = trainer(longer, out)
    t.resume()
    assert (t.step, t.total_steps) == (4, 10)


def test_a_default_added_after_the_state_was_saved_does_not_block_resume(tiny, tmp_path, monkeypatch):
    """A newer harness may add a config key (with a default that keeps the old behaviour); a
    state saved before it must still resume. A changed value of an old key is still refused."""
    from harness.errors import CheckpointError
    from systems.speech import hifigan_train

    out = tmp_path / "d.safetensors"
    trainer(tiny, out).run(2, checkpoint_every=2)
    real = hifigan_train.default_config

    def newer() -> dict:
        cfg = real()
        cfg["data"]["a_later_key"] = 1.5
        cfg["a_later_table"] = {"x": 1}
        return cfg

    monkeypatch.setattr(hifigan_train, "default_config", newer)
    t = trainer(tiny, out)
    assert t.cfg["data"]["a_later_key"] == 1.5
    t.resume()
    assert t.step == 2
    edited = tmp_path / "edited.toml"
    edited.write_text(tiny.read_text().replace("texts = 4", "texts = 5"))
    with pytest.raises(CheckpointError, match="trained with another data"):
        trainer(edited, out).resume()


def bf16(tiny: Path, folder: Path) -> Path:
    """The tiny config with bfloat16 mixed precision."""
    path = folder / "tiny-bf16.toml"
    path.write_text('precision = "bfloat16"\n' + tiny.read_text())
    return path


def test_a_bfloat16_step_computes_the_float32_loss_to_bfloat16_precision(tiny, tmp_path):
    """After two steps (at step 0 the model's last layers are zero: its output is its input, in
    any precision), one batch through the same weights: inside the trainer's autocast the loss
    differs from float32's (so the steps do run in bfloat16) by no more than bfloat16's precision
    allows (8 bits of mantissa: relative error 2^-8 per rounding, a few roundings deep), and the
    weights the optimiser updates and the checkpoint stay float32."""
    from harness.training.trainer import stage_at

    t = trainer(bf16(tiny, tmp_path), tmp_path / "b.safetensors")
    t.run(2)
    torch.manual_seed(0)
    batch = t.t.batch(t.cfg, 2, "cpu")
    stage, _ = stage_at(t.stages, 2)
    losses = {}
    for name, half in (("bfloat16", True), ("float32", False)):
        with torch.no_grad(), (t.autocast() if half else torch.autocast("cpu", enabled=False)):
            loss, _ = t.t.loss(t.cfg, stage.name, "generator", t.modules, batch, {})
        losses[name] = float(loss)
    rel = abs(losses["bfloat16"] - losses["float32"]) / abs(losses["float32"])
    assert 0 < rel < 0.05, losses
    assert all(p.dtype == torch.float32 for m in t.modules.values() for p in m.parameters())
    assert t.record()["training"]["config"]["precision"] == "bfloat16"
    assert {v.dtype for v in load_file(tmp_path / "b.safetensors").values()} == {torch.float32}
    assert trainer(tiny, tmp_path / "f.safetensors").record()["training"]["config"]["precision"] == "float32"
    from harness import checkpoints
    from harness.training.report import write_report

    report = write_report(checkpoints.read_record(tmp_path / "b.safetensors"), tmp_path / "b.report.md", "cmd")
    assert "- steps: 2 of 8 on cpu in bfloat16," in Path(report).read_text()


def test_bfloat16_training_resumes_to_the_uninterrupted_weights_and_refuses_a_precision_change(tiny, tmp_path):
    from harness.errors import CheckpointError
    from harness.training.trainer import Trainer, load_train_config
    from systems.speech.learned import HiFiGAN

    cfg = bf16(tiny, tmp_path)
    whole = trainer(cfg, tmp_path / "whole.safetensors")
    whole.run()
    first = trainer(cfg, tmp_path / "split.safetensors")
    first.run(4, checkpoint_every=2)
    second = trainer(cfg, tmp_path / "split.safetensors")
    second.resume()
    second.run()
    assert same_tensors(tmp_path / "whole.safetensors", tmp_path / "split.safetensors")
    # a float32 run of the same config ends elsewhere: the bfloat16 steps are not float32's
    fp32 = trainer(tiny, tmp_path / "fp32.safetensors")
    fp32.run()
    assert not same_tensors(tmp_path / "whole.safetensors", tmp_path / "fp32.safetensors")
    with pytest.raises(CheckpointError, match="trained with another precision"):
        trainer(tiny, tmp_path / "split.safetensors").resume()
    spec = HiFiGAN.training()  # the --precision flag's override, the same check
    with pytest.raises(CheckpointError, match="trained with another precision"):
        Trainer(spec, load_train_config(spec, cfg, {"precision": "float32"}), tmp_path / "split.safetensors",
                "cpu").resume()


def test_a_bad_precision_is_one_line_naming_the_flag_or_the_config(tiny, tmp_path, monkeypatch, capsys):
    from helpers.hostile import cli

    code, _, err = cli(monkeypatch, capsys, "train", "hifigan", "--config", tiny, "--out",
                       tmp_path / "p.safetensors", "--precision", "half")
    assert code == 2 and err.strip() == "error: --precision must be one of float32, bfloat16, not 'half'"
    bad = tmp_path / "p.toml"
    bad.write_text('precision = "float16"\n' + tiny.read_text())
    code, _, err = cli(monkeypatch, capsys, "train", "hifigan", "--config", bad, "--out", tmp_path / "q.safetensors")
    assert code == 2 and "precision must be one of 'float32', 'bfloat16', got 'float16'" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "q.safetensors").exists()


def test_bfloat16_on_a_cpu_without_it_is_noted(tiny, tmp_path, monkeypatch, capsys):
    from helpers.hostile import cli

    from harness.cli import train as train_cli

    monkeypatch.setattr(train_cli, "_cpu_has_bfloat16", lambda: False)
    args = ("train", "hifigan", "--config", tiny, "--steps", "0", "--device", "cpu")
    code, _, err = cli(monkeypatch, capsys, *args, "--out", tmp_path / "a.safetensors", "--precision", "bfloat16")
    assert code == 0 and "no native bfloat16" in err
    code, _, err = cli(monkeypatch, capsys, *args, "--out", tmp_path / "b.safetensors")
    assert code == 0 and "no native bfloat16" not in err


def test_the_sidecar_says_which_evaluation_voices_a_model_was_trained_on(tiny, tmp_path):
    """The tiny config opts in to the evaluation voices slt and rms: the record names them
    instead of claiming the evaluation voices were excluded; the default voices exclude them."""
    from harness.suites.synth.speech import VOICES
    from systems.speech.hifigan_train import SpeechData, default_config

    out = tmp_path / "v.safetensors"
    trainer(tiny, out).save()
    data = json.loads(out.with_suffix(".json").read_text())["data"]
    assert data["evaluation_voices_used"] == ["slt", "rms"] and "evaluation_voices_excluded" not in data
    record = SpeechData(default_config()["data"], 1).record()
    assert record["evaluation_voices_excluded"] == list(VOICES) and not set(record["voices"]) & set(VOICES)


def test_a_run_notes_the_items_whose_voices_a_checkpoint_was_trained_on(tiny, tmp_path, monkeypatch, capsys):
    """Planning `hifigan` (alone and as a chain's stage) with the tiny checkpoint (trained on slt
    and rms) on the quick suite: a note names the items speaking with those voices (counted here
    from the suite's own metadata), and the run's report repeats it as a warning; the shipped
    checkpoint (no evaluation voice) gets none."""
    from helpers.hostile import cli

    from harness.config import RunConfig
    from harness.planning import plan
    from harness.suites import resolve_suite

    out = tmp_path / "v.safetensors"
    trainer(tiny, out).save()
    suite = resolve_suite("speech-enhancement-quick")
    heard = [it.id for it in suite.items if it.metadata["voice"] in ("slt", "rms")]
    assert 0 < len(heard) < len(suite.items)
    voiced = sorted({it.metadata["voice"] for it in suite.items if it.id in heard})
    cfg = RunConfig(out=str(tmp_path / "store"), suites=[suite.name],
                    systems=["hifigan", "hifigan>unprocessed", "unprocessed"], quiet=True,
                    system_params={"hifigan": {"checkpoint": str(out)}})
    notes = [n for n in plan(cfg).skipped if "not held-out" in n]
    assert notes == [f"{name}: v.safetensors was trained on {', '.join(voiced)}, the voice(s) of "
                     f"{len(heard)} item(s) of {suite.name}: their scores are not held-out"
                     for name in ("hifigan", "hifigan>unprocessed")]
    shipped = RunConfig(out=str(tmp_path / "store2"), suites=[suite.name], systems=["hifigan"], quiet=True)
    assert not [n for n in plan(shipped).skipped if "not held-out" in n]
    code, _, err = cli(monkeypatch, capsys, "run", "--suite", suite.name, "--system", "hifigan",
                       "--param", f"hifigan.checkpoint={out}", "--out", tmp_path / "run", "-q")
    assert code == 0 and f"note: {notes[0]}" in " ".join(err.split()), err
    code, _, err = cli(monkeypatch, capsys, "report", tmp_path / "run", "-f", "md", "--out", tmp_path / "r.md")
    assert code == 0, err
    assert f"> **Warning:** {tmp_path / 'run'}@" in (tmp_path / "r.md").read_text()
    assert notes[0] in (tmp_path / "r.md").read_text()


def test_a_suite_speaking_with_a_training_voice_of_the_shipped_checkpoint_is_noted(tmp_path):
    """A suite made with `-O voices=` naming a training voice (here: the quick suite's manifest
    with two items' voice metadata set to voices the shipped checkpoint's record lists) is not
    held-out for that checkpoint; before, only evaluation voices in a diagnostic model's record
    were noted, and such a run read as held-out."""
    import shutil

    from harness import checkpoints
    from harness.config import RunConfig
    from harness.planning import plan
    from harness.suites import resolve_suite

    quick = resolve_suite("speech-enhancement-quick")
    suite = tmp_path / "voiced"
    shutil.copytree(quick.root, suite)
    shipped = ROOT / "systems/speech/checkpoints/hifigan-small.safetensors"
    trained = checkpoints.read_record(shipped)["data"]["voices"]
    manifest = json.loads((suite / "manifest.json").read_text())
    for item, voice in zip(manifest["items"][:2], trained[:2], strict=True):
        item["metadata"]["voice"] = voice
    (suite / "manifest.json").write_text(json.dumps(manifest))
    cfg = RunConfig(out=str(tmp_path / "store"), suites=[str(suite)], systems=["hifigan", "wpe"], quiet=True)
    notes = [n for n in plan(cfg).skipped if "not held-out" in n]
    assert notes == [f"hifigan: hifigan-small.safetensors was trained on {', '.join(sorted(trained[:2]))}, "
                     f"the voice(s) of 2 item(s) of {quick.name}: their scores are not held-out"]


def test_a_run_resumed_with_steps_shortened_to_where_it_stopped_records_the_new_plan(tiny, tmp_path):
    """`--resume` with [steps] cut to the step reached: nothing left to train, and the sidecar and
    report give the new plan (they had kept the old one's total). Cut below it: refused."""
    from harness.errors import CheckpointError

    out = tmp_path / "s.safetensors"
    trainer(tiny, out).run(4, checkpoint_every=4)  # inside postnet (wavenet 3 + postnet 2 + adversarial 3)
    too_short = tmp_path / "too-short.toml"
    too_short.write_text(tiny.read_text().replace("postnet = 2\nadversarial = 3", "postnet = 0\nadversarial = 0"))
    with pytest.raises(CheckpointError, match="at step 4, past the 3 steps"):
        trainer(too_short, out).resume()
    shorter = tmp_path / "shorter.toml"
    shorter.write_text(tiny.read_text().replace("postnet = 2\nadversarial = 3", "postnet = 1\nadversarial = 0"))
    t = trainer(shorter, out)
    t.resume()
    before = load_file(out)
    t.run()
    rec = json.loads(out.with_suffix(".json").read_text())["training"]
    assert (rec["steps"], rec["total_steps"]) == (4, 4)
    assert [(s["name"], s["steps"]) for s in rec["stages"]] == [("wavenet", 3), ("postnet", 1)]
    assert all(torch.equal(before[k], v) for k, v in load_file(out).items())  # no step taken


@pytest.mark.gpu
def test_training_steps_run_on_cuda(tiny, tmp_path):
    from harness.training.trainer import Trainer, load_train_config
    from systems.speech.learned import HiFiGAN

    spec = HiFiGAN.training()
    t = Trainer(spec, load_train_config(spec, tiny), tmp_path / "g.safetensors", "cuda")
    t.run()
    assert t.step == t.total_steps and next(t.modules["generator"].parameters()).is_cuda
    tensors = load_file(tmp_path / "g.safetensors")
    assert all(v.device.type == "cpu" for v in tensors.values())  # saved for any machine


def test_device_band_target_is_the_dry_speech_through_the_device_band(tmp_path, monkeypatch):
    """With no room and 60 dB SNR through a phone (300-3400 Hz at 8 kHz), the input is within
    the noise of the "device-band" target (the same band-limit, no bandwidth to invent) but far
    from the full-band clean speech, which stays the scored reference."""
    from harness.metrics.snr import si_sdr_db
    from harness.suites.synth import degrade as dg
    from systems.speech.hifigan_train import SpeechData, default_config

    monkeypatch.setattr(dg, "DEVICES", {"phone": dg.DEVICES["phone"]})
    monkeypatch.setattr(dg, "NOISE_KINDS", ("white",))
    data = dict(default_config()["data"], voices=["slt", "rms"], texts=3, p_dry=1.0, snr_min=60.0,
                snr_max=60.0, cache=str(tmp_path), lead_s=1.0)
    parts = {}
    for target in ("device-band", "clean"):
        sd = SpeechData(dict(data, target=target), seed=5)
        parts[target] = sd.example_parts(np.random.default_rng(1), 1.0)
    noisy, band, clean = parts["device-band"]
    assert len(noisy) == len(band) == len(clean) == 16000
    assert si_sdr_db(noisy, band) > 40.0  # only the 60 dB noise and the 8 kHz round trip
    assert si_sdr_db(noisy, clean) < 15.0  # the band a phone removes
    n2, t2, c2 = parts["clean"]
    assert np.array_equal(t2, c2) and np.allclose(c2, clean) and np.allclose(n2, noisy)


def test_early_target_keeps_the_rooms_first_milliseconds(tmp_path, monkeypatch):
    """`data.target = "early"` in a room, at 60 dB SNR through a phone: with `early_ms` longer
    than the room's response the target is the degradation chain's own speech image (the input
    within its noise) at twice its level (the bank's direct path is 0.5, the target's 1); with
    `early_ms = 0` it is the device-band target (the dry speech); at 50 ms it lies between."""
    from harness.metrics.snr import si_sdr_db
    from harness.suites.synth import degrade as dg
    from systems.speech.hifigan_train import SpeechData, default_config

    monkeypatch.setattr(dg, "DEVICES", {"phone": dg.DEVICES["phone"]})
    monkeypatch.setattr(dg, "NOISE_KINDS", ("white",))
    data = dict(default_config()["data"], voices=["slt", "rms"], texts=3, p_dry=0.0, snr_min=60.0,
                snr_max=60.0, cache=str(tmp_path), rooms=2, rt60_min=0.2, rt60_max=0.25)
    parts = {}
    for name, extra in [("all", {"target": "early", "early_ms": 1000.0}),
                        ("none", {"target": "early", "early_ms": 0.0}),
                        ("50", {"target": "early", "early_ms": 50.0}), ("band", {"target": "device-band"})]:
        sd = SpeechData(dict(data, **extra), seed=5)
        parts[name] = sd.example_parts(np.random.default_rng(1), 1.0)
    assert max(len(h) for h in sd.rooms) < 16000  # the 1000 ms window covers every response
    noisy, whole, _ = parts["all"]
    assert si_sdr_db(noisy, whole) > 35.0  # only the 60 dB noise between them
    assert np.sqrt(np.mean(whole ** 2)) / np.sqrt(np.mean(noisy ** 2)) == pytest.approx(2.0, rel=0.01)
    assert np.allclose(parts["none"][1], parts["band"][1], atol=1e-9)
    early = parts["50"][1]
    assert si_sdr_db(noisy, parts["band"][1]) < si_sdr_db(noisy, early) < si_sdr_db(noisy, whole) - 5.0


@pytest.mark.parametrize("speed", [0.88, 1.0, 1.25])
@pytest.mark.parametrize("trainer", ["hifigan", "unet-sr 32 kHz"])
def test_speed_perturbation_scales_pitch_and_keeps_the_length(speed, trainer, monkeypatch):
    """A "voice" whose every sentence is a 440 Hz tone: sped up by s (rendered at rate / s, read
    at the rate) its tone is at 440 s Hz, and the talk keeps its requested length; in the
    hifigan trainer (16 kHz) and the unet-sr one (here its 32 kHz wide-band data)."""
    from harness.suites.synth import speech

    def tone(voice, text, rate=16000):
        t = np.arange(int(0.7 * rate)) / rate
        return np.sin(2 * np.pi * 440.0 * t)

    monkeypatch.setattr(speech, "say", tone)
    rng = np.random.default_rng(0)
    if trainer == "hifigan":
        from systems.speech.hifigan_train import SpeechData, default_config

        rate, data = 16000, dict(default_config()["data"], texts=3, speed=[speed, speed])
        x = SpeechData(data, seed=5).talk("ked", rng, 2.0)
    else:
        from systems.sr.train import SpeechSR, default_config

        rate, data = 32000, dict(default_config()["data"], texts=3, speed=[speed, speed], rate=32000)
        x = SpeechSR(data, seed=5).talk(rng, 2.0)
    assert len(x) == 2 * rate
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    peak_hz = np.argmax(spectrum) * rate / len(x)
    assert abs(peak_hz - 440.0 * speed) <= 1.0, peak_hz


def test_cached_data_is_made_once_per_data_config_and_seed():
    from harness.training import cached_data

    class Owner:
        pass

    owner, made = Owner(), []

    def make(data, seed):
        made.append((data["n"], seed))
        return object()

    a = cached_data(owner, {"data": {"n": 1}, "seed": 5}, make)
    assert cached_data(owner, {"data": {"n": 1}, "seed": 5}, make) is a
    b = cached_data(owner, {"data": {"n": 2}, "seed": 5}, make)
    c = cached_data(owner, {"data": {"n": 2}, "seed": 6}, make)
    assert len({id(a), id(b), id(c)}) == 3 and made == [(1, 5), (2, 5), (2, 6)]


def test_training_sentences_are_the_sidecars_seed_and_never_a_suite_sentence():
    """Sidecars record the texts as drawn with seed [seed, 1]: the pool is that stream's."""
    from harness.suites.synth.speech import SENTENCES, training_sentence, training_sentences

    rng = np.random.default_rng([20261206, 1])
    pool = training_sentences(20261206, 50)
    assert pool == tuple(training_sentence(rng) for _ in range(50))
    assert not set(pool) & set(SENTENCES) and len(set(pool)) > 45


def test_init_starts_from_the_earlier_runs_weights_and_resumes_as_a_fine_tuning_run(tiny, tmp_path):
    """--init: before its first step a fine-tuning run holds exactly the earlier run's module
    weights (every module, the discriminators too), records that state's sha256 (hashlib of the
    file), and a stopped fine-tuning run resumed ends with the uninterrupted one's weights (the
    resumed weights are not overwritten by the init)."""
    import hashlib

    base = trainer(tiny, tmp_path / "base.safetensors")
    base.run()
    state = tmp_path / "base.train.safetensors"
    tuned = trainer(tiny, tmp_path / "tuned.safetensors")
    tuned.init_from(tmp_path / "base.safetensors")
    start = load_file(state)
    for m, mod in tuned.modules.items():
        for k, v in mod.state_dict().items():
            assert torch.equal(v, start[f"module/{m}/{k}"]), (m, k)
    assert tuned.step == 0 and tuned.init["sha256"] == hashlib.sha256(state.read_bytes()).hexdigest()
    assert tuned.init["steps"] == base.total_steps
    tuned.run()
    assert not same_tensors(tmp_path / "base.safetensors", tmp_path / "tuned.safetensors")
    split = trainer(tiny, tmp_path / "split.safetensors")
    split.init_from(state)
    split.run(4, checkpoint_every=2)
    again = trainer(tiny, tmp_path / "split.safetensors")
    again.resume()
    assert again.init == tuned.init
    again.run()
    assert same_tensors(tmp_path / "tuned.safetensors", tmp_path / "split.safetensors")
    assert json.loads((tmp_path / "split.json").read_text())["training"]["init"] == tuned.init


def test_init_from_an_inference_checkpoint_starts_the_exported_model_from_it(tiny, tmp_path, monkeypatch, capsys):
    """--init with an averaged checkpoint (no training state beside it): the generator starts
    from its tensors exactly, the discriminators as a fresh run of the same seed makes them; the
    sidecar records the file's sha256 (hashlib) and the module; the run trains from there, and a
    stopped run resumed with the same --init ends with the uninterrupted one's weights."""
    import hashlib

    from helpers.hostile import cli

    from harness.checkpoints import average

    for name, steps in (("a", 2), ("b", 3)):
        trainer(tiny, tmp_path / f"{name}.safetensors").run(steps)
    avg = average([tmp_path / "a.safetensors", tmp_path / "b.safetensors"], tmp_path / "avg.safetensors")
    fresh = trainer(tiny, tmp_path / "fresh.safetensors")
    tuned = trainer(tiny, tmp_path / "tuned.safetensors")
    tuned.init_from(avg)
    given = load_file(avg)
    for k, v in tuned.modules["generator"].state_dict().items():
        assert torch.equal(v, given[k]), k
    assert any(not torch.equal(v, given[k]) for k, v in fresh.modules["generator"].state_dict().items())
    for m in tuned.modules:
        if m != "generator":
            for k, v in tuned.modules[m].state_dict().items():
                assert torch.equal(v, fresh.modules[m].state_dict()[k]), (m, k)
    assert tuned.init["sha256"] == hashlib.sha256(avg.read_bytes()).hexdigest()
    assert tuned.init["modules"] == ["generator"] and tuned.step == 0
    code, _, err = cli(monkeypatch, capsys, "train", "hifigan", "--config", tiny, "--init", avg,
                       "--out", tmp_path / "whole.safetensors", "-q")
    assert code == 0, err
    code, _, err = cli(monkeypatch, capsys, "train", "hifigan", "--config", tiny, "--init", avg,
                       "--out", tmp_path / "split.safetensors", "--steps", "3", "-q")
    assert code == 0, err
    code, _, err = cli(monkeypatch, capsys, "train", "hifigan", "--config", tiny, "--init", avg,
                       "--out", tmp_path / "split.safetensors", "--resume", "-q")
    assert code == 0, err
    assert same_tensors(tmp_path / "whole.safetensors", tmp_path / "split.safetensors")
    assert not same_tensors(tmp_path / "whole.safetensors", avg)
    rec = json.loads((tmp_path / "whole.json").read_text())["training"]["init"]
    assert rec["from"] == str(avg.resolve()) and rec["modules"] == ["generator"]


def test_init_errors_are_one_line(tiny, tmp_path, monkeypatch, capsys):
    from helpers.hostile import cli, one_line_error

    base = trainer(tiny, tmp_path / "base.safetensors")
    base.run(1)
    other = tmp_path / "other.toml"
    other.write_text(tiny.read_text().replace("channels = 8\n", "channels = 12\n", 1))
    code, _, err = cli(monkeypatch, capsys, "train", "hifigan", "--config", other, "--init",
                       tmp_path / "base.safetensors", "--out", tmp_path / "x.safetensors")
    one_line_error(code, err, "base.train.safetensors: trained with another architecture config")
    code, _, err = cli(monkeypatch, capsys, "train", "hifigan", "--config", tiny, "--init",
                       tmp_path / "nope.safetensors", "--out", tmp_path / "y.safetensors")
    one_line_error(code, err, "nope.safetensors: no checkpoint to start from")
    (tmp_path / "base.train.safetensors").rename(tmp_path / "kept.train.safetensors")  # weights only now
    code, _, err = cli(monkeypatch, capsys, "train", "hifigan", "--config", other, "--init",
                       tmp_path / "base.safetensors", "--out", tmp_path / "w.safetensors")
    one_line_error(code, err, "base.safetensors: trained with another architecture config")
    (tmp_path / "kept.train.safetensors").rename(tmp_path / "base.train.safetensors")
    code, _, err = cli(monkeypatch, capsys, "train", "hifigan", "--config", tiny, "--init",
                       tmp_path / "base.safetensors", "--out", tmp_path / "base.safetensors", "--resume")
    one_line_error(code, err, "its run did not start from --init")
    needs = tmp_path / "needs.toml"
    needs.write_text("init_required = true\n" + tiny.read_text())
    code, _, err = cli(monkeypatch, capsys, "train", "hifigan", "--config", needs, "--out", tmp_path / "z.safetensors")
    one_line_error(code, err, "needs.toml: this config fine-tunes an earlier run (init_required = true)")
    assert not (tmp_path / "z.safetensors").exists()
    needs.write_text('init_required = "yes"\n' + tiny.read_text())
    code, _, err = cli(monkeypatch, capsys, "train", "hifigan", "--config", needs, "--out", tmp_path / "z.safetensors")
    one_line_error(code, err, "needs.toml: init_required must be true or false, not 'yes'")


def test_keep_every_keeps_the_weights_a_run_stopped_at_that_step_ends_with(tiny, tmp_path, monkeypatch, capsys):
    """`--keep-every 3`: snapshots at steps 3 and 6 of the 8; each equals the checkpoint of a
    separate run stopped there with --steps, and the last step's is not kept twice."""
    from helpers.hostile import cli, one_line_error

    from harness import checkpoints

    code, _, err = cli(monkeypatch, capsys, "train", "hifigan", "--config", tiny, "--out",
                       tmp_path / "kept.safetensors", "--keep-every", "3", "-q")
    assert code == 0, err
    kept = sorted(p.name for p in tmp_path.glob("kept.step*.safetensors"))
    assert kept == ["kept.step000003.safetensors", "kept.step000006.safetensors"]
    for step in (3, 6):
        code, _, err = cli(monkeypatch, capsys, "train", "hifigan", "--config", tiny, "--out",
                           tmp_path / f"stop{step}.safetensors", "--steps", str(step), "-q")
        assert code == 0, err
        snap = tmp_path / f"kept.step{step:06d}.safetensors"
        assert same_tensors(snap, tmp_path / f"stop{step}.safetensors")
        assert checkpoints.load(snap)[1]["training"]["steps"] == step  # its sidecar says which
    assert not same_tensors(tmp_path / "kept.step000003.safetensors", tmp_path / "kept.step000006.safetensors")
    code, _, err = cli(monkeypatch, capsys, "train", "hifigan", "--config", tiny, "--out",
                       tmp_path / "neg.safetensors", "--keep-every", "-1")
    one_line_error(code, err, "--keep-every must be >= 0, not -1")
