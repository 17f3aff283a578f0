"""CLI surface: help on every command, listings, and entry-point discovery of systems."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from conftest import run_cli

COMMANDS = ["run", "summary", "suites", "systems", "metrics", "listeners", "runs", "export", "compare",
            "score", "pack", "report", "leaderboard", "tasks", "train", "checkpoints"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    res = run_cli(command, "--help")
    assert res.returncode == 0 and "Usage" in res.stdout and len(res.stdout) > 200


def test_help_prints_brackets_and_placeholders_literally():
    """Help is rendered as Markdown: `[extra]` is not taken for Rich markup and `<name>` not for
    HTML (each was dropped from the printed help before)."""
    res = run_cli("report", "--help")
    assert res.returncode == 0
    assert "si_sdri[speech]" in res.stdout and "report.<ext>" in res.stdout
    res = run_cli("score", "--help")
    assert "<item>/<item>_<output>.flac" in res.stdout and "<scene>_<listener>_A<alpha>_remix.flac" in res.stdout
    res = run_cli("run", "--help")
    assert "audio-harness[ray]" in res.stdout


def test_built_in_systems_are_found_through_entry_points():
    eps = {ep.name: ep.value for ep in entry_points(group="harness.systems")}
    assert eps.get("unprocessed") == "systems.anchors:Unprocessed"
    res = run_cli("systems")
    assert res.returncode == 0 and "unprocessed" in res.stdout and "oracle" in res.stdout


def test_systems_name_lists_its_parameters_and_what_each_may_take(monkeypatch, capsys):
    """`harness systems wpe`: the keys `--param wpe.KEY=` takes (those the README's examples use
    among them), with defaults and limits; a value outside one is refused by `run` (test_config)."""
    from helpers.hostile import cli, one_line_error

    code, text, err = cli(monkeypatch, capsys, "systems", "wpe")
    assert code == 0, err
    rows = {ln.split("│")[1].strip(): [c.strip() for c in ln.split("│")[2:4]] for ln in text.splitlines()
            if ln.startswith("│")}
    assert rows["taps"] == ["20", "integers in [1, inf)"]
    assert rows["then"] == ["'mmse-lsa'", "one of 'mmse-lsa', 'spectral-gating', 'none'"]
    assert set(rows) == {"taps", "delay", "iterations", "frame", "shift", "then"}
    code, text, _ = cli(monkeypatch, capsys, "systems", "remix/dsp")  # a variant: its system's parameters
    assert code == 0 and "chunk_s" in text and "numbers in [0, 0.5]" in text
    code, text, _ = cli(monkeypatch, capsys, "systems", "unprocessed")
    assert code == 0 and "declares no parameters" in text
    code, _, err = cli(monkeypatch, capsys, "systems", "nosuch")
    one_line_error(code, err, "unknown system 'nosuch'")


def test_listings_show_panel_suites_and_metrics():
    res = run_cli("listeners")
    assert res.returncode == 0
    assert "S3" in res.stdout and "SEVERE" in res.stdout and "47.5" in res.stdout
    res = run_cli("suites", "show", "music-remix-quick")
    assert res.returncode == 0 and "song01-pop" in res.stdout
    res = run_cli("metrics")
    for name in ("haaqi", "sdr", "si_sdr", "snr", "pesq", "pesq_nb", "stoi", "estoi"):
        assert name in res.stdout
    res = run_cli("suites", "generators")  # each option's limit, its brackets printed (not markup)
    assert res.returncode == 0 and "rt60s [0, 2]" in " ".join(res.stdout.split()), res.stdout


def test_export_of_unknown_run_is_a_one_line_error(tmp_path):
    res = run_cli("export", "nope", "--store", str(tmp_path))
    assert res.returncode == 2 and "not a results store" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "harness.sqlite").exists()  # a read-only command creates nothing
