"""Built-in panel against the published Bisgaard table; Clarity listener files and their errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from harness.errors import ListenerError
from harness.listener import haaqi_audiogram, load_listener_file, resolve_panel, severity

# Bisgaard, Vlaming & Dahlquist (2010), Table: thresholds in dB HL at these frequencies.
FREQS = [250, 375, 500, 750, 1000, 1500, 2000, 3000, 4000, 6000]
BISGAARD = {
    "N1": [10, 10, 10, 10, 10, 10, 15, 20, 30, 40],
    "N2": [20, 20, 20, 22.5, 25, 30, 35, 40, 45, 50],
    "N3": [35, 35, 35, 35, 40, 45, 50, 55, 60, 65],
    "N4": [55, 55, 55, 55, 55, 60, 65, 70, 75, 80],
    "N5": [65, 67.5, 70, 72.5, 75, 80, 80, 80, 80, 80],
    "N6": [75, 77.5, 80, 82.5, 85, 90, 90, 95, 100, 100],
    "N7": [90, 92.5, 95, 100, 105, 105, 105, 105, 105, 105],
    "S1": [10, 10, 10, 10, 10, 10, 15, 30, 55, 70],
    "S2": [20, 20, 20, 22.5, 25, 35, 55, 75, 95, 95],
    "S3": [30, 30, 35, 47.5, 60, 70, 75, 80, 80, 85],
}


def test_builtin_panel_matches_bisgaard_table():
    panel = resolve_panel("builtin")
    assert panel.ids == ["NH", *BISGAARD]
    for lid, levels in BISGAARD.items():
        li = panel.get(lid)
        for ag in (li.audiogram_left, li.audiogram_right):
            assert ag.frequencies.tolist() == FREQS
            assert ag.levels.tolist() == levels
    assert np.all(panel.get("NH").audiogram_left.levels == 0)


def test_severity_uses_mean_of_2_to_8_khz():
    panel = resolve_panel("builtin")
    # means over 2-6 kHz: NH 0, N1 26.25, N2 42.5, N3 57.5, S2 80
    expected = {"NH": "NOTHING", "N1": "MILD", "N2": "MODERATE", "N3": "SEVERE", "S2": "SEVERE"}
    assert {k: severity(panel.get(k)) for k in expected} == expected


def test_haaqi_audiogram_interpolates_on_log_frequency():
    li = {"L1": {"name": "L1", "audiogram_cfs": [250, 500, 1000, 2000, 3000, 4000, 8000],
                 "audiogram_levels_l": [10, 20, 30, 40, 50, 60, 80],
                 "audiogram_levels_r": [10, 20, 30, 40, 50, 60, 80]}}
    from clarity.utils.audiogram import Listener

    ag = haaqi_audiogram(Listener.from_dict(li["L1"]).audiogram_left)
    assert ag.frequencies.tolist() == [250, 500, 1000, 2000, 4000, 6000]
    # 6 kHz lies log-linearly between 4 kHz (60) and 8 kHz (80): 60 + 20 * log2(1.5)
    assert ag.levels.tolist()[:5] == [10, 20, 30, 40, 60]
    assert ag.levels[5] == pytest.approx(60 + 20 * np.log2(1.5))


def test_clarity_listener_file_loads(tmp_path):
    data = {"L0001": {"name": "L0001", "audiogram_cfs": [250, 500, 1000, 2000, 3000, 4000, 6000, 8000],
                      "audiogram_levels_l": [45, 45, 35, 45, 60, 65, 70, 65],
                      "audiogram_levels_r": [40, 40, 45, 45, 60, 65, 80, 80]}}
    path = tmp_path / "listeners.test.json"
    path.write_text(json.dumps(data))
    panel = load_listener_file(path)
    assert panel.ids == ["L0001"]
    assert panel.get("L0001").audiogram_right.levels.tolist() == [40, 40, 45, 45, 60, 65, 80, 80]


@pytest.mark.parametrize(
    "content,message",
    [
        ("{not json", "not valid JSON"),
        ("[]", "expected a non-empty JSON object"),
        ('{"L1": {"name": "L1"}}', "lacks audiogram_cfs"),
        ('{"L1": {"name": "L2", "audiogram_cfs": [250], "audiogram_levels_l": [1],'
         ' "audiogram_levels_r": [1]}}', "differs from its name"),
        ('{"L1": {"name": "L1", "audiogram_cfs": [250, 500], "audiogram_levels_l": [1],'
         ' "audiogram_levels_r": [1, 2]}}', "1 thresholds for 2 frequencies"),
        ('{"L1": {"name": "L1", "audiogram_cfs": [500, 250], "audiogram_levels_l": [1, 2],'
         ' "audiogram_levels_r": [1, 2]}}', "increasing order"),
    ],
)
def test_malformed_listener_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "listeners.json"
    path.write_text(content)
    with pytest.raises(ListenerError, match=message) as exc:
        load_listener_file(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_unknown_listener_id_lists_known_ids():
    with pytest.raises(ListenerError, match="unknown listener id 'X9'.*NH, N1"):
        resolve_panel("builtin", ["NH", "X9"])
