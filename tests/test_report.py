"""`harness report`: numbers against the stored scores, the three formats, and the HTML page in
headless Chromium (no console errors, tables and audio present, every clip and figure decodes;
a screenshot is kept in test-artifacts/)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, run_cli

from harness.leaderboard import rank
from harness.report.build import build
from harness.runs import load_run

ARTIFACTS = ROOT / "test-artifacts"


# the tests on two real runs share one fixture that makes them (about 75 s): slow, run in CI
SLOW = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    res = run_cli("run", "--suite", "speech-enhancement-quick", "--system", "unprocessed", "--system", "oracle",
                  "--out", str(root / "store"), "-q", "-j", "2")
    assert res.returncode == 0, res.stderr
    res = run_cli("run", "--suite", "music-remix-quick", "--system", "unprocessed", "--system", "oracle",
                  "--listener", "NH", "--listener", "N3", "--out", str(root / "store"), "-q", "-j", "2")
    assert res.returncode == 0, res.stderr
    from harness.store import Store

    s = Store(root / "store")
    ids = [r["run_id"] for r in s.runs()]
    s.close()
    return root, [f"{root / 'store'}@{i}" for i in ids]


@SLOW
def test_report_numbers_match_the_stored_scores(runs):
    root, refs = runs
    rep = build([load_run(r) for r in refs], audio_items=0, figures=False)
    assert rep.baseline == "unprocessed"
    speech = next(s for s in rep.sections if s.suite == "speech-enhancement-quick")
    raw = load_run(refs[0]).scores
    for metric in ("pesq", "stoi", "snr"):
        vals = raw[(raw.system == "unprocessed") & (raw.metric == metric)].value.to_numpy(float)
        row = speech.summary[(speech.summary.system == "unprocessed") & (speech.summary.metric == metric)].iloc[0]
        assert row["mean"] == pytest.approx(vals.mean()) and row.n_ok == 6 and row.n_not_ok == 0
        assert row.ci_low < vals.mean() < row.ci_high
        d = (raw[(raw.system == "oracle") & (raw.metric == metric)].set_index("item_id").value
             - raw[(raw.system == "unprocessed") & (raw.metric == metric)].set_index("item_id").value)
        v = speech.versus[(speech.versus.system == "oracle") & (speech.versus.metric == metric)].iloc[0]
        assert v.delta == pytest.approx(d.mean()) and v.n == 6
        # 6 positive differences: Wilcoxon p = 2/64, Holm over the report's 7 comparisons.
        assert v.p == pytest.approx(2 / 64) and v.p_holm == pytest.approx(min(1, 7 * 2 / 64))
    music = next(s for s in rep.sections if s.suite == "music-remix-quick")
    sev = music.breakdowns["haaqi by listener severity band (mean (units))"]
    assert list(sev.index) == ["NOTHING", "SEVERE"]  # NH and N3
    assert any(k.startswith("snr by SNR (dB)") for k in speech.breakdowns)
    assert any(k.startswith("pesq by RT60 (s)") for k in speech.breakdowns)


@SLOW
def test_markdown_and_latex(runs, tmp_path):
    _, refs = runs
    res = run_cli("report", *refs, "--format", "md", "--out", str(tmp_path / "r.md"))
    assert res.returncode == 0, res.stderr
    md = (tmp_path / "r.md").read_text()
    assert md.count("## ") >= 3 and "| oracle |" in md and "Difference to `unprocessed`" in md
    pngs = re.findall(r"\]\((r_files/[^)]+\.png)\)", md)
    assert len(pngs) >= 8 and all((tmp_path / p).stat().st_size > 1000 for p in pngs)
    assert "music-remix-quick-haaqi-heatmap.png" in md and "si-sdr-distribution.png" in md and "-vs-snr.png" in md
    res = run_cli("report", *refs, "--format", "latex", "--out", str(tmp_path / "r.tex"))
    assert res.returncode == 0, res.stderr
    tex = (tmp_path / "r.tex").read_text()
    assert tex.count(r"\begin{tabular}") == tex.count(r"\end{tabular}") >= 4
    assert r"si\_sdr" in tex and "si_sdr" not in tex.replace(r"si\_sdr", "")
    if shutil.which("pdflatex"):
        done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "r.tex"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout[-2000:]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@SLOW
def test_html_report_renders_in_headless_chromium(runs, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("HARNESS_REQUIRE_BROWSER"):
            pytest.fail("chromium not found (apt-get install chromium)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    _, refs = runs
    out = tmp_path / "report.html"
    res = run_cli("report", *refs, "--format", "html", "--out", str(out), "--audio-items", "1")
    assert res.returncode == 0, res.stderr
    page = out.read_text()
    assert "src='http" not in page and "href='http" not in page  # self-contained
    flags = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--enable-logging=stderr", "--v=0", "--virtual-time-budget=15000"]
    dom = subprocess.run([*flags, "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [ln for ln in dom.stderr.splitlines() if ":CONSOLE" in ln]
    assert console == [], console
    html = dom.stdout
    assert html.count("<table") >= 6
    n_audio = html.count("<audio")
    assert n_audio >= 2 * 4  # per suite: input, two systems, reference
    check = re.search(r'id="selfcheck" data-status="(\w+)">([^<]*)<', html)
    assert check and check.group(1) == "ok", check and check.group(2)
    assert f"{n_audio}/{n_audio} audio clips decoded" in check.group(2)
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report-screenshot.png"
    shot.unlink(missing_ok=True)
    done = subprocess.run([*flags, "--window-size=1280,2400", f"--screenshot={shot}", out.as_uri()],
                          capture_output=True, text=True, timeout=120, cwd=ARTIFACTS)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    head = shot.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    assert (width, height) == (1280, 2400)
    # Not a blank page: the screenshot has the page's variety of colours.
    import matplotlib.image as mpimg

    img = mpimg.imread(shot)
    assert np.unique(img.reshape(-1, img.shape[-1])[:, :3].round(2), axis=0).shape[0] > 50


def _units(name: str, values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"name": name, "suite": "s", "task": "speech-enhancement",
                         "item_id": [f"i{k:02d}" for k in range(values.size)], "listener_id": "-",
                         "metric": "snr", "value": values, "status": "ok"})


def test_rank_groups_tie_reruns_and_separate_a_1_db_drop():
    rng = np.random.default_rng(11)
    truth = rng.normal(10, 6, 50)
    units = pd.concat([
        _units("best", truth + rng.normal(0, 1.5, 50)),
        _units("rerun", truth + rng.normal(0, 1.5, 50)),  # the same system, another noisy rerun
        _units("worse", truth - 1.0 + rng.normal(0, 1.5, 50)),
        _units("broken", np.full(50, np.nan)),
    ], ignore_index=True)
    units.loc[units.name == "broken", "status"] = "failed"
    t = rank(units, "snr")
    groups = dict(zip(t.name, t["rank"], strict=True))
    assert groups["best"] == groups["rerun"] == 1 and groups["worse"] == 2
    assert groups["broken"] == 0 and t[t.name == "broken"].n_not_ok.item() == 50  # unranked, counted
    assert list(t.name)[:2] in (["best", "rerun"], ["rerun", "best"])


@SLOW
def test_leaderboard_cli_ranks_builds_and_refuses(runs, tmp_path):
    _, refs = runs
    db = str(tmp_path / "lb.sqlite")
    speech = refs[0]
    for name, system in (("anchor-low", "unprocessed"), ("anchor-high", "oracle"), ("again", "oracle")):
        res = run_cli("leaderboard", "add", speech, "--name", name, "--system", system, "--db", db)
        assert res.returncode == 0, res.stderr
    res = run_cli("leaderboard", "add", speech, "--name", "again", "--system", "oracle", "--db", db)
    assert res.returncode == 2 and "an entry 'again' exists" in res.stderr
    res = run_cli("leaderboard", "show", "--db", db, "--metric", "snr")
    assert res.returncode == 0, res.stderr
    rows = [ln for ln in res.stdout.splitlines() if "anchor" in ln or "again" in ln]
    # Identical scores share rank 1 (every paired difference is 0: p = 1).
    ranks = {ln.split("│")[2].strip(): ln.split("│")[1].strip() for ln in rows}
    assert ranks["anchor-high"] == ranks["again"] == "1"
    site = tmp_path / "site"
    res = run_cli("leaderboard", "build", "--out", str(site), "--db", db)
    assert res.returncode == 0, res.stderr
    data = json.loads((site / "leaderboard.json").read_text())
    ranking = data["suites"]["speech-enhancement-quick"]["ranking"]
    assert data["suites"]["speech-enhancement-quick"]["metric"] == "pesq"
    assert {r["name"]: r["rank"] for r in ranking}["again"] == 1
    assert "<table>" in (site / "index.html").read_text()
    res = run_cli("leaderboard", "show", "--db", str(tmp_path / "none.sqlite"))
    assert res.returncode == 2 and "no leaderboard here" in res.stderr
