"""Comparative reports of one or more runs: the content, independent of the output format.

Per suite: a table of systems (mean and 95% bootstrap CI per metric, units not ok beside it),
the difference of every system to a baseline (paired over the units both scored ok, with a
paired-bootstrap CI and a Holm-adjusted Wilcoxon p-value over the whole report), breakdowns by
listener severity band and by degradation metadata, figures, and (HTML) audio of a few items.
`harness.report.render` turns a `Report` into Markdown, HTML or LaTeX.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.errors import ConfigError
from harness.listener import panel_from_digest, severity
from harness.metrics import get_metric
from harness.report.summary import stem_units
from harness.runs import RunData, differences, paired_units
from harness.stats import bootstrap_ci, holm, paired
from harness.suites import Item

SEVERITY_ORDER = ["NOTHING", "MILD", "MODERATE", "SEVERE"]


@dataclass
class Figure:
    name: str
    caption: str
    png: bytes


@dataclass
class Clip:
    label: str
    flac: bytes
    spectrogram: bytes  # PNG


@dataclass
class AudioExample:
    item_id: str
    listener_id: str
    clips: list[Clip]


@dataclass
class SuiteSection:
    suite: str
    task: str
    metrics: list[str]
    summary: pd.DataFrame  # system, metric, mean, ci_low, ci_high, n_ok, n_not_ok
    versus: pd.DataFrame  # system, metric, n, delta, ci_low, ci_high, p, p_holm, d_z
    breakdowns: dict[str, pd.DataFrame] = field(default_factory=dict)  # title -> table
    figures: list[Figure] = field(default_factory=list)
    audio: list[AudioExample] = field(default_factory=list)


@dataclass
class Report:
    title: str
    runs: list[dict[str, Any]]  # label, run_id, name, store, manifest
    baseline: str | None
    sections: list[SuiteSection]
    warnings: list[str]


# ------------------------------------------------------------------------- data


def merged_units(runs: list[RunData], by_stem: bool = False) -> pd.DataFrame:
    """Units of all runs (with `by_stem`, also one per stem, `metric[stem]`); a system scored on
    the same suite by several runs is labelled system@run-name (runs on different suites merge
    under the plain name)."""
    seen: dict[tuple[str, str], int] = {}
    for r in runs:
        for key in set(zip(r.units.suite, r.units.system, strict=True)):
            seen[key] = seen.get(key, 0) + 1
    frames = []
    for r in runs:
        u = r.units.copy()
        if by_stem and not r.scores.empty:
            u = pd.concat([u, stem_units(r.scores)], ignore_index=True)
        u["system"] = [s if seen[(su, s)] == 1 else f"{s}@{r.name}"
                       for su, s in zip(u.suite, u.system, strict=True)]
        u["run"] = r.run_id
        frames.append(u)
    return pd.concat(frames, ignore_index=True)


def factors(meta: dict[str, Any]) -> dict[str, Any]:
    """Degradation factors of an item's metadata: SNR, RT60, device, bandwidth ratio, noise."""
    out: dict[str, Any] = {}
    if isinstance(meta.get("snr_db"), (int, float)):
        out["SNR (dB)"] = meta["snr_db"]
    room = meta.get("room") if isinstance(meta.get("room"), dict) else {}
    rt60 = meta.get("rt60_s", room.get("rt60_s"))
    if isinstance(rt60, (int, float)):
        out["RT60 (s)"] = rt60
    dev = meta.get("device")
    if isinstance(dev, dict):
        dev = dev.get("name") or json.dumps(dev, sort_keys=True)[:40]
    if isinstance(dev, str):
        out["device"] = dev
    if isinstance(meta.get("ratio"), (int, float)):
        out["bandwidth ratio"] = meta["ratio"]
    if isinstance(meta.get("noise"), str):
        out["noise"] = meta["noise"]
    return out


def _binned(values: pd.Series) -> pd.Series:
    """Numeric factors with many levels are cut into (at most) 4 quantile bins."""
    if values.nunique() <= 6 or not pd.api.types.is_numeric_dtype(values):
        return values
    return pd.qcut(values, 4, duplicates="drop").astype(str)


def _mean_table(df: pd.DataFrame, by: str, order: list | None = None) -> pd.DataFrame:
    """'mean (n)' of the ok units per `by` level (rows) and system (columns)."""
    ok = df[df.status == "ok"]
    if ok.empty:
        return pd.DataFrame()
    g = ok.groupby([by, "system"], observed=True).value
    means = g.mean().unstack("system")
    counts = g.size().unstack("system")
    if order is not None:
        means = means.reindex([o for o in order if o in means.index])
        counts = counts.reindex(means.index)
    table = pd.DataFrame(
        [[None if pd.isna(m) else f"{m:.3f} ({int(c)})" for m, c in zip(mr, cr, strict=True)]
         for mr, cr in zip(means.to_numpy(), counts.to_numpy(), strict=True)],
        index=[str(x) for x in means.index], columns=list(means.columns),
    )
    table.index.name = by.strip()
    return table


# ------------------------------------------------------------------------- figures


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _fig_distribution(u: pd.DataFrame, metric: str, systems: list[str]) -> bytes:
    import matplotlib.pyplot as plt

    data = [u[(u.metric == metric) & (u.system == s) & (u.status == "ok")].value.to_numpy(float)
            for s in systems]
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(systems), 3.0))
    ax.boxplot([d if d.size else [np.nan] for d in data], showfliers=False)
    rng = np.random.default_rng(0)
    for i, d in enumerate(data, start=1):
        ax.plot(i + rng.uniform(-0.15, 0.15, d.size), d, ".", alpha=0.5, ms=4)
    ax.set_xticks(range(1, len(systems) + 1), systems, rotation=20, ha="right")
    m = get_metric(metric.split("[", 1)[0])
    ax.set_ylabel(f"{metric} ({m.unit})" if getattr(m, "unit", "") else metric)
    ax.grid(alpha=0.3)
    return _png(fig)


def _fig_against(u: pd.DataFrame, metric: str, factor: str, systems: list[str]) -> bytes:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 3.0))
    for s in systems:
        d = u[(u.metric == metric) & (u.system == s) & (u.status == "ok")]
        if d.empty:
            continue
        means = d.groupby(factor).value.mean().sort_index()
        ax.plot(d[factor], d.value, ".", alpha=0.35)
        ax.plot(means.index, means.values, "-o", ms=3, label=s, color=ax.lines[-1].get_color())
    ax.set_xlabel(factor)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def _fig_heatmap(table: pd.DataFrame, metric: str) -> bytes:
    import matplotlib.pyplot as plt

    vals = table.to_numpy(float)
    fig, ax = plt.subplots(figsize=(1.5 + 1.0 * vals.shape[1], 0.8 + 0.32 * vals.shape[0]))
    im = ax.imshow(vals, aspect="auto", cmap="viridis")
    ax.set_xticks(range(vals.shape[1]), table.columns, rotation=20, ha="right")
    ax.set_yticks(range(vals.shape[0]), table.index)
    for i in range(vals.shape[0]):
        for j in range(vals.shape[1]):
            if np.isfinite(vals[i, j]):
                ax.text(j, i, f"{vals[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if vals[i, j] < np.nanmean(vals) else "black")
    fig.colorbar(im, ax=ax, label=metric)
    return _png(fig)


def _spectrogram(x: np.ndarray, rate: int) -> bytes:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3.2, 1.5))
    with np.errstate(divide="ignore"):  # digital silence: an empty bin is drawn at the floor
        ax.specgram(x + 1e-9, NFFT=512, Fs=rate, noverlap=384, cmap="magma")
    ax.set_ylabel("Hz", fontsize=6)
    ax.tick_params(labelsize=6)
    return _png(fig)


def _clip(label: str, samples: np.ndarray, rate: int, seconds: float) -> Clip:
    import soundfile as sf

    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    x = x[:, : int(seconds * rate)]
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 1.0:
        x = x / peak  # playback only: never clip; scores are computed elsewhere
    buf = io.BytesIO()
    sf.write(buf, x.T, rate, format="FLAC", subtype="PCM_16")
    return Clip(label, buf.getvalue(), _spectrogram(x.mean(axis=0), rate))


def _listenable(outputs: dict[str, np.ndarray]) -> tuple[np.ndarray, str] | None:
    """One signal to listen to from a system's outputs: the remix, or per-ear stems summed
    into (left, right), or the single output."""
    if "remix" in outputs:
        return outputs["remix"], "remix"
    ears = {e: [v for k, v in outputs.items() if k.startswith(f"{e}_")] for e in ("left", "right")}
    if ears["left"] and ears["right"]:
        both = [np.sum([v.reshape(-1) for v in ears[e]], axis=0) for e in ("left", "right")]
        return np.stack(both), "stems summed per ear"
    if len(outputs) == 1:
        return next(iter(outputs.values())), next(iter(outputs))
    return np.sum([v.reshape(-1) for v in outputs.values()], axis=0), "outputs summed"


def _audio_examples(runs: list[RunData], units: pd.DataFrame, suite: str, items: dict[str, Item],
                    systems: list[str], n_items: int, seconds: float) -> list[AudioExample]:
    from harness import audio as audio_mod

    if n_items <= 0:
        return []
    jobs = []
    for r in runs:
        j = r.jobs[r.jobs.suite == suite].copy()
        j["label"] = [s for s in j.system]
        jobs.append((r, j))
    out = []
    chosen = sorted({i for i in units[units.suite == suite].item_id})[:n_items]
    for item_id in chosen:
        item = items.get(item_id)
        if item is None:
            continue
        listeners = sorted({lid for _, j in jobs for lid in j[j.item_id == item_id].listener_id})
        lid = listeners[0] if listeners else "-"
        clips = []
        try:
            for name in list(item.inputs)[:1]:
                a = item.input(name)
                clips.append(_clip(f"input ({name})", a.samples, a.rate, seconds))
        except Exception:  # noqa: BLE001 - a missing input file only drops the clip
            pass
        for r, j in jobs:
            for row in j[(j.item_id == item_id) & (j.listener_id == lid)].itertuples():
                label = row.system if row.system in systems else f"{row.system}@{r.name}"
                if label not in systems:
                    continue
                paths = json.loads(row.outputs)
                if "remix" in paths:
                    paths = {"remix": paths["remix"]}
                sigs, rate = {}, None
                for k, pth in paths.items():
                    p = r.output_path(pth)
                    if p.exists():
                        a = audio_mod.read(p)
                        sigs[k], rate = a.samples, a.rate
                pick = _listenable(sigs) if sigs else None
                if pick is not None:
                    clips.append(_clip(f"{label} ({pick[1]})", pick[0], rate, seconds))
        try:
            refs = list(item.references)
            if len(refs) == 1:
                a = item.reference(refs[0])
                clips.append(_clip(f"reference ({refs[0]})", a.samples, a.rate, seconds))
            elif refs:
                rs = [item.reference(k) for k in refs]
                clips.append(_clip("reference (sum of " + ", ".join(refs) + ")",
                                   np.sum([a.samples for a in rs], axis=0), rs[0].rate, seconds))
        except Exception:  # noqa: BLE001
            pass
        out.append(AudioExample(item_id, lid, clips))
    return out


# ------------------------------------------------------------------------- the report


def build(runs: list[RunData], baseline: str | None = None, audio_items: int = 2,
          audio_seconds: float = 8.0, figures: bool = True, title: str | None = None,
          by_stem: bool = False) -> Report:
    """Everything a report shows, from stored runs (scores, jobs, manifests, suite files). With
    `by_stem`, every per-stem metric is also summarised and compared stem by stem (`metric[stem]`,
    in the same Holm family)."""
    warnings: list[str] = [f"{r.label}: {note}" for r in runs for note in r.manifest.get("not_held_out", [])]
    for other in runs[1:]:
        for d in differences(runs[0], other):
            warnings.append(f"{runs[0].label} vs {other.label}: {d}")
    u = merged_units(runs, by_stem)
    systems_all = list(dict.fromkeys(u.system))
    if baseline is not None and baseline not in systems_all:
        raise ConfigError(f"baseline system {baseline!r} is not in the runs ({', '.join(systems_all)})")
    if baseline is None:
        baseline = "unprocessed" if "unprocessed" in systems_all else systems_all[0]
    manifests = {r.run_id: r.manifest for r in runs}
    panel = None
    for m in manifests.values():
        info = m.get("panel", {})
        if info.get("listeners"):
            panel = panel_from_digest(info.get("name", ""), info["listeners"])
            break
    sections: list[SuiteSection] = []
    all_versus = []
    for suite, su in u.groupby("suite", sort=False):
        task = su.task.iloc[0]
        metrics = list(dict.fromkeys(su.metric))
        systems = list(dict.fromkeys(su.system))
        rows = []
        for (sys_, metric), g in su.groupby(["system", "metric"], sort=False):
            ok = g[g.status == "ok"].value.to_numpy(float)
            lo, hi = bootstrap_ci(ok)
            rows.append({"system": sys_, "metric": metric,
                         "mean": float(ok.mean()) if ok.size else np.nan, "ci_low": lo,
                         "ci_high": hi, "n_ok": int(ok.size), "n_not_ok": int((g.status != "ok").sum())})
        summary = pd.DataFrame(rows)
        vrows = []
        if baseline in systems:
            for s in systems:
                if s == baseline:
                    continue
                for metric in metrics:
                    m = paired_units(su[(su.system == baseline) & (su.metric == metric)],
                                     su[(su.system == s) & (su.metric == metric)])
                    both = m[(m.status_b == "ok") & (m.status_c == "ok")]
                    r = paired(both.baseline.to_numpy(float), both.candidate.to_numpy(float))
                    vrows.append({"system": s, "metric": metric, "n": r.n, "delta": r.delta,
                                  "ci_low": r.ci_low, "ci_high": r.ci_high, "p": r.p_wilcoxon,
                                  "d_z": r.d_z, "suite": suite})
        versus = pd.DataFrame(vrows)
        all_versus.append(versus)
        sec = SuiteSection(suite, task, metrics, summary, versus)
        # breakdowns
        listener_ids = set(su.listener_id) - {"-"}
        if panel is not None and listener_ids:
            sev = {li.id: severity(li) for li in panel.listeners}
            su = su.assign(severity=su.listener_id.map(sev).fillna("unknown"))
            for metric in metrics:
                t = _mean_table(su[su.metric == metric], "severity", SEVERITY_ORDER + ["unknown"])
                if not t.empty:
                    sec.breakdowns[f"{metric} by listener severity band (mean (units))"] = t
        items = {}
        try:
            owner = next(r for r in runs if suite in set(r.units.suite))
            items = owner.suite_items(suite)
        except Exception as exc:  # noqa: BLE001 - a suite no longer on disk only loses breakdowns
            warnings.append(f"suite {suite}: its files are not available ({exc}); "
                            "no metadata breakdowns or audio")
        fac = {iid: factors(it.metadata) for iid, it in items.items()}
        names = sorted({k for f in fac.values() for k in f})
        for name in names:
            col = su.item_id.map({iid: f.get(name) for iid, f in fac.items()})
            if col.nunique(dropna=True) < 2:
                continue
            su = su.assign(**{name: col})
            for metric in metrics:
                sub = su[su.metric == metric]
                t = _mean_table(sub.assign(_level=_binned(sub[name])), "_level")
                t.index.name = name
                if not t.empty:
                    sec.breakdowns[f"{metric} by {name} (mean (units))"] = t
        if figures:
            for metric in metrics:
                sec.figures.append(Figure(f"{suite}-{metric}-distribution",
                                          f"{suite}: {metric} per unit, by system (box: quartiles)",
                                          _fig_distribution(su, metric, systems)))
            if "SNR (dB)" in su.columns:
                for metric in metrics:
                    sec.figures.append(Figure(f"{suite}-{metric}-vs-snr",
                                              f"{suite}: {metric} against input SNR "
                                              "(dots: units; line: mean)",
                                              _fig_against(su, metric, "SNR (dB)", systems)))
            if "haaqi" in metrics and listener_ids:
                ok = su[(su.metric == "haaqi") & (su.status == "ok")]
                t = ok.pivot_table(index="listener_id", columns="system", values="value", aggfunc="mean")
                if panel is not None:
                    t = t.reindex([i for i in panel.ids if i in t.index])
                if not t.empty:
                    sec.figures.append(Figure(f"{suite}-haaqi-heatmap",
                                              f"{suite}: mean HAAQI per listener (rows) and system (columns)",
                                              _fig_heatmap(t, "haaqi")))
        sec.audio = _audio_examples(runs, su, suite, items, systems, audio_items, audio_seconds)
        sections.append(sec)
    # One Holm family over every comparison in the report.
    if any(not v.empty for v in all_versus):
        allv = pd.concat([v for v in all_versus if not v.empty], ignore_index=True)
        adj = holm(allv.p.to_numpy(float))
        k = 0
        for sec in sections:
            if not sec.versus.empty:
                sec.versus["p_holm"] = adj[k : k + len(sec.versus)]
                k += len(sec.versus)
    run_info = [{"label": r.label, "run_id": r.run_id, "name": r.name, "store": str(r.folder),
                 "manifest": r.manifest} for r in runs]
    return Report(title or "Comparative report: " + ", ".join(r.name for r in runs), run_info,
                  baseline, sections, warnings)
