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
        # the address alone ran locally and ignored it
        ("ray_address = 'head:6379'", "a Ray cluster address ('head:6379') is for --executor ray; this run's "
                                      "executor is 'local'"),
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


def test_intervals_are_read_as_written():
    from harness.config import within

    assert within("[0, 1)", 0) and within("[0, 1)", 0.999) and not within("[0, 1)", 1)
    assert not within("(0, inf)", 0) and within("(0, inf)", 1e300) and not within("(0, inf)", float("inf"))
    assert within("(-inf, 0]", 0) and within("(-inf, 0]", -1e300) and not within("(-inf, 0]", 1e-12)
    assert within("[0.1, 2.5]", 2.5) and not within("[0.1, 2.5]", 0.09)
    assert not within("[0, 1]", float("nan"))
    with pytest.raises(ValueError, match="not an interval"):
        within("0..1", 0.5)


def test_every_system_declares_limits_its_defaults_meet():
    """Each limit names a declared parameter, and the defaults lie within their limits (a limit
    that refused its own default would refuse every run that sets it)."""
    from harness import registry
    from harness.config import check_limits

    declared = 0
    for name in registry.names("harness.systems"):
        cls = registry.load("harness.systems", name)
        limits = getattr(cls, "limits", None) or {}
        defaults = getattr(cls, "defaults", None) or {}
        inherited = {k for k in limits if k not in defaults}  # a base class's, for parameters it lacks
        assert inherited <= {"n_fft", "hop", "max_offset_s"}, (name, inherited)
        check_limits(name, {k: v for k, v in defaults.items() if k in limits}, limits)
        declared += len(limits)
    assert declared >= 40


@pytest.mark.parametrize(("flag", "message"), [
    ("mmse-lsa.overlap=1.5", "key 'system_params.mmse-lsa.overlap' must be in [0, 1), got 1.5"),
    ("wpe.taps=0", "key 'system_params.wpe.taps' must be in [1, inf), got 0"),
    ("wpe.then=nosuch", "key 'system_params.wpe.then' must be one of 'mmse-lsa', 'spectral-gating', 'none', "
                        "got 'nosuch'"),
    ("hifigan.chunk_s=0", "key 'system_params.hifigan.chunk_s' must be in [0.1, inf), got 0"),
    ("spectral-gating.prop_decrease=nan", "must be in [0, 1], got nan"),
    ("cocktail-dsp.band_hz=[80, -1]", "key 'system_params.cocktail-dsp.band_hz' must be in (0, inf) (each), "
                                      "got [80, -1]"),
    ("remix/dsp.overlap=0.7", "key 'system_params.remix/dsp.overlap' must be in [0, 0.5], got 0.7"),
    ("mrx.input_lufs=loud", "key 'system_params.mrx.input_lufs' must be in (-inf, 0), got 'loud'"),
    ("plcs.search=fast", "key 'system_params.plcs.search' must be one of 'exhaustive', 'hash', got 'fast'"),
])
def test_a_parameter_out_of_its_range_is_refused_before_anything_runs(flag, message, tmp_path, monkeypatch,
                                                                       capsys):
    """Before, such values ran: an overlap of 1.5 scored as if it made sense, taps=0 and chunk_s=0
    failed every item with an exception from inside numpy or range()."""
    from helpers.hostile import cli, one_line_error

    system = flag.partition(".")[0]
    code, _, err = cli(monkeypatch, capsys, "run", "--system", system, "--param", flag, "--out", tmp_path / "r")
    one_line_error(code, err, message)
    assert not (tmp_path / "r").exists()
