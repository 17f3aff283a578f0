"""`harness report --by-stem`: per-stem units are the mean of each stem's rows (ok only when all
are), labelled metric[stem], and look up their metric's direction."""

from __future__ import annotations

import pandas as pd

from harness.report.summary import base_metric, stem_units, summarise


def test_stem_units_are_the_mean_of_each_stems_rows():
    rows = []
    for ear, v in (("left", 0.2), ("right", 0.4)):
        rows.append(("s", "music-remix", "x", "song", "L1", "haaqi", ear, "vocals", v, "ok", ""))
        rows.append(("s", "music-remix", "x", "song", "L1", "haaqi", ear, "drums", v + 0.5, "ok", ""))
    rows.append(("s", "music-remix", "x", "song", "L1", "sdr", "", "bass", None, "failed", "silent"))
    rows.append(("s", "music-remix", "x", "song", "L1", "sdr", "", "vocals", 3.0, "ok", ""))
    df = pd.DataFrame(rows, columns=["suite", "task", "system", "item_id", "listener_id", "metric",
                                     "ear", "stem", "value", "status", "reason"])
    u = stem_units(df).set_index("metric")
    assert abs(u.loc["haaqi[vocals]", "value"] - 0.3) < 1e-12
    assert abs(u.loc["haaqi[drums]", "value"] - 0.8) < 1e-12
    assert u.loc["sdr[bass]", "status"] == "failed" and u.loc["sdr[bass]", "reason"] == "silent"
    assert u.loc["sdr[vocals]", "value"] == 3.0
    assert base_metric("si_sdri[speech]") == "si_sdri"
    s = summarise(stem_units(df))
    assert bool(s.set_index("metric").loc["haaqi[drums]", "higher_is_better"]) is True
