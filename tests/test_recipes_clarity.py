"""Clarity CEC2 and ICASSP 2023: pyclarity 0.9.0's installed recipes run end to end (their own
`enhance` and evaluation through their hydra entry points) on scenes made by `harness suites make`
and written in the Clarity layout, against `harness score` on the files they wrote: every
better-ear value equal within 1e-6. For CEC2 the recipe also scores the unprocessed front pair
(`si_unproc.csv`), which must equal the harness's `unprocessed` anchor."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
from conftest import run_cli

from harness.store import Store
from harness.suites import resolve_suite

pytestmark = pytest.mark.slow

AUDIOGRAM_HZ = [250, 500, 1000, 2000, 3000, 4000, 6000, 8000]
LISTENERS = {  # asymmetric ears, so an ear mix-up shows
    "L0201": ([10, 15, 20, 30, 40, 45, 50, 55], [30, 35, 40, 50, 60, 65, 70, 75]),
    "L0202": ([40, 45, 50, 55, 60, 60, 65, 70], [20, 20, 25, 30, 35, 40, 45, 50]),
}


def clarity_tree(tmp_path, generator: str, sub: str = ""):
    gen = tmp_path / "gen"
    res = run_cli("suites", "make", generator, "--out", str(gen), "--items", "3", "--seconds", "2",
                  "--seed", "21")
    assert res.returncode == 0, res.stderr
    items = resolve_suite(str(gen)).items
    root = tmp_path / "clarity" / sub
    scenes, meta = root / "clarity_data" / "dev" / "scenes", root / "clarity_data" / "metadata"
    scenes.mkdir(parents=True)
    meta.mkdir(parents=True)
    for item in items:
        for ref in (*item.inputs.values(), *item.references.values()):
            shutil.copy(gen / ref.path, scenes / ref.path)
    (meta / "scenes_listeners.dev.json").write_text(json.dumps(
        {item.id: sorted(LISTENERS) for item in items}))
    (meta / "listeners.json").write_text(json.dumps({
        lid: {"name": lid, "audiogram_cfs": AUDIOGRAM_HZ, "audiogram_levels_l": lv[0],
              "audiogram_levels_r": lv[1]} for lid, lv in LISTENERS.items()}))
    return root, items


def better_ear(out, metric: str, system: str | None = None) -> dict[tuple[str, str], float]:
    with Store(out) as store:
        df = store.scores(store.resolve("latest"))
    df = df[df.metric == metric]
    if system:
        df = df[df.system == system]
    assert (df.status == "ok").all(), df[df.status != "ok"].reason.unique()
    return df.groupby(["item_id", "listener_id"]).value.max().to_dict()


def run_recipe(monkeypatch, tmp_path, recipe: str, root):
    from omegaconf import OmegaConf

    if recipe == "cec2":
        from recipes.cec2.baseline.enhance import enhance
        from recipes.cec2.baseline.evaluate import run_calculate_SI as evaluate
    elif recipe == "cec3":
        from recipes.cec3.baseline.enhance import enhance
        from recipes.cec3.baseline.evaluate import run_calculate_si as evaluate
    else:
        from recipes.icassp_2023.baseline.enhance import enhance
        from recipes.icassp_2023.baseline.evaluate import run_calculate_si as evaluate
    import recipes

    config = OmegaConf.load(f"{recipes.__path__[0]}/{recipe}/baseline/config.yaml")
    exp = tmp_path / "exp"
    exp.mkdir()
    if recipe == "cec3":
        config.task, config.path.root, config.path.exp = root.name, str(root.parent), str(exp)
    else:
        config.path.root = str(root)
        config.path.exp_folder = str(exp)
    monkeypatch.chdir(exp)
    enhance(config)
    evaluate(config)
    return exp


def rows(path) -> dict[tuple[str, str], dict]:
    with open(path) as f:
        return {(r["scene"], r["listener"]): r for r in csv.DictReader(f)}


def test_cec2_recipe_and_harness_agree(tmp_path, monkeypatch):
    root, items = clarity_tree(tmp_path, "hearing-aid-speech")
    exp = run_recipe(monkeypatch, tmp_path, "cec2", root)
    theirs, unproc = rows(exp / "si.csv"), rows(exp / "si_unproc.csv")
    assert set(theirs) == {(it.id, lid) for it in items for lid in LISTENERS}

    res = run_cli("suites", "import", "cec2", str(root), "--out", str(tmp_path / "suite"))
    assert res.returncode == 0, res.stderr
    panel = root / "clarity_data" / "metadata" / "listeners.json"
    res = run_cli("score", str(exp / "enhanced_signals"), "--suite", str(tmp_path / "suite"),
                  "--panel", str(panel), "--out", str(tmp_path / "runs"), "--quiet")
    assert res.returncode == 0, res.stderr
    assert "named as the official recipe writes them" in res.stderr
    ours = better_ear(tmp_path / "runs", "haspi")
    assert set(ours) == set(theirs)
    for key, row in theirs.items():
        assert ours[key] == pytest.approx(float(row["haspi"]), abs=1e-6), key
    res = run_cli("run", "--suite", str(tmp_path / "suite"), "--system", "unprocessed", "--panel",
                  str(panel), "--out", str(tmp_path / "anchor"), "--quiet")
    assert res.returncode == 0, res.stderr
    anchor = better_ear(tmp_path / "anchor", "haspi")
    for key, row in unproc.items():
        assert anchor[key] == pytest.approx(float(row["haspi"]), abs=1e-6), key
    worst = max(abs(ours[k] - float(r["haspi"])) for k, r in theirs.items())
    print(f"CEC2: {len(theirs)} + {len(unproc)} values, largest |harness - recipe| = {worst:.2e}")
    values = [float(r["haspi"]) for r in theirs.values()]
    assert max(values) - min(values) > 0.01 and max(values) < 0.999


def test_icassp2023_recipe_and_harness_agree(tmp_path, monkeypatch):
    root, items = clarity_tree(tmp_path, "hearing-aid-enhancement")
    exp = run_recipe(monkeypatch, tmp_path, "icassp_2023", root)
    theirs = rows(exp / "scores.csv")
    assert set(theirs) == {(it.id, lid) for it in items for lid in LISTENERS}

    res = run_cli("suites", "import", "icassp2023", str(root), "--out", str(tmp_path / "suite"))
    assert res.returncode == 0, res.stderr
    res = run_cli("score", str(exp / "enhanced_signals"), "--suite", str(tmp_path / "suite"),
                  "--panel", str(root / "clarity_data" / "metadata" / "listeners.json"),
                  "--out", str(tmp_path / "runs"), "--quiet")
    assert res.returncode == 0, res.stderr
    got = {m: better_ear(tmp_path / "runs", m) for m in ("haspi", "hasqi", "icassp2023_score")}
    worst = 0.0
    for key, row in theirs.items():
        for ours, col in (("haspi", "haspi"), ("hasqi", "hasqi"), ("icassp2023_score", "combined")):
            assert got[ours][key] == pytest.approx(float(row[col]), abs=1e-6), (key, col)
            worst = max(worst, abs(got[ours][key] - float(row[col])))
    print(f"ICASSP 2023: {3 * len(theirs)} values, largest |harness - recipe| = {worst:.2e}")
    values = [float(r["combined"]) for r in theirs.values()]
    assert max(values) - min(values) > 0.01 and max(values) < 0.999


def test_cec3_recipe_and_harness_agree(tmp_path, monkeypatch):
    root, items = clarity_tree(tmp_path, "hearing-aid-cec3", sub="task1")
    exp = run_recipe(monkeypatch, tmp_path, "cec3", root)
    (scores,) = (exp / "scores").glob("scores.*.csv")
    theirs = rows(scores)
    assert set(theirs) == {(it.id, lid) for it in items for lid in LISTENERS}
    res = run_cli("suites", "import", "cec3", str(root), "--out", str(tmp_path / "suite"))
    assert res.returncode == 0, res.stderr
    res = run_cli("score", str(exp / "amplified_signals"), "--suite", str(tmp_path / "suite"),
                  "--panel", str(root / "clarity_data" / "metadata" / "listeners.json"),
                  "--out", str(tmp_path / "runs"), "--quiet")
    assert res.returncode == 0, res.stderr
    ours = better_ear(tmp_path / "runs", "haspi")
    assert set(ours) == set(theirs)
    for key, row in theirs.items():
        assert ours[key] == pytest.approx(float(row["haspi"]), abs=1e-6), key
    worst = max(abs(ours[k] - float(r["haspi"])) for k, r in theirs.items())
    print(f"CEC3: {len(theirs)} values, largest |harness - recipe| = {worst:.2e}")
    values = [float(r["haspi"]) for r in theirs.values()]
    assert max(values) - min(values) > 0.01 and max(values) < 0.999
