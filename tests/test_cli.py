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


def test_listings_show_panel_suites_and_metrics():
    res = run_cli("listeners")
    assert res.returncode == 0
    assert "S3" in res.stdout and "SEVERE" in res.stdout and "47.5" in res.stdout
    res = run_cli("suites", "show", "music-remix-quick")
    assert res.returncode == 0 and "song01-pop" in res.stdout
    res = run_cli("metrics")
    for name in ("haaqi", "sdr", "si_sdr", "snr", "pesq", "pesq_nb", "stoi", "estoi"):
        assert name in res.stdout


def test_export_of_unknown_run_is_a_one_line_error(tmp_path):
    res = run_cli("export", "nope", "--store", str(tmp_path))
    assert res.returncode == 2 and "not a results store" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "harness.sqlite").exists()  # a read-only command creates nothing
