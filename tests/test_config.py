"""Run configuration: TOML keys mirror the flags, flags override the file, mistakes are one line."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli

from harness.config import load_config
from harness.errors import ConfigError
from harness.planning import resolve_device


def test_toml_keys_and_flag_overrides(tmp_path):
    cfg_file = tmp_path / "run.toml"
    cfg_file.write_text(
        'suites = "speech-enhancement-quick"\nsystems = ["oracle"]\njobs = 1\n'
        'metrics = ["pesq", "snr"]\n[system_params.oracle]\n'
    )
    cfg = load_config(cfg_file, {"jobs": 2, "systems": None, "metrics": []})
    assert cfg.suites == ["speech-enhancement-quick"]  # a string is taken as a one-item list
    assert cfg.systems == ["oracle"] and cfg.metrics == ["pesq", "snr"]
    assert cfg.jobs == 2  # the flag wins over the file


def test_config_file_drives_a_run(tmp_path):
    cfg_file = tmp_path / "run.toml"
    cfg_file.write_text(
        f'suites = ["speech-enhancement-quick"]\nsystems = ["oracle"]\nmetrics = ["snr"]\n'
        f'out = "{tmp_path / "out"}"\nquiet = true\njobs = 1\n'
    )
    res = run_cli("run", "--config", str(cfg_file))
    assert res.returncode == 0, res.stderr
    assert "snr" in res.stdout and "pesq" not in res.stdout
    assert (tmp_path / "out" / "harness.sqlite").exists()


@pytest.mark.parametrize(
    "content,message",
    [
        ("suites = [", "not valid TOML"),
        ("colour = 'blue'", "unknown key(s) colour"),
        ("jobs = 0", "jobs must be at least 1"),
        ("systems = 3", "must be a list of strings"),
    ],
)
def test_bad_config_files_name_the_file(tmp_path, content, message):
    cfg_file = tmp_path / "run.toml"
    cfg_file.write_text(content)
    with pytest.raises(ConfigError) as exc:
        load_config(cfg_file, {})
    assert str(exc.value).startswith(str(cfg_file)) and message in str(exc.value)


def test_device_resolution():
    assert resolve_device("cpu") == "cpu"
    import torch

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == expected
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="torch sees no CUDA device"):
            resolve_device("cuda")


SHIPPED = sorted((Path(__file__).parent.parent / "systems").glob("*/configs/*.toml"))


@pytest.mark.parametrize("path", [p for p in SHIPPED if not p.name.startswith("train-")],
                         ids=lambda p: p.name)
def test_every_shipped_config_passes_the_schema(path):
    """The typed schema (and each system's parameter types) accepts the configs the project ships."""
    cfg = load_config(path, {})
    assert cfg.systems and cfg.suites


@pytest.mark.parametrize("path", [p for p in SHIPPED if p.name.startswith("train-")],
                         ids=lambda p: p.name)
def test_every_shipped_training_config_passes_its_systems_training_schema(path):
    """train-*.toml are `harness train` configs: checked key by key against the training
    defaults of the system whose folder holds them."""
    from harness.training.trainer import load_train_config
    from systems.mrx.system import MRXSystem
    from systems.remix.system import Remix
    from systems.speech.learned import HiFiGAN
    from systems.sr.system import UNetSRSystem

    owner = {"speech": HiFiGAN, "sr": UNetSRSystem, "mrx": MRXSystem, "remix": Remix}[path.parent.parent.name]
    trainable = owner.training()
    cfg = load_train_config(trainable, path)
    assert cfg["seed"] and cfg["batch_size"] >= 1 and sum(cfg["steps"].values()) > 0


def test_a_stage_option_table_may_be_switched_off_but_not_given_a_number(tmp_path):
    cfg_file = tmp_path / "run.toml"
    cfg_file.write_text('systems = ["remix"]\n[system_params.remix]\nbandpass = false\ncompressor = {}\n')
    assert load_config(cfg_file, {}).system_params["remix"]["bandpass"] is False
    cfg_file.write_text('systems = ["remix"]\n[system_params.remix]\nbandpass = 3\n')
    with pytest.raises(ConfigError, match="system_params.remix.bandpass' must be a table"):
        load_config(cfg_file, {})


def test_param_flags_set_system_parameters_over_the_config(tmp_path):
    from harness.config import load_config, parse_param

    assert parse_param("wpe.taps=10") == ("wpe", ["taps"], 10)
    assert parse_param("mmse-lsa.floor_db=-20.5") == ("mmse-lsa", ["floor_db"], -20.5)
    assert parse_param("remix/dsp.nalr=false") == ("remix/dsp", ["nalr"], False)
    assert parse_param("hifigan.checkpoint=ckpt/a b.safetensors") == (
        "hifigan", ["checkpoint"], "ckpt/a b.safetensors")  # not TOML: taken as a string
    assert parse_param("remix.separator_options.n_fft=4096") == ("remix", ["separator_options", "n_fft"], 4096)
    conf = tmp_path / "run.toml"
    conf.write_text('[system_params.wpe]\ntaps = 5\ndelay = 2\n')
    cfg = load_config(conf, {"params": ["wpe.taps=12", "mmse-lsa.rule=wiener"]})
    assert cfg.system_params == {"wpe": {"taps": 12, "delay": 2}, "mmse-lsa": {"rule": "wiener"}}
    for bad, msg in [("wpe", "expected SYSTEM.KEY=VALUE"), ("wpe.=3", "expected SYSTEM.KEY=VALUE"),
                     ("wpe.taps=ten", "must be an integer"), ("wpe.tapz=3", "unknown parameter")]:
        with pytest.raises(ConfigError, match=msg):
            load_config(None, {"params": [bad]})
