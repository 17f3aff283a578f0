"""HASPI v2, HASQI v2 and MBSTOI through the harness against pyclarity's own functions called
directly with the same seed (the shared parity tester), and their refusals."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from helpers import Case, assert_parity, at_snr, quick_speech

from harness.audio import Audio
from harness.listener import audiogram, haaqi_audiogram, resolve_panel
from harness.metrics import INVALID, get_metric

RATE = 16000


def listeners():
    panel = resolve_panel("builtin")
    return {li.id: li for li in panel.listeners}


def ear_cases() -> list[Case]:
    li = listeners()
    rng = np.random.default_rng(5)
    x = quick_speech("se01.flac", RATE)[: 3 * RATE]
    y = quick_speech("se02.flac", RATE)[: 3 * RATE]
    out = []
    for k, (lid, ear, snr) in enumerate([("NH", "left", 20), ("N2", "right", 5), ("N4", "left", 0),
                                         ("N6", "right", -5)]):
        ref = x if k % 2 == 0 else y
        out.append(Case(f"{lid} {ear} {snr} dB", Audio(at_snr(ref, snr, rng=rng), RATE), Audio(ref, RATE),
                        kwargs={"listener": li[lid], "ear": ear, "seed": 11 + k}))
    out.append(Case("no listener", Audio(x, RATE), Audio(x, RATE), status=INVALID))
    out.append(Case("stereo estimate", Audio(np.stack([x, x]), RATE), Audio(np.stack([x, x]), RATE),
                    status=INVALID, kwargs={"listener": li["NH"], "ear": "left"}))
    return out


def pyclarity(fn_name: str):
    def reference(case: Case) -> float:
        from clarity.evaluator.haspi import haspi_v2
        from clarity.evaluator.hasqi import hasqi_v2

        ag = haaqi_audiogram(audiogram(case.kwargs["listener"], case.kwargs["ear"]))
        r, e = case.reference.samples[0].astype(np.float64), case.estimate.samples[0].astype(np.float64)
        np.random.seed(case.kwargs["seed"])
        with contextlib.redirect_stdout(io.StringIO()):
            if fn_name == "haspi":
                return float(haspi_v2(r, RATE, e, RATE, ag, level1=65.0)[0])
            return float(hasqi_v2(r, RATE, e, RATE, ag, equalisation=1, level1=65.0)[0])

    return reference


@pytest.mark.parametrize("name", ["haspi", "hasqi"])
def test_equals_pyclarity(name):
    got = assert_parity(get_metric(name), ear_cases(), pyclarity(name), 1e-9, min_spread=0.2)
    assert len(got["reference"]) == 4


def test_mbstoi_equals_pyclarity():
    from clarity.evaluator.mbstoi import mbstoi

    rng = np.random.default_rng(6)
    x = quick_speech("se03.flac", RATE)[: 3 * RATE]
    ref = np.stack([x, np.roll(x, 8)])  # a source slightly to the left
    cases = [Case(f"{snr} dB", Audio(np.stack([at_snr(c, snr, rng=rng) for c in ref]), RATE), Audio(ref, RATE),
                  kwargs={"seed": 3 + k}) for k, snr in enumerate((20, 5, -5))]
    cases.append(Case("mono", Audio(x, RATE), Audio(x, RATE), status=INVALID))

    def reference(case: Case) -> float:
        r, e = case.reference.samples.astype(np.float64), case.estimate.samples.astype(np.float64)
        np.random.seed(case.kwargs["seed"])
        return float(mbstoi(r[0], r[1], e[0], e[1], RATE))

    assert_parity(get_metric("mbstoi"), cases, reference, 1e-9, min_spread=0.1)
