"""music-remix (CAD1) end to end on the quick suite: anchors and the hearing-loss ordering."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_cli

from harness.protocols.music_remix import MusicRemix
from harness.store import Store
from harness.suites import resolve_suite


def test_anchor_outputs_meet_the_cad1_output_spec(music_item):
    p = MusicRemix()
    for kind in ("unprocessed", "oracle"):
        out = p.anchor(kind, music_item, None)
        assert p.validate_outputs(music_item, out) == {}
        assert len([k for k in out if k != "remix"]) == 8
    oracle = p.anchor("oracle", music_item, None)
    unproc = p.anchor("unprocessed", music_item, None)
    # The unprocessed "vocals" for the left ear is the left channel of the mixture.
    assert np.allclose(unproc["left_vocals"].mono(), unproc["left_drums"].mono())
    assert not np.allclose(oracle["left_vocals"].mono(), oracle["left_drums"].mono())


@pytest.mark.slow
def test_haaqi_of_oracle_falls_with_hearing_loss_and_beats_unprocessed(tmp_path):
    res = run_cli("run", "--suite", "music-remix-quick", "--listener", "NH", "--listener", "N1",
                  "--listener", "N2", "--listener", "N4", "--out", str(tmp_path), "--quiet")
    assert res.returncode == 0, res.stderr
    store = Store(tmp_path)
    df = store.scores(store.resolve("latest"))
    store.close()
    assert (df.status == "ok").all(), df[df.status != "ok"].reason.unique()
    unit = df.groupby(["system", "metric", "listener_id", "item_id"]).value.mean()
    haaqi = unit.loc["oracle", "haaqi"].groupby("listener_id").mean()
    assert haaqi["NH"] > haaqi["N1"] > haaqi["N2"] > haaqi["N4"], haaqi
    assert 0.7 < haaqi["NH"] < 1.0  # identical signals are not 1 (about 0.88 at 65 dB SPL)
    means = unit.groupby(["system", "metric"]).mean().unstack()
    assert (means.loc["oracle"] > means.loc["unprocessed"]).all(), means
    assert len(resolve_suite("music-remix-quick").items) * 4 * 2 * 8 == (df.metric == "haaqi").sum()
